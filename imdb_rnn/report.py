"""Regenerate a run's figures and summarise it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from imdb_rnn.errors import UserError


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise UserError(f"no metrics.csv in {run_dir}; is it a run directory written by 'imdb-rnn train'?")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def report(run_dir: Path) -> str:
    """Write training_curves.png and each eval's confusion_matrix.png again; return a summary."""
    from imdb_rnn import plots

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    name = cfg.get("name", run_dir.name)
    plots.training_curves(rows, run_dir / "training_curves.png", name)
    lines = [f"run {run_dir} ({name}): {len(rows)} epoch(s)", f"  figure {run_dir / 'training_curves.png'}"]
    last = rows[-1]
    lines.append(f"  last epoch {last['epoch']}: train loss {float(last['train_loss']):.4f} acc {float(last['train_acc']):.4f}")
    val = [r for r in rows if r.get("val_acc")]
    if val:
        best = max(val, key=lambda r: float(r["val_acc"]))
        lines.append(f"  best validation accuracy {float(best['val_acc']):.4f} at epoch {best['epoch']}")
    for metrics_path in sorted(run_dir.glob("eval-*/metrics.json")):
        m = json.loads(metrics_path.read_text())
        png = plots.confusion_matrix(np.array(m["confusion_matrix"]), metrics_path.parent / "confusion_matrix.png",
                                     f"{name}: {m['split']} split, {m['checkpoint']}")
        lines.append(f"  {m['split']}: accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f} ({m['checkpoint']}); figure {png}")
    return "\n".join(lines)
