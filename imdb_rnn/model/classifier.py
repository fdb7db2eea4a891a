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

    def rnn_logits(self, ids: torch.Tensor, lengths: torch.Tensor, delta: Optional[torch.Tensor] = None
                   ) -> torch.Tensor:
        """The RNN branch's logits `(B, C)` alone (`forward`'s `rnn`), without the n-gram branch's
        work: what adversarial training's perturbed pass needs."""
        return self.fc(self.output_dropout(self.encoder(ids, lengths, delta)))

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, delta: Optional[torch.Tensor] = None) -> Logits:
        """`delta` `(B, T, embedding_dim)`, optional: a perturbation of the RNN branch's embedded
        reviews (adversarial training); the n-gram branch reads the ids alone."""
        rnn = self.rnn_logits(ids, lengths, delta)
        if self.ngram is None:
            return Logits(rnn, rnn, None)
        ngram = self.ngram(ids, lengths)
        return Logits(rnn + ngram, rnn, ngram)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The RNN branch's parameters in ULMFiT's layer groups, from the top: the linear head, each
        recurrent layer (top first), the embedding (Howard & Ruder 2018, section 3.2)."""
        layers = [list(layer.parameters()) for layer in reversed(self.encoder.layers)]
        return [list(self.fc.parameters()), *layers, [self.encoder.embedding.weight]]

    def configure_optimizer(self, lr: float, ngram_lr: Optional[float] = None, weight_decay: float = 0.0,
                            discriminative_lr: Optional[float] = None) -> torch.optim.Adam:
        """Adam over the RNN branch at `lr` and the n-gram branch at `ngram_lr` (default `lr`); its
        sparse weights need a larger step. With `discriminative_lr` (ULMFiT's 2.6), each of the RNN
        branch's `layer_groups` below the head learns at the rate of the one above divided by it;
        the first group is always the head's (or the whole branch's) at `lr`.

        The fused kernel is the same Adam update in one pass over each tensor: on CPU it updates a
        large embedding (28M weights in tutorial-fixed) about 8x faster than the per-tensor loop.
        """
        ngram_ids = {id(p) for p in self.ngram.parameters()} if self.ngram is not None else set()
        # One group in the modules' order, as before groups existed: older checkpoints still resume.
        rnn = self.layer_groups() if discriminative_lr else [[p for p in self.parameters() if id(p) not in ngram_ids]]
        groups = [{"params": [p for p in params if p.requires_grad],  # frozen embedding: left out
                   "lr": lr / (discriminative_lr or 1.0) ** depth}
                  for depth, params in enumerate(rnn)]
        groups = [g for g in groups if g["params"]]
        if self.ngram is not None:
            groups.append({"params": list(self.ngram.parameters()), "lr": ngram_lr or lr})
        return torch.optim.Adam(groups, weight_decay=weight_decay, fused=True)

    def unfreeze(self, epoch: int) -> None:
        """Gradual unfreezing (ULMFiT): in epoch `epoch` (1-based) the top `epoch` layer groups
        train and the others get no gradient (so backpropagation stops above them); a frozen
        embedding (model.freeze_embeddings) stays frozen."""
        for depth, params in enumerate(self.layer_groups()):
            for p in params:
                p.requires_grad_(depth < epoch and not (p is self.encoder.embedding.weight
                                                        and self.cfg.freeze_embeddings))
