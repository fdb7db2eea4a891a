"""Wall time and peak RSS of `imdb-rnn predict` for one review and for 1,000 reviews (test split).

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/predict.py --run runs/best --label after
    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/predict.py --run ../old/runs/best1 --data-dir data --repo ../old --label before

Each command runs alone in a fresh process, `--repeats` times: wall seconds (Popen to exit) as
min/median/max, and the largest peak RSS of that child (os.wait4). The reviews are drawn with
random.Random(0) from the sorted test members of the archive, so every version gets the same ones.
Rows accumulate in the JSON by label, so before and after can sit in one file.

PyTorch against onnxruntime, side by side (`--onnx DIR`, an export of the same run):

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/predict.py --run runs/quick --onnx runs/quick/onnx --label onnx

adds `predict --onnx` rows to the command table (this checkout's code), and measures in this
process, on the same 1,000 reviews, with `--threads` threads for both engines
(torch.set_num_threads, onnxruntime's intra-op threads): reviews/s of the network alone and of
the whole prediction from tokens (network, NBSVM branch and stacking), over all reviews batched as
predict batches them (64), best and median of `--repeats` passes after one warm-up pass; and the
latency of one review alone through the whole prediction, p50 and p95 in ms over the first
`--latency-reviews` reviews. The engines take turns pass by pass and review by review. The text pipeline (NLTK) is run once beforehand and not timed: it is
the same code for both. The rows go to the JSON's "engines", by label.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import print_table  # noqa: E402

COLUMNS = ["version", "input", "reviews", "wall_s_min", "wall_s_median", "wall_s_max", "peak_rss_mb"]
ENGINE_COLUMNS = ["engine", "reviews", "threads", "net_reviews_per_s", "full_reviews_per_s", "latency_ms_p50",
                  "latency_ms_p95", "max_abs_prob_diff"]


def test_reviews(archive: Path, n: int, seed: int = 0) -> list[str]:
    """`n` test reviews (both classes), drawn with a fixed seed from the sorted member names."""
    texts: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:  # one streaming pass: gzip cannot seek back cheaply
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 4 and parts[1] == "test" and parts[2] in ("pos", "neg"):
                texts[m.name] = tar.extractfile(m).read().decode("utf-8")
    picked = random.Random(seed).sample(sorted(texts), n)
    if {p.split("/")[2] for p in picked} != {"pos", "neg"}:
        sys.exit(f"expected both classes among the {n} reviews drawn from {archive}")
    return [texts[p] for p in picked]


def measure(cmd: list[str], cwd: Path, env: dict[str, str], expected: int) -> tuple[float, float]:
    """Run `cmd` alone: (wall seconds, peak RSS of that child in MB); check its JSON lines."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if proc.returncode:
        sys.exit(f"failed with status {proc.returncode}: {shlex.join(cmd)[:300]}\n{stderr}")
    try:  # split on "\n" only: reviews may hold U+2028 and friends, which str.splitlines also splits on
        lines = [json.loads(line) for line in stdout.split("\n") if line.strip()]
    except json.JSONDecodeError as e:
        sys.exit(f"output is not JSON lines ({e}): {stdout[:500]}\n{stderr}")
    if len(lines) != expected or not all("label" in r for r in lines):
        sys.exit(f"expected {expected} JSON lines with a 'label', got {len(lines)}: {stdout[:500]}\n{stderr}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def machine(python: str) -> dict:
    probe = "import importlib.metadata as m, os, platform; print(platform.python_version(), m.version('torch'))"
    py, torch = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    return {"cpus": len(os.sched_getaffinity(0)), "python": py, "torch": torch}


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare_engines(run_dir: Path, onnx_dir: Path, reviews: list[str], threads: int, repeats: int,
                    latency_reviews: int) -> list[dict]:
    """PyTorch and onnxruntime on the same reviews: one row per engine (see the module docstring)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from imdb_rnn.data.arrays import SplitArrays
    from imdb_rnn.export.runtime import OnnxRun
    from imdb_rnn.predict import encode_texts
    from imdb_rnn.run import RunDir
    from imdb_rnn.scoring import EVAL_BATCH_SIZE, score, score_run

    torch.set_num_threads(threads)
    onnx = OnnxRun(onnx_dir, threads)
    which = "best" if onnx.manifest["source"]["checkpoint"] == RunDir.BEST else "last"
    run = RunDir(run_dir).load(which)
    cfg, cpu = run.config, torch.device("cpu")
    enc = encode_texts(reviews, cfg.preprocess, run.vocab, run.pipeline.width)  # once: not timed
    texts = enc.joined()

    def rows_of(index: np.ndarray) -> SplitArrays:
        return SplitArrays(enc.ids[index], enc.lengths[index], np.zeros(len(index), dtype=np.int64))

    everything = rows_of(np.arange(len(enc.keep)))
    engines = {
        "pytorch": (lambda: score(run.model, everything, EVAL_BATCH_SIZE, cfg.train.dynamic_padding,
                                  cfg.preprocess.pad_side, cpu),
                    lambda data, t: score_run(run, data, t, cpu, EVAL_BATCH_SIZE).probs),
        "onnxruntime": (lambda: onnx.margins(everything.ids, everything.lengths),
                        lambda data, t: onnx.probabilities(data.ids, data.lengths, t)),
    }
    probs = {name: full(everything, texts) for name, (_, full) in engines.items()}  # also the warm-up pass
    diff = float(np.abs(probs["pytorch"] - probs["onnxruntime"]).max())
    for net, _ in engines.values():
        net()
    # The engines take turns, pass by pass and review by review, so that a change in the
    # machine's load touches both alike.
    times = {name: {"net": [], "full": [], "latency": []} for name in engines}
    for _ in range(repeats):
        for name, (net, full) in engines.items():
            times[name]["net"].append(_seconds(net))
            times[name]["full"].append(_seconds(lambda: full(everything, texts)))
    for i in range(min(latency_reviews, len(enc.keep))):
        one = rows_of(np.array([i]))
        for name, (_, full) in engines.items():
            times[name]["latency"].append(_seconds(lambda: full(one, texts[i : i + 1])) * 1000)
    n = len(enc.keep)
    rows = []
    for name, t in times.items():
        rows.append({"engine": name, "reviews": n, "threads": threads,
                     "net_reviews_per_s": n / min(t["net"]), "net_reviews_per_s_median": n / statistics.median(t["net"]),
                     "full_reviews_per_s": n / min(t["full"]),
                     "full_reviews_per_s_median": n / statistics.median(t["full"]),
                     "latency_ms_p50": float(np.percentile(t["latency"], 50)),
                     "latency_ms_p95": float(np.percentile(t["latency"], 95)), "latency_reviews": len(t["latency"]),
                     "net_s": t["net"], "full_s": t["full"], "max_abs_prob_diff": diff})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="trained run directory")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data", help="holds aclImdb_v1.tar.gz")
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout whose `python -m imdb_rnn` to run")
    ap.add_argument("--label", default="current", help="name of this code version, e.g. before/after")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "predict.json")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--onnx", type=Path, help="an ONNX export of --run: also measure predict --onnx and both engines")
    ap.add_argument("--threads", type=int, default=1, help="threads of each engine in the side-by-side measurement")
    ap.add_argument("--latency-reviews", type=int, default=200, help="reviews timed alone for the latency")
    ap.add_argument("--reviews", type=int, default=1000)
    ap.add_argument("--engines-only", action="store_true", help="skip the command table")
    args = ap.parse_args()

    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    reviews = test_reviews(args.data_dir / "aclImdb_v1.tar.gz", args.reviews)
    commands = {"": ["--run", str(args.run.resolve())]}
    if args.onnx:
        commands["onnx "] = ["--onnx", str(args.onnx.resolve())]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "reviews.csv"
        with csv_path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["review"], *([r] for r in reviews)])
        inputs = [("text", 1, [reviews[0]]), ("csv", len(reviews), ["--file", str(csv_path)])]
        for (prefix, source), (name, n, extra) in ([] if args.engines_only else
                                                   [(c, i) for c in commands.items() for i in inputs]):
            cmd = [args.python, "-m", "imdb_rnn", "predict", *source, "--json", *extra]
            runs = [measure(cmd, repo, env, n) for _ in range(args.repeats)]
            walls = [w for w, _ in runs]
            rows.append({"version": args.label, "input": prefix + name, "reviews": n, "wall_s_min": min(walls),
                         "wall_s_median": statistics.median(walls), "wall_s_max": max(walls),
                         "peak_rss_mb": max(r for _, r in runs), "wall_s": walls, "cwd": str(repo),
                         "command": shlex.join(cmd)})
    if rows:
        print_table(rows, COLUMNS)
    engines = []
    if args.onnx:
        engines = compare_engines(args.run, args.onnx, reviews, args.threads, args.repeats, args.latency_reviews)
        print()
        print_table([{**r, "max_abs_prob_diff": f"{r['max_abs_prob_diff']:.1e}"} for r in engines], ENGINE_COLUMNS)

    old = json.loads(args.json.read_text()) if args.json.exists() else {}
    kept = [r for r in old.get("rows", []) if r.get("version") != args.label or args.engines_only]
    info = {"bench_command": shlex.join([sys.executable, *sys.argv]), "machine": machine(args.python)}
    versions = {**old.get("versions", {}), args.label: info}
    by_label = {**old.get("engines", {}), **({args.label: engines} if engines else {})}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": kept + rows, "versions": versions, "engines": by_label}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
