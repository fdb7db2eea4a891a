"""The eval stage: score a run's checkpoint on a split and write RUN/eval-SPLIT/.

The run brings its model, config and vocabulary; the data directory brings the reviews. The
split comes from the preprocess artifacts of the run's config there, built when missing, and is
refused when their vocabulary is not the run's.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np

from imdb_rnn.config import Config
from imdb_rnn.data.arrays import SplitArrays, split_validation
from imdb_rnn.data.artifacts import MANIFEST, Processed, artifacts_dir, load_processed
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError
from imdb_rnn.files import write_json, write_text
from imdb_rnn.run import LoadedRun, RunDir
from imdb_rnn.scoring import THRESHOLD, classification_metrics, score_run
from imdb_rnn.training.threads import cpu_share

SPLITS = ("test", "val", "train")


def evaluation_data(run: LoadedRun, split: str, data_dir: Path,
                    show_progress: bool = False) -> tuple[SplitArrays, Optional[list[str]]]:
    """The `split` of the run's preprocess artifacts in `data_dir` (preprocessed first when missing),
    and, for a run with an NBSVM branch, each review's tokens (space-joined), else None.

    Raises UserError when their vocabulary is not the run's, or the run has no such split.
    """
    cfg = run.config
    source = Path(cfg.data.source)
    if source.is_absolute() and not source.exists():
        # Trained with a source given as an absolute path, on another machine or folder: look for
        # the file by its name in --data-dir (the vocabulary check below still guards the data).
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"source": source.name})})
    out_dir = artifacts_dir(cfg, data_dir)
    if not (out_dir / MANIFEST).is_file():
        preprocess(cfg, data_dir, show_progress=show_progress)
    processed = load_processed(out_dir, cfg)
    if processed.vocab.sha256() != run.pipeline.vocab_sha256:
        raise UserError(f"the vocabulary in {processed.out_dir} differs from the one {run.checkpoint_path.name} was "
                        "trained with (the source changed since); restore the source it was trained on, or retrain")
    data = split_arrays(processed, split, cfg)
    if len(data) == 0:
        raise UserError(f"split '{split}' is empty in {processed.out_dir}; choose another split")
    return data, processed.texts(data) if run.nbsvm is not None else None


def split_arrays(processed: Processed, split: str, cfg: Config) -> SplitArrays:
    """test, train, or the validation split carved from train exactly as training carved it."""
    if split == "val":
        _, val = split_validation(processed.split("train"), cfg.train.val_fraction, cfg.train.seed)
        if val is None:
            raise UserError("this run kept no validation split (train.val_fraction is 0); use --split test")
        return val
    return processed.split(split)


def _predictions_csv(data: SplitArrays, probs: np.ndarray) -> str:
    buf = io.StringIO()
    buf.write("review_id,true_label,predicted_label,prob_positive\n")
    ids = data.review_ids if data.review_ids is not None else np.arange(len(data)).astype(str)
    for rid, y, p in zip(ids, data.labels, probs):
        buf.write(f"{rid},{int(y)},{int(p >= THRESHOLD)},{p:.6f}\n")
    return buf.getvalue()


def evaluate(run_dir: Path, data_dir: Path, split: str = "test", which: str = "best", device: str = "auto",
             batch_size: Optional[int] = None, show_progress: bool = False) -> dict:
    """Score a run's checkpoint on test, val or train; writes RUN/eval-SPLIT/ and returns its metrics."""
    from imdb_rnn.plots import confusion_matrix

    if split not in SPLITS:
        raise UserError(f"--split must be test, val or train, got '{split}'")
    run_dir = RunDir(run_dir)
    run = run_dir.load(which)
    cfg = run.config
    data, texts = evaluation_data(run, split, data_dir, show_progress)
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
        **classification_metrics(data.labels, s.probs),
    }
    if s.branch_accuracy:
        result["branch_accuracy"] = s.branch_accuracy
    if run.stack is not None:
        result["stack"] = run.stack.to_dict()
    out = run_dir.eval_dir(split)
    write_json(out / RunDir.EVAL_METRICS, result)
    write_text(out / RunDir.PREDICTIONS, _predictions_csv(data, s.probs))
    confusion_matrix(np.array(result["confusion_matrix"]), out / RunDir.CONFUSION,
                     f"{cfg.name}: {split} split, {run.checkpoint_path.name}")
    return result


def format_table(result: dict) -> str:
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    auc = f"{result['roc_auc']:.4f}" if result["roc_auc"] is not None else "n/a"
    branches = result.get("branch_accuracy")
    stack = result.get("stack")
    names = {"rnn": "RNN", "ngram": "hashed n-grams", "nbsvm": "NBSVM"}
    combined = ("stacked (weights fitted on validation: " + ", ".join(f"{names[b]} {w:.2f}" for b, w in
                zip(stack["branches"], stack["coef"])) + ")") if stack else "summed"
    return "\n".join([
        f"{result['run']} ({result['checkpoint']}, epoch {result['epoch']}) on {result['split']}: {result['reviews']:,} reviews",
        f"  accuracy  {result['accuracy']:.4f}   loss {result['loss']:.4f}",
        f"  precision {result['precision']:.4f}   recall {result['recall']:.4f}   F1 {result['f1']:.4f}   ROC-AUC {auc}",
        "  confusion      pred neg   pred pos",
        f"    true neg  {tn:>10,} {fp:>10,}",
        f"    true pos  {fn:>10,} {tp:>10,}",
    ] + (["  each branch alone: " + ", ".join(f"{names[b]} {a:.4f}" for b, a in branches.items()) + f"; {combined}"]
         if branches else []))
