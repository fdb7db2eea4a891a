"""The language model's corpus: the unlabelled reviews and the training split's reviews as one
stream of token ids, each review followed by the end-of-review id; never a test review.

The ids are the classifier's vocabulary (built by preprocess from the training split alone), so
the pretrained embedding rows line up with the classifier's. The unlabelled reviews are tokenized
with the config's own preprocess settings once and cached beside the preprocess artifacts.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from imdb_rnn.config import Config
from imdb_rnn.data.artifacts import Processed, resolve_source
from imdb_rnn.data.unlabelled import iter_unlabelled
from imdb_rnn.errors import UserError
from imdb_rnn.files import atomic_path

UNLABELLED = "unlabelled.npz"  # in the preprocess artifacts folder: flat ids, offsets, review ids


@dataclass
class Corpus:
    train: np.ndarray  # (N,) int64 token ids, reviews joined, each ended by `eos_id`
    heldout: np.ndarray  # (M,) the same for the held-out reviews (perplexity)
    eos_id: int  # the pad id doubles as end of review: it has no other use in a stream
    review_ids: list[str]  # of every review in the corpus, train and held-out (what tests check)
    reviews: int
    unlabelled_reviews: int


def _encode_unlabelled(cfg: Config, processed: Processed, data_dir: Path, workers: int,
                       show_progress: bool) -> tuple[list[str], list[np.ndarray]]:
    """(review ids, token ids per review) of the source's unlabelled reviews, cached."""
    cache = processed.out_dir / UNLABELLED
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["vocab_sha256"]) == processed.vocab.sha256():
                    offsets = z["offsets"]
                    flat = z["ids"]
                    return list(z["review_ids"]), [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache (truncated, overwritten) is made again, as a missing one is
    from imdb_rnn.data.preprocess import tokenize_reviews
    from imdb_rnn.data.sources import Review

    source = resolve_source(cfg, data_dir)
    reviews = [Review(rid, "unsup", -1, text) for rid, text in iter_unlabelled(source, cfg.data.text_column)]
    reviews.sort(key=lambda r: r.id)  # the order never depends on how the archive stores them
    if cfg.data.limit:  # as for the labelled splits: a seeded sample of data.limit reviews
        import random

        random.Random(cfg.data.split_seed).shuffle(reviews)
        reviews = sorted(reviews[: cfg.data.limit], key=lambda r: r.id)
    tokens = tokenize_reviews(reviews, cfg.preprocess, workers, show_progress)
    encoded = [np.asarray(processed.vocab.encode(t or []), dtype=np.int32) for t in tokens]
    offsets = np.cumsum([0] + [len(e) for e in encoded])
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.concatenate(encoded) if encoded else np.zeros(0, np.int32), offsets=offsets,
                     review_ids=np.array([r.id for r in reviews], dtype=str), vocab_sha256=processed.vocab.sha256())
    return [r.id for r in reviews], encoded


def build_corpus(cfg: Config, processed: Processed, data_dir: Path, workers: int = 1,
                 show_progress: bool = False) -> Corpus:
    """The training and held-out streams for `cfg.pretrain` (a seeded shuffle of whole reviews,
    the last pretrain.heldout_fraction held out; the training stream cut to pretrain.max_tokens).

    Raises UserError when the source holds no unlabelled reviews and pretrain.unlabelled is true.
    """
    p = cfg.pretrain
    assert p is not None
    train = processed.split("train")  # never "test": its texts must not reach pretraining
    ids: list[str] = [str(r) for r in train.review_ids]
    seqs: list[np.ndarray] = [row[:n] for row, n in zip(train.ids, train.lengths)]
    if cfg.preprocess.max_len is not None:
        # The arrays are cut to max_len: read the whole reviews from processed.csv instead.
        texts = processed.texts(train)
        seqs = [np.asarray(processed.vocab.encode(t.split()), dtype=np.int32) for t in texts]
    unlabelled = 0
    if p.unlabelled:
        u_ids, u_seqs = _encode_unlabelled(cfg, processed, data_dir, workers, show_progress)
        ids += u_ids
        seqs += u_seqs
        unlabelled = len(u_ids)
    order = np.random.default_rng(p.seed).permutation(len(seqs))
    n_held = max(1, int(round(len(seqs) * p.heldout_fraction)))
    if n_held >= len(seqs):
        raise UserError(f"pretrain.heldout_fraction={p.heldout_fraction} leaves no reviews to train on; lower it")
    eos = processed.vocab.pad_id
    train_stream = _join([seqs[i] for i in order[n_held:]], eos, p.max_tokens)
    held_stream = _join([seqs[i] for i in order[:n_held]], eos, None)
    return Corpus(train_stream, held_stream, eos, [ids[i] for i in order], len(seqs), unlabelled)


def _join(seqs: list[np.ndarray], eos: int, limit: Optional[int]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for s in seqs:
        parts.append(np.asarray(s, dtype=np.int64))
        parts.append(np.array([eos], dtype=np.int64))
    stream = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return stream[:limit] if limit else stream
