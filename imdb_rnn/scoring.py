"""Score a model over a split: loss, accuracy, P(positive) per review, each branch's accuracy; and
the classification metrics computed from them (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

from imdb_rnn.data.arrays import SplitArrays
from imdb_rnn.data.batches import make_batch
from imdb_rnn.model import RNNClassifier
from imdb_rnn.progress import progress_bar

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
    # With an n-gram branch: each branch's accuracy alone ({"rnn": ..., "ngram": ...}).
    branch_accuracy: Optional[dict[str, float]] = None


@torch.no_grad()
def score(model: RNNClassifier, data: SplitArrays, batch_size: int, dynamic_padding: bool, pad_side: str,
          device: torch.device, show_progress: bool = False, desc: str = "eval") -> Scores:
    """Run `model` (put in eval mode) over every review of `data`."""
    model.eval()
    total_loss, correct = 0.0, 0
    branch_correct = {"rnn": 0, "ngram": 0}
    probs = np.zeros(len(data))
    # Batches of similar lengths run fewer steps; a review's score does not depend on its
    # batch-mates, so the order is free.
    order = np.argsort(data.lengths, kind="stable") if dynamic_padding else np.arange(len(data))
    with progress_bar(total=len(data), desc=desc, unit="review", enabled=show_progress) as bar:
        for start in range(0, len(data), batch_size):
            index = order[start : start + batch_size]
            ids, lengths, labels = make_batch(data, index, dynamic_padding, pad_side, device)
            logits = model(ids, lengths)
            if logits.ngram is not None:
                for name in branch_correct:
                    branch_correct[name] += (getattr(logits, name).argmax(-1) == labels).sum().item()
            total_loss += F.cross_entropy(logits.total, labels, reduction="sum").item()
            correct += (logits.total.argmax(-1) == labels).sum().item()
            probs[index] = torch.softmax(logits.total.float(), -1)[:, 1].cpu().numpy()
            bar.update(len(index))
    n = max(1, len(data))
    branches = {k: v / n for k, v in branch_correct.items()} if model.ngram is not None else None
    return Scores(total_loss / n, correct / n, probs, branches)


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
