"""Bad input: one line naming the problem and the fix, exit status 2, nothing half-written."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import TINY, http_server, sha256, write_config, write_tarball
from imdb_rnn.cli import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, *phrases):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture
def tiny(tmp_path):
    return write_config(tmp_path / "tiny.yaml", **TINY)


def test_missing_source(tiny, tmp_path):
    assert_user_error(run("preprocess", "--config", tiny, "--data-dir", tmp_path / "nowhere"), "does not exist", "imdb-rnn download")


def test_unrecognised_format(tiny, tmp_path):
    (tmp_path / "aclImdb_v1.tar.gz").write_text("just some text")
    assert_user_error(run("preprocess", "--config", tiny, "--data-dir", tmp_path), "unrecognised format")


def test_csv_without_columns(tmp_path):
    pd.DataFrame({"body": ["a"], "stars": ["positive"]}).to_csv(tmp_path / "r.csv", index=False)
    cfg = write_config(tmp_path / "c.yaml", data={"source": "r.csv"})
    assert_user_error(run("preprocess", "--config", cfg, "--data-dir", tmp_path), "has no text column (has: body, stars)",
                      "review or text", "data.text_column")


def test_unknown_label(tmp_path):
    pd.DataFrame({"review": ["good", "bad", "meh"], "sentiment": ["positive", "negative", "neutral"]}).to_csv(tmp_path / "r.csv", index=False)
    cfg = write_config(tmp_path / "c.yaml", data={"source": "r.csv", "labels": ["positive", "negative"]})
    assert_user_error(run("preprocess", "--config", cfg, "--data-dir", tmp_path), "line 4", "'neutral'", "positive, negative",
                      "data.labels")


def test_checksum_mismatch_leaves_nothing(small_tarball, tmp_path):
    data = tmp_path / "new" / "data"
    assert_user_error(run("download", "--data-dir", data, "--url", small_tarball, "--sha256", "0" * 64, "-q"), "checksum mismatch")
    assert list(tmp_path.iterdir()) == []  # not even the folders it created for the archive
    # A data directory that was there stays, with what it held.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("x")
    assert_user_error(run("download", "--data-dir", tmp_path / "data", "--url", small_tarball, "--sha256", "0" * 64, "-q"),
                      "checksum mismatch")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("status", [404, 500])
def test_download_http_error(small_tarball, tmp_path, status):
    shutil.copy(small_tarball, tmp_path / "aclImdb_v1.tar.gz")
    with http_server(tmp_path, fail={"/aclImdb_v1.tar.gz": status}) as url:
        result = run("download", "--data-dir", tmp_path / "data", "--url", f"{url}/aclImdb_v1.tar.gz", "-q")
    assert_user_error(result, f"HTTP {status}")
    assert not (tmp_path / "data").exists()


def test_download_unreachable(tmp_path):
    with http_server(tmp_path) as url:
        pass  # the server is closed again: its port now refuses connections
    assert_user_error(run("download", "--data-dir", tmp_path / "d", "--url", f"{url}/x.tar.gz", "-q"), "cannot reach")


def test_ctrl_c_during_download_is_one_line_and_leaves_nothing(tmp_path):
    """SIGINT while the archive streams in (a server that sends slowly): exit 130, one line, no
    partial archive and no temporary file."""
    import http.server
    import signal
    import subprocess
    import sys
    import threading
    import time

    from helpers import ROOT, default_sigint

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
                    time.sleep(0.05)
            except OSError:  # the client went away
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data = tmp_path / "data"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "imdb_rnn", "download", "--data-dir", str(data), "--url",
                                 f"http://127.0.0.1:{server.server_address[1]}/aclImdb_v1.tar.gz", "-q"],
                                cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
        deadline = time.monotonic() + 60
        while not list(data.glob(".*.tmp")) and time.monotonic() < deadline:  # the download has started
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted (Ctrl-C)"), stderr
    assert not data.exists()  # the data directory it created went with the partial archive


@pytest.mark.slow
@pytest.mark.parametrize("children,delay", [(1, 0.0), (2, 0.0), (3, 0.0), (3, 1.0)])
def test_ctrl_c_during_preprocess_with_workers_is_one_line(sample_reviews, tiny, tmp_path, children, delay):
    """A terminal's Ctrl-C reaches the whole process group, the worker processes too: still one
    line, exit 130, and no artifacts (the workers leave the signal to the parent), whether it comes
    as the pool starts its processes (multiprocessing's resource tracker, then the two workers; the
    parent's Ctrl-C is held back and delivered once they are started), as the workers import
    (before their initializer runs) or while they tokenize (1 s later). With SIGINT ignored meanwhile
    instead, the parent lost it and finished: the first case failed 6 runs of 6, the third 1 of 6."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import ROOT, default_sigint
    from imdb_rnn.data.sources import Review

    many = [Review(f"{r.id.rsplit('/', 1)[0]}/{i}_{k}", r.split, r.label, r.text)
            for k in range(25) for i, r in enumerate(sample_reviews)]  # 10,000 reviews: seconds of tagging
    data = tmp_path / "data"
    data.mkdir()
    write_tarball(many, data / "aclImdb_v1.tar.gz")
    proc = subprocess.Popen([sys.executable, "-m", "imdb_rnn", "preprocess", "--config", str(tiny), "--data-dir",
                             str(data), "-q", "-j", "2"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # wait for that many child processes
        started = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if started.exists() and len(started.read_text().split()) >= children:
            break
        time.sleep(0.01)
    time.sleep(delay)
    assert proc.poll() is None, "preprocess finished before the signal; give it more reviews"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted (Ctrl-C)"), stderr
    assert not list(data.glob("processed/*/manifest.json")) and not list(data.glob("processed/.*.tmp"))



def test_a_present_copy_with_another_checksum_is_named_before_the_network(small_tarball, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(small_tarball, data / "aclImdb_v1.tar.gz")  # a re-packed archive, not the official bytes
    with http_server(tmp_path) as url:
        pass  # closed: the fresh copy cannot be fetched
    result = run("download", "--data-dir", data, "--url", f"{url}/aclImdb_v1.tar.gz", "-q")
    assert_user_error(result, f"is present but its sha256 {sha256(small_tarball)} is not the expected",
                      "pass --sha256 with its sha256 if you trust it", "cannot reach")
    assert sha256(data / "aclImdb_v1.tar.gz") == sha256(small_tarball)  # left as it was
    # trusted by its checksum, it is kept without a fetch
    assert run("download", "--data-dir", data, "--url", f"{url}/aclImdb_v1.tar.gz", "--sha256", sha256(small_tarball),
               "--skip-nltk", "-q").exit_code == 0

def test_corrupt_tarball(small_tarball, tiny, tmp_path):
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(small_tarball.read_bytes()[: small_tarball.stat().st_size // 2])
    assert_user_error(run("preprocess", "--config", tiny, "--data-dir", tmp_path), "truncated or corrupt")


def test_unknown_config_key_suggests(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", model={"hiden_size": 3})
    assert_user_error(run("train", "--config", cfg), "unknown config key 'model.hiden_size'", "did you mean 'model.hidden_size'")


def test_wrong_type_and_range(tiny):
    assert_user_error(run("train", "--config", tiny, "train.epochs=ten"), "'train.epochs' must be int")
    assert_user_error(run("train", "--config", tiny, "model.hidden_size=0"), "'model.hidden_size' must be at least 1")
    assert_user_error(run("train", "--config", tiny, "train.lr=-0.1"), "'train.lr' must be positive")
    assert_user_error(run("train", "--config", tiny, "model.layer_dropout=1"), "'model.layer_dropout' must be in [0, 1)")


def test_yaml_syntax_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  cell: [gru\n")
    assert_user_error(run("train", "--config", bad), "YAML syntax error", "line")


def test_missing_config(tmp_path):
    assert_user_error(run("train", "--config", tmp_path / "nope.yaml"), "does not exist")


def test_cuda_without_gpu(tiny, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert_user_error(run("train", "--config", tiny, "--data-dir", tmp_path, "--device", "cuda"), "CUDA is not available", "--device cpu")


def test_eval_without_checkpoint(tmp_path):
    assert_user_error(run("eval", "--run", tmp_path), "no checkpoint")


def test_train_before_preprocess(tiny, tmp_path):
    assert_user_error(run("train", "--config", tiny, "--data-dir", tmp_path), "run 'imdb-rnn preprocess")


def test_missing_nltk_data(tiny, small_tarball, tmp_path, monkeypatch):
    import nltk

    shutil.copy(small_tarball, tmp_path / "aclImdb_v1.tar.gz")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    assert_user_error(run("preprocess", "--config", tiny, "--data-dir", tmp_path), "NLTK data missing", "punkt_tab", "NLTK_DATA")
    assert not (tmp_path / "processed").exists()


def test_one_class_warning():
    from imdb_rnn.scoring import one_class_warning

    assert one_class_warning(0.5) is None and one_class_warning(0.94) is None
    assert "predicts 'negative' for 99%" in one_class_warning(0.01)
    assert "predicts 'positive' for 97%" in one_class_warning(0.97)


def test_existing_run_is_not_overwritten(tmp_path):
    from imdb_rnn.run import RunDir

    (tmp_path / "model-last.pt").write_bytes(b"precious")
    with pytest.raises(Exception, match="already holds a run; pass --overwrite"):
        RunDir(tmp_path).prepare(overwrite=False)
    assert (tmp_path / "model-last.pt").read_bytes() == b"precious"
    RunDir(tmp_path).prepare(overwrite=True)
    assert not (tmp_path / "model-last.pt").exists()


def preprocess_tarball(tmp_path, config, reviews, extra=None, *overrides):
    write_tarball(reviews, tmp_path / "aclImdb_v1.tar.gz", extra)
    return run("preprocess", "--config", config, "--data-dir", tmp_path, "-q", *overrides)


def test_whitespace_only_review(sample_reviews, tiny, tmp_path):
    blank = {"aclImdb/train/pos/99999_8.txt": b"  \n\t "}
    assert_user_error(preprocess_tarball(tmp_path, tiny, sample_reviews[80:120], blank),
                      "empty or whitespace only", "train/pos/99999_8", "preprocess.empty=drop")
    assert not (tmp_path / "processed").exists()
    ok = preprocess_tarball(tmp_path, tiny, sample_reviews[80:120], blank, "preprocess.empty=drop")
    assert ok.exit_code == 0, ok.output


def test_review_bytes_not_utf8(sample_reviews, tiny, tmp_path):
    latin1 = {"aclImdb/test/neg/99999_2.txt": "Un film tr\u00e8s mauvais".encode("latin-1")}
    assert_user_error(preprocess_tarball(tmp_path, tiny, sample_reviews[80:120], latin1),
                      "not valid UTF-8", "99999_2", "re-save")
    assert not (tmp_path / "processed").exists()


def test_csv_bytes_not_utf8(tmp_path):
    (tmp_path / "r.csv").write_bytes("review,sentiment\nTr\u00e8s bien,positive\nnul,negative\n".encode("latin-1"))
    cfg = write_config(tmp_path / "c.yaml", data={"source": "r.csv"})
    assert_user_error(run("preprocess", "--config", cfg, "--data-dir", tmp_path), "not valid UTF-8", "re-save")


def test_checkpoint_with_another_vocabulary(sample_reviews, tiny, tmp_path):
    assert preprocess_tarball(tmp_path, tiny, sample_reviews[::2]).exit_code == 0
    assert run("train", "--config", tiny, "--data-dir", tmp_path, "--run-dir", tmp_path / "r", "-q",
               "train.epochs=1").exit_code == 0
    # The source changes and is preprocessed again: same config, other vocabulary.
    write_tarball(sample_reviews[1::2], tmp_path / "aclImdb_v1.tar.gz")
    assert run("preprocess", "--config", tiny, "--data-dir", tmp_path, "-q").exit_code == 0
    assert_user_error(run("eval", "--run", tmp_path / "r", "--data-dir", tmp_path), "vocabulary", "differs", "retrain")
    assert_user_error(run("train", "--config", tiny, "--data-dir", tmp_path, "--run-dir", tmp_path / "r", "--resume",
                          "train.epochs=1"), "vocabulary", "differs")
    # predict needs the run alone, which carries its own vocabulary
    assert run("predict", "--run", tmp_path / "r", "a fine film").exit_code == 0
    # a run whose vocab.json was swapped for another is refused
    (tmp_path / "r" / "vocab.json").write_text('["<PAD>", "<UNK>", "film"]')
    assert_user_error(run("predict", "--run", tmp_path / "r", "a fine film"), "vocab.json", "not the vocabulary")


def test_unwritable_run_dir(sample_reviews, tiny, tmp_path):
    assert preprocess_tarball(tmp_path, tiny, sample_reviews[::4]).exit_code == 0
    (tmp_path / "a_file").write_text("not a directory")
    assert_user_error(run("train", "--config", tiny, "--data-dir", tmp_path, "--run-dir", tmp_path / "a_file" / "run"),
                      "cannot create directory", "writable")


@pytest.mark.slow
def test_full_disk_is_a_clear_error(sample_reviews, tiny, tmp_path):
    """A write that fails part-way (here: a file size limit, as a full disk would) is one clear line, no temp file."""
    import resource
    import signal
    import subprocess
    import sys

    from helpers import ROOT

    assert preprocess_tarball(tmp_path, tiny, sample_reviews[::4]).exit_code == 0

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # room for the PNG, not a checkpoint

    run_dir = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "imdb_rnn", "train", "--config", str(tiny), "--data-dir", str(tmp_path),
                           "--run-dir", str(run_dir), "-q", "model.embedding_dim=64"], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=limit_file_size, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {run_dir / 'model-'}"), proc.stderr
    assert "free space" in lines[0]
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "model-last.pt").exists()


def test_artifacts_from_another_config(sample_reviews, tiny, tmp_path):
    assert preprocess_tarball(tmp_path, tiny, sample_reviews[::4]).exit_code == 0
    assert_user_error(run("train", "--config", tiny, "--data-dir", tmp_path, "preprocess.min_freq=2"),
                      "made with a different config", "min_freq", "run 'imdb-rnn preprocess'")


def test_non_finite_loss_stops_and_keeps_good_weights(sample_reviews, tiny, tmp_path):
    import torch

    assert preprocess_tarball(tmp_path, tiny, sample_reviews[::4]).exit_code == 0
    run_dir = tmp_path / "r"
    result = run("train", "--config", tiny, "--data-dir", tmp_path, "--run-dir", run_dir, "-q",
                 "model.cell=rnn", "model.nonlinearity=relu", "train.lr=1e10", "train.epochs=5")
    assert_user_error(result, "loss became non-finite", "lower train.lr", str(run_dir / "model-last.pt"))
    if (run_dir / "model-last.pt").exists():  # an epoch finished before the loss blew up
        weights = torch.load(run_dir / "model-last.pt", weights_only=True)["state_dict"]
        assert all(torch.isfinite(w).all() for w in weights.values())


# --- predict's input files ------------------------------------------------------------------------

def predict_file(tmp_path, name, data):
    """`predict --file` on a file holding `data`; the input file fails before the run is read."""
    (tmp_path / name).write_bytes(data)
    return run("predict", "--run", tmp_path, "--file", tmp_path / name)


def test_text_file_one_line_one_review(tiny_run, tmp_path):
    """Lines end at "\\n" alone: U+0085 and U+2028 stay inside their review; a BOM is not text."""
    import json

    from imdb_rnn.config import load_config
    from imdb_rnn.predict import read_texts
    from imdb_rnn.training.train import train

    lines = ["A fine film, \u0085 well acted.", "Dull plot\u2028and a worse ending.", "Great music, great cast."]
    path = tmp_path / "reviews.txt"
    path.write_bytes(b"\xef\xbb\xbf" + f"{lines[0]}\r\n{lines[1]}\n\n  \n{lines[2]}\n".encode("utf-8"))
    assert read_texts(path) == lines

    data, config = tiny_run
    train(load_config(config, ["train.epochs=1"]), data, tmp_path / "r", log=lambda *_: None)
    result = run("predict", "--run", tmp_path / "r", "--file", path, "--json")
    assert result.exit_code == 0, result.output
    # JSON lines are split at "\n" only: the reviews' own U+2028 is written as it is.
    out = [json.loads(line) for line in result.stdout.split("\n") if line.strip()]
    assert [r["text"] for r in out] == lines


def test_predict_csv_not_utf8(tmp_path):
    result = predict_file(tmp_path, "r.csv", "review\ngood\nTr\u00e8s bien\n".encode("latin-1"))
    assert_user_error(result, str(tmp_path / "r.csv"), "not valid UTF-8", "line 3", "re-save it as UTF-8")


def test_predict_csv_empty(tmp_path):
    assert_user_error(predict_file(tmp_path, "r.csv", b""), str(tmp_path / "r.csv"), "is empty", "header line")
    # a header and no rows is a CSV, with nothing in it to predict
    assert_user_error(predict_file(tmp_path, "h.csv", b"review\n"), "holds no reviews")


def test_predict_csv_unterminated_quote(tmp_path):
    result = predict_file(tmp_path, "r.csv", b'review\n"A fine film\nDull\n')
    assert_user_error(result, str(tmp_path / "r.csv"), "cannot be parsed", "row 1", "quote")


def test_predict_csv_reads_the_column_training_reads(tmp_path):
    from imdb_rnn.config import Config, dump_config
    from imdb_rnn.predict import read_texts

    (tmp_path / "text.csv").write_text("id,text\n1,A fine film\n2,Dull\n", encoding="utf-8")
    assert read_texts(tmp_path / "text.csv") == ["A fine film", "Dull"]  # as a training table: review, else text
    (tmp_path / "both.csv").write_text("text,review\nno,A fine film\n", encoding="utf-8")
    assert read_texts(tmp_path / "both.csv") == ["A fine film"]
    # every table format training reads, by its ending, with no label column needed
    (tmp_path / "t.tsv").write_text("text\tlabel\nA fine film\tpositive\nDull\tnegative\n", encoding="utf-8")
    (tmp_path / "t.jsonl").write_text('{"text": "A fine film", "label": 1}\n{"text": "Dull"}\n', encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"review": ["A fine film", "Dull"]}), tmp_path / "t.parquet")
    for name in ("t.tsv", "t.jsonl", "t.parquet"):
        assert read_texts(tmp_path / name) == ["A fine film", "Dull"], name
    assert_user_error(predict_file(tmp_path, "r.jsonl", b'{"body": "Dull"}\n'), "JSONL", "has no review or text column",
                      "has: body")
    assert_user_error(predict_file(tmp_path, "r.csv", b"id,body\n1,Dull\n"), "has no review or text column",
                      "has: id, body")
    # a run (or ONNX export) trained on data.text_column=body reads that column; the CSV fails before the run loads
    (tmp_path / "config.yaml").write_text(dump_config(Config.model_validate({"data": {"text_column": "body"}})))
    (tmp_path / "r.csv").write_text("id,body\n1,Dull\n", encoding="utf-8")
    assert_user_error(run("predict", "--run", tmp_path, "--file", tmp_path / "text.csv"),
                      "has no 'body' column (the run's data.text_column)", "has: id, text")
    assert_user_error(run("predict", "--run", tmp_path, "--file", tmp_path / "r.csv"), "model-best.pt")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "export.json").write_text('{"source": {"config": {"data": {"text_column": "body"}}}}')
    assert_user_error(run("predict", "--onnx", tmp_path / "onnx", "--file", tmp_path / "text.csv"), "no 'body' column")


def test_predict_file_is_a_directory(tmp_path):
    (tmp_path / "reviews.csv").mkdir()
    assert_user_error(run("predict", "--run", tmp_path, "--file", tmp_path / "reviews.csv"), "is a directory")


# --- checkpoints that are refused --------------------------------------------------------------------

class Payload:
    """An arbitrary object: what a checkpoint must never make us unpickle."""


def assert_refused_checkpoint(run_dir, *phrases):
    """eval refuses the run's model-last.pt in our words: never torch's, whose hint to load with
    weights_only=False would run what the file holds."""
    result = run("eval", "--run", run_dir)
    assert_user_error(result, *phrases, str(run_dir / "model-last.pt"), "retrain, or use another run")
    for torch_words in ("weights_only", "likely succeed", "Weights only load failed"):
        assert torch_words not in result.stderr, result.stderr


def test_checkpoint_with_objects_is_refused(tmp_path):
    import torch

    torch.save({"x": Payload()}, tmp_path / "model-last.pt")
    assert_refused_checkpoint(tmp_path, "is refused", "arbitrary pickled objects", "Payload", "only weights")


def test_checkpoint_of_random_bytes(tmp_path):
    import random

    (tmp_path / "model-last.pt").write_bytes(random.Random(0).randbytes(5000))
    assert_refused_checkpoint(tmp_path, "corrupt or not a checkpoint")


def test_truncated_checkpoint(tiny_run, tmp_path):
    from imdb_rnn.config import load_config
    from imdb_rnn.training.train import train

    data, config = tiny_run
    train(load_config(config, ["train.epochs=1", "train.val_fraction=0"]), data, tmp_path / "r", log=lambda *_: None)
    last = tmp_path / "r" / "model-last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert_refused_checkpoint(tmp_path / "r", "corrupt or not a checkpoint")


# --- a corrupt NLTK resource ------------------------------------------------------------------------

@pytest.fixture
def corrupt_stopwords(tmp_path, monkeypatch):
    """A copy of the NLTK data whose stopwords.zip is cut to half its size, on NLTK's path."""
    import os

    from imdb_rnn.data.nltk_data import import_nltk

    nltk = import_nltk()
    root = tmp_path / "nltk_data"
    shutil.copytree(os.environ["NLTK_DATA"].split(os.pathsep)[0], root)
    for d, _, files in os.walk(root):  # the shared copy is read-only
        os.chmod(d, 0o700)
        for f in files:
            os.chmod(os.path.join(d, f), 0o600)
    stopwords = root / "corpora" / "stopwords.zip"
    os.truncate(stopwords, stopwords.stat().st_size // 2)
    monkeypatch.setattr(nltk.data, "path", [str(root)])
    return stopwords


def test_corrupt_nltk_resource(corrupt_stopwords, tiny, small_tarball, tmp_path):
    shutil.copy(small_tarball, tmp_path / "aclImdb_v1.tar.gz")
    assert_user_error(run("preprocess", "--config", tiny, "--data-dir", tmp_path),
                      "stopwords", "corrupt", str(corrupt_stopwords), "delete it", "imdb-rnn download", "NLTK_DATA")
    assert not (tmp_path / "processed").exists()


def test_download_replaces_corrupt_nltk_resource(corrupt_stopwords, small_tarball, tmp_path):
    """download removes the corrupt file alone and fetches it again; with no network here, that
    fetch fails at once, as one line."""
    from helpers import sha256

    data = tmp_path / "data"
    result = run("download", "--data-dir", data, "--url", small_tarball, "--sha256", sha256(small_tarball), "-q")
    assert_user_error(result, "could not download NLTK resource 'stopwords'", "check the network")
    assert (data / "aclImdb_v1.tar.gz").is_file()
    assert not corrupt_stopwords.exists()
    root = corrupt_stopwords.parents[1]
    assert (root / "tokenizers" / "punkt_tab.zip").is_file()
    assert (root / "taggers" / "averaged_perceptron_tagger_eng.zip").is_file()
