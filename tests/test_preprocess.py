"""The preprocess stage on real reviews: worker independence, caching, and each option."""

import json

import numpy as np
import pytest

from helpers import write_tarball
from imdb_rnn.config import config_from_dict
from imdb_rnn.data.artifacts import load_processed
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.errors import UserError


def make(tmp_path, reviews, **preprocess_options):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if not (data / "aclImdb_v1.tar.gz").exists():
        write_tarball(reviews, data / "aclImdb_v1.tar.gz")
    return data, config_from_dict({"name": "t", "preprocess": preprocess_options})


ARTIFACTS = ("processed.csv", "vocab.json", "arrays.npz")


def test_one_and_two_workers_give_identical_artifacts(sample_reviews, tmp_path):
    data, cfg = make(tmp_path, sample_reviews[::3])
    one = preprocess(cfg, data, tmp_path / "one", workers=1).out_dir
    two = preprocess(cfg, data, tmp_path / "two", workers=2).out_dir
    for name in ARTIFACTS:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_cache_hits_and_invalidates(sample_reviews, tmp_path):
    data, cfg = make(tmp_path, sample_reviews[::5])
    first = preprocess(cfg, data, workers=1)
    assert not first.cached
    stamp = (first.out_dir / "arrays.npz").stat().st_mtime_ns
    again = preprocess(cfg, data, workers=1)
    assert again.cached and (again.out_dir / "arrays.npz").stat().st_mtime_ns == stamp

    changed = config_from_dict({"name": "t", "preprocess": {"min_freq": 2}})
    rebuilt = preprocess(changed, data, workers=1)
    assert not rebuilt.cached and rebuilt.manifest["config"]["preprocess"]["min_freq"] == 2

    write_tarball(sample_reviews[::5] + [sample_reviews[1]], data / "aclImdb_v1.tar.gz")  # a different source
    assert not preprocess(changed, data, workers=1).cached


def test_overrides_get_artifacts_of_their_own(sample_reviews, tmp_path):
    from imdb_rnn.data.artifacts import load_artifacts

    data, base = make(tmp_path, sample_reviews[::10])
    first = preprocess(base, data, workers=1)
    other = preprocess(config_from_dict({"name": "t", "preprocess": {"min_freq": 2}}), data, workers=1)
    assert other.out_dir != first.out_dir and other.out_dir.name.startswith("t-")
    assert preprocess(base, data, workers=1).cached, "the base config's artifacts were kept"
    assert load_artifacts(base, data).manifest == first.manifest
    with pytest.raises(UserError, match="made with a different config .*min_freq: artifacts have [12], config has 3"):
        load_artifacts(config_from_dict({"name": "t", "preprocess": {"min_freq": 3}}), data)


def test_train_refuses_artifacts_of_another_config(sample_reviews, tmp_path):
    data, cfg = make(tmp_path, sample_reviews[::10])
    out = preprocess(cfg, data, workers=1).out_dir
    other = config_from_dict({"name": "t", "preprocess": {"lowercase": True}})
    with pytest.raises(UserError, match="preprocess.lowercase: artifacts have false, config has true"):
        load_processed(out, other)


def tokens_of(out_dir):
    p = load_processed(out_dir)
    train = p.split("train")
    return p, [[p.vocab.itos[i] for i in row[:n]] for row, n in zip(train.ids, train.lengths)]


def test_filter_options_on_real_reviews(sample_reviews, tmp_path):
    reviews = sample_reviews[::7]
    data, nouns_cfg = make(tmp_path, reviews)
    _, nouns = tokens_of(preprocess(nouns_cfg, data, tmp_path / "nouns", workers=1).out_dir)

    cfg = config_from_dict({"preprocess": {"pos_prefixes": None}})
    _, all_tokens = tokens_of(preprocess(cfg, data, tmp_path / "all", workers=1).out_dir)
    assert sum(map(len, all_tokens)) > 2 * sum(map(len, nouns))

    cfg = config_from_dict({"preprocess": {"pos_prefixes": None, "remove_stopwords": False}})
    _, with_stop = tokens_of(preprocess(cfg, data, tmp_path / "stop", workers=1).out_dir)
    assert any("the" in t for t in with_stop) and not any("the" in t for t in all_tokens)

    cfg = config_from_dict({"preprocess": {"pos_prefixes": None, "keep_words": ["not", "no"]}})
    _, kept = tokens_of(preprocess(cfg, data, tmp_path / "keep", workers=1).out_dir)
    assert any("not" in t for t in kept) and not any("not" in t for t in all_tokens)

    cfg = config_from_dict({"preprocess": {"pos_prefixes": None, "lowercase": True}})
    _, lower = tokens_of(preprocess(cfg, data, tmp_path / "lower", workers=1).out_dir)
    assert all(w == w.lower() for t in lower for w in t if w != "<UNK>")
    assert not any("The" in t for t in lower) and any("The" in t for t in all_tokens)


def test_length_vocab_and_padding_options(sample_reviews, tmp_path):
    data, _ = make(tmp_path, sample_reviews[::7])
    base = {"pos_prefixes": None, "max_len": 20}
    p_end, cut_end = tokens_of(preprocess(config_from_dict({"preprocess": base}), data, tmp_path / "e", workers=1).out_dir)
    p_all, full = tokens_of(preprocess(config_from_dict({"preprocess": {"pos_prefixes": None}}), data, tmp_path / "f", workers=1).out_dir)
    assert all(len(t) <= 20 for t in cut_end) and cut_end[0] == full[0][:20]
    _, cut_start = tokens_of(preprocess(config_from_dict({"preprocess": base | {"truncate": "start"}}), data, tmp_path / "s", workers=1).out_dir)
    assert cut_start[0] == full[0][-20:]

    left = load_processed(preprocess(config_from_dict({"preprocess": {"pad_side": "left"}, "model": {"last_step": "padded"}}), data, tmp_path / "l", workers=1).out_dir)
    ids, lengths = left.split("train").ids, left.split("train").lengths
    short, width = int(np.argmin(lengths)), ids.shape[1]
    assert 0 < lengths[short] < width and (ids[short, : width - lengths[short]] == 0).all() and (ids[short, width - lengths[short]:] != 0).all()

    small = load_processed(preprocess(config_from_dict({"preprocess": {"pos_prefixes": None, "max_vocab": 50}}), data, tmp_path / "v", workers=1).out_dir)
    assert len(small.vocab) == 50 and small.manifest["splits"]["train"]["unknown_rate"] > 0.2
    freq = load_processed(preprocess(config_from_dict({"preprocess": {"pos_prefixes": None, "min_freq": 3}}), data, tmp_path / "m", workers=1).out_dir)
    assert len(freq.vocab) < len(p_all.vocab)


def test_empty_reviews_kept_or_dropped(sample_reviews, tmp_path):
    from imdb_rnn.data.sources import Review

    # Empty after filtering (only stopwords): kept by default. A blank source review is an error then
    # (tests/test_errors.py) and dropped with empty=drop.
    filtered_empty = Review("train/pos/99999_9", "train", 1, "the and of")
    data, _ = make(tmp_path, sample_reviews[::20] + [filtered_empty])
    keep = preprocess(config_from_dict({}), data, tmp_path / "k", workers=1)
    assert keep.manifest["empty_after_filtering"] == 1 and keep.manifest["splits"]["train"]["reviews"] == 11
    (tmp_path / "blank").mkdir()
    data, _ = make(tmp_path / "blank", sample_reviews[::20] + [filtered_empty, Review("test/neg/99998_1", "test", 0, "   ")])
    drop = preprocess(config_from_dict({"preprocess": {"empty": "drop"}}), data, tmp_path / "d", workers=1)
    assert drop.manifest["empty_dropped"] == 2 and drop.manifest["splits"]["test"]["reviews"] == 10
    assert json.loads((drop.out_dir / "manifest.json").read_text())["empty_dropped"] == 2


@pytest.mark.slow
def test_a_review_nltk_gives_up_on_is_named_or_skipped(sample_reviews, tmp_path):
    from imdb_rnn.data.sources import Review

    bad = Review("train/pos/99999_9", "train", 1, "a. " * 1_000_000)
    data, cfg = make(tmp_path, sample_reviews[::20] + [bad], pos_prefixes=None)
    with pytest.raises(UserError, match=r"NLTK gave up tokenizing 1 review\(s\).*train/pos/99999_9.*on_error=skip"):
        preprocess(cfg, data, workers=2)  # in a worker process too
    skip = config_from_dict({"name": "t", "preprocess": {"pos_prefixes": None, "on_error": "skip"}})
    result = preprocess(skip, data, workers=2)
    assert result.manifest["tokenize_failed_skipped"] == 1 and result.manifest["splits"]["train"]["reviews"] == 10


def test_duplicates_are_counted_and_cross_split_ones_dropped(sample_reviews, tmp_path):
    from dataclasses import replace

    pick = lambda split: [r for r in sample_reviews if r.split == split][90:110]  # noqa: E731 - both classes
    train, test = pick("train"), pick("test")
    leaked = replace(train[0], id="test/pos/99999_9", split="test")  # a training review again in test
    again = replace(train[1], id="train/neg/99998_1", text=train[1].text + "  ")  # the same text, extra spaces
    data, cfg = make(tmp_path, train + test + [leaked, again])
    counts = preprocess(cfg, data, workers=1).manifest["duplicates"]
    assert counts == {"within_train": 1, "within_test": 0, "test_in_train": 1, "dropped_from_train": 0}
    dropped = preprocess(config_from_dict({"name": "t", "preprocess": {"drop_cross_split_duplicates": True}}),
                         data, workers=1).manifest
    assert dropped["duplicates"]["dropped_from_train"] == 1 and dropped["splits"]["train"]["reviews"] == 20
    assert sum(dropped["splits"]["train"]["classes"].values()) == 20


def test_a_split_of_one_class_is_refused(sample_reviews, tmp_path):
    import pandas as pd

    rows = sorted(sample_reviews[:200], key=lambda r: r.label)  # ordered by class, as some CSVs are
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"review": [r.text for r in rows], "sentiment": ["positive" if r.label else "negative" for r in rows]}
                 ).to_csv(data / "r.csv", index=False)
    cfg = config_from_dict({"name": "c", "data": {"source": "r.csv", "limit": 80}})
    with pytest.raises(UserError, match="the train split holds only negative reviews .*shuffle it"):
        preprocess(cfg, data, workers=1)
