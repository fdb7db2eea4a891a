"""Frequency-weighted embedding normalisation (Miyato, Dai & Goodfellow 2016, section 2): each
dimension of the word embeddings is standardised by its mean and variance over the vocabulary,
each word weighted by its frequency,

    v' = (v - E[v]) / sqrt(Var[v]),   E[v] = sum_j f_j v_j,   Var[v] = sum_j f_j (v_j - E[v])^2.

Without it, a model trained adversarially can grow its embeddings until a perturbation of fixed
norm epsilon no longer matters; with it, epsilon keeps its meaning whatever the training does to
the raw weights. The statistics are recomputed from the weights on every call (the weights
move), the frequencies are a buffer saved with the model (so eval and predict need no corpus).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Added to the variance (as the paper's code does) so that a dimension all words share is not a 0/0.
VARIANCE_EPSILON = 1e-6
# What training and pretraining log when it is on.
DESCRIPTION = "embeddings normalised by their frequency-weighted mean and variance (model.normalize_embeddings)"


class EmbeddingNormalization(nn.Module):
    """Embedded tokens `(..., D)` -> the same standardised with the statistics of `weight` `(V, D)`."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        # Token counts (float): set from the training data with `set_frequencies`; all zero until then,
        # which weighs every word alike.
        self.register_buffer("frequencies", torch.zeros(vocab_size))

    def set_frequencies(self, ids: np.ndarray, pad_id: int = 0) -> None:
        """Count the ids of `ids` (any shape; the pad id, also the separator of a language model's
        stream, counts zero)."""
        counts = np.bincount(np.asarray(ids).ravel(), minlength=self.frequencies.numel())[: self.frequencies.numel()]
        counts[pad_id] = 0
        self.frequencies.copy_(torch.from_numpy(counts.astype(np.float64)))

    def statistics(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frequency-weighted mean and standard deviation `(D,)` of the rows of `weight` `(V, D)`."""
        f = self.frequencies.to(weight.dtype)
        total = f.sum()
        # No Python branch on a tensor's value, so that torch.export (ONNX) traces it: counts are whole
        # numbers, so a positive total is at least 1.
        p = torch.where(total > 0, f / total.clamp(min=1.0), torch.full_like(f, 1.0 / f.numel()))
        mean = p @ weight
        var = p @ (weight - mean).square()
        return mean, (var + VARIANCE_EPSILON).sqrt()

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        mean, std = self.statistics(weight)
        return (x - mean) / std
