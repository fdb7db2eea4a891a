"""Adversarial and virtual adversarial training on the word embeddings (Miyato, Dai & Goodfellow
2016, "Adversarial Training Methods for Semi-Supervised Text Classification"; Goodfellow et al.
2015 for AT, Miyato et al. 2016 for VAT).

The perturbation `r` of a review's embedded sequence `(T, D)` has L2 norm epsilon over the whole
review. AT: r = epsilon g / ||g|| with g the gradient of the loss with respect to the embeddings,
and the loss of the perturbed review is added. VAT: r follows the direction to which the
prediction is most sensitive, found by one power iteration from a random probe of size xi, and
the KL divergence between the clean prediction and the perturbed one is added (no label used).
In both, r is treated as a constant: gradients do not flow through its computation (as in the
paper's reference code, which stops them).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from imdb_rnn.model.sequence import step_mask


def l2_normalize(g: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """`g` `(B, T, D)` scaled to unit L2 norm per review over its own steps (padding zeroed)."""
    mask = step_mask(lengths.clamp(min=1, max=g.size(1)), g.size(1)).unsqueeze(-1).to(g.dtype)
    g = g * mask
    norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)
    return g / norm.view(-1, 1, 1)


def kl_divergence(clean_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Summed KL(p_clean || p) over the batch (nats); p_clean is a constant."""
    p = F.softmax(clean_logits.detach(), -1)
    return (p * (F.log_softmax(clean_logits.detach(), -1) - F.log_softmax(logits, -1))).sum()


def at_perturbation(loss: Optional[torch.Tensor], delta: torch.Tensor, lengths: torch.Tensor,
                    epsilon: float) -> torch.Tensor:
    """The AT perturbation `(B, T, D)`: epsilon times the normalised gradient of `loss` with
    respect to `delta` (a zero tensor added to the embeddings in the forward pass that gave it).
    `loss` None: that gradient is already in `delta.grad` (from a backward pass that also filled
    the parameters' gradients)."""
    g = delta.grad if loss is None else torch.autograd.grad(loss, delta, retain_graph=True)[0]
    return epsilon * l2_normalize(g.detach(), lengths)


def branch_logits(model: nn.Module, branch: str, ids: torch.Tensor, lengths: torch.Tensor,
                  delta: torch.Tensor) -> torch.Tensor:
    """`branch`'s logits `(B, C)` of the reviews with `delta` added to their embeddings: for "rnn",
    the RNN branch's alone (the n-gram branch reads no embedding, so its work would be wasted)."""
    if branch == "rnn":
        return model.rnn_logits(ids, lengths, delta)
    return getattr(model(ids, lengths, delta), branch)


def adversarial_loss(model: nn.Module, kind: str, branch: str, ids: torch.Tensor, lengths: torch.Tensor,
                     labels: torch.Tensor, clean_logits: torch.Tensor, clean_loss: Optional[torch.Tensor],
                     delta: torch.Tensor, epsilon: float, xi: float) -> torch.Tensor:
    """The summed adversarial loss of the batch (nats) for `kind` "at" or "vat".

    `model` is an RNNClassifier; `branch` names the logits trained ("rnn", or "total" when the
    branches share one loss). `clean_logits` `(B, C)` (of that branch) and `clean_loss` come from
    the forward pass that added the zero tensor `delta` `(B, T, D)` to the embeddings; for AT,
    `clean_loss` None says its gradient is in `delta.grad` already (`at_perturbation`).
    """
    if kind == "at":
        r = at_perturbation(clean_loss, delta, lengths, epsilon)
        return F.cross_entropy(branch_logits(model, branch, ids, lengths, r), labels, reduction="sum")
    probe = (xi * l2_normalize(torch.randn_like(delta), lengths)).requires_grad_(True)
    kl = kl_divergence(clean_logits, branch_logits(model, branch, ids, lengths, probe))
    (g,) = torch.autograd.grad(kl, probe)
    r = epsilon * l2_normalize(g.detach(), lengths)
    return kl_divergence(clean_logits, branch_logits(model, branch, ids, lengths, r))
