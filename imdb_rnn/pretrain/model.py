"""The language model: the classifier's embedding and recurrent layers, and an output layer.

Its `embedding` and `layers[i][d]` have the names and shapes of `RNNEncoder`'s, so that
`model.init_from` copies them into the classifier as they are. A bidirectional model holds two
LMs sharing the embedding: direction 0 reads the stream forward and predicts the next token,
direction 1 reads it reversed and predicts the previous one (ULMFiT's forward and backward LMs,
Howard & Ruder 2018, here trained side by side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from imdb_rnn.config import ModelConfig, PretrainConfig
from imdb_rnn.model.embedding_norm import EmbeddingNormalization
from imdb_rnn.model.encoder import CELLS
from imdb_rnn.pretrain.sampled_softmax import full_nll, log_uniform_sample, sampled_nll
from imdb_rnn.pretrain.tbptt import State, detach

# What init_from copies: the embedding (with its normalisation's word frequencies, when on) and
# every recurrent layer (RNNEncoder's parameter names).
TRANSFERRED_PREFIXES = ("embedding.", "embedding_norm.", "layers.")


def usable_cutoffs(cutoffs: list[int], vocab_size: int) -> list[int]:
    """The adaptive softmax's cutoffs kept for `vocab_size` classes: those below vocab_size - 1
    (stricter than torch, which takes up to vocab_size - 1: the last cluster keeps two words or
    more); a small vocabulary keeps fewer, or none (then the output layer is one softmax)."""
    return [c for c in cutoffs if c < vocab_size - 1]


class LanguageModel(nn.Module):
    """Inputs `(B, L)` per direction -> summed negative log-likelihood of the targets (nats)."""

    def __init__(self, vocab_size: int, mcfg: ModelConfig, pcfg: PretrainConfig, pad_id: int = 0) -> None:
        super().__init__()
        self.mcfg, self.pcfg = mcfg, pcfg
        self.directions = 2 if mcfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, mcfg.embedding_dim, padding_idx=pad_id)
        self.embedding_norm = EmbeddingNormalization(vocab_size) if mcfg.normalize_embeddings else None
        cell = CELLS[mcfg.cell]
        extra = {"nonlinearity": mcfg.nonlinearity} if mcfg.cell == "rnn" else {}
        # Layer i > 0 reads its own direction's layer below (config validation allows more than one
        # layer only for a unidirectional model, where that is the classifier's shape too).
        self.layers = nn.ModuleList(
            nn.ModuleList(cell(mcfg.embedding_dim if i == 0 else mcfg.hidden_size, mcfg.hidden_size,
                               batch_first=True, **extra) for _ in range(self.directions))
            for i in range(mcfg.num_layers))
        if pcfg.softmax == "adaptive":
            cutoffs = usable_cutoffs(pcfg.cutoffs, vocab_size)
            # Cluster i projects to hidden_size // div_value ** (i + 1) features: keep the last one
            # at 1 or more for small models (torch would build an empty projection).
            div_value = 4.0
            while cutoffs and div_value > 1.0 and mcfg.hidden_size // div_value ** len(cutoffs) < 1:
                div_value = max(1.0, div_value / 2)
            self.heads = nn.ModuleList(
                nn.AdaptiveLogSoftmaxWithLoss(mcfg.hidden_size, vocab_size, cutoffs, div_value=div_value)
                if cutoffs else nn.Linear(mcfg.hidden_size, vocab_size) for _ in range(self.directions))
        else:  # full, or sampled (a full softmax's weights, trained on samples)
            self.heads = nn.ModuleList(nn.Linear(mcfg.hidden_size, vocab_size) for _ in range(self.directions))
            if pcfg.tie_weights:
                for head in self.heads:
                    head.weight = self.embedding.weight

    def initial_state(self) -> list[list[State]]:
        """Per direction, per layer: None (zeros)."""
        return [[None] * len(self.layers) for _ in range(self.directions)]

    def draw_noise(self, inputs: list[torch.Tensor]) -> list[Noise]:
        """Per direction, the random draws of a training step on `inputs[d]` `(B, L)`: the dropout
        masks (embeddings, then each layer's outputs) and the sampled softmax's negatives, drawn from
        the device's default generator in a fixed order (so the directions may then run in either
        order, or side by side, with the same result; a saved RNG state draws them again). In eval
        mode: nothing to draw."""
        if not self.training:
            return [Noise() for _ in range(self.directions)]
        weight = self.embedding.weight
        batch, length = inputs[0].shape
        widths = [self.mcfg.embedding_dim] + [self.mcfg.hidden_size] * len(self.layers)
        noise = []
        for _ in range(self.directions):
            masks = [_dropout_mask(batch, length, width, self.pcfg.dropout, weight, recurrent=i > 0)
                     for i, width in enumerate(widths)]
            negatives = (log_uniform_sample(self.pcfg.samples, weight.size(0), weight.device)
                         if self.pcfg.softmax == "sampled" else None)
            noise.append(Noise(masks, negatives))
        return noise

    def forward(self, inputs: list[torch.Tensor], targets: list[torch.Tensor], state: list[list[State]],
                noise: Optional[list[Noise]] = None) -> tuple[list[torch.Tensor], list[list[State]]]:
        """Per direction d: `inputs[d]`, `targets[d]` `(B, L)` -> (summed NLL per direction (0-d),
        the new state, detached: the next chunk carries it without backpropagating into this one).
        `noise`: `draw_noise(inputs)`'s, drawn here when not given."""
        noise = noise if noise is not None else self.draw_noise(inputs)
        outputs = [self.direction(d, inputs[d], targets[d], state[d], noise[d]) for d in range(self.directions)]
        return [loss for loss, _ in outputs], [carried for _, carried in outputs]

    def direction(self, d: int, inputs: torch.Tensor, targets: torch.Tensor, state: list[State], noise: Noise
                  ) -> tuple[torch.Tensor, list[State]]:
        """Direction d's LM on `inputs` `(B, L)`: (summed NLL of `targets` `(B, L)` (0-d), its new
        state per layer, detached). Draws nothing: the randomness is `noise`'s."""
        h = self.embedding(inputs)
        if self.embedding_norm is not None:
            h = self.embedding_norm(h, self.embedding.weight)
        h = noise.dropout(0, h)
        carried = []
        for i, layer in enumerate(self.layers):
            h, s = layer[d](h, state[i])
            carried.append(detach(s))
            h = noise.dropout(i + 1, h)
        return self._nll(d, h.reshape(-1, h.size(-1)), targets.reshape(-1), noise.negatives), carried

    def _nll(self, d: int, h: torch.Tensor, y: torch.Tensor, negatives: Optional[torch.Tensor] = None
             ) -> torch.Tensor:
        """Summed NLL of `y` `(N,)` given `h` `(N, H)`; with softmax=sampled, the sampled loss against
        `negatives` in training mode and the exact one in eval mode."""
        head = self.heads[d]
        if isinstance(head, nn.AdaptiveLogSoftmaxWithLoss):
            return head(h, y).loss * y.numel()
        if self.training and negatives is not None:
            return sampled_nll(h, y, head.weight, head.bias, negatives)
        return full_nll(h, y, head.weight, head.bias)

    def transferable_state(self) -> dict[str, torch.Tensor]:
        """The tensors `model.init_from` copies: `RNNEncoder` parameter name -> tensor."""
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if k.startswith(TRANSFERRED_PREFIXES)}


@dataclass
class Noise:
    """One direction's random draws for a training step: `masks[0]` for the embeddings `(B, L, E)`,
    `masks[i]` for layer i's outputs `(B, L, H)` (None: no dropout), and the sampled softmax's
    `negatives` `(S,)` (None: another output layer). Empty in eval mode."""

    masks: list[Optional[torch.Tensor]] = field(default_factory=list)
    negatives: Optional[torch.Tensor] = None

    def dropout(self, i: int, h: torch.Tensor) -> torch.Tensor:
        mask = self.masks[i] if i < len(self.masks) else None
        return h if mask is None else h * mask


def _dropout_mask(batch: int, length: int, width: int, p: float, like: torch.Tensor, recurrent: bool
                  ) -> Optional[torch.Tensor]:
    """`nn.Dropout(p)`'s mask for a `(batch, length, width)` input, drawn as it draws it on CPU
    (Bernoulli 1 - p into a tensor laid out as the input, scaled by 1 / (1 - p)), so that a seed
    gives the draws it gave before masks were drawn ahead; None for p = 0, where dropout draws
    nothing. A recurrent layer's batch-first output lies in memory time-major on CPU, and which
    element takes which draw follows the layout. (On CUDA, dropout's fused kernel draws otherwise:
    there the masks are new draws.)"""
    if p == 0:
        return None
    if recurrent and like.device.type == "cpu":
        mask = like.new_empty_strided((batch, length, width), (width, batch * width, 1))
    else:
        mask = like.new_empty(batch, length, width)
    return mask.bernoulli_(1 - p).div_(1 - p)


def configure_optimizer(model: LanguageModel, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam (fused where the device supports it: one pass over each tensor)."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters()) or None  # None: torch picks
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)


def perplexity(nll: float, tokens: int) -> Optional[float]:
    """exp(mean NLL per token): inf past what a float holds (a diverged model); None for no tokens."""
    if not tokens:
        return None
    return math.exp(nll / tokens) if nll / tokens < 700 else math.inf
