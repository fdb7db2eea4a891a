"""Score a model over a split; the eval command's metrics, predictions and confusion matrix.

Writes RUN/eval-SPLIT/: metrics.json, predictions.csv (review id, true label, predicted label,
probability of positive) and confusion_matrix.png.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from imdb_rnn.arrays import SplitArrays, split_validation
from imdb_rnn.atomic import write_json, write_text
from imdb_rnn.batches import make_batch
from imdb_rnn.checkpoint import find_checkpoint, load_checkpoint, model_from_checkpoint
from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError
from imdb_rnn.model import RNNClassifier
from imdb_rnn.preprocess import Processed, load_processed
from imdb_rnn.progress import progress_bar

# A model that gives one class to more than this share of reviews has most likely not learned.
ONE_CLASS_SHARE = 0.95


@dataclass
class Scores:
    loss: float
    accuracy: float
    probs: np.ndarray  # P(positive) per review, in split order
    # With an n-gram path: the accuracy of each summand alone ({"rnn": ..., "ngram": ...}).
    path_accuracy: Optional[dict] = None


@torch.no_grad()
def score(model: RNNClassifier, data: SplitArrays, batch_size: int, trim: bool, pad_side: str,
          device: torch.device, show_progress: bool = False, desc: str = "eval") -> Scores:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct, path_correct = 0.0, 0, [0, 0]
    probs = np.zeros(len(data))
    # Trimmed batches of similar lengths run fewer steps; a review's score does not depend on its
    # batch-mates, so the order is free.
    order = np.argsort(data.lengths, kind="stable") if trim else np.arange(len(data))
    with progress_bar(total=len(data), desc=desc, unit="review", enabled=show_progress) as bar:
        for start in range(0, len(data), batch_size):
            index = order[start : start + batch_size]
            ids, lengths, labels = make_batch(data, index, trim, pad_side, device)
            if model.cfg.ngram_buckets:
                parts = model(ids, lengths, parts=True)
                logits = parts[0] + parts[1]
                for k, part in enumerate(parts):
                    path_correct[k] += (part.argmax(-1) == labels).sum().item()
            else:
                logits = model(ids, lengths)
            total_loss += loss_fn(logits, labels).item()
            correct += (logits.argmax(-1) == labels).sum().item()
            probs[index] = torch.softmax(logits.float(), -1)[:, 1].cpu().numpy()
            bar.update(len(index))
    n = max(1, len(data))
    paths = {"rnn": path_correct[0] / n, "ngram": path_correct[1] / n} if model.cfg.ngram_buckets else None
    return Scores(total_loss / n, correct / n, probs, paths)


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, precision, recall, F1 (positive class), ROC-AUC and the confusion matrix."""
    from sklearn import metrics as m

    preds = (probs >= 0.5).astype(int)
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


def one_class_warning(positive_share: float) -> Optional[str]:
    share = max(positive_share, 1 - positive_share)
    if share <= ONE_CLASS_SHARE:
        return None
    label = "positive" if positive_share >= 0.5 else "negative"
    return (f"warning: the model predicts '{label}' for {share:.0%} of reviews: it has most likely not learned "
            "(the 'stuck at 50 %' failure); check model.last_step, the learning rate and the data")


def split_arrays(processed: Processed, split: str, cfg) -> SplitArrays:
    if split == "val":
        _, val = split_validation(processed.split("train"), cfg.train.val_fraction, cfg.train.seed)
        if val is None:
            raise UserError("this run kept no validation split (train.val_fraction is 0); use --split test")
        return val
    return processed.split(split)


def load_run(run_dir: Path, which: str = "best"):
    """(model, config, processed artifacts, checkpoint path, checkpoint) for a run directory."""
    path = find_checkpoint(Path(run_dir), which)
    ckpt = load_checkpoint(path)
    model, cfg = model_from_checkpoint(ckpt)
    processed = load_processed(Path(ckpt["processed_dir"]), cfg)
    if processed.vocab.sha256() != ckpt["vocab_sha256"]:
        raise UserError(
            f"the vocabulary in {processed.out_dir} differs from the one {path.name} was trained with; "
            "re-run preprocess with the run's config, or retrain"
        )
    return model, cfg, processed, path, ckpt


def _predictions_csv(data: SplitArrays, probs: np.ndarray) -> str:
    buf = io.StringIO()
    buf.write("review_id,true_label,predicted_label,prob_positive\n")
    ids = data.review_ids if data.review_ids is not None else np.arange(len(data)).astype(str)
    for rid, y, p in zip(ids, data.labels, probs):
        buf.write(f"{rid},{int(y)},{int(p >= 0.5)},{p:.6f}\n")
    return buf.getvalue()


def evaluate(run_dir: Path, split: str = "test", which: str = "best", device: str = "auto",
             batch_size: Optional[int] = None, show_progress: bool = False) -> dict:
    """Score a run's checkpoint on test, val or train; writes RUN/eval-SPLIT/."""
    from imdb_rnn.plots import confusion_matrix

    run_dir = Path(run_dir)
    model, cfg, processed, path, ckpt = load_run(run_dir, which)
    data = split_arrays(processed, split, cfg)
    if len(data) == 0:
        raise UserError(f"split '{split}' is empty in {processed.out_dir}; choose another split")
    dev = resolve_device(device)
    model.to(dev)
    s = score(model, data, batch_size or max(cfg.train.batch_size, 64), cfg.train.trim_batches,
              cfg.preprocess.pad_side, dev, show_progress)
    result = {
        "run": str(run_dir),
        "checkpoint": path.name,
        "epoch": ckpt["epoch"],
        "split": split,
        "reviews": len(data),
        "loss": s.loss,
        **classification_metrics(data.labels, s.probs),
    }
    if s.path_accuracy:
        result["path_accuracy"] = s.path_accuracy
    out = run_dir / f"eval-{split}"
    write_json(out / "metrics.json", result)
    write_text(out / "predictions.csv", _predictions_csv(data, s.probs))
    confusion_matrix(np.array(result["confusion_matrix"]), out / "confusion_matrix.png",
                     f"{cfg.name}: {split} split, {path.name}")
    return result


def format_table(result: dict) -> str:
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    auc = f"{result['roc_auc']:.4f}" if result["roc_auc"] is not None else "n/a"
    return "\n".join([
        f"{result['run']} ({result['checkpoint']}, epoch {result['epoch']}) on {result['split']}: {result['reviews']:,} reviews",
        f"  accuracy  {result['accuracy']:.4f}   loss {result['loss']:.4f}",
        f"  precision {result['precision']:.4f}   recall {result['recall']:.4f}   F1 {result['f1']:.4f}   ROC-AUC {auc}",
        "  confusion      pred neg   pred pos",
        f"    true neg  {tn:>10,} {fp:>10,}",
        f"    true pos  {fn:>10,} {tp:>10,}",
    ] + ([f"  each path alone: RNN {result['path_accuracy']['rnn']:.4f}, n-grams {result['path_accuracy']['ngram']:.4f}"]
         if "path_accuracy" in result else []))
