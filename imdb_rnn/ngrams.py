"""Hash buckets of the n-gram path's bigrams and trigrams."""

from __future__ import annotations

import torch

_PRIME = 1_000_003  # ids stay below 2**31, so a trigram's key fits in int64 before the modulo


def ngram_buckets(ids: torch.Tensor, n: int, buckets: int) -> torch.Tensor:
    """(B, T - n + 1) bucket of the n-gram starting at each position of `ids` (B, T), int64."""
    width = ids.size(1) - n + 1
    key = ids[:, :width]
    for k in range(1, n):
        key = key * _PRIME + ids[:, k:k + width]
    return key % buckets
