"""Sources by configuration: every table format, the Hugging Face layout and the archive's rating
bands read to the same reviews, labels and arrays as the equivalent CSV; bad input is one line."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import assert_user_error, run, write_config, write_tarball
from imdb_rnn.config import DataConfig, config_from_dict
from imdb_rnn.data.artifacts import Processed, load_processed
from imdb_rnn.data.hf import iter_unlabelled_texts
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.data.sources import Review, detect_format, read_labelled
from imdb_rnn.errors import UserError

# Every token kept, no tagger: fast, and each review's words reach the arrays.
FAST = {"pos_prefixes": None, "remove_stopwords": False, "lowercase": True}
WORDS = {"negative": ["dull", "boring", "awful", "weak"], "positive": ["great", "moving", "superb", "fine"],
         "neutral": ["average", "plain", "middling", "okay"]}


def make_rows(n: int = 40, classes: tuple[str, ...] = ("negative", "positive"), seed: int = 0) -> tuple[list[str], list[str]]:
    """(texts, labels): short reviews with commas, quotes (one to open each) and a non-ASCII letter,
    labels cycling."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = classes[i % len(classes)]
        w = WORDS[label]
        texts.append(f'"{rng.choice(w)}", said review {i}: a {rng.choice(w)} film, "{rng.choice(w)}" acting; the café '
                     f'scene was {rng.choice(w)}.')
        labels.append(label)
    return texts, labels


def write_table(path: Path, columns: dict[str, list]) -> Path:
    """The same table as CSV, TSV (no quoting), JSON Lines or Parquet, by the file's ending."""
    rows = list(zip(*columns.values()))
    if path.suffix == ".csv":
        pd.DataFrame(columns).to_csv(path, index=False)
    elif path.suffix == ".tsv":
        path.write_text("\n".join(["\t".join(columns)] + ["\t".join(map(str, r)) for r in rows]) + "\n", encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(columns, r)), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".parquet":
        pd.DataFrame(columns).to_parquet(path, index=False)
    else:
        raise ValueError(path)
    return path


def write_hf(folder: Path, splits: dict[str, tuple[list[str], list[int]]], names: list[str] | None = ("neg", "pos")) -> Path:
    """stanfordnlp/imdb's layout: plain_text/SPLIT-00000-of-00001.parquet, columns text and label
    (a ClassLabel with `names` in the schema's Hugging Face metadata; None: a plain integer)."""
    features = {"text": {"dtype": "string", "_type": "Value"},
                "label": {"names": list(names), "_type": "ClassLabel"} if names else {"dtype": "int64", "_type": "Value"}}
    schema = pa.schema([("text", pa.string()), ("label", pa.int64())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    (folder / "plain_text").mkdir(parents=True, exist_ok=True)
    for split, (texts, labels) in splits.items():
        pq.write_table(pa.table({"text": texts, "label": labels}, schema=schema),
                       folder / "plain_text" / f"{split}-00000-of-00001.parquet")
    return folder


def read(source: Path, test_source: Path | None = None, **data):
    return read_labelled(DataConfig(**data), source, test_source)




def processed(tmp_path: Path, name: str, data: dict, preprocess_cfg: dict | None = None) -> Processed:
    cfg = config_from_dict({"name": name, "data": data, "preprocess": {**FAST, **(preprocess_cfg or {})}})
    return load_processed(preprocess(cfg, tmp_path, workers=1).out_dir)


def assert_same_arrays(a: Processed, b: Processed) -> None:
    assert a.label_names == b.label_names and a.vocab.itos == b.vocab.itos
    assert sorted(a.arrays) == sorted(b.arrays)
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)


# --- formats and labels ---------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".parquet"])
def test_each_format_reads_to_the_csvs_reviews_and_arrays(tmp_path, suffix):
    texts, labels = make_rows()
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    write_table(tmp_path / f"r{suffix}", {"text": texts, "label": labels})
    csv, other = read(tmp_path / "r.csv"), read(tmp_path / f"r{suffix}")
    assert other.reviews == csv.reviews and other.label_names == csv.label_names == ["negative", "positive"]
    assert [r.text for r in csv.reviews] == texts  # quotes, commas and é survive every format
    assert_same_arrays(processed(tmp_path, "other", {"source": f"r{suffix}"}), processed(tmp_path, "csv", {"source": "r.csv"}))


def test_label_spellings_and_columns_read_alike(tmp_path):
    texts, labels = make_rows()
    write_table(tmp_path / "kaggle.csv", {"review": texts, "sentiment": labels})
    base = read(tmp_path / "kaggle.csv")
    assert base.label_names == ["negative", "positive"]  # the classic pair: negative=0, positive=1
    assert [r.label for r in base.reviews] == [int(v == "positive") for v in labels]

    # any case, surrounding spaces; columns named text/label or set by key
    shouted = [f"  {v.upper()} " if i % 3 else v.title() for i, v in enumerate(labels)]
    write_table(tmp_path / "shout.jsonl", {"body": texts, "stars": shouted, "other": labels})
    assert read(tmp_path / "shout.jsonl", text_column="body", label_column="stars").reviews == base.reviews

    # integer labels: names are the numbers, ids the same
    write_table(tmp_path / "ints.parquet", {"text": texts, "label": [int(v == "positive") for v in labels]})
    ints = read(tmp_path / "ints.parquet")
    assert ints.reviews == base.reviews and ints.label_names == ["0", "1"]
    # ... named by data.labels (integers index a list of words)
    named = read(tmp_path / "ints.parquet", labels=["negative", "positive"])
    assert named.reviews == base.reviews and named.label_names == ["negative", "positive"]

    # an explicit order decides the ids
    flipped = read(tmp_path / "kaggle.csv", labels=["Positive", "negative"])
    assert flipped.label_names == ["Positive", "negative"]
    assert [r.label for r in flipped.reviews] == [1 - r.label for r in base.reviews]
    assert [r.split for r in flipped.reviews] == [r.split for r in base.reviews]


def test_integer_labels_sort_by_value_and_config_accepts_integers(tmp_path):
    texts, _ = make_rows(30)
    values = [[2, 10, 1][i % 3] for i in range(30)]
    write_table(tmp_path / "r.csv", {"text": texts, "label": values})
    data = read(tmp_path / "r.csv")
    assert data.label_names == ["1", "2", "10"]  # by value, not "1", "10", "2"
    assert [r.label for r in data.reviews] == [{1: 0, 2: 1, 10: 2}[v] for v in values]
    cfg = config_from_dict({"data": {"source": "r.csv", "labels": [10, 2, 1]}})  # YAML integers
    assert cfg.data.labels == ["10", "2", "1"]
    assert [r.label for r in read_labelled(cfg.data, tmp_path / "r.csv").reviews] == [{10: 0, 2: 1, 1: 2}[v] for v in values]


def test_integral_decimal_labels_are_integers(tmp_path):
    texts, labels = make_rows(30)
    ints = [int(v == "positive") for v in labels]
    # pandas writes an integer column that held an empty cell as 0.0, 1.0
    write_table(tmp_path / "floats.csv", {"text": texts, "label": [float(i) for i in ints]})
    assert "1.0" in (tmp_path / "floats.csv").read_text()
    write_table(tmp_path / "ints.csv", {"text": texts, "label": ints})
    floats = read(tmp_path / "floats.csv")
    assert floats.label_names == ["0", "1"] and floats.reviews == read(tmp_path / "ints.csv").reviews
    named = read(tmp_path / "floats.csv", labels=["negative", "positive"])  # they index a list of words too
    assert [r.label for r in named.reviews] == [r.label for r in floats.reviews]
    write_table(tmp_path / "mixed.csv", {"text": texts[:20], "label": ["1.0", "1", "0.00", "0"] * 5})
    assert read(tmp_path / "mixed.csv").label_names == ["0", "1"]


def test_stratified_split_keeps_label_shares_and_is_seeded(tmp_path):
    classes = ["negative"] * 50 + ["neutral"] * 30 + ["positive"] * 20  # ordered by class, as some files are
    texts = [f"review {i}" for i in range(100)]
    write_table(tmp_path / "r.csv", {"text": texts, "label": classes})
    for seed in range(5):  # a plain random split misses the exact shares for some of these seeds
        data = read(tmp_path / "r.csv", test_size=0.2, split_seed=seed)
        for split, share in (("test", 0.2), ("train", 0.8)):
            counts = Counter(data.label_names[r.label] for r in data.reviews if r.split == split)
            assert counts == {"negative": 50 * share, "neutral": 30 * share, "positive": 20 * share}, (seed, split)
    data = read(tmp_path / "r.csv", test_size=0.2)
    again, other = read(tmp_path / "r.csv", test_size=0.2), read(tmp_path / "r.csv", test_size=0.2, split_seed=1)
    assert [r.split for r in again.reviews] == [r.split for r in data.reviews]
    assert [r.split for r in other.reviews] != [r.split for r in data.reviews]


def test_a_test_table_is_the_test_split(tmp_path):
    texts, labels = make_rows(40)
    write_table(tmp_path / "train.csv", {"text": texts[:30], "label": labels[:30]})
    write_table(tmp_path / "test.jsonl", {"text": texts[30:], "label": labels[30:]})
    data = read(tmp_path / "train.csv", tmp_path / "test.jsonl")
    assert [r.text for r in data.reviews if r.split == "train"] == texts[:30]
    assert [r.text for r in data.reviews if r.split == "test"] == texts[30:]
    limited = read(tmp_path / "train.csv", tmp_path / "test.jsonl", limit=4)  # the first 4 rows of each
    assert [r.text for r in limited.reviews] == texts[:4] + texts[30:34]
    # through preprocess: its checksum joins the cache key
    a = processed(tmp_path, "pair", {"source": "train.csv", "test_source": "test.jsonl"})
    assert len(a.split("test")) == 10 and a.manifest["source"]["test_path"] == "test.jsonl"
    write_table(tmp_path / "test.jsonl", {"text": texts[31:], "label": labels[31:]})
    assert len(processed(tmp_path, "pair", {"source": "train.csv", "test_source": "test.jsonl"}).split("test")) == 9


# --- the Hugging Face layout ----------------------------------------------------------------

def test_hugging_face_folder_reads_like_csv_train_and_test(tmp_path):
    texts, labels = make_rows(40)
    ids = [int(v == "positive") for v in labels]
    unsup = [f"unlabelled review {i}" for i in range(7)]
    folder = write_hf(tmp_path / "imdb-hf", {"train": (texts[:30], ids[:30]), "test": (texts[30:], ids[30:]),
                                             "unsupervised": (unsup, [-1] * 7)})
    assert detect_format(folder) == "hf" and detect_format(folder / "plain_text") == "hf"
    write_table(tmp_path / "train.csv", {"text": texts[:30], "label": ids[:30]})
    write_table(tmp_path / "test.csv", {"text": texts[30:], "label": ids[30:]})
    hf = read(folder)
    assert hf.label_names == ["neg", "pos"]  # the ClassLabel's names
    csv = read(tmp_path / "train.csv", tmp_path / "test.csv")
    key = lambda r: (r.split, r.text, r.label)  # noqa: E731
    assert sorted(map(key, hf.reviews)) == sorted(map(key, csv.reviews))
    # the split is kept and each split shuffled with a seed (the Hub's train file is grouped by label)
    assert [r.split for r in hf.reviews] == ["train"] * 30 + ["test"] * 10
    limited = read(folder, limit=6)
    assert Counter(r.split for r in limited.reviews) == {"train": 6, "test": 6}
    assert limited.reviews == read(folder, limit=6).reviews
    # the unlabelled split is left out of the labelled data, and streamed on its own
    assert not set(unsup) & {r.text for r in hf.reviews}
    assert list(iter_unlabelled_texts(folder)) == unsup
    # through preprocess, named by data.labels
    p = processed(tmp_path, "hf", {"source": "imdb-hf", "labels": ["negative", "positive"]})
    assert p.label_names == ["negative", "positive"] and p.manifest["source"]["format"] == "hf"
    assert sorted(p.split("train").labels.tolist()) == sorted(ids[:30])


def test_hugging_face_folder_without_class_names_and_without_unlabelled_split(tmp_path):
    texts, labels = make_rows(20)
    ids = [int(v == "positive") for v in labels]
    folder = write_hf(tmp_path / "hf", {"train": (texts[:14], ids[:14]), "test": (texts[14:], ids[14:])}, names=None)
    assert read(folder).label_names == ["0", "1"]
    with pytest.raises(UserError, match=r"holds no unlabelled split \(\*-unsupervised-\*\.parquet\).*--hf"):
        list(iter_unlabelled_texts(folder))


# --- the archive's rating bands -------------------------------------------------------------

def _rated_reviews() -> list[Review]:
    out = []
    for split in ("train", "test"):
        for n, rating in enumerate([1, 2, 3, 4, 7, 8, 9, 10] * 3):
            cls = "pos" if rating >= 7 else "neg"
            out.append(Review(f"{split}/{cls}/{n}_{rating}", split, int(cls == "pos"), f"{split} review {n} rated {rating}"))
    return out


def test_rating_bands_from_the_tarball_and_an_extracted_directory(tmp_path):
    reviews = _rated_reviews()
    tar = write_tarball(reviews, tmp_path / "aclImdb_v1.tar.gz")
    for r in reviews:
        (tmp_path / "aclImdb" / r.id).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "aclImdb" / f"{r.id}.txt").write_text(r.text, encoding="utf-8")
    from_tar = read(tar, target="rating_band")
    assert from_tar.label_names == ["1-2", "3-4", "7-8", "9-10"]
    band = {1: 0, 2: 0, 3: 1, 4: 1, 7: 2, 8: 2, 9: 3, 10: 3}
    assert all(r.label == band[int(r.id.rsplit("_", 1)[1])] for r in from_tar.reviews)
    assert read(tmp_path / "aclImdb", target="rating_band").reviews == from_tar.reviews
    assert [r.label for r in read(tar).reviews] == [int("/pos/" in r.id) for r in from_tar.reviews]
    # preprocess: streamed whole, and with a limit
    for data in ({"target": "rating_band"}, {"target": "rating_band", "limit": 12}):
        p = processed(tmp_path, "bands", data)
        assert p.label_names == ["1-2", "3-4", "7-8", "9-10"] and p.manifest["label_names"] == p.label_names
        assert set(p.split("train").labels.tolist()) == {0, 1, 2, 3}
        assert sum(p.manifest["splits"]["test"]["classes"].values()) == len(p.split("test"))


def test_manifest_label_names_and_the_fallback_of_older_artifacts(tmp_path):
    texts, labels = make_rows(20, classes=("negative", "neutral", "positive"))
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    p = processed(tmp_path, "three", {"source": "r.csv", "test_size": 0.3})
    assert p.label_names == p.manifest["label_names"] == ["negative", "neutral", "positive"]
    assert p.manifest["splits"]["test"]["classes"] == {"negative": 2, "neutral": 2, "positive": 2}
    old = dict(p.manifest)
    del old["label_names"]
    assert Processed(p.out_dir, old, p.vocab, p.arrays).label_names == ["negative", "positive"]
    # another label order is another data config: new artifacts, other ids
    q = processed(tmp_path, "three", {"source": "r.csv", "test_size": 0.3, "labels": ["positive", "neutral", "negative"]})
    assert q.out_dir != p.out_dir and q.label_names == ["positive", "neutral", "negative"]
    np.testing.assert_array_equal(q.split("train").labels, 2 - p.split("train").labels)


# --- bad input ------------------------------------------------------------------------------

def _cli_error(tmp_path: Path, data: dict, *phrases: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", data=data, preprocess=FAST)
    assert_user_error(run("preprocess", "--config", cfg, "--data-dir", tmp_path, "-q", "--workers", "1"), *phrases)


def test_missing_column_names_the_columns_and_the_key(tmp_path):
    texts, labels = make_rows(6)
    write_table(tmp_path / "r.parquet", {"body": texts, "label": labels})
    _cli_error(tmp_path, {"source": "r.parquet"}, "has no text column (has: body, label)", "review or text",
               "data.text_column")
    _cli_error(tmp_path, {"source": "r.parquet", "text_column": "content"}, "lacks column 'content'",
               "has: body, label", "set data.text_column")


def test_label_outside_the_list_names_row_value_and_fix(tmp_path):
    texts, labels = make_rows(6)
    labels[3] = "meh"
    write_table(tmp_path / "r.tsv", {"text": texts, "label": labels})
    _cli_error(tmp_path, {"source": "r.tsv", "labels": ["negative", "positive"]},
               f"TSV {tmp_path / 'r.tsv'} line 5 has label 'meh'", "not among data.labels (negative, positive)",
               "add it to data.labels or fix the row")
    write_table(tmp_path / "i.jsonl", {"text": texts, "label": [0, 1, 0, 2, 1, 0]})
    _cli_error(tmp_path, {"source": "i.jsonl", "labels": ["negative", "positive"]}, "line 4 has label 2",
               "ids 0..1")


@pytest.mark.parametrize("suffix,empty,where", [(".csv", "", "line 3"), (".tsv", "", "line 3"), (".jsonl", None, "line 2"),
                                                (".parquet", None, "row 2 (counting from 1)")])
def test_empty_label_cell_is_refused(tmp_path, suffix, empty, where):
    texts, labels = make_rows(6)
    labels[1] = empty
    write_table(tmp_path / f"r{suffix}", {"text": texts, "label": labels})
    _cli_error(tmp_path, {"source": f"r{suffix}"}, f"r{suffix} {where} has an empty label in column 'label'",
               "fill it in or remove the row")


def test_rows_are_named_by_the_line_they_start_on(tmp_path):
    # a review spanning lines and a blank line: the row's line is not its index plus 2
    (tmp_path / "r.csv").write_text('text,label\n"a fine\nfilm",positive\n\n"dull",negative\nmeh,\ngood,positive\n',
                                    encoding="utf-8")
    _cli_error(tmp_path, {"source": "r.csv"}, f"CSV {tmp_path / 'r.csv'} line 6 has an empty label")
    # an empty review: the same words as an empty label, in the table it is in
    texts, labels = make_rows(12)
    texts[3] = "  "
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    _cli_error(tmp_path, {"source": "r.csv"}, f"(first: CSV {tmp_path / 'r.csv'} line 5)", "preprocess.empty=drop")
    write_table(tmp_path / "train.csv", {"text": make_rows(12, seed=1)[0], "label": labels})
    write_table(tmp_path / "test.jsonl", {"text": texts, "label": labels})
    _cli_error(tmp_path, {"source": "train.csv", "test_source": "test.jsonl"}, f"(first: JSONL {tmp_path / 'test.jsonl'} line 4)")
    # a Hugging Face split's rows count within each of its files
    ids = [int(v == "positive") for v in labels]
    folder = write_hf(tmp_path / "hf", {"train": (make_rows(12, seed=1)[0], ids), "test": (texts[:2], ids[:2])})
    write_hf(tmp_path / "hf" / "more", {"test": (texts[2:], ids[2:])})
    _cli_error(tmp_path, {"source": "hf"}, f"(first: Parquet file {folder / 'more' / 'plain_text' / 'test-00000-of-00001.parquet'} "
               "row 2 (counting from 1))")


def test_unknown_file_endings(tmp_path):
    (tmp_path / "r.xlsx").write_bytes(b"PK\x03\x04 not a table we read")
    _cli_error(tmp_path, {"source": "r.xlsx"}, "unrecognised format", ".csv, .tsv, .jsonl", ".parquet")
    texts, labels = make_rows(6)
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    (tmp_path / "t.txt").write_text("text,label\n")
    _cli_error(tmp_path, {"source": "r.csv", "test_source": "t.txt"}, "data.test_source", "unknown file ending '.txt'")
    _cli_error(tmp_path, {"source": "r.csv", "test_source": "nowhere.csv"}, "data.test_source", "does not exist")


def test_a_missing_table_suggests_make_csv_only_for_the_kaggle_csv(tmp_path):
    _cli_error(tmp_path, {"source": "IMDB Dataset.csv"}, "does not exist", "imdb-rnn make-csv")
    for name in ("nowhere/mine.csv", "mine.tsv"):
        cfg = write_config(tmp_path / "c.yaml", data={"source": name}, preprocess=FAST)
        result = run("preprocess", "--config", cfg, "--data-dir", tmp_path, "-q", "--workers", "1")
        assert_user_error(result, f"source {tmp_path / name} does not exist", "point data.source (relative to --data-dir)")
        assert "make-csv" not in result.stderr


def test_a_test_source_that_is_the_source_is_refused(tmp_path):
    texts, labels = make_rows(10)
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    (tmp_path / "sub").mkdir()
    for test_source in ("r.csv", "sub/../r.csv", str(tmp_path / "r.csv")):
        _cli_error(tmp_path, {"source": "r.csv", "test_source": test_source}, "is data.source itself",
                   "point it at a separate test table, or set it to null")
    (tmp_path / "link.csv").symlink_to(tmp_path / "r.csv")
    with pytest.raises(UserError, match="is data.source itself"):
        read(tmp_path / "r.csv", tmp_path / "link.csv")
    (tmp_path / "copy.csv").write_bytes((tmp_path / "r.csv").read_bytes())
    _cli_error(tmp_path, {"source": "r.csv", "test_source": "copy.csv"}, f"data.test_source {tmp_path / 'copy.csv'} "
               "holds the same bytes as data.source", "point it at a separate test table")


def test_malformed_jsonl_line(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"text": "good", "label": "positive"}\n\n{"text": "bad", "label": \n')
    _cli_error(tmp_path, {"source": "r.jsonl"}, "line 3 is not valid JSON", "one JSON object per line")
    (tmp_path / "r.jsonl").write_text('["good", "positive"]\n')
    _cli_error(tmp_path, {"source": "r.jsonl"}, "line 1 holds a JSON list, not an object")



def test_a_text_that_is_a_list_or_object_is_refused(tmp_path):
    # its string form ("['good', 'film']") is not the review
    (tmp_path / "r.jsonl").write_text('{"text": "good", "label": "positive"}\n{"text": ["a", "b"], "label": "negative"}\n')
    _cli_error(tmp_path, {"source": "r.jsonl"}, f"JSONL {tmp_path / 'r.jsonl'} line 2: the text column 'text' holds a "
               "list, not a string", "write each review as one string")
    pq.write_table(pa.table({"text": [["a"], ["b", "c"]], "label": ["positive", "negative"]}), tmp_path / "r.parquet")
    _cli_error(tmp_path, {"source": "r.parquet"}, "row 1 (counting from 1): the text column 'text' holds a list")
    # a number is a text all the same
    (tmp_path / "n.jsonl").write_text('{"text": 10, "label": "positive"}\n{"text": "x", "label": "negative"}\n' * 5)
    assert "10" in [r.text for r in read(tmp_path / "n.jsonl").reviews]
    # the same for objects, and for labels ("[1]" is no class name); a missing key is named as such
    cases = {'{"text": {"a": "b"}, "label": "positive"}': "the text column 'text' holds an object",
             '{"text": "good", "label": [1]}': "the label column 'label' holds a list",
             '{"label": "positive"}': "line 1 has no key 'text'"}
    for line, message in cases.items():
        (tmp_path / "o.jsonl").write_text(line + "\n" + '{"text": "x", "label": "negative"}\n' * 4)
        with pytest.raises(UserError, match=re.escape(message)):
            read(tmp_path / "o.jsonl")


def test_a_repeated_header_line_is_refused(tmp_path):
    # `cat a.csv b.csv`: the second header would become a review of class 'label'
    one = "text,label\n" + "good film,positive\nbad film,negative\n" * 3
    (tmp_path / "r.csv").write_text(one + one, encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"CSV {tmp_path / 'r.csv'} line 8 repeats the header")):
        read(tmp_path / "r.csv")
    # each file saved with a byte order mark, or the header in other case: the same
    (tmp_path / "b.csv").write_bytes(one.encode() + "\ufeff".encode() + one.upper().encode())
    with pytest.raises(UserError, match="line 8 repeats the header"):
        read(tmp_path / "b.csv")
    # predict reads the same tables: the repeated header is no review there either
    from imdb_rnn.predict import read_texts

    with pytest.raises(UserError, match="line 8 repeats the header"):
        read_texts(tmp_path / "r.csv")
    (tmp_path / "p.jsonl").write_text('{"text": "good"}\n{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="line 2 has no key 'text'"):
        read_texts(tmp_path / "p.jsonl")


def test_a_repeated_column_name_is_refused(tmp_path):
    # pandas would rename the second 'text' to 'text.1' and read the first without a word
    (tmp_path / "r.csv").write_text("text,label,text\ngood film,positive,other\n", encoding="utf-8")
    _cli_error(tmp_path, {"source": "r.csv"}, f"CSV {tmp_path / 'r.csv'} has 2 columns named 'text'",
               "give each column its own name")
    # a repeated column that is not read is no problem
    (tmp_path / "ok.tsv").write_text("text\tlabel\tnote\tnote\n" + "good film\tpositive\ta\tb\nbad\tnegative\tc\td\n" * 5,
                                     encoding="utf-8")
    assert "good film" in [r.text for r in read(tmp_path / "ok.tsv").reviews]

def test_splits_that_cannot_be_stratified(tmp_path):
    texts, labels = make_rows(10)
    labels[4] = "neutral"
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    _cli_error(tmp_path, {"source": "r.csv"}, "single row of label 'neutral'", "data.test_source")
    texts, labels = make_rows(10, classes=("negative", "neutral", "positive"))
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    _cli_error(tmp_path, {"source": "r.csv", "test_size": 0.1}, "data.test_size=0.1", "9 train and 1 test",
               "3 labels")


def test_a_split_that_leaves_a_rare_label_out_says_which_and_how(tmp_path):
    # Enough rows for each label in both splits, yet the stratified split rounds the rare ones away.
    texts, _ = make_rows(24)
    write_table(tmp_path / "r.csv", {"text": texts, "label": ["often"] * 20 + ["rare"] * 2 + ["scarce"] * 2})
    _cli_error(tmp_path, {"source": "r.csv", "test_size": 0.1}, "21 train and 3 test",
               "label 'rare' (2 rows), label 'scarce' (2 rows) out of the test split", "raise data.test_size")
    assert not (tmp_path / "processed").exists()
    _cli_error(tmp_path, {"source": "r.csv", "test_size": 0.85}, "3 train and 21 test", "out of the train split",
               "lower data.test_size")
    # what the messages advise works: each label in each split
    data = read(tmp_path / "r.csv", test_size=0.5)
    for split in ("train", "test"):
        assert {data.label_names[r.label] for r in data.reviews if r.split == split} == {"often", "rare", "scarce"}


def test_a_split_with_one_label_is_named_by_its_name(tmp_path):
    texts, _ = make_rows(12)
    write_table(tmp_path / "train.csv", {"text": texts[:8], "label": ["b", "a"] * 4})
    write_table(tmp_path / "test.csv", {"text": texts[8:], "label": ["b"] * 4})
    _cli_error(tmp_path, {"source": "train.csv", "test_source": "test.csv"}, "the test split holds only b reviews (4)")


def test_a_label_no_training_review_has_is_refused(tmp_path):
    texts, labels = make_rows(30, classes=("negative", "neutral", "positive"))
    write_table(tmp_path / "train.csv", {"text": texts[:21], "label": labels[:21]})
    numbered = [{"negative": 0, "neutral": 1, "positive": 2}[v] for v in labels[21:]]
    write_table(tmp_path / "test.csv", {"text": texts[21:], "label": numbered})  # another spelling of the classes
    _cli_error(tmp_path, {"source": "train.csv", "test_source": "test.csv"},
               f"the test split (data.test_source {tmp_path / 'test.csv'}) has 9 review(s) labelled '0', '1', '2', "
               "which no training review has", "fix the test labels (the training labels are negative, neutral, positive)")
    stray = labels[21:]
    stray[4] = "mixed"
    write_table(tmp_path / "test.csv", {"text": texts[21:], "label": stray})
    with pytest.raises(UserError, match=r"has 1 review\(s\) labelled 'mixed', which no training review has"):
        read(tmp_path / "train.csv", tmp_path / "test.csv")
    # a listed label without reviews, in one table or in a pair
    write_table(tmp_path / "test.csv", {"text": texts[21:], "label": labels[21:]})
    for pair in ({}, {"test_source": "test.csv"}):
        _cli_error(tmp_path, {"source": "train.csv", **pair, "labels": ["negative", "neutral", "positive", "extra"]},
                   "no training review has label 'extra' (from data.labels); remove it from data.labels")
    # a Hugging Face folder: a ClassLabel name in the test split only, or in neither split
    ids = [{"negative": 0, "neutral": 1, "positive": 2}[v] for v in labels]
    train_ids = [i % 2 * 2 for i in range(21)]  # neg and pos only
    write_hf(tmp_path / "hf", {"train": (texts[:21], train_ids), "test": (texts[21:], ids[21:])}, names=["neg", "neu", "pos"])
    with pytest.raises(UserError, match=r"the test split of .*hf \(\*-test-\*.parquet\) has 3 review\(s\) labelled 'neu'"):
        read(tmp_path / "hf")
    write_hf(tmp_path / "hf", {"train": (texts[:21], train_ids), "test": (texts[21:], [2, 0] * 4 + [0])},
             names=["neg", "neu", "pos"])
    with pytest.raises(UserError, match=r"no training review has label 'neu' \(from the ClassLabel names of .*\); "
                                        r"a class needs training reviews"):
        read(tmp_path / "hf")


def test_a_class_the_filters_leave_without_training_reviews_is_refused(tmp_path):
    reviews = [Review(r.id, r.split, r.label, " " if r.split == "train" and r.id.endswith(("_9", "_10")) else r.text)
               for r in _rated_reviews()]
    write_tarball(reviews, tmp_path / "aclImdb_v1.tar.gz")
    _cli_error(tmp_path, {"target": "rating_band"}, "empty or whitespace only")
    cfg = write_config(tmp_path / "c.yaml", data={"target": "rating_band"}, preprocess={**FAST, "empty": "drop"})
    assert_user_error(run("preprocess", "--config", cfg, "--data-dir", tmp_path, "-q", "--workers", "1"),
                      "no training review of label '9-10' is left after data.limit and the preprocess filters",
                      "raise data.limit, or keep more reviews")


def test_keys_the_source_has_no_use_for(tmp_path):
    small_tarball = write_tarball(_rated_reviews(), tmp_path / "aclImdb_v1.tar.gz")
    texts, labels = make_rows(6)
    write_table(tmp_path / "r.csv", {"text": texts, "label": labels})
    _cli_error(tmp_path, {"source": "r.csv", "target": "rating_band"}, "data.target=rating_band", "ID_RATING.txt",
               "data.target=sentiment")
    _cli_error(tmp_path, {"source": str(small_tarball), "labels": ["neg", "pos"]}, "data.labels applies to tables",
               "remove data.labels")
    _cli_error(tmp_path, {"source": "r.csv", "labels": ["pos", " POS"]}, "lists the label ' POS' twice")
    _cli_error(tmp_path, {"source": "r.csv", "labels": ["pos"]}, "data.labels lists 1 label(s)")
