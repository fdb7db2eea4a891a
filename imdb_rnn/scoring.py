"""Score a model over a split: loss, accuracy, P(positive) per review, each branch's margin and
accuracy; a run's stacked prediction over them; and the classification metrics computed from them
(scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from imdb_rnn.data.arrays import SplitArrays
from imdb_rnn.data.batches import make_batch
from imdb_rnn.model import RNNClassifier
from imdb_rnn.progress import progress_bar

if TYPE_CHECKING:
    from imdb_rnn.run import LoadedRun

EVAL_BATCH_SIZE = 64  # at least; evaluation uses max(train.batch_size, this)
THRESHOLD = 0.5  # P(positive) at or above which a review is labelled positive
# A model that gives one class to more than this share of reviews has most likely not learned.
ONE_CLASS_SHARE = 0.95
# Nor has one whose ROC-AUC is this close to 0.5, the AUC of a coin toss.
CHANCE_AUC_MARGIN = 0.05


@dataclass
class Scores:
    loss: float  # mean cross-entropy per review (nats)
    accuracy: float  # share of reviews, 0..1
    probs: np.ndarray  # (N,) P(positive) per review, in split order
    # Each branch's margin per review (N,): the log-odds of label 1 it gives ("rnn", "ngram", "nbsvm").
    margins: dict[str, np.ndarray]
    # With more than one branch: each branch's accuracy alone ({"rnn": ..., "nbsvm": ...}).
    branch_accuracy: Optional[dict[str, float]] = None


@torch.no_grad()
def score(model: RNNClassifier, data: SplitArrays, batch_size: int, dynamic_padding: bool, pad_side: str,
          device: torch.device, show_progress: bool = False, desc: str = "eval") -> Scores:
    """Run `model` (put in eval mode) over every review of `data`."""
    model.eval()
    total_loss, correct = 0.0, 0
    probs = np.zeros(len(data))
    margins = {name: np.zeros(len(data)) for name in (("rnn", "ngram") if model.ngram is not None else ("rnn",))}
    # Batches of similar lengths run fewer steps; a review's score does not depend on its
    # batch-mates, so the order is free.
    order = np.argsort(data.lengths, kind="stable") if dynamic_padding else np.arange(len(data))
    with progress_bar(total=len(data), desc=desc, unit="review", enabled=show_progress) as bar:
        for start in range(0, len(data), batch_size):
            index = order[start : start + batch_size]
            ids, lengths, labels = make_batch(data, index, dynamic_padding, pad_side, device)
            logits = model(ids, lengths)
            for name, margin in margins.items():
                branch = getattr(logits, name).float()
                margin[index] = (branch[:, 1] - branch[:, 0]).cpu().numpy()
            total_loss += F.cross_entropy(logits.total, labels, reduction="sum").item()
            correct += (logits.total.argmax(-1) == labels).sum().item()
            probs[index] = torch.softmax(logits.total.float(), -1)[:, 1].cpu().numpy()
            bar.update(len(index))
    n = max(1, len(data))
    return Scores(total_loss / n, correct / n, probs, margins, branch_accuracy(margins, data.labels))


def branch_accuracy(margins: dict[str, np.ndarray], labels: np.ndarray) -> Optional[dict[str, float]]:
    """Each branch's accuracy alone (0..1), or None for a single branch."""
    if len(margins) < 2:
        return None
    # A margin of 0 is P = 0.5, labelled positive (THRESHOLD), as the prediction is.
    return {name: float(((m >= 0) == (labels == 1)).mean()) if len(labels) else 0.0 for name, m in margins.items()}


def score_run(run: "LoadedRun", data: SplitArrays, texts: Optional[Sequence[str]], device: torch.device,
              batch_size: Optional[int] = None, show_progress: bool = False) -> Scores:
    """A run's prediction over `data`: the model's, or with stacking weights in the checkpoint,
    the stacked margins of its branches (the NBSVM branch reads `texts`, one per review).

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
    probs = expit(stacked)
    correct = int(((probs >= THRESHOLD) == (data.labels == 1)).sum())
    return Scores(loss, correct / n, probs, margins, branch_accuracy(margins, data.labels))


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, precision, recall, F1 (positive class), ROC-AUC (None with one class) and the
    confusion matrix (rows: true negative/positive, columns: predicted), from P(positive)."""
    from sklearn import metrics as m

    preds = (probs >= THRESHOLD).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "accuracy": float(m.accuracy_score(labels, preds)),
        "precision": float(m.precision_score(labels, preds, zero_division=0)),
        "recall": float(m.recall_score(labels, preds, zero_division=0)),
        "f1": float(m.f1_score(labels, preds, zero_division=0)),
        "roc_auc": float(m.roc_auc_score(labels, probs)) if both else None,
        "confusion_matrix": m.confusion_matrix(labels, preds, labels=[0, 1]).tolist(),
        "predicted_positive_share": float(preds.mean()) if len(preds) else 0.0,
    }


def chance_warning(roc_auc: Optional[float]) -> Optional[str]:
    """A warning when ROC-AUC is within CHANCE_AUC_MARGIN of 0.5 (the model ranks reviews about as
    well as a coin toss, whatever its accuracy), else None."""
    if roc_auc is None or abs(roc_auc - 0.5) >= CHANCE_AUC_MARGIN:
        return None
    return (f"warning: ROC-AUC is {roc_auc:.3f}, about chance (0.5): the model has most likely not learned; "
            "check model.last_step, the learning rate and the data")


def one_class_warning(positive_share: float) -> Optional[str]:
    """A warning when more than ONE_CLASS_SHARE of reviews get one label, else None."""
    share = max(positive_share, 1 - positive_share)
    if share <= ONE_CLASS_SHARE:
        return None
    label = "positive" if positive_share >= THRESHOLD else "negative"
    return (f"warning: the model predicts '{label}' for {share:.0%} of reviews: it has most likely not learned "
            "(the 'stuck at 50 %' failure); check model.last_step, the learning rate and the data")
