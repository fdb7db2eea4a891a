"""Sampled softmax (Jean et al. 2015; as used for large-vocabulary LMs by Jozefowicz et al. 2016).

Training scores each target against a few hundred words drawn for the whole chunk instead of the
whole vocabulary. Each logit is corrected by the log of the expected number of times its word is
drawn, so that the gradient estimates the full softmax's (TensorFlow's `sampled_softmax_loss`
with `remove_accidental_hits=True` and its log-uniform candidate sampler drawing with replacement,
`unique=False`: frequent words are drawn several times); the loss's value is not
the NLL, so no train perplexity is reported from it. Evaluation uses the exact softmax
(`full_nll`), so held-out perplexity stays comparable across output layers.

The log-uniform (Zipfian) proposal assumes ids ordered by frequency, as the vocabulary's are.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

# Rows of the exact softmax's logits computed at a time: (rows, vocab) float32, 40,000 words ~ 330 MB
# for the logits and as much for their log-softmax.
_FULL_ROWS = 2048
# Sampled-softmax logits computed at a time, about rows x (samples + 1) floats (4 MB): a whole
# chunk's at once (17,920 x 513 floats, 37 MB, for pretrain.yaml) spills the CPU's caches, and
# its passes over them dominated a pretraining step (README, Pretraining: the cost of a step).
_SAMPLED_LOGITS = 1 << 20


def log_uniform_sample(num_samples: int, vocab_size: int, device: torch.device) -> torch.Tensor:
    """`(num_samples,)` int64 ids drawn with replacement, P(k) = log((k+2)/(k+1)) / log(V+1);
    draws from the device's default generator (so a saved RNG state redraws them)."""
    u = torch.rand(num_samples, device=device, dtype=torch.float64)
    return (torch.exp(u * math.log(vocab_size + 1)) - 1).long().clamp_(0, vocab_size - 1)


def log_expected_count(ids: torch.Tensor, num_samples: int, vocab_size: int) -> torch.Tensor:
    """log(num_samples * P(id)) under `log_uniform_sample`'s distribution, float64, `ids`' shape."""
    p = torch.log1p(1.0 / (ids.double() + 1.0)) / math.log(vocab_size + 1)
    return math.log(num_samples) + torch.log(p)


def accidental_hits(targets: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns), int64, rows ascending: every pair where `negatives[column] == targets[row]`,
    for `targets` `(N,)` and `negatives` `(S,)`. Found by binary search in the sorted negatives, in
    O((N + hits) log S), where comparing every pair would touch N x S entries."""
    sorted_negatives, order = negatives.sort()
    first = torch.searchsorted(sorted_negatives, targets)
    counts = torch.searchsorted(sorted_negatives, targets, right=True) - first
    rows = torch.repeat_interleave(torch.arange(targets.numel(), device=targets.device), counts)
    # The k-th hit of a row is the k-th of its equal negatives in sorted order.
    within = torch.arange(rows.numel(), device=targets.device) - (counts.cumsum(0) - counts)[rows]
    return rows, order[first[rows] + within]


def sampled_nll(h: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
    """Summed sampled-softmax loss (nats): `h` `(N, H)`, `targets` `(N,)`, output layer `weight`
    `(V, H)` and `bias` `(V,)`; `negatives` `(S,)`, drawn by `log_uniform_sample`, shared by the N
    rows. A drawn word equal to a row's target is masked out of that row (an accidental hit)."""
    vocab_size, num_samples = weight.size(0), negatives.numel()
    correction = [log_expected_count(ids, num_samples, vocab_size).to(h.dtype) for ids in (targets, negatives)]
    true = (h * weight[targets]).sum(-1) + bias[targets] - correction[0]
    weight_t, bias_c = weight[negatives].t(), bias[negatives] - correction[1]
    rows = max(1, _SAMPLED_LOGITS // (num_samples + 1))
    hit_rows, hit_columns = accidental_hits(targets, negatives)
    # Where each piece's hits start and end in hit_rows, read once (a device sync, as in accidental_hits).
    bounds = torch.searchsorted(hit_rows, torch.arange(0, h.size(0) + rows, rows, device=h.device)).tolist()
    total = h.new_zeros(())
    for piece, i in enumerate(range(0, h.size(0), rows)):
        sampled = torch.addmm(bias_c, h[i:i + rows], weight_t)
        # Out of autograd's sight: a logit of -inf has softmax probability exactly 0, so its gradient
        # is already 0, and a masking op would cost two passes over the logits for nothing.
        with torch.no_grad():
            hits = slice(bounds[piece], bounds[piece + 1])
            sampled[hit_rows[hits] - i, hit_columns[hits]] = float("-inf")
        # The true word's logit is column 0: cross-entropy's fused log-softmax is cheaper than logsumexp.
        logits = torch.cat([true[i:i + rows, None], sampled], 1)
        total = total + F.cross_entropy(logits, targets.new_zeros(logits.size(0)), reduction="sum")
    return total


def full_nll(h: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Summed exact softmax NLL (nats) over the whole vocabulary, `h` `(N, H)`, `targets` `(N,)`,
    computed `_FULL_ROWS` rows at a time: without gradients (held-out perplexity) the `(N, V)`
    logits are never held at once; in training (softmax=full) autograd keeps every slice's."""
    return sum((F.cross_entropy(F.linear(h[i:i + _FULL_ROWS], weight, bias), targets[i:i + _FULL_ROWS],
                                reduction="sum") for i in range(0, h.size(0), _FULL_ROWS)),
               h.new_zeros(()))
