"""Embedding -> stacked (bi)directional RNN/GRU/LSTM -> linear on the last step -> logits.

Each layer holds one unidirectional torch module per direction. The backward direction runs the
forward kernel on a reversed copy of its input, which gives two ways to reverse:

* last_step="padded" (the seed): flip the whole padded row, exactly what a bidirectional
  `nn.RNN` does unpacked, and classify from `out[:, -1, :]`, which for right-padded batches is
  mostly padding.
* last_step="exact": reverse each row within its true length, so the backward direction starts at
  the review's last token and padding (which sits after it) never enters either direction. The
  features are the forward state at the last token and the backward state at the first, equal
  to `h_n` of a `pack_padded_sequence` run, at the speed of the unpacked kernels.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from imdb_rnn.config import ModelConfig
from imdb_rnn.ngrams import ngram_buckets

_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T) index that reverses positions [0, len) of each row and leaves padding in place."""
    t = torch.arange(width, device=lengths.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    return torch.where(t < n, n - 1 - t, t)


def step_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T) True at each review's own positions [0, len)."""
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def _first_occurrences(keys: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted keys per row, and a mask that keeps each distinct key of `keep` once."""
    keys, _ = torch.where(keep, keys, -1).sort(1)  # keys are >= 0; dropped ones sort first
    first = torch.ones_like(keep)
    first[:, 1:] = keys[:, 1:] != keys[:, :-1]
    return keys.clamp(min=0), first & (keys >= 0)


class RNNClassifier(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig, num_classes: int = 2, pad_id: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.directions = 2 if cfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_id)
        cell = _CELLS[cfg.cell]
        extra = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
        self.layers = nn.ModuleList()
        for layer in range(cfg.num_layers):
            size_in = cfg.embedding_dim if layer == 0 else cfg.hidden_size * self.directions
            self.layers.append(
                nn.ModuleList(cell(size_in, cfg.hidden_size, batch_first=True, **extra) for _ in range(self.directions))
            )
        self.embedding_dropout = nn.Dropout(cfg.embedding_dropout)
        self.layer_dropout = nn.Dropout(cfg.layer_dropout)
        self.output_dropout = nn.Dropout(cfg.output_dropout)
        features = cfg.hidden_size * self.directions
        self.fc = nn.Linear(features * (3 if cfg.readout == "pool" else 1), num_classes)
        if cfg.ngram_buckets:
            # Start at zero, so the n-gram path begins as a no-op beside the RNN.
            self.unigrams = nn.Embedding(vocab_size, num_classes, padding_idx=pad_id)
            self.bigrams = nn.Embedding(cfg.ngram_buckets, num_classes)
            nn.init.zeros_(self.unigrams.weight)
            nn.init.zeros_(self.bigrams.weight)

    def hparams(self) -> dict:
        return asdict(self.cfg)

    def _initial_state(self, batch: int, ref: torch.Tensor):
        if self.cfg.init_hidden == "zeros":
            return None
        # The seed draws a fresh N(0, 1) state on every call, in training and evaluation alike.
        h = torch.randn(1, batch, self.cfg.hidden_size, device=ref.device, dtype=ref.dtype)
        if self.cfg.cell == "lstm":
            return h, torch.randn_like(h)
        return h

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features (B, hidden * directions) fed to the classifier."""
        x = self.embedding_dropout(self.embedding(ids))
        batch, width = ids.shape
        exact = self.cfg.last_step == "exact"
        if exact:
            # Empty reviews read position 0 (padding); they must not index -1.
            lengths = lengths.to(ids.device).clamp(min=1, max=width)
            rev = reverse_index(lengths, width) if self.directions == 2 else None
        for i, directions in enumerate(self.layers):
            outs = [directions[0](x, self._initial_state(batch, x))[0]]
            if self.directions == 2:
                xr = _gather_time(x, rev) if exact else x.flip(1)
                out_r = directions[1](xr, self._initial_state(batch, x))[0]
                outs.append(_gather_time(out_r, rev) if exact else out_r.flip(1))
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if i < len(self.layers) - 1:
                x = self.layer_dropout(x)
        if not exact:
            return x[:, -1, :]
        h = self.cfg.hidden_size
        last = (lengths - 1).view(batch, 1, 1).expand(-1, 1, h)
        features = x[:, :, :h].gather(1, last).squeeze(1)
        if self.directions == 2:
            features = torch.cat([features, x[:, 0, h:]], dim=-1)
        if self.cfg.readout == "pool":
            valid = step_mask(lengths, width).unsqueeze(-1)
            top = x.masked_fill(~valid, float("-inf")).amax(1)
            mean = x.masked_fill(~valid, 0.0).sum(1) / lengths.unsqueeze(1).to(x.dtype)
            features = torch.cat([features, top, mean], dim=-1)
        return features

    def ngram_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The n-gram path's logits: its weights summed over each review, divided by the review's
        length (ngram_norm=mean), the square root of it (sqrt), or, counting each distinct n-gram
        once, the square root of their number (binary); zero for an empty review."""
        lengths = lengths.to(ids.device)
        valid = step_mask(lengths, ids.size(1))
        # The n-gram starting at t is valid when token t + n - 1 is.
        grams = [(ngram_buckets(ids, n, self.cfg.ngram_buckets), valid[:, n - 1:])
                 for n in range(2, self.cfg.ngram_order + 1) if ids.size(1) >= n]
        parts = [(self.unigrams, ids, valid)]
        if grams:
            keys, keep = zip(*grams)
            parts.append((self.bigrams, torch.cat(keys, 1), torch.cat(keep, 1)))
        total, count = 0, 0
        for table, keys, keep in parts:
            if self.cfg.ngram_norm == "binary":
                keys, keep = _first_occurrences(keys, keep)
            weight = keep.unsqueeze(-1).to(table.weight.dtype)
            total = total + (table(keys) * weight).sum(1)
            count = count + weight.sum(1)
        if self.cfg.ngram_norm == "mean":
            return total / lengths.clamp(min=1).unsqueeze(1).to(total.dtype)
        scale = (count if self.cfg.ngram_norm == "binary" else lengths.unsqueeze(1).to(total.dtype)).clamp(min=1)
        return total / scale.sqrt()

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, parts: bool = False):
        """Logits (B, classes); with `parts`, the RNN's and the n-gram path's logits apart (their
        sum is the prediction), so that each can be trained on a loss of its own."""
        logits = self.fc(self.output_dropout(self.encode(ids, lengths)))
        ngram = self.ngram_logits(ids, lengths) if self.cfg.ngram_buckets else None
        if parts:
            return logits, ngram
        return logits if ngram is None else logits + ngram
