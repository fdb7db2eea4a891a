"""The classifier: the RNN encoder and a linear head, plus the optional n-gram branch beside them."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from imdb_rnn.config import ModelConfig
from imdb_rnn.model.encoder import RNNEncoder
from imdb_rnn.model.ngram_bag import NgramBag


class Logits(NamedTuple):
    """What the classifier returns: each branch's logits `(B, C)` and their sum, the prediction."""

    total: torch.Tensor
    rnn: torch.Tensor
    ngram: Optional[torch.Tensor]  # None without an n-gram branch


class RNNClassifier(nn.Module):
    """Token ids `(B, T)` and true lengths `(B,)` -> Logits.

    RNN branch: RNNEncoder -> dropout -> linear. N-gram branch (model.ngram_buckets > 0): NgramBag.
    The prediction is the sum of the branches' logits.
    """

    def __init__(self, vocab_size: int, cfg: ModelConfig, num_classes: int = 2, pad_id: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = RNNEncoder(vocab_size, cfg, pad_id)
        self.output_dropout = nn.Dropout(cfg.output_dropout)
        self.fc = nn.Linear(self.encoder.out_features, num_classes)
        self.ngram = (NgramBag(vocab_size, cfg.ngram_buckets, cfg.ngram_order, cfg.ngram_norm, num_classes, pad_id)
                      if cfg.ngram_buckets else None)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, delta: Optional[torch.Tensor] = None) -> Logits:
        """`delta` `(B, T, embedding_dim)`, optional: a perturbation of the RNN branch's embedded
        reviews (adversarial training); the n-gram branch reads the ids alone."""
        rnn = self.fc(self.output_dropout(self.encoder(ids, lengths, delta)))
        if self.ngram is None:
            return Logits(rnn, rnn, None)
        ngram = self.ngram(ids, lengths)
        return Logits(rnn + ngram, rnn, ngram)

    def configure_optimizer(self, lr: float, ngram_lr: Optional[float] = None, weight_decay: float = 0.0,
                            ) -> torch.optim.Adam:
        """Adam over two parameter groups: the RNN branch at `lr`, the n-gram branch at `ngram_lr`
        (default `lr`); its sparse weights need a larger step.

        The fused kernel is the same Adam update in one pass over each tensor: on CPU it updates a
        large embedding (28M weights in tutorial-fixed) about 8x faster than the per-tensor loop.
        """
        ngram = list(self.ngram.parameters()) if self.ngram is not None else []
        ngram_ids = {id(p) for p in ngram}
        rest = [p for p in self.parameters() if id(p) not in ngram_ids and p.requires_grad]  # frozen: left out
        groups = [{"params": rest, "lr": lr}]
        if ngram:
            groups.append({"params": ngram, "lr": ngram_lr or lr})
        return torch.optim.Adam(groups, weight_decay=weight_decay, fused=True)
