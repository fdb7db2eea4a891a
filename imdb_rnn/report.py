"""Regenerate a run's figures and summarise it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from imdb_rnn.errors import UserError
from imdb_rnn.run import RunDir


def report(run_dir: Path) -> str:
    """Write training_curves.png and each eval's confusion_matrix.png again; return a summary.

    Raises UserError when the run has no finished epoch or its metrics.csv is malformed.
    """
    from imdb_rnn import plots

    run = RunDir(run_dir)
    rows = run.read_metrics()
    try:
        config = yaml.safe_load((run / RunDir.CONFIG).read_text()) or {}
        name = config.get("name", run.path.name)
        averaged = bool((config.get("train") or {}).get("ema_decay"))
    except (OSError, yaml.YAMLError, AttributeError):
        name, averaged = run.path.name, False
    try:
        plots.training_curves(rows, run / RunDir.CURVES, name, averaged)
        last = rows[-1]
        lines = [f"run {run} ({name}): {len(rows)} epoch(s)", f"  figure {run / RunDir.CURVES}",
                 f"  last epoch {last['epoch']}: train loss {float(last['train_loss']):.4f} "
                 f"acc {float(last['train_acc']):.4f}"]
        val = [r for r in rows if r.get("val_acc")]
        if val:
            best = max(val, key=lambda r: float(r["val_acc"]))
            lines.append(f"  best validation accuracy {float(best['val_acc']):.4f} at epoch {best['epoch']}")
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{run / RunDir.METRICS} is malformed ({e!r}); retrain, or restore the file") from e
    return "\n".join(lines + [_eval_line(path, name, _label_names(run)) for path in run.eval_metric_files()])


def _label_names(run: RunDir) -> Optional[list[str]]:
    """The class names by id from the run's pipeline.json, or None when it is unreadable."""
    try:
        labels = json.loads((run / RunDir.PIPELINE).read_text())["labels"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(n) for n in labels] if isinstance(labels, list) else None


def _eval_line(metrics_path: Path, name: str, labels: Optional[list[str]] = None) -> str:
    """One summary line for an eval-SPLIT/metrics.json, redrawing its confusion matrix with the
    class names `labels` (metrics.json's own, for more than two classes, come first)."""
    from imdb_rnn import plots

    try:
        m = json.loads(metrics_path.read_text())
        png = plots.confusion_matrix(np.array(m["confusion_matrix"]), metrics_path.parent / RunDir.CONFUSION,
                                     f"{name}: {m['split']} split, {m['checkpoint']}", m.get("labels") or labels)
        f1 = f"macro F1 {m['macro_avg']['f1']:.4f}" if "macro_avg" in m else f"F1 {m['f1']:.4f}"
        return f"  {m['split']}: accuracy {m['accuracy']:.4f}, {f1} ({m['checkpoint']}); figure {png}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"  {metrics_path} is unreadable: run 'imdb-rnn eval' again"
