"""A split's padded id arrays: encoding token lists into them, and the seeded validation carve-out (NumPy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imdb_rnn.config import PreprocessConfig
from imdb_rnn.data.vocab import Vocab
from imdb_rnn.errors import UserError


@dataclass
class SplitArrays:
    ids: np.ndarray  # (N, T) int32, padded
    lengths: np.ndarray  # (N,) int64, true lengths
    labels: np.ndarray  # (N,) int64
    review_ids: np.ndarray | None = None  # (N,) str

    def subset(self, index: np.ndarray) -> "SplitArrays":
        rid = self.review_ids[index] if self.review_ids is not None else None
        return SplitArrays(self.ids[index], self.lengths[index], self.labels[index], rid)

    def __len__(self) -> int:
        return len(self.labels)


def split_validation(data: SplitArrays, fraction: float, seed: int) -> tuple[SplitArrays, "SplitArrays | None"]:
    """Carve a seeded validation set from the training split (the same one for train and eval)."""
    if fraction <= 0:
        return data, None
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, int(round(len(data) * fraction)))
    if n_val >= len(data):
        raise UserError(f"train.val_fraction={fraction} leaves no training reviews; lower it")
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))


def encode(tokens: list[list[str]], vocab: Vocab, pcfg: PreprocessConfig, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded ids `(N, width)` int32 and true lengths `(N,)` int64, cut per `pcfg.truncate` and
    padded per `pcfg.pad_side`; unknown tokens map to `<UNK>`."""
    ids = np.full((len(tokens), width), vocab.pad_id, dtype=np.int32)
    lengths = np.zeros(len(tokens), dtype=np.int64)
    for row, toks in enumerate(tokens):
        seq = vocab.encode(toks)
        if len(seq) > width:
            seq = seq[:width] if pcfg.truncate == "end" else seq[len(seq) - width :]
        n = len(seq)
        lengths[row] = n
        if n:
            if pcfg.pad_side == "right":
                ids[row, :n] = seq
            else:
                ids[row, width - n :] = seq
    return ids, lengths


def trim_batch(ids: np.ndarray, lengths: np.ndarray, dynamic_padding: bool, pad_side: str) -> np.ndarray:
    """A batch's padded ids `(B, T)`; with `dynamic_padding`, only the `max(1, longest)` columns on the
    reviews' side, the rest being padding for every row (the same logits with last_step=as_packed)."""
    if not dynamic_padding:
        return ids
    width = max(1, int(lengths.max()))
    return ids[:, :width] if pad_side == "right" else ids[:, ids.shape[1] - width :]
