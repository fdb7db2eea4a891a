"""Preprocessing throughput: the seed's process_sentence vs imdb-rnn, on the same real reviews.

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/preprocess.py \
        --archive ../shared/data/aclImdb_v1.tar.gz --seed-reviews 200 --reviews 4000

Checks that both give identical output on the reviews they share, prints a table (reviews/s,
ratio to the seed, scaling over 1 and 2 worker processes) and writes it as JSON. Process-pool
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from imdb_rnn.config import PreprocessConfig  # noqa: E402
from imdb_rnn.preprocess import tokenize_reviews  # noqa: E402
from imdb_rnn.sources import read_reviews  # noqa: E402
from seed_oracle import process_sentence  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz")
    ap.add_argument("--seed-reviews", type=int, default=200, help="reviews timed with the seed's function")
    ap.add_argument("--reviews", type=int, default=4000, help="reviews timed with imdb-rnn")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "preprocess.json")
    args = ap.parse_args()

    reviews = read_reviews(args.archive)
    random.Random(0).shuffle(reviews)
    reviews = reviews[: max(args.reviews, args.seed_reviews)]
    cfg = PreprocessConfig()  # the seed's filters

    rows = []
    start = time.perf_counter()
    seed_out = [process_sentence(r.text) for r in reviews[: args.seed_reviews]]
    seed_s = time.perf_counter() - start
    rows.append({"method": "seed process_sentence", "workers": 1, "reviews": args.seed_reviews, "seconds": seed_s})

    for workers in (1, 2):
        start = time.perf_counter()
        ours = tokenize_reviews(reviews[: args.reviews], cfg, workers, show_progress=False)
        seconds = time.perf_counter() - start
        same = [" ".join(t) for t in ours[: args.seed_reviews]] == seed_out
        if not same:
            sys.exit(f"output differs from the seed's with {workers} worker(s)")
        rows.append({"method": "imdb-rnn", "workers": workers, "reviews": args.reviews, "seconds": seconds})

    seed_rate = rows[0]["reviews"] / rows[0]["seconds"]
    one_worker = rows[1]["reviews"] / rows[1]["seconds"]
    print(f"{'method':<24}{'workers':>8}{'reviews':>9}{'seconds':>10}{'reviews/s':>11}{'vs seed':>9}{'vs 1 worker':>13}")
    for row in rows:
        rate = row["reviews"] / row["seconds"]
        row |= {"reviews_per_s": round(rate, 1), "vs_seed": round(rate / seed_rate, 1),
                "vs_one_worker": round(rate / one_worker, 2) if row["method"] == "imdb-rnn" else None,
                "seconds": round(row["seconds"], 2)}
        scale = f"{row['vs_one_worker']:.2f}x" if row["vs_one_worker"] else "-"
        print(f"{row['method']:<24}{row['workers']:>8}{row['reviews']:>9}{row['seconds']:>10.2f}{rate:>11.1f}"
              f"{row['vs_seed']:>8.1f}x{scale:>13}")
    print(f"outputs identical to the seed's on {args.seed_reviews} reviews")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "identical": True, "cpus": len(os.sched_getaffinity(0)),
                                     "python": platform.python_version()}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
