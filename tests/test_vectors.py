"""Pretrained word vectors: each format's rows, matching and coverage, bad files as one-line
errors, and a run that trains with them (frozen) and then needs the file no more."""

import gzip
import hashlib
import json
import shutil
import signal

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from helpers import assert_user_error, cli, run, start_and_signal, TINY, write_config, write_tarball
from imdb_rnn.config import load_config
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.model.vectors import load_pretrained, read_vectors

DIM = 4
WORDS = ["the", "Good", "good", "movie", "PLOT", "<unk>", "café"]


def vectors_of(words, dim=DIM, seed=0):
    """Random float32 vectors, one per word."""
    rng = np.random.default_rng(seed)
    return {w: v for w, v in zip(words, rng.standard_normal((len(words), dim)).astype(np.float32))}


def write_vectors(path, vectors):
    """`vectors` ({word: float32 array}) in the format `path`'s name says: gensim's own writer for
    word2vec .txt (header), GloVe .txt (glove*.txt: no header) and .bin; fastText's .vec layout
    (a header, and a space at the end of every row) by hand; .gz compressed."""
    name = path.name.removesuffix(".gz")
    plain = path.with_name(name)
    if name.endswith(".vec"):
        dim = len(next(iter(vectors.values())))
        lines = [f"{len(vectors)} {dim}"] + [f"{w} {' '.join(repr(float(x)) for x in v)} " for w, v in vectors.items()]
        plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        kv = KeyedVectors(len(next(iter(vectors.values()))))
        kv.add_vectors(list(vectors), np.stack(list(vectors.values())))
        kv.save_word2vec_format(str(plain), binary=name.endswith(".bin"), write_header=not name.startswith("glove"))
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    return path


FORMATS = {"glove.txt": "glove text", "word2vec.txt": "word2vec text", "word2vec.bin": "word2vec binary",
           "fasttext.vec": "word2vec text", "fasttext.vec.gz": "word2vec text"}


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_gives_the_rows_of_known_words(tmp_path, name):
    vectors = vectors_of(WORDS)
    path = write_vectors(tmp_path / name, vectors)
    requested = ["the", "movie", "café", "missing", "<unk>"]
    rows = read_vectors(path, requested, DIM)
    assert rows.format == FORMATS[name] and rows.dim == DIM and rows.file_rows == len(WORDS)
    assert rows.found.tolist() == [True, True, True, False, True]
    assert rows.coverage == 0.8
    for i, word in enumerate(requested):
        want = vectors.get(word, np.zeros(DIM, np.float32))
        assert rows.vectors[i].dtype == np.float32 and np.array_equal(rows.vectors[i], want), word
    assert rows.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # gensim's reader (every row in memory) agrees on every row it holds
    if not name.endswith(".gz"):
        kv = KeyedVectors.load_word2vec_format(str(path), binary=name.endswith(".bin"), no_header=name == "glove.txt")
        assert np.array_equal(read_vectors(path, WORDS).vectors, np.stack([kv[w] for w in WORDS]))


def test_exact_word_first_then_ignoring_case(tmp_path):
    # "Good" comes first in the file, but the token "good" has its own row; "Movie" and "plot"
    # have none of their case, so they take "movie" and "PLOT".
    vectors = vectors_of(WORDS)
    path = write_vectors(tmp_path / "glove.txt", vectors)
    rows = read_vectors(path, ["good", "Movie", "plot", "GOOD", "none"], DIM)
    assert rows.found.tolist() == [True, True, True, True, False]
    assert rows.by_case == 3
    for i, word in enumerate(["good", "movie", "PLOT", "Good"]):
        assert np.array_equal(rows.vectors[i], vectors[word])


def test_coverage_leaves_out_pad_and_unknown(tmp_path):
    path = write_vectors(tmp_path / "word2vec.bin", vectors_of(["<PAD>", "<UNK>", "the", "movie"]))
    got = load_pretrained("word2vec.bin", tmp_path, ["<PAD>", "<UNK>", "the", "plot", "movie", "actor"], DIM, False)
    assert not got.rows.found[:2].any()  # the pad and unknown rows keep the model's own
    assert (got.found, got.tokens, got.coverage) == (2, 4, 0.5)
    assert "2 of 4 vocabulary tokens found (50.0%)" in got.summary()
    assert got.manifest()["path"] == "word2vec.bin"  # as given, relative to the data directory
    assert got.manifest()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_word_with_spaces_is_skipped_not_an_error(tmp_path):
    # GloVe's 840B file has a few such rows; a row with one value too many is still refused.
    path = tmp_path / "glove.txt"
    path.write_text("the 1 2\nat name@domain.com 3 4\nmovie 5 6\n")
    rows = read_vectors(path, ["the", "movie", "at"], 2)
    assert rows.found.tolist() == [True, True, False] and rows.file_rows == 3
    path.write_text("the 1 2\nmovie 5 6 7\n")
    with pytest.raises(Exception, match="line 2: 3 values where the file's vectors have 2"):
        read_vectors(path, ["the"], 2)


def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    for name, header in (("glove.txt", ""), ("word2vec.txt", "2 2\n")):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + f"{header}the 1 2\nmovie 3 4\n".encode())
        rows = read_vectors(path, ["the", "movie"], 2)
        assert rows.found.tolist() == [True, True] and rows.file_rows == 2, name
        assert rows.vectors.tolist() == [[1, 2], [3, 4]]


# --- through the CLI ------------------------------------------------------------------------



@pytest.fixture(scope="module")
def prepared(sample_reviews, tmp_path_factory):
    """(data dir, config, vocabulary) of a small preprocessed subset with the TINY config, 1 epoch."""
    data = tmp_path_factory.mktemp("vectors-data")
    write_tarball(sample_reviews[::2], data / "aclImdb_v1.tar.gz")
    config = write_config(data.parent / "vectors-tiny.yaml", **{**TINY, "train": {**TINY["train"], "epochs": 1}})
    cfg = load_config(config)
    preprocess(cfg, data, workers=1)
    return data, config, load_artifacts(cfg, data).vocab


def vocab_vectors(vocab, dim):
    """Vectors for every third token of the vocabulary, lowercased when it has capitals (found
    ignoring case), and for words it lacks."""
    words = {t.lower(): None for t in vocab.itos[2::3]}
    return vectors_of(list(words) + ["zzzabsent", "qqqnone"], dim, seed=1)


def test_missing_file(prepared, tmp_path):
    data, config, _ = prepared
    assert_user_error(run("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "r",
                          "model.pretrained_vectors=nowhere.txt"), "vectors file", "nowhere.txt", "does not exist")
    assert not (tmp_path / "r").exists()


def test_empty_path_is_refused(prepared, tmp_path):
    data, config, _ = prepared
    assert_user_error(run("train", "--config", config, "--data-dir", data, "model.pretrained_vectors=''"),
                      "model.pretrained_vectors", "must not be empty (use null for none)")


def test_dimension_mismatch_names_both_and_the_fix(prepared, tmp_path):
    data, config, vocab = prepared
    path = write_vectors(tmp_path / "glove.txt", vocab_vectors(vocab, 8))
    assert_user_error(run("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "r",
                          f"model.pretrained_vectors={path}"),
                      "8-dimensional", "model.embedding_dim is 16", "set model.embedding_dim=8")
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


@pytest.mark.parametrize("name, text, dim, phrases", [
    ("text.bin", None, 16, ["text.bin, line 2", "rename it to .txt or .vec"]),
    ("ragged.txt", "the 1 2 3\nmovie 4 5\n", 3, ["ragged.txt, line 2", "2 values where the file's vectors have 3"]),
    ("words.txt", "the 1 2\nmovie 4 x\n", 2, ["words.txt, line 2", "'x' is not a number"]),
    ("readme.txt", "These are the vectors we use\n", 5, ["readme.txt, line 1", "'are' is not a number"]),
    ("short.vec", "3 2\nthe 1 2\n", 2, ["short.vec, line 2", "ends after 1 rows where its header", "announces 3"]),
    # the rows' dimension is the one to set; a header that disagrees is the file's error
    ("header.vec", "1 8\n" + "the" + " 0.5" * 16 + "\n", 16,
     ["header.vec, line 2", "the header (line 1) says 8 values per row, this row has 16", "fix the header"]),
    ("header.txt", "1 8\n" + "the" + " 0.5" * 4 + "\n", 8, ["header.txt, line 2", "says 8 values per row, this row has 4"]),
    ("agrees.vec", "1 8\n" + "the" + " 0.5" * 8 + "\n", 16, ["8-dimensional", "set model.embedding_dim=8"]),
    ("glove.bin", "the 1 2\n", 2, ["glove.bin, line 1", "binary word2vec header 'COUNT DIM'"]),
    ("nan.txt", "the nan 2\n", 2, ["nan.txt, line 1", "not finite"]),
    ("empty.vec", "\n", 2, ["empty.vec, line 1", "no vectors"]),
    ("cut.bin", b"2 2\nthe \x00\x00\x80?\x00\x00\x00@\nmovie \x00\x00", 2, ["cut.bin, entry 2 of 2", "ends inside it"]),
])
def test_wrong_format_names_the_file_and_line(prepared, tmp_path, name, text, dim, phrases):
    data, config, vocab = prepared
    path = tmp_path / name
    if text is None:  # a word2vec text file named .bin
        write_vectors(tmp_path / "word2vec.txt", vocab_vectors(vocab, dim)).rename(path)
    else:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    overrides = [f"model.pretrained_vectors={path}", f"model.embedding_dim={dim}"]
    assert_user_error(run("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "r", *overrides),
                      *phrases)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_frozen_vectors_train_and_the_run_needs_the_file_no_more(prepared, tmp_path):
    data, config, vocab = prepared
    vectors = vocab_vectors(vocab, 16)
    path = write_vectors(data / "glove-frozen.txt", vectors)
    run_dir = tmp_path / "run"
    args = ["--config", config, "--data-dir", data, "model.freeze_embeddings=true"]
    out = cli("train", *args, "--run-dir", run_dir, "model.pretrained_vectors=glove-frozen.txt")

    want = {i: vectors.get(t, vectors.get(t.lower())) for i, t in enumerate(vocab.itos) if i >= 2}
    found = {i for i, v in want.items() if v is not None}
    coverage = len(found) / (len(vocab) - 2)
    assert f"{len(found):,} of {len(vocab) - 2:,} vocabulary tokens found ({coverage:.1%}" in out.stdout
    record = json.loads((run_dir / "vectors.json").read_text())
    assert record["path"] == "glove-frozen.txt"  # as configured: nothing absolute in the run
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["coverage"] == round(coverage, 6) and record["format"] == "glove text" and record["freeze"]

    ckpt = torch.load(run_dir / "model-last.pt", weights_only=True)
    weight = ckpt["state_dict"]["encoder.embedding.weight"]
    assert all(torch.equal(weight[i], torch.from_numpy(want[i])) for i in found)  # unchanged by training
    assert not weight[0].any()  # the padding row stays zero
    # the rows not found are the model's own initialisation: those of a frozen run without vectors
    cli("train", *args, "--run-dir", tmp_path / "plain", "-q")
    plain = torch.load(tmp_path / "plain" / "model-last.pt", weights_only=True)["state_dict"]
    plain = plain["encoder.embedding.weight"]
    rest = [i for i in range(len(vocab)) if i not in found]
    assert torch.equal(weight[rest], plain[rest])
    # the frozen embedding is no parameter of the optimizer
    trainable = sum(1 for k in ckpt["state_dict"] if "embedding" not in k)
    assert sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"]) == trainable

    shutil.move(path, tmp_path / "moved.txt")  # eval and predict use the run alone
    assert "accuracy" in cli("eval", "--run", run_dir, "--data-dir", data, "--which", "last", "-q").stdout
    cli("predict", "--run", run_dir, "--which", "last", "A wonderful film with a great plot.")


@pytest.mark.slow
def test_resume_does_not_read_the_file_again(prepared, tmp_path):
    data, _, vocab = prepared
    path = write_vectors(tmp_path / "vectors.bin", vocab_vectors(vocab, 16))
    config = write_config(tmp_path / "resume.yaml", **{
        **TINY, "name": "vectors-tiny", "train": {**TINY["train"], "epochs": 4},
        "model": {**TINY["model"], "pretrained_vectors": str(path)}})
    run_dir = tmp_path / "run"
    stopped = start_and_signal(config, data, run_dir, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    path.unlink()
    out = cli("train", "--config", config, "--data-dir", data, "--run-dir", run_dir, "--resume")
    assert "resuming" in out.stdout and "vectors:" not in out.stdout
    assert torch.load(run_dir / "model-last.pt", weights_only=True)["epoch"] == 4
    assert json.loads((run_dir / "vectors.json").read_text())["format"] == "word2vec binary"
