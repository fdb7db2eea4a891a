"""Accuracy and cost of named configs, end to end: preprocess -> train -> eval, each with the CLI.

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/accuracy.py --data-dir data --fresh seed seed-fixed best

For each config it prints and writes (JSON): the test set, test accuracy (and, for a model with an
n-gram path, that of each path alone), epochs run, minutes of
preprocess / train / eval and their sum (wall clock), and training tokens/s (mean over epochs).
`--fresh` removes cached preprocess artifacts first, so the preprocess time is a first run's.
The seed's recipe reads the Kaggle-format CSV; it is written from the archive when missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import print_table, write_json  # noqa: E402
from imdb_rnn.config import load_config  # noqa: E402
from imdb_rnn.preprocess import processed_dir  # noqa: E402


def cli(*args) -> tuple[str, float]:
    """Run `imdb-rnn ARGS`; (stdout, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "imdb_rnn", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        sys.exit(f"imdb-rnn {' '.join(map(str, args))} failed with status {proc.returncode}")
    return proc.stdout, time.perf_counter() - start


def run_config(spec: str, args) -> dict:
    """`spec` is a config name, optionally with overrides: best:model.ngram_buckets=0,train.epochs=3."""
    name, _, extra = spec.partition(":")
    overrides = [o for o in extra.split(",") if o]
    config = ROOT / "configs" / f"{name}.yaml"
    cfg = load_config(config, overrides)
    source = Path(cfg.data.source) if Path(cfg.data.source).is_absolute() else args.data_dir / cfg.data.source
    if not source.exists() and source.suffix == ".csv":
        cli("make-csv", args.data_dir / "aclImdb_v1.tar.gz", "--out", source)
    if args.fresh:
        shutil.rmtree(processed_dir(cfg, args.data_dir), ignore_errors=True)
    run = args.runs / re.sub(r"[^\w.=-]+", "_", spec)
    print(f"{spec}: preprocess", flush=True)
    _, pre = cli("preprocess", "--config", config, "--data-dir", args.data_dir, "-q", *overrides)
    print(f"{spec}: train", flush=True)
    _, tr = cli("train", "--config", config, "--data-dir", args.data_dir, "--run-dir", run, "--overwrite", "-q",
                *overrides)
    print(f"{spec}: eval", flush=True)
    out, ev = cli("eval", "--run", run, "--json", "-q")
    result = json.loads(out)
    epochs = pd.read_csv(run / "metrics.csv")
    paths = result.get("path_accuracy") or {}
    return {
        "config": spec,
        "test_reviews": result["reviews"],
        "test_accuracy": round(100 * result["accuracy"], 2),
        # With an n-gram path: the test accuracy of the RNN and of the n-gram path, each alone.
        "rnn_alone": round(100 * paths["rnn"], 2) if paths else "",
        "ngram_alone": round(100 * paths["ngram"], 2) if paths else "",
        "epochs": len(epochs),
        "preprocess_min": round(pre / 60, 2),
        "train_min": round(tr / 60, 2),
        "eval_min": round(ev / 60, 2),
        "total_min": round((pre + tr + ev) / 60, 2),
        "tokens_per_s": round(float(epochs["tokens_per_s"].mean())),
        "checkpoint": f"{result['checkpoint']} (epoch {result['epoch']})",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="names under configs/, e.g. seed seed-fixed best; NAME:key=value,... "
                    "adds overrides")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--fresh", action="store_true", help="preprocess from scratch (no cached artifacts)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "accuracy.json")
    args = ap.parse_args()
    args.data_dir = args.data_dir.resolve()

    rows = []
    for spec in args.configs:
        rows.append(run_config(spec, args))
        write_json(args.json, {"rows": rows, "fresh": args.fresh})  # after each config: hours of work kept
    print_table(rows, ["config", "test_reviews", "test_accuracy", "rnn_alone", "ngram_alone", "epochs", "preprocess_min",
                       "train_min", "eval_min", "total_min", "tokens_per_s"])


if __name__ == "__main__":
    main()
