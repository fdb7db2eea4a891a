"""Explain raw reviews with a trained run: its prediction (as `predict` gives it) and each
branch's attributions, through the run's own text pipeline and vocabulary (the run alone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from imdb_rnn.explain.attributions import (DEFAULT_STEPS, Contribution, bag_contributions, class_margin,
                                           integrated_gradients, nbsvm_contributions)


@dataclass
class Explanation:
    """One review's prediction and attributions. Margins are of class `target` (see
    imdb_rnn/explain/attributions.py): with two classes the log-odds of label 1 (positive), with
    more the predicted class's logit minus the mean of the others'."""

    text: str
    tokens: list[str]  # every token the pipeline kept (NBSVM reads them all)
    label: Optional[str] = None  # None when nothing is left after preprocessing
    prob: Optional[float] = None  # the run's final (stacked) P(target class), as `predict` gives it
    target: int = 1  # the class the margins are of: label 1 with two classes, the predicted class with more
    note: Optional[str] = None  # why there is no prediction
    unknown: list[bool] = field(default_factory=list)  # per token: not in the vocabulary (read as <UNK>)
    # Per token: its integrated-gradients attribution to the RNN margin, None for a token the RNN
    # did not read (cut by preprocess.max_len).
    token_scores: list[Optional[float]] = field(default_factory=list)
    rnn_margin: float = 0.0
    rnn_baseline_margin: float = 0.0  # of the all-pad baseline
    delta: float = 0.0  # sum of token_scores minus (rnn_margin - rnn_baseline_margin)
    margins: dict[str, float] = field(default_factory=dict)  # each branch's margin: rnn, ngram, nbsvm
    weights: dict[str, float] = field(default_factory=dict)  # each branch's stacking weight (1 without stacking)
    intercept: float = 0.0  # the stack's
    bag: list[Contribution] = field(default_factory=list)  # n-gram bag branch, unweighted
    nbsvm: list[Contribution] = field(default_factory=list)  # NBSVM branch, times its stacking weight
    nbsvm_intercept: float = 0.0  # times its stacking weight
    steps: int = DEFAULT_STEPS
    labels: tuple[str, ...] = ("negative", "positive")  # class names by id

    @property
    def prob_positive(self) -> Optional[float]:
        """With two classes, the run's final P(label 1); else None."""
        return self.prob if len(self.labels) == 2 else None


def explain_texts(run_dir: Path, texts: list[str], which: str = "best", device: str = "auto",
                  n_steps: int = DEFAULT_STEPS) -> list[Explanation]:
    """One Explanation per text, in order.

    Raises UserError for no text, n_steps < 1, or an unusable run or device (as predict does).
    """
    import torch

    from imdb_rnn.data.arrays import SplitArrays, encode
    from imdb_rnn.data.batches import make_batch
    from imdb_rnn.data.nltk_data import needed_resources, require_nltk_resources
    from imdb_rnn.data.text import ReviewProcessor
    from imdb_rnn.device import resolve_device
    from imdb_rnn.errors import UserError
    from imdb_rnn.run import RunDir
    from imdb_rnn.scoring import EVAL_BATCH_SIZE, score_run

    if not texts:
        raise UserError("nothing to explain; pass review text as arguments or --file")
    if n_steps < 1:
        raise UserError(f"--steps must be at least 1, got {n_steps}")
    dev = resolve_device(device)
    run = RunDir(run_dir).load(which)
    cfg, vocab, pipeline = run.config, run.vocab, run.pipeline
    pcfg = cfg.preprocess
    require_nltk_resources(needed_resources(pcfg.remove_stopwords, pcfg.pos_prefixes is not None))
    proc = ReviewProcessor(pcfg)
    processed = [proc.try_process(t) for t in texts]
    tokens = [t or [] for t in processed]
    ids, lengths = encode(tokens, vocab, pcfg, pipeline.width)
    labels = tuple(pipeline.labels)
    two = len(labels) == 2
    out = [Explanation(t, toks, labels=labels, steps=n_steps,
                       note="empty after preprocessing: no prediction" if p is not None
                       else "NLTK gave up tokenizing it (its regex time limit): no prediction")
           for t, toks, p in zip(texts, tokens, processed)]
    keep = np.flatnonzero(lengths > 0)
    if not len(keep):
        return out
    data = SplitArrays(ids[keep], lengths[keep], np.zeros(len(keep), dtype=np.int64))
    joined = [" ".join(tokens[i]) for i in keep]
    # The final prediction exactly as predict_texts computes it.
    scores = score_run(run, data, joined, dev, EVAL_BATCH_SIZE)
    model = run.model.to(dev).eval()
    stack = run.stack
    weights = dict(zip(stack.branches, stack.coef)) if stack is not None else {}
    for row, (i, pred) in enumerate(zip(keep, scores.preds)):
        toks, n = tokens[i], int(lengths[i])
        target = 1 if two else int(pred)
        # The window the RNN read: encode keeps the first or the last `width` tokens.
        start = len(toks) - n if pcfg.truncate == "start" else 0
        batch_ids, batch_lengths, _ = make_batch(data, np.array([row]), cfg.train.dynamic_padding, pcfg.pad_side, dev)
        first = 0 if pcfg.pad_side == "right" else batch_ids.size(1) - n  # position of the window's first token
        ig = integrated_gradients(model, batch_ids, batch_lengths, pipeline.pad_id, n_steps, target)
        scores_at = ig.attributions[0, first:first + n]
        e = out[i]
        e.note = None
        e.target, e.prob, e.label = target, float(scores.probs[row, target]), labels[int(pred)]
        e.unknown = [t not in vocab.stoi for t in toks]
        e.token_scores = [None] * start + [float(s) for s in scores_at] + [None] * (len(toks) - start - n)
        e.rnn_margin, e.rnn_baseline_margin, e.delta = (float(ig.margin[0]), float(ig.baseline_margin[0]),
                                                        float(ig.delta[0]))
        if two:
            e.margins = {name: float(m[row]) for name, m in scores.margins.items()}
        else:  # no stacking: each network branch's margin of the target class, from its logits
            with torch.no_grad():
                logits = model(batch_ids, batch_lengths)
            e.margins = {name: float(class_margin(getattr(logits, name)[0].double(), target))
                         for name in ("rnn", "ngram") if getattr(logits, name) is not None}
        e.weights = {name: weights.get(name, 1.0) for name in e.margins}
        e.intercept = stack.intercept if stack is not None else 0.0
        if model.ngram is not None:
            position_tokens = [""] * batch_ids.size(1)
            position_tokens[first:first + n] = toks[start:start + n]
            with torch.no_grad():
                e.bag = bag_contributions(model.ngram, batch_ids[0], n, position_tokens, target)
        if run.nbsvm is not None:
            e.nbsvm = nbsvm_contributions(run.nbsvm, joined[row], e.weights["nbsvm"])
            e.nbsvm_intercept = run.nbsvm.intercept * e.weights["nbsvm"]
    return out


def top_tokens(e: Explanation, k: int = 5) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The `k` tokens with the largest positive and the `k` with the most negative RNN
    attribution (token, attribution), strongest first."""
    scored = [(t, s) for t, s in zip(e.tokens, e.token_scores) if s is not None]
    pos = sorted((x for x in scored if x[1] > 0), key=lambda x: -x[1])[:k]
    neg = sorted((x for x in scored if x[1] < 0), key=lambda x: x[1])[:k]
    return pos, neg


def reversed_rnn_note(e: Explanation) -> Optional[str]:
    """A warning when the stack gives the RNN branch a negative weight: its token shades then push
    the final prediction the other way (seen on an RNN trained for one epoch)."""
    w = e.weights.get("rnn", 1.0)
    if w >= 0:
        return None
    return (f"the stack weighs the RNN branch by {w:.3f} (negative): a token shown as pushing the RNN towards "
            f"{e.labels[1]} pushes the final prediction towards {e.labels[0]}; the RNN is likely undertrained")


def format_summary(explanations: list[Explanation], k: int = 5) -> str:
    """Per review: the prediction, then its `k` strongest positive and negative tokens (RNN
    attributions to the margin of its target class, logit units)."""
    lines = []
    for i, e in enumerate(explanations, 1):
        text = e.text.replace("\n", " ")
        text = text if len(text) <= 50 else text[:49] + "…"
        if e.label is None:
            lines.append(f"{i}. -  {text}  ({e.note})")
            continue
        lines.append(f"{i}. {e.label} P({e.labels[e.target]})={e.prob:.3f}  {text}")
        note = reversed_rnn_note(e)
        if note:
            lines.append(f"   note: {note}")
        pos, neg = top_tokens(e, k)
        for sign, items in (("+", pos), ("-", neg)):
            lines.append(f"   {sign} " + (", ".join(f"{t} {s:+.3f}" for t, s in items) or "(none)"))
    return "\n".join(lines)
