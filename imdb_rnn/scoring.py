"""Score a model over a split: loss, accuracy, class probabilities per review, each branch's
accuracy (and with two classes its margin); a run's stacked prediction over them; and the
classification metrics computed from them (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from imdb_rnn.classes import THRESHOLD, predicted_classes
from imdb_rnn.data.arrays import SplitArrays
from imdb_rnn.data.batches import make_batch
from imdb_rnn.model import RNNClassifier
from imdb_rnn.progress import progress_bar

if TYPE_CHECKING:
    from imdb_rnn.run import LoadedRun

# THRESHOLD lives in imdb_rnn.classes (torch-free) and is still importable from here.
__all__ = ["THRESHOLD", "EVAL_BATCH_SIZE", "Scores", "score", "branch_accuracy", "score_run", "classification_metrics",
           "chance_warning", "majority_class_warning", "one_class_warning", "eval_warning"]

EVAL_BATCH_SIZE = 64  # at least; evaluation uses max(train.batch_size, this)
BINARY_LABELS = ("negative", "positive")  # the class names of IMDB's two classes, by id
# A model that gives one class to more than this share of reviews has most likely not learned.
ONE_CLASS_SHARE = 0.95
# Nor has one whose ROC-AUC is this close to 0.5, the AUC of a coin toss (one-vs-rest too).
CHANCE_AUC_MARGIN = 0.05


@dataclass
class Scores:
    loss: float  # mean cross-entropy per review (nats)
    accuracy: float  # share of reviews, 0..1
    probs: np.ndarray  # (N, C) each class's probability per review, in split order
    # With two classes, each branch's margin per review (N,): the log-odds of label 1 it gives
    # ("rnn", "ngram", "nbsvm"), what stacking reads. Empty with more classes (no stacking).
    margins: dict[str, np.ndarray]
    # With more than one branch: each branch's accuracy alone ({"rnn": ..., "nbsvm": ...}).
    branch_accuracy: Optional[dict[str, float]] = None

    @property
    def preds(self) -> np.ndarray:
        """Predicted class ids `(N,)` (see `imdb_rnn.classes.predicted_classes`)."""
        return predicted_classes(self.probs)


@torch.no_grad()
def score(model: RNNClassifier, data: SplitArrays, batch_size: int, dynamic_padding: bool, pad_side: str,
          device: torch.device, show_progress: bool = False, desc: str = "eval") -> Scores:
    """Run `model` (put in eval mode) over every review of `data`."""
    model.eval()
    total_loss, correct = 0.0, 0
    binary = model.num_classes == 2
    probs = np.zeros((len(data), model.num_classes))
    names = ("rnn", "ngram") if model.ngram is not None else ("rnn",)
    margins = {name: np.zeros(len(data)) for name in names} if binary else {}
    hits = dict.fromkeys(names, 0)  # more than two classes: each branch's right answers alone
    # Batches of similar lengths run fewer steps; a review's score does not depend on its
    # batch-mates, so the order is free.
    order = np.argsort(data.lengths, kind="stable") if dynamic_padding else np.arange(len(data))
    with progress_bar(total=len(data), desc=desc, unit="review", enabled=show_progress) as bar:
        for start in range(0, len(data), batch_size):
            index = order[start : start + batch_size]
            ids, lengths, labels = make_batch(data, index, dynamic_padding, pad_side, device)
            logits = model(ids, lengths)
            for name in names:
                branch = getattr(logits, name).float()
                if binary:
                    margins[name][index] = (branch[:, 1] - branch[:, 0]).cpu().numpy()
                else:
                    hits[name] += (branch.argmax(-1) == labels).sum().item()
            total_loss += F.cross_entropy(logits.total, labels, reduction="sum").item()
            correct += (logits.total.argmax(-1) == labels).sum().item()
            probs[index] = torch.softmax(logits.total.float(), -1).cpu().numpy()
            bar.update(len(index))
    n = max(1, len(data))
    alone = branch_accuracy(margins, data.labels) if binary else \
        ({name: hit / n for name, hit in hits.items()} if len(names) > 1 else None)
    return Scores(total_loss / n, correct / n, probs, margins, alone)


def branch_accuracy(margins: dict[str, np.ndarray], labels: np.ndarray) -> Optional[dict[str, float]]:
    """Each branch's accuracy alone (0..1) from its margins `(N,)` (two classes), or None for a single branch."""
    if len(margins) < 2:
        return None
    # A margin of 0 is P = 0.5, labelled positive (THRESHOLD), as the prediction is.
    return {name: float(((m >= 0) == (labels == 1)).mean()) if len(labels) else 0.0 for name, m in margins.items()}


def score_run(run: "LoadedRun", data: SplitArrays, texts: Optional[Sequence[str]], device: torch.device,
              batch_size: Optional[int] = None, show_progress: bool = False) -> Scores:
    """A run's prediction over `data`: the model's, or with stacking weights in the checkpoint,
    the stacked margins of its branches (the NBSVM branch reads `texts`, one per review; stacking
    is fitted for two classes only).

    Loss is the mean cross-entropy of the prediction (nats). Raises UserError when the run has
    an NBSVM branch and no `texts` are given.
    """
    from scipy.special import expit

    cfg = run.config
    s = score(run.model.to(device), data, batch_size or max(cfg.train.batch_size, EVAL_BATCH_SIZE),
              cfg.train.dynamic_padding, cfg.preprocess.pad_side, device, show_progress)
    if run.stack is None:
        return s
    margins = dict(s.margins)
    if run.nbsvm is not None:
        if texts is None:
            from imdb_rnn.errors import UserError

            raise UserError("this run has an NBSVM branch, which needs the reviews' tokens; pass them")
        margins["nbsvm"] = run.nbsvm.decision_function(texts)
    stacked = run.stack.margin(margins)
    sign = np.where(data.labels == 1, 1.0, -1.0)
    n = max(1, len(data))
    loss = float(np.logaddexp(0.0, -sign * stacked).sum() / n)  # binary cross-entropy, stable for large margins
    positive = expit(stacked)
    probs = np.stack([1.0 - positive, positive], 1)
    correct = int((predicted_classes(probs) == data.labels).sum())
    return Scores(loss, correct / n, probs, margins, branch_accuracy(margins, data.labels))


def classification_metrics(labels: np.ndarray, probs: np.ndarray,
                           label_names: Optional[Sequence[str]] = None) -> dict:
    """The metrics of class probabilities `probs` `(N, C)` against true class ids `labels` `(N,)`.

    Two classes: accuracy, precision, recall, F1 (of label 1), ROC-AUC (None with one class
    present), the 2x2 confusion matrix (rows: true label 0/1, columns: predicted) and the share
    predicted as label 1. More classes (`label_names` by id; default "0", "1", ...): accuracy,
    each class's precision, recall, F1 and support, their macro and weighted averages, ROC-AUC
    one-vs-rest (macro; None unless every class is present), the CxC confusion matrix and the
    share predicted as each class.
    """
    from sklearn import metrics as m

    probs = np.asarray(probs)
    preds = predicted_classes(probs)
    if probs.shape[1] == 2:
        both = len(np.unique(labels)) == 2
        return {
            "accuracy": float(m.accuracy_score(labels, preds)),
            "precision": float(m.precision_score(labels, preds, zero_division=0)),
            "recall": float(m.recall_score(labels, preds, zero_division=0)),
            "f1": float(m.f1_score(labels, preds, zero_division=0)),
            "roc_auc": float(m.roc_auc_score(labels, probs[:, 1])) if both else None,
            "confusion_matrix": m.confusion_matrix(labels, preds, labels=[0, 1]).tolist(),
            "predicted_positive_share": float(preds.mean()) if len(preds) else 0.0,
        }
    classes = list(range(probs.shape[1]))
    names = [str(n) for n in label_names] if label_names is not None else [str(c) for c in classes]
    if len(names) != len(classes):
        raise ValueError(f"{len(names)} label names for {len(classes)} classes")

    def averaged(average: str) -> dict[str, float]:
        p, r, f, _ = m.precision_recall_fscore_support(labels, preds, labels=classes, average=average, zero_division=0)
        return {"precision": float(p), "recall": float(r), "f1": float(f)}

    p, r, f, support = m.precision_recall_fscore_support(labels, preds, labels=classes, zero_division=0)
    every_class = len(np.unique(labels)) == len(classes)
    return {
        "accuracy": float(m.accuracy_score(labels, preds)) if len(labels) else 0.0,
        "labels": names,
        "per_class": {name: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]),
                             "support": int(support[c])} for c, name in enumerate(names)},
        "macro_avg": averaged("macro"),
        "weighted_avg": averaged("weighted"),
        "roc_auc": float(m.roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=classes))
        if every_class else None,
        "confusion_matrix": m.confusion_matrix(labels, preds, labels=classes).tolist(),
        "predicted_shares": {name: float((preds == c).mean()) if len(preds) else 0.0 for c, name in enumerate(names)},
    }


def chance_warning(roc_auc: Optional[float]) -> Optional[str]:
    """A warning when ROC-AUC is within CHANCE_AUC_MARGIN of 0.5 (the model ranks reviews about as
    well as a coin toss, whatever its accuracy), else None."""
    if roc_auc is None or abs(roc_auc - 0.5) >= CHANCE_AUC_MARGIN:
        return None
    return (f"warning: ROC-AUC is {roc_auc:.3f}, about chance (0.5): the model has most likely not learned; "
            "check model.last_step, the learning rate and the data")


def majority_class_warning(shares: Sequence[float], label_names: Sequence[str]) -> Optional[str]:
    """A warning when more than ONE_CLASS_SHARE of reviews get one label, else None.

    shares: the share of reviews predicted as each class (0..1), by class id, as `label_names`.
    """
    if not len(shares):
        return None
    top = int(np.argmax(shares))
    if shares[top] <= ONE_CLASS_SHARE:
        return None
    return (f"warning: the model predicts '{label_names[top]}' for {shares[top]:.0%} of reviews: it has most likely "
            "not learned (the 'stuck at 50 %' failure); check model.last_step, the learning rate and the data")


def one_class_warning(positive_share: float) -> Optional[str]:
    """`majority_class_warning` for IMDB's two classes, from the share predicted positive."""
    return majority_class_warning([1 - positive_share, positive_share], BINARY_LABELS)


def eval_warning(result: dict) -> Optional[str]:
    """The first warning an eval result (`classification_metrics` keys) calls for, else None: one
    class predicted for nearly every review, then a ROC-AUC about chance."""
    if "predicted_shares" in result:
        shares = result["predicted_shares"]
        warning = majority_class_warning(list(shares.values()), list(shares))
    else:
        warning = one_class_warning(result["predicted_positive_share"])
    return warning or chance_warning(result["roc_auc"])
