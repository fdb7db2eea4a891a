"""`download --hf`: stanfordnlp/imdb's Parquet files from a mirror on 127.0.0.1 (never the
internet), checksum-verified, written whole or not at all, then read as the Hugging Face layout."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from helpers import assert_user_error, http_server, run, sha256
from imdb_rnn.config import DataConfig
from imdb_rnn.data.download import HF_IMDB_FILES
from imdb_rnn.data.hf import iter_unlabelled_texts
from imdb_rnn.data.sources import read_labelled

UNLABELLED = [f"an unlabelled review, number {i}" for i in range(5)]




def hf_mirror(root: Path) -> tuple[Path, dict[str, str]]:
    """A folder laid out like the Hub's stanfordnlp/imdb (plain_text/SPLIT-00000-of-00001.parquet,
    a ClassLabel label), and each file's sha256."""
    features = {"text": {"dtype": "string", "_type": "Value"}, "label": {"names": ["neg", "pos"], "_type": "ClassLabel"}}
    schema = pa.schema([("text", pa.string()), ("label", pa.int64())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    rows = {"train": ([f"train review {i}" for i in range(6)], [0, 0, 0, 1, 1, 1]),
            "test": ([f"test review {i}" for i in range(4)], [0, 0, 1, 1]),
            "unsupervised": (UNLABELLED, [-1] * len(UNLABELLED))}
    sums = {}
    for split, (rel, _) in HF_IMDB_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        texts, labels = rows[split]
        pq.write_table(pa.table({"text": texts, "label": labels}, schema=schema), root / rel)
        sums[split] = sha256(root / rel)
    return root, sums


def checksums(sums: dict[str, str]) -> list[str]:
    return [arg for split, digest in sums.items() for arg in ("--hf-sha256", f"{split}={digest}")]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_hf_download_then_read(tmp_path):
    served, sums = hf_mirror(tmp_path / "served")
    data = tmp_path / "data"
    with http_server(served) as url:
        first = run("download", "--data-dir", data, "--hf-url", url, *checksums(sums), "--skip-nltk", "-q")
        again = run("download", "--data-dir", data, "--hf-url", url, *checksums(sums), "--skip-nltk", "-q")
    assert first.exit_code == 0, first.output
    assert first.stdout.count("downloaded: ") == 3 and "data.source=imdb-hf" in first.stdout
    assert again.exit_code == 0 and again.stdout.count("already present: ") == 3
    assert files_under(data) == sorted(f"imdb-hf/{rel}" for rel, _ in HF_IMDB_FILES.values())  # no temporary file left
    for rel, _ in HF_IMDB_FILES.values():
        assert (data / "imdb-hf" / rel).read_bytes() == (served / rel).read_bytes()
    labelled = read_labelled(DataConfig(source="imdb-hf"), data / "imdb-hf")
    assert labelled.label_names == ["neg", "pos"] and len(labelled.reviews) == 10
    assert list(iter_unlabelled_texts(data / "imdb-hf")) == UNLABELLED


def test_hf_download_from_a_local_folder(tmp_path):
    served, sums = hf_mirror(tmp_path / "served")
    result = run("download", "--data-dir", tmp_path / "data", "--hf-url", served, *checksums(sums), "--skip-nltk", "-q")
    assert result.exit_code == 0, result.output
    assert len(files_under(tmp_path / "data")) == 3


def test_hf_download_checks_the_pinned_checksums(tmp_path):
    served, _ = hf_mirror(tmp_path / "served")
    data = tmp_path / "data"
    with http_server(served) as url:
        result = run("download", "--data-dir", data, "--hf-url", url, "--skip-nltk", "-q")
    assert_user_error(result, "checksum mismatch", "train-00000-of-00001.parquet", f"expected {HF_IMDB_FILES['train'][1]}",
                      "--hf-sha256 train=HEX")
    assert files_under(data) == []


def test_hf_download_http_error_keeps_the_files_already_complete(tmp_path):
    served, sums = hf_mirror(tmp_path / "served")
    data = tmp_path / "data"
    with http_server(served, fail={"/plain_text/test-00000-of-00001.parquet": 404}) as url:
        result = run("download", "--data-dir", data, "--hf-url", url, *checksums(sums), "--skip-nltk", "-q")
    assert_user_error(result, "HTTP 404", "--hf-url")
    assert files_under(data) == ["imdb-hf/plain_text/train-00000-of-00001.parquet"]


def test_hf_option_mistakes(tmp_path):
    zeros = "0" * 64
    assert_user_error(run("download", "--data-dir", tmp_path, "--hf", "--url", "x"), "--url and --sha256 are the archive's",
                      "--hf-sha256 SPLIT=HEX")
    assert_user_error(run("download", "--data-dir", tmp_path, "--hf-sha256", f"train={zeros}"), "add --hf")
    assert_user_error(run("download", "--data-dir", tmp_path, "--hf", "--hf-sha256", f"dev={zeros}"), "names no split",
                      "train, test, unsupervised")
    assert_user_error(run("download", "--data-dir", tmp_path, "--hf", "--hf-sha256", "test=abc"),
                      "--hf-sha256 test= must be 64 hexadecimal digits")
    assert list(tmp_path.iterdir()) == []
