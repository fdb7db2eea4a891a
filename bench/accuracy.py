"""Accuracy and cost of named configs, end to end: preprocess -> train -> eval, each with the CLI.

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/accuracy.py --data-dir data --fresh tutorial tutorial-fixed best
    ... bench/accuracy.py best best model.ngram_buckets=0 tutorial-fixed train.epochs=2
    ... bench/accuracy.py quick best --seeds 0 1 2

Each config name may be followed by overrides in the package's own syntax (section.key=value),
which apply to that config alone. For each it prints and writes (JSON): the test set, test
accuracy (and, for a model with more than one branch, that of each branch alone: RNN, hashed
n-grams, NBSVM), the NBSVM branch's fit time, epochs run, minutes of preprocess / train / eval and
their sum (wall clock), and training tokens/s (mean over epochs). A config with a pretrain section
and model.init_from is pretrained first (`imdb-rnn pretrain`, into RUN-lm beside the run), and that
time counts in the total, with the language model's held-out perplexity. `--seeds` runs each config once
per seed (train.seed=S: validation split, initialisation, batch order, dropout; for a pretrained
recipe also pretrain.seed=S, so each seed pretrains its own language model) and adds a table
of mean ± sd over the seeds. `--fresh` removes cached preprocess artifacts before a config's
first seed, so that preprocess time is a first run's (later seeds reuse the artifacts).
The tutorial's recipe reads the Kaggle-format CSV; it is written from the archive when missing.
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

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import print_table, write_json  # noqa: E402
from imdb_rnn.config import load_config  # noqa: E402
from imdb_rnn.data.artifacts import artifacts_dir, resolve_source  # noqa: E402


def cli(*args) -> tuple[str, float]:
    """Run `imdb-rnn ARGS`; (stdout, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "imdb_rnn", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        sys.exit(f"imdb-rnn {' '.join(map(str, args))} failed with status {proc.returncode}")
    return proc.stdout, time.perf_counter() - start


def specs(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """[(config name, its overrides)] from `NAME [section.key=value ...] NAME ...`."""
    out: list[tuple[str, list[str]]] = []
    for token in tokens:
        if "=" in token:
            if not out:
                sys.exit(f"override {token} comes before any config name")
            out[-1][1].append(token)
        else:
            out.append((token, []))
    return out


def run_config(name: str, overrides: list[str], args, seed: int | None = None, fresh: bool = False) -> dict:
    """Preprocess, (pretrain,) train and eval configs/NAME.yaml with `overrides` (and train.seed=`seed`,
    and pretrain.seed=`seed` for a config with a pretrain section), each timed."""
    spec = " ".join([name, *overrides])
    config = ROOT / "configs" / f"{name}.yaml"
    if seed is not None:  # a pretrained recipe's seed is its language model's too: each seed end to end
        pretrains = load_config(config, overrides).pretrain is not None
        overrides = [*overrides, f"train.seed={seed}", *([f"pretrain.seed={seed}"] if pretrains else [])]
    cfg = load_config(config, overrides)
    source = resolve_source(cfg, args.data_dir)
    if not source.exists() and source.suffix == ".csv":
        cli("make-csv", args.data_dir / "aclImdb_v1.tar.gz", "--out", source)
    if fresh:
        shutil.rmtree(artifacts_dir(cfg, args.data_dir), ignore_errors=True)
    run = args.runs / re.sub(r"[^\w.=-]+", "_", " ".join([name, *overrides]))
    print(f"{spec}: preprocess", flush=True)
    _, pre = cli("preprocess", "--config", config, "--data-dir", args.data_dir, "-q", *overrides)
    lm_seconds, lm_perplexity = 0.0, None
    if cfg.pretrain is not None and cfg.model.init_from:
        # Pretraining is part of the recipe's cost: its own run beside the classifier's, timed.
        lm_run = run.with_name(run.name + "-lm")
        print(f"{spec}: pretrain", flush=True)
        _, lm_seconds = cli("pretrain", "--config", config, "--data-dir", args.data_dir, "--run-dir", lm_run,
                            "--overwrite", "-q", *overrides)
        lm_perplexity = float(pd.read_csv(lm_run / "metrics.csv")["val_perplexity"].iloc[-1])
        overrides = [*overrides, f"model.init_from={lm_run}"]
    print(f"{spec}: train", flush=True)
    _, tr = cli("train", "--config", config, "--data-dir", args.data_dir, "--run-dir", run, "--overwrite", "-q",
                *overrides)
    print(f"{spec}: eval", flush=True)
    out, ev = cli("eval", "--run", run, "--data-dir", args.data_dir, "--json", "-q")
    result = json.loads(out)
    epochs = pd.read_csv(run / "metrics.csv")
    branches = result.get("branch_accuracy") or {}
    alone = lambda b: round(100 * branches[b], 2) if b in branches else None  # noqa: E731
    nbsvm = run / "nbsvm.npz"
    return {
        "config": spec,
        "seed": cfg.train.seed if seed is None else seed,
        "test_reviews": result["reviews"],
        "test_accuracy": round(100 * result["accuracy"], 2),
        # With more than one branch: the test accuracy of each alone (RNN, hashed n-grams, NBSVM).
        "rnn_alone": alone("rnn"),
        "ngram_alone": alone("ngram"),
        "nbsvm_alone": alone("nbsvm"),
        "nbsvm_fit_s": round(float(np.load(nbsvm)["fit_seconds"]), 1) if nbsvm.exists() else None,
        "epochs": len(epochs),
        "preprocess_min": round(pre / 60, 2),
        "pretrain_min": round(lm_seconds / 60, 2) if lm_seconds else None,  # with the unlabelled reviews' tokenizing
        "lm_perplexity": lm_perplexity,  # held-out, after the last pretraining epoch
        "train_min": round(tr / 60, 2),
        "eval_min": round(ev / 60, 2),
        "total_min": round((pre + lm_seconds + tr + ev) / 60, 2),
        "tokens_per_s": round(float(epochs["tokens_per_s"].mean())),
        "checkpoint": f"{result['checkpoint']} (epoch {result['epoch']})",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="names under configs/, e.g. tutorial tutorial-fixed best; "
                    "section.key=value after a name overrides that config")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--fresh", action="store_true", help="preprocess from scratch (no cached artifacts)")
    ap.add_argument("--seeds", type=int, nargs="+", metavar="S",
                    help="run each config once per seed (train.seed=S) and report mean ± sd")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "accuracy.json")
    args = ap.parse_args()
    args.data_dir = args.data_dir.resolve()

    rows: list[dict] = []
    for name, overrides in specs(args.configs):
        for i, seed in enumerate(args.seeds or [None]):
            rows.append(run_config(name, overrides, args, seed, fresh=args.fresh and i == 0))
            summary = summarise(rows) if args.seeds else None
            write_json(args.json, {"rows": rows, "summary": summary, "fresh": args.fresh})  # hours of work kept
    print_table(rows, ["config", "seed", "test_reviews", "test_accuracy", "rnn_alone", "ngram_alone", "nbsvm_alone",
                       "nbsvm_fit_s", "epochs", "preprocess_min", "pretrain_min", "lm_perplexity", "train_min", "eval_min",
                       "total_min", "tokens_per_s"])
    if args.seeds:
        print()
        print_table(summarise(rows), ["config", "seeds", "test_accuracy", "rnn_alone", "ngram_alone", "nbsvm_alone",
                                      "total_min", "total_min_max"])


def mean_sd(values: list) -> str | None:
    """'mean ± sd' (sample sd, n - 1) of the values that are not None, in %."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.2f} ± {sd:.2f}"


def summarise(rows: list[dict]) -> list[dict]:
    """One row per config: mean ± sd over its seeds of each accuracy, mean and max minutes."""
    out = []
    for spec in dict.fromkeys(r["config"] for r in rows):
        group = [r for r in rows if r["config"] == spec]
        out.append({"config": spec, "seeds": " ".join(str(r["seed"]) for r in group),
                    **{k: mean_sd([r[k] for r in group]) for k in ("test_accuracy", "rnn_alone", "ngram_alone",
                                                                    "nbsvm_alone")},
                    "total_min": round(float(np.mean([r["total_min"] for r in group])), 2),
                    "total_min_max": max(r["total_min"] for r in group)})
    return out


if __name__ == "__main__":
    main()
