"""The RNN encoder: embedding -> stacked (bi)directional RNN/GRU/LSTM -> one feature vector per review.

Each layer holds one unidirectional torch module per direction. The backward direction runs the
forward kernel on a reversed copy of its input, which gives two ways to reverse:

* last_step="padded" (the tutorial): flip the whole padded row, exactly what a bidirectional
  `nn.RNN` does unpacked, and read `out[:, -1, :]`, which for right-padded batches is mostly
  padding.
* last_step="as_packed": reverse each row within its true length, so the backward direction starts
  at the review's last token and padding (which sits after it) never enters either direction. The
  features are the forward state at the last token and the backward state at the first: `h_n` of
  a `pack_padded_sequence` run, at the speed of the unpacked kernels (tests/test_model.py checks
  the equality to 1e-10).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from imdb_rnn.config import ModelConfig
from imdb_rnn.model.embedding_norm import EmbeddingNormalization
from imdb_rnn.model.sequence import gather_time, reverse_index, step_mask

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RNNEncoder(nn.Module):
    """Token ids `(B, T)` and lengths `(B,)` -> features `(B, out_features)`.

    With readout="pool" the features are the last step plus the max and the mean of the top
    layer's outputs over each review's own steps (3x the size).
    """

    def __init__(self, vocab_size: int, cfg: ModelConfig, pad_id: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.directions = 2 if cfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_id)
        # model.freeze_embeddings: no gradient, so the optimizer never holds nor moves it
        self.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
        # model.normalize_embeddings; absent otherwise, so that checkpoints without it still load strictly
        self.embedding_norm = EmbeddingNormalization(vocab_size) if cfg.normalize_embeddings else None
        cell = CELLS[cfg.cell]
        extra = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
        self.layers = nn.ModuleList()
        for layer in range(cfg.num_layers):
            size_in = cfg.embedding_dim if layer == 0 else cfg.hidden_size * self.directions
            self.layers.append(
                nn.ModuleList(cell(size_in, cfg.hidden_size, batch_first=True, **extra) for _ in range(self.directions))
            )
        self.embedding_dropout = nn.Dropout(cfg.embedding_dropout)
        self.layer_dropout = nn.Dropout(cfg.layer_dropout)
        self.out_features = cfg.hidden_size * self.directions * (3 if cfg.readout == "pool" else 1)

    def _initial_state(self, batch: int, ref: torch.Tensor):
        if self.cfg.init_hidden == "zeros":
            return None
        # The tutorial draws a fresh N(0, 1) state on every call, in training and evaluation alike.
        h = torch.randn(1, batch, self.cfg.hidden_size, device=ref.device, dtype=ref.dtype)
        if self.cfg.cell == "lstm":
            return h, torch.randn_like(h)
        return h

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, delta: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`delta` `(B, T, embedding_dim)`: added to the embedded reviews (after their normalisation,
        with model.normalize_embeddings), for adversarial training."""
        x = self.embedding(ids)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x, self.embedding.weight)
        if delta is not None:
            x = x + delta
        x = self.embedding_dropout(x)
        batch, width = ids.shape
        as_packed = self.cfg.last_step == "as_packed"
        if as_packed:
            # Empty reviews read position 0 (padding); they must not index -1.
            lengths = lengths.to(ids.device).clamp(min=1, max=width)
            rev = reverse_index(lengths, width) if self.directions == 2 else None
        for i, directions in enumerate(self.layers):
            outs = [directions[0](x, self._initial_state(batch, x))[0]]
            if self.directions == 2:
                xr = gather_time(x, rev) if as_packed else x.flip(1)
                out_r = directions[1](xr, self._initial_state(batch, x))[0]
                outs.append(gather_time(out_r, rev) if as_packed else out_r.flip(1))
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if i < len(self.layers) - 1:
                x = self.layer_dropout(x)
        if not as_packed:
            return x[:, -1, :]
        return self._readout(x, lengths)

    def _readout(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features from the top layer's outputs `x` `(B, T, H * directions)`."""
        batch, width, h = x.size(0), x.size(1), self.cfg.hidden_size
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
