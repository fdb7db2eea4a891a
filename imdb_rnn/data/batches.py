"""Batches from the padded id arrays: which rows go together (sampler), and the tensors (make_batch)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from imdb_rnn.data.arrays import SplitArrays, trim_batch


def make_batch(data: SplitArrays, index: np.ndarray, dynamic_padding: bool, pad_side: str,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids `(B, T)` int64, lengths `(B,)` and labels `(B,)` for the rows in `index`.

    Dynamic padding: columns past the batch's longest review are dropped. They are padding for
    every row, so the logits of last_step=as_packed are unchanged and the RNN runs fewer steps.
    """
    lengths = data.lengths[index]
    ids = trim_batch(data.ids[index], lengths, dynamic_padding, pad_side)
    return (
        torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device, non_blocking=True),
        torch.from_numpy(lengths).to(device, non_blocking=True),
        torch.from_numpy(data.labels[index]).to(device, non_blocking=True),
    )


class BatchSampler:
    """Each epoch's global batches, the same on every rank, and this rank's rows of each.

    The order depends only on (seed, epoch), set with `set_epoch`, so a resumed run and a run on
    any number of processes see the same global batches. With `bucket` > 0, pools of `bucket`
    batches are sorted by length before they are cut, so a batch holds reviews of similar length
    and carries little padding; the batches are then shuffled again.

    Under DDP each global batch is split row-wise across the `world_size` ranks (rank r takes rows
    r, r + world_size, ...), so `batch_size` is the global batch size whatever the process count. A
    final batch with fewer rows than ranks is dropped then, since a rank may not sit one out.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, bucket: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.bucket = batch_size, seed, bucket
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        if self.bucket:
            pool = self.batch_size * self.bucket
            # Stable sort keeps the shuffled order among equal lengths.
            order = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                                    for chunk in np.split(order, range(pool, len(order), pool))]) if len(order) else order
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.bucket:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.world_size > 1:
            batches = [b for b in batches if len(b) >= self.world_size]
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.global_batches():
            yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.global_batches())
