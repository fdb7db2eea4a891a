"""The n-gram branch: a linear bag of words and hashed n-grams, one weight vector per word and bucket.

Its logits are the weights of a review's words and n-grams summed and scaled by `norm`: the
hashing trick (Weinberger et al. 2009) over an NBSVM-like binary bag (Wang & Manning 2012) when
norm="binary".
"""

from __future__ import annotations

import torch
from torch import nn

from imdb_rnn.model.sequence import step_mask

_PRIME = 1_000_003  # ids stay below 2**31, so a trigram's key fits in int64 before the modulo


def ngram_buckets(ids: torch.Tensor, n: int, buckets: int) -> torch.Tensor:
    """`(B, T - n + 1)` int64 bucket of the n-gram starting at each position of `ids` `(B, T)`."""
    width = ids.size(1) - n + 1
    key = ids[:, :width]
    for k in range(1, n):
        key = key * _PRIME + ids[:, k:k + width]
    return key % buckets


def first_occurrences(keys: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted keys per row `(B, K)`, and a mask that keeps each distinct key of `keep` once."""
    keys, _ = torch.where(keep, keys, -1).sort(1)  # keys are >= 0; dropped ones sort first
    first = torch.ones_like(keep)
    first[:, 1:] = keys[:, 1:] != keys[:, :-1]
    return keys.clamp(min=0), first & (keys >= 0)


class NgramBag(nn.Module):
    """Token ids `(B, T)` and lengths `(B,)` -> logits `(B, num_classes)`.

    norm: "mean" divides the summed weights by the review's length, "sqrt" by its square root,
    "binary" counts each distinct word and n-gram once and divides by the square root of their
    number. An empty review gets zero logits. Weights start at zero, so the branch begins as a
    no-op beside the RNN.
    """

    def __init__(self, vocab_size: int, buckets: int, order: int, norm: str, num_classes: int, pad_id: int = 0) -> None:
        super().__init__()
        self.buckets, self.order, self.norm = buckets, order, norm
        # Zeros from the start (no random draw to overwrite): pages of a large table that no
        # review touches then cost no memory.
        self.unigrams = nn.Embedding(vocab_size, num_classes, padding_idx=pad_id,
                                     _weight=torch.zeros(vocab_size, num_classes))
        self.bigrams = nn.Embedding(buckets, num_classes,  # every n-gram of order 2..`order`
                                    _weight=torch.zeros(buckets, num_classes))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(ids.device)
        valid = step_mask(lengths, ids.size(1))
        # The n-gram starting at t is valid when token t + n - 1 is.
        grams = [(ngram_buckets(ids, n, self.buckets), valid[:, n - 1:])
                 for n in range(2, self.order + 1) if ids.size(1) >= n]
        parts = [(self.unigrams, ids, valid)]
        if grams:
            keys, keep = zip(*grams)
            parts.append((self.bigrams, torch.cat(keys, 1), torch.cat(keep, 1)))
        total, count = 0, 0
        for table, keys, keep in parts:
            if self.norm == "binary":
                keys, keep = first_occurrences(keys, keep)
            weight = keep.unsqueeze(-1).to(table.weight.dtype)
            total = total + (table(keys) * weight).sum(1)
            count = count + weight.sum(1)
        if self.norm == "mean":
            return total / lengths.clamp(min=1).unsqueeze(1).to(total.dtype)
        scale = (count if self.norm == "binary" else lengths.unsqueeze(1).to(total.dtype)).clamp(min=1)
        return total / scale.sqrt()
