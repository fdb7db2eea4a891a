"""Attributions of one review's margins to its tokens and n-grams.

A branch's margin for a target class is its logit of that class minus the mean of the other
classes' logits (`class_margin`): with two classes and target label 1, the log-odds of label 1
(logit of positive minus logit of negative). It is linear in the logits, so the branches'
margins add up as their logits do, and the predicted class is the one with the largest margin.

* RNN branch: integrated gradients (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for
  Deep Networks") on the output of the embedding layer, with Captum's LayerIntegratedGradients.
  The attributed output is the branch's margin for the target class. The baseline is the same
  review with every id replaced by the pad id: the pad row of the embedding is zeros
  (padding_idx), so the path runs from all-zero embeddings to the review's own, and the review's
  length is kept. Completeness: the attributions sum to
  margin(input) - margin(baseline), up to the integral's approximation error (the returned delta).
* N-gram bag branch and NBSVM branch: both are linear in their features, so each word's or
  n-gram's contribution is exact, and the contributions plus the intercept sum to the margin.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from imdb_rnn.model import RNNClassifier
from imdb_rnn.model.nbsvm import NBSVM
from imdb_rnn.model.ngram_bag import NgramBag, first_occurrences, ngram_buckets
from imdb_rnn.model.sequence import step_mask

DEFAULT_STEPS = 50  # Gauss-Legendre points on the path; see tests/test_explain.py for the error it gives


@dataclass
class Contribution:
    """One word or n-gram's share of a linear branch's margin (see the module docstring)."""

    text: str  # the n-gram's tokens, space-joined; hashed n-grams sharing a bucket are joined by " | "
    value: float


@dataclass
class Integrated:
    """Integrated gradients of the RNN branch's margin for a batch of reviews."""

    attributions: np.ndarray  # (B, T) float64, one per position (zero at padding)
    margin: np.ndarray  # (B,) RNN margin of the input
    baseline_margin: np.ndarray  # (B,) RNN margin of the all-pad baseline
    delta: np.ndarray  # (B,) sum of attributions minus (margin - baseline_margin)


def class_margin(logits, target: int = 1):
    """The margin of class `target` from logits `(..., C)` (torch or NumPy): its logit minus the
    mean of the other classes' logits, `(...)`. With two classes and target 1: logit 1 - logit 0."""
    classes = logits.shape[-1]
    if classes == 2:  # the plain difference, exact in floating point
        return logits[..., 1] - logits[..., 0] if target == 1 else logits[..., 0] - logits[..., 1]
    others = [c for c in range(classes) if c != target]
    return logits[..., target] - logits[..., others].mean(-1)


def rnn_margin(model: RNNClassifier, ids: torch.Tensor, lengths: torch.Tensor, target: int = 1) -> torch.Tensor:
    """The RNN branch's margin `(B,)` for class `target` (`class_margin` of its logits)."""
    return class_margin(model(ids, lengths).rnn, target)


@contextlib.contextmanager
def _deterministic(model: RNNClassifier) -> Iterator[None]:
    """Make the forward pass a function of its input while attributing.

    With model.init_hidden="random" (the tutorial) every call draws a fresh initial state, so
    integrated gradients would integrate noise; here one seeded state is drawn and shared by every
    row, layer and direction. cuDNN computes an RNN's backward pass only in training mode, and
    training mode would switch dropout on, so cuDNN is turned off instead (the native kernels
    give the same values in eval mode).
    """
    encoder = model.encoder
    if encoder.cfg.init_hidden == "random":
        generator = torch.Generator().manual_seed(0)
        h0 = torch.randn(1, 1, encoder.cfg.hidden_size, generator=generator)
        c0 = torch.randn(1, 1, encoder.cfg.hidden_size, generator=generator)

        def fixed(batch: int, ref: torch.Tensor):
            h = h0.to(ref.device, ref.dtype).expand(1, batch, -1).contiguous()
            return (h, c0.to(ref.device, ref.dtype).expand(1, batch, -1).contiguous()) if encoder.cfg.cell == "lstm" else h

        encoder._initial_state = fixed  # an instance attribute shadows the method until deleted
    try:
        with torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        encoder.__dict__.pop("_initial_state", None)


def integrated_gradients(model: RNNClassifier, ids: torch.Tensor, lengths: torch.Tensor, pad_id: int,
                         n_steps: int = DEFAULT_STEPS, target: int = 1) -> Integrated:
    """Integrated gradients of the RNN margin for class `target`, for token ids `(B, T)` int64 and
    lengths `(B,)`.

    The model must be in eval mode (dropout off) on the device of `ids`; the baseline is every id
    set to `pad_id`. `n_steps` Gauss-Legendre points approximate the path integral (Captum's
    default method); more steps make `delta` smaller. Attributions are in margin units (logits).
    """
    from captum.attr import LayerIntegratedGradients

    if model.training:
        raise ValueError("integrated_gradients needs the model in eval mode (dropout off)")
    baseline = torch.full_like(ids, pad_id)
    with _deterministic(model):
        lig = LayerIntegratedGradients(lambda i, n: rnn_margin(model, i, n, target), model.encoder.embedding)
        attr, delta = lig.attribute(ids, baselines=baseline, additional_forward_args=(lengths,), n_steps=n_steps,
                                    return_convergence_delta=True)
        with torch.no_grad():
            margin = rnn_margin(model, ids, lengths, target)
            base = rnn_margin(model, baseline, lengths, target)
    as_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    return Integrated(as_np(attr.sum(-1)), as_np(margin), as_np(base), as_np(delta))


def bag_contributions(bag: NgramBag, ids: torch.Tensor, length: int, tokens: Sequence[str],
                      target: int = 1) -> list[Contribution]:
    """Each word's and hashed n-gram's exact share of the n-gram bag's margin for class `target`
    for one review.

    ids `(T,)` int64 as the model reads them, `length` its true length, `tokens` `(T,)` the text
    at each position (for the labels). The shares follow NgramBag.forward term by term (same
    buckets, same norm), in float64, so they sum to the branch's margin (the bag has no bias).
    Occurrences of one key are summed; n-grams that share a hash bucket share one entry.
    """
    ids = ids.reshape(1, -1)
    width = ids.size(1)
    lengths = torch.tensor([length], device=ids.device)
    valid = step_mask(lengths, width)
    # As in NgramBag.forward: words in one table, every n-gram of order 2..order in the other,
    # their keys concatenated (so with norm="binary" a bigram and a trigram in one bucket count once).
    parts = [(bag.unigrams, ids, valid, list(tokens[:width]))]
    grams = [(ngram_buckets(ids, n, bag.buckets), valid[:, n - 1:], [" ".join(tokens[t:t + n])
                                                                     for t in range(width - n + 1)])
             for n in range(2, bag.order + 1) if width >= n]
    if grams:
        keys, keep, texts = zip(*grams)
        parts.append((bag.bigrams, torch.cat(keys, 1), torch.cat(keep, 1), [t for part in texts for t in part]))
    entries: dict[tuple[int, int], tuple[float, list[str]]] = {}
    count = 0
    for table_index, (table, keys, keep, texts) in enumerate(parts):
        w = table.weight.detach().double()
        w = class_margin(w, target).cpu()
        labels: dict[int, list[str]] = {}  # key -> the texts it stands for, in order of occurrence
        for t in torch.nonzero(keep[0]).flatten().tolist():
            labels.setdefault(int(keys[0, t]), []).append(texts[t])
        if bag.norm == "binary":
            distinct, first = first_occurrences(keys, keep)
            kept = distinct[0][first[0]].tolist()
            count += len(kept)
            occurrences = {k: 1 for k in kept}
        else:
            occurrences = {k: len(v) for k, v in labels.items()}
        for key, times in occurrences.items():
            names = list(dict.fromkeys(labels[key]))
            entries[(table_index, key)] = (times * float(w[key]), names)
    if bag.norm == "mean":
        scale = max(length, 1)
    elif bag.norm == "sqrt":
        scale = max(length, 1) ** 0.5
    else:
        scale = max(count, 1) ** 0.5
    return [Contribution(" | ".join(names), value / scale) for value, names in entries.values()]


def nbsvm_contributions(nbsvm: NBSVM, text: str, weight: float = 1.0) -> list[Contribution]:
    """Each n-gram present in `text` (space-joined tokens) with its share of the NBSVM margin,
    coef * ratio (its feature is 1), times `weight` (its stacking weight). They sum to
    weight * (margin - intercept)."""
    x = nbsvm.features([text])
    columns = np.sort(x.indices)
    values = nbsvm.coef[columns].astype(np.float64) * nbsvm.ratio[columns].astype(np.float64) * weight
    return [Contribution(nbsvm.ngrams[c], float(v)) for c, v in zip(columns, values)]
