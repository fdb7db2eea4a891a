"""Batches from the padded id arrays: index sets in, tensors trimmed to their longest review out."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from imdb_rnn.arrays import SplitArrays


def make_batch(data: SplitArrays, index: np.ndarray, trim: bool, pad_side: str, device: torch.device):
    """(ids, lengths, labels) tensors for the rows in `index`.

    With `trim`, columns past the batch's longest review are dropped: they are padding for every
    row, so the exact model's output is unchanged and the RNN runs fewer steps.
    """
    ids = data.ids[index]
    lengths = data.lengths[index]
    if trim:
        width = max(1, int(lengths.max()))
        ids = ids[:, :width] if pad_side == "right" else ids[:, ids.shape[1] - width :]
    return (
        torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device),
        torch.from_numpy(lengths).to(device),
        torch.from_numpy(data.labels[index]).to(device),
    )


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[np.ndarray]:
    """Shuffled (with `generator`) or in-order index batches covering range(n)."""
    order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
