"""A split's padded id arrays, and the seeded validation carve-out (NumPy only, no torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imdb_rnn.errors import UserError


@dataclass
class SplitArrays:
    ids: np.ndarray  # (n, width) int32, padded
    lengths: np.ndarray  # (n,) int64, true lengths
    labels: np.ndarray  # (n,) int64
    review_ids: np.ndarray | None = None  # (n,) str

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
