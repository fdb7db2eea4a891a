"""Preprocessing throughput: the tutorial's process_sentence vs imdb-rnn, on the same real reviews.

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/preprocess.py \
        --archive ../shared/data/aclImdb_v1.tar.gz --tutorial-reviews 200 --reviews 4000

Checks that both give identical output on the reviews they share, prints a table (reviews/s,
ratio to the tutorial, scaling over 1 and 2 worker processes) and writes it as JSON. Process-pool
start-up and tagger loading are inside the timed region, as a user pays them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

from imdb_rnn.config import PreprocessConfig
from imdb_rnn.data.preprocess import tokenize_reviews
from imdb_rnn.data.sources import read_reviews
from imdb_rnn.reference.tutorial import process_sentence

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz")
    ap.add_argument("--tutorial-reviews", type=int, default=200, help="reviews timed with the tutorial's function")
    ap.add_argument("--reviews", type=int, default=4000, help="reviews timed with imdb-rnn")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "preprocess.json")
    args = ap.parse_args()

    reviews = read_reviews(args.archive)
    random.Random(0).shuffle(reviews)
    reviews = reviews[: max(args.reviews, args.tutorial_reviews)]
    cfg = PreprocessConfig()  # the tutorial's filters

    rows = []
    start = time.perf_counter()
    tutorial_out = [process_sentence(r.text) for r in reviews[: args.tutorial_reviews]]
    tutorial_s = time.perf_counter() - start
    rows.append({"method": "tutorial process_sentence", "workers": 1, "reviews": args.tutorial_reviews, "seconds": tutorial_s})

    for workers in (1, 2):
        start = time.perf_counter()
        ours = tokenize_reviews(reviews[: args.reviews], cfg, workers, show_progress=False)
        seconds = time.perf_counter() - start
        same = [" ".join(t) for t in ours[: args.tutorial_reviews]] == tutorial_out
        if not same:
            sys.exit(f"output differs from the tutorial's with {workers} worker(s)")
        rows.append({"method": "imdb-rnn", "workers": workers, "reviews": args.reviews, "seconds": seconds})
    # The same filters after normalisation (preprocess.normalize): what it costs, one worker.
    start = time.perf_counter()
    tokenize_reviews(reviews[: args.reviews], cfg.model_copy(update={"normalize": True}), 1, show_progress=False)
    rows.append({"method": "imdb-rnn, normalize", "workers": 1, "reviews": args.reviews,
                 "seconds": time.perf_counter() - start})

    tutorial_rate = rows[0]["reviews"] / rows[0]["seconds"]
    one_worker = rows[1]["reviews"] / rows[1]["seconds"]
    print(f"{'method':<24}{'workers':>8}{'reviews':>9}{'seconds':>10}{'reviews/s':>11}{'vs tutorial':>13}{'vs 1 worker':>13}")
    for row in rows:
        rate = row["reviews"] / row["seconds"]
        row |= {"reviews_per_s": round(rate, 1), "vs_tutorial": round(rate / tutorial_rate, 1),
                "vs_one_worker": round(rate / one_worker, 2) if row["method"].startswith("imdb-rnn") else None,
                "seconds": round(row["seconds"], 2)}
        scale = f"{row['vs_one_worker']:.2f}x" if row["vs_one_worker"] else "-"
        print(f"{row['method']:<24}{row['workers']:>8}{row['reviews']:>9}{row['seconds']:>10.2f}{rate:>11.1f}"
              f"{row['vs_tutorial']:>12.1f}x{scale:>13}")
    print(f"outputs identical to the tutorial's on {args.tutorial_reviews} reviews")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "identical": True, "cpus": len(os.sched_getaffinity(0)),
                                     "python": platform.python_version()}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
