"""Wall time and peak RSS of `imdb-rnn predict` for one review and for 1,000 reviews (test split).

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/predict.py --run runs/best --label after
    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/predict.py --run ../old/runs/best1 --data-dir data --repo ../old --label before

Each command runs alone in a fresh process, `--repeats` times: wall seconds (Popen to exit) as
min/median/max, and the largest peak RSS of that child (os.wait4). The reviews are drawn with
random.Random(0) from the sorted test members of the archive, so every version gets the same ones.
Rows accumulate in the JSON by label, so before and after can sit in one file.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="trained run directory")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data", help="holds aclImdb_v1.tar.gz")
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout whose `python -m imdb_rnn` to run")
    ap.add_argument("--label", default="current", help="name of this code version, e.g. before/after")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "predict.json")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()

    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    reviews = test_reviews(args.data_dir / "aclImdb_v1.tar.gz", 1000)
    base = [args.python, "-m", "imdb_rnn", "predict", "--run", str(args.run.resolve()), "--json"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "reviews.csv"
        with csv_path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["review"], *([r] for r in reviews)])
        for name, n, extra in [("text", 1, [reviews[0]]), ("csv", 1000, ["--file", str(csv_path)])]:
            cmd = base + extra
            runs = [measure(cmd, repo, env, n) for _ in range(args.repeats)]
            walls = [w for w, _ in runs]
            rows.append({"version": args.label, "input": name, "reviews": n, "wall_s_min": min(walls),
                         "wall_s_median": statistics.median(walls), "wall_s_max": max(walls),
                         "peak_rss_mb": max(r for _, r in runs), "wall_s": walls, "cwd": str(repo),
                         "command": shlex.join(cmd)})
    print_table(rows, COLUMNS)

    old = json.loads(args.json.read_text()) if args.json.exists() else {}
    kept = [r for r in old.get("rows", []) if r.get("version") != args.label]
    info = {"bench_command": shlex.join([sys.executable, *sys.argv]), "machine": machine(args.python)}
    versions = {**old.get("versions", {}), args.label: info}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": kept + rows, "versions": versions}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
