"""The eval stage: score a run's checkpoint on a split and write RUN/eval-SPLIT/.

The run brings its model, config and vocabulary; the data directory brings the reviews. The
split comes from the preprocess artifacts of the run's config there, built when missing, and is
refused when their vocabulary is not the run's.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

import numpy as np

from imdb_rnn.config import Config
from imdb_rnn.data.arrays import SplitArrays, split_validation
from imdb_rnn.data.artifacts import MANIFEST, Processed, artifacts_dir, load_processed
from imdb_rnn.classes import predicted_classes
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError
from imdb_rnn.files import write_json, write_text
from imdb_rnn.run import LoadedRun, RunDir
from imdb_rnn.scoring import classification_metrics, score_run
from imdb_rnn.training.threads import cpu_share


def evaluation_data(run: LoadedRun, split: str, data_dir: Path, show_progress: bool = False,
                    workers: Optional[int] = None) -> tuple[SplitArrays, Optional[list[str]], Optional[str]]:
    """The `split` of the run's preprocess artifacts in `data_dir` (preprocessed first when missing,
    by `workers` processes, default the cores available);
    for a run with an NBSVM branch, each review's tokens (space-joined), else None; and a note when
    that data is not the data the run trained on (same vocabulary and classes, other bytes), else None.

    Raises UserError when their vocabulary or class names are not the run's, or the run has no such split.
    """
    cfg = run.config
    source = Path(cfg.data.source)
    if source.is_absolute() and not source.exists():
        # Trained with a source given as an absolute path, on another machine or folder: look for
        # the file by its name in --data-dir (the vocabulary check below still guards the data).
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"source": source.name})})
    out_dir = artifacts_dir(cfg, data_dir)
    if not (out_dir / MANIFEST).is_file():
        preprocess(cfg, data_dir, workers=workers, show_progress=show_progress)
    processed = load_processed(out_dir, cfg)
    if processed.vocab.sha256() != run.pipeline.vocab_sha256:
        raise UserError(f"the vocabulary in {processed.out_dir} differs from the one {run.checkpoint_path.name} was "
                        "trained with (the source changed since); restore the source it was trained on, or retrain")
    if processed.label_names != list(run.pipeline.labels):
        raise UserError(f"the classes in {processed.out_dir} ({', '.join(processed.label_names)}) differ from the ones "
                        f"{run.checkpoint_path.name} was trained with ({', '.join(run.pipeline.labels)}); restore the "
                        "source it was trained on, or retrain")
    data = split_arrays(processed, split, cfg)
    if len(data) == 0:
        raise UserError(f"split '{split}' is empty in {processed.out_dir}; choose another split")
    notes = [n for n in (_changed_data_note(run, processed, split), _validation_note(run, split)) if n]
    return data, processed.texts(data) if run.nbsvm is not None else None, "\n".join(notes) or None


def _validation_note(run: LoadedRun, split: str) -> Optional[str]:
    """A note that the validation split is not held out from what fitted the stacking weights (and,
    with nbsvm.refit, the NBSVM branch itself); None for other splits or a single-branch run."""
    if split != "val" or run.stack is None:
        return None
    nbsvm = run.config.nbsvm
    refit = " the NBSVM branch was refitted on them (nbsvm.refit) and" if nbsvm is not None and nbsvm.refit else ""
    return (f"these are the validation reviews:{refit} the stacking weights were fitted on them, so this "
            "score is not a held-out one; use --split test for that")


def _changed_data_note(run: LoadedRun, processed: Processed, split: str) -> Optional[str]:
    """A note when the source (or test source) whose `split` is scored is not the one the run
    trained on, by sha256; None when it is, or when the run predates keeping it."""
    source = processed.manifest.get("source", {})
    test = split == "test" and run.pipeline.test_source_sha256 is not None
    have, trained = (source.get("test_sha256"), run.pipeline.test_source_sha256) if test else \
        (source.get("sha256"), run.pipeline.source_sha256)
    if trained is None or have == trained:
        return None
    fitted = "" if split == "test" else "; its train and val splits are not the reviews training fitted and validated on"
    return (f"the data in {processed.out_dir} is not what {run.checkpoint_path.parent.name} trained on "
            f"(sha256 {str(have)[:12]}... against {trained[:12]}...): scored as it is now{fitted}")


def split_arrays(processed: Processed, split: str, cfg: Config) -> SplitArrays:
    """test; train: the reviews training fitted (the validation reviews left out); val: those
    validation reviews, carved from the train split exactly as training carved them."""
    if split == "test":
        return processed.split("test")
    fitted, val = split_validation(processed.split("train"), cfg.train.val_fraction, cfg.train.seed)
    if split == "train":
        return fitted
    if val is None:
        raise UserError("this run kept no validation split (train.val_fraction is 0); use --split test")
    return val


def _predictions_csv(data: SplitArrays, probs: np.ndarray, label_names: list[str]) -> str:
    """review_id, true_label, predicted_label (class ids), then P(positive) for two classes, else
    each class's probability (prob_NAME)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    two = probs.shape[1] == 2
    writer.writerow(["review_id", "true_label", "predicted_label"]
                    + (["prob_positive"] if two else [f"prob_{name}" for name in label_names]))
    ids = data.review_ids if data.review_ids is not None else np.arange(len(data)).astype(str)
    for rid, y, pred, p in zip(ids, data.labels, predicted_classes(probs), probs):
        writer.writerow([rid, int(y), int(pred)] + [f"{q:.6f}" for q in (p[1:] if two else p)])
    return buf.getvalue()


def evaluate(run_dir: Path, data_dir: Path, split: str = "test", which: str = "best", device: str = "auto",
             batch_size: Optional[int] = None, show_progress: bool = False, workers: Optional[int] = None) -> dict:
    """Score a run's checkpoint on test, val or train (preprocessing it first with `workers`
    processes when `data_dir` has no artifacts for the run's config); writes RUN/eval-SPLIT/ and
    returns its metrics."""
    from imdb_rnn.plots import confusion_matrix

    if split not in RunDir.EVAL_SPLITS:
        raise UserError(f"--split must be test, val or train, got '{split}'")
    run_dir = RunDir(run_dir)
    run = run_dir.load(which)
    cfg = run.config
    data, texts, note = evaluation_data(run, split, data_dir, show_progress, workers)
    dev = resolve_device(device)
    with cpu_share(cfg.train.threads, dev):
        s = score_run(run, data, texts, dev, batch_size, show_progress)
    result = {
        "run": run_dir.path.name,
        "checkpoint": run.checkpoint_path.name,
        "epoch": run.checkpoint["epoch"],
        "split": split,
        "reviews": len(data),
        "loss": s.loss,
        **classification_metrics(data.labels, s.probs, run.pipeline.labels),
    }
    if cfg.train.ema_decay:
        result["ema_decay"] = cfg.train.ema_decay  # the checkpoint holds the moving average of the weights
    if s.branch_accuracy:
        result["branch_accuracy"] = s.branch_accuracy
    if run.stack is not None:
        result["stack"] = run.stack.to_dict()
    if note:
        result["note"] = note
    out = run_dir.eval_dir(split)
    write_json(out / RunDir.EVAL_METRICS, result)
    write_text(out / RunDir.PREDICTIONS, _predictions_csv(data, s.probs, run.pipeline.labels))
    confusion_matrix(np.array(result["confusion_matrix"]), out / RunDir.CONFUSION,
                     f"{cfg.name}: {split} split, {run.checkpoint_path.name}", run.pipeline.labels)
    return result


BRANCH_NAMES = {"rnn": "RNN", "ngram": "hashed n-grams", "nbsvm": "NBSVM"}


def format_table(result: dict) -> str:
    """The eval result as the lines `imdb-rnn eval` prints."""
    average = ", the weights' moving average" if result.get("ema_decay") else ""
    head = (f"{result['run']} ({result['checkpoint']}, epoch {result['epoch']}{average}) on {result['split']}: "
            f"{result['reviews']:,} reviews")
    auc = f"{result['roc_auc']:.4f}" if result["roc_auc"] is not None else "n/a"
    lines = _multiclass_lines(result, auc) if "per_class" in result else _binary_lines(result, auc)
    branches = result.get("branch_accuracy")
    stack = result.get("stack")
    combined = ("stacked (weights fitted on validation: " + ", ".join(f"{BRANCH_NAMES[b]} {w:.2f}" for b, w in
                zip(stack["branches"], stack["coef"])) + ")") if stack else "summed"
    return "\n".join([head] + lines + (
        ["  each branch alone: " + ", ".join(f"{BRANCH_NAMES[b]} {a:.4f}" for b, a in branches.items()) + f"; {combined}"]
        if branches else []))


def _binary_lines(result: dict, auc: str) -> list[str]:
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    return [
        f"  accuracy  {result['accuracy']:.4f}   loss {result['loss']:.4f}",
        f"  precision {result['precision']:.4f}   recall {result['recall']:.4f}   F1 {result['f1']:.4f}   ROC-AUC {auc}",
        "  confusion      pred neg   pred pos",
        f"    true neg  {tn:>10,} {fp:>10,}",
        f"    true pos  {fn:>10,} {tp:>10,}",
    ]


def _multiclass_lines(result: dict, auc: str) -> list[str]:
    names = result["labels"]
    width = max(12, *(len(n) for n in names))
    cell = max(9, *(len(n) + 1 for n in names))
    lines = [f"  accuracy  {result['accuracy']:.4f}   loss {result['loss']:.4f}   macro F1 {result['macro_avg']['f1']:.4f}"
             f"   ROC-AUC {auc} (one-vs-rest, macro)",
             f"  {'class':<{width}} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>9}"]
    for name, c in result["per_class"].items():
        lines.append(f"  {name:<{width}} {c['precision']:>9.4f} {c['recall']:>9.4f} {c['f1']:>9.4f} {c['support']:>9,}")
    for key, label in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        a = result[key]
        lines.append(f"  {label:<{width}} {a['precision']:>9.4f} {a['recall']:>9.4f} {a['f1']:>9.4f}")
    lines.append("  confusion (rows: true, columns: predicted)")
    lines.append(f"    {'':<{width}}" + "".join(f"{n:>{cell}}" for n in names))
    for name, row in zip(names, result["confusion_matrix"]):
        lines.append(f"    {name:<{width}}" + "".join(f"{v:>{cell},}" for v in row))
    return lines
