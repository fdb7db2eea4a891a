"""Regenerate a run's figures and summarise it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from imdb_rnn.run import RunDir


def report(run_dir: Path) -> str:
    """Write training_curves.png and each eval's confusion_matrix.png again; return a summary."""
    from imdb_rnn import plots

    run = RunDir(run_dir)
    rows = run.read_metrics()
    cfg = yaml.safe_load((run / RunDir.CONFIG).read_text()) if (run / RunDir.CONFIG).is_file() else {}
    name = cfg.get("name", run.path.name)
    plots.training_curves(rows, run / RunDir.CURVES, name)
    lines = [f"run {run} ({name}): {len(rows)} epoch(s)", f"  figure {run / RunDir.CURVES}"]
    last = rows[-1]
    lines.append(f"  last epoch {last['epoch']}: train loss {float(last['train_loss']):.4f} acc {float(last['train_acc']):.4f}")
    val = [r for r in rows if r.get("val_acc")]
    if val:
        best = max(val, key=lambda r: float(r["val_acc"]))
        lines.append(f"  best validation accuracy {float(best['val_acc']):.4f} at epoch {best['epoch']}")
    for metrics_path in run.eval_metric_files():
        m = json.loads(metrics_path.read_text())
        png = plots.confusion_matrix(np.array(m["confusion_matrix"]), metrics_path.parent / RunDir.CONFUSION,
                                     f"{name}: {m['split']} split, {m['checkpoint']}")
        lines.append(f"  {m['split']}: accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f} ({m['checkpoint']}); figure {png}")
    return "\n".join(lines)
