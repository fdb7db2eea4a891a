"""Reading pretrained word vectors: gensim's KeyedVectors against imdb-rnn's streaming reader.

    .venv/bin/python bench/vectors.py --words 400000 --dim 100 --vocab 30000

Generates (once, in --dir) a GloVe-style text file and a word2vec binary file of WORDS random
vectors, the size of GloVe 6B 100d (400,000 words, about 0.35 GB), and a vocabulary of VOCAB
words, 80% of them in the file, at random places in it. Each reader runs in a fresh process (so
the peak resident memory is its own) and takes the vocabulary's rows: gensim through
`KeyedVectors.load_word2vec_format` (every row into memory, then the vocabulary's looked up),
imdb-rnn through `imdb_rnn.model.vectors.read_vectors` (one pass, only the vocabulary's rows
parsed and kept, sha256 included). Checks that both give the same rows, prints a table (seconds,
peak RSS, RSS above the process after its imports) and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _memory_mib(field: str) -> float:
    """VmHWM (peak resident memory) or VmRSS (now) of this process, from /proc: unlike
    getrusage's ru_maxrss, the peak starts afresh at exec, not at the parent's size at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def child(method: str, path: Path, vocab_path: Path, out: Path) -> None:
    """Read `path` with `method`, keep the vocabulary's rows; print seconds and memory as JSON."""
    import numpy as np

    words = json.loads(vocab_path.read_text())
    if method == "gensim":
        from gensim.models import KeyedVectors

        base = _memory_mib("VmRSS")
        start = time.perf_counter()
        binary = path.suffix == ".bin"
        kv = KeyedVectors.load_word2vec_format(str(path), binary=binary, no_header=not binary)
        rows = np.zeros((len(words), kv.vector_size), dtype=np.float32)
        found = np.array([w in kv.key_to_index for w in words])
        for i in np.flatnonzero(found):
            rows[i] = kv[words[i]]
    else:
        from imdb_rnn.model.vectors import read_vectors

        base = _memory_mib("VmRSS")
        start = time.perf_counter()
        r = read_vectors(path, words)
        rows, found = r.vectors, r.found
    seconds = time.perf_counter() - start
    np.save(out, rows)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": _memory_mib("VmHWM"), "base_rss_mib": base,
                      "found": int(found.sum())}))


def generate(directory: Path, n: int, dim: int, vocab: int) -> tuple[Path, Path, Path]:
    """GloVe text, word2vec binary and vocabulary files (made once per size)."""
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    text, binary = directory / f"glove-{n}x{dim}.txt", directory / f"word2vec-{n}x{dim}.bin"
    vocab_path = directory / f"vocab-{n}x{dim}-{vocab}.json"
    rng = np.random.default_rng(0)
    words = [f"w{i:07d}" for i in range(n)]
    if not (text.is_file() and binary.is_file()):
        with open(text.with_suffix(".tmp"), "w") as ft, open(binary.with_suffix(".tmp"), "wb") as fb:
            fb.write(f"{n} {dim}\n".encode())
            for start in range(0, n, 10_000):
                block = rng.normal(0, 0.4, (min(10_000, n - start), dim)).round(5).astype(np.float32)
                ft.writelines(f"{words[start + i]} {' '.join(f'{v:.5f}' for v in row)}\n" for i, row in enumerate(block))
                fb.writelines(words[start + i].encode() + b" " + row.astype("<f4").tobytes() + b"\n"
                              for i, row in enumerate(block))
        text.with_suffix(".tmp").rename(text)
        binary.with_suffix(".tmp").rename(binary)
    if not vocab_path.is_file():
        present = rng.choice(n, int(vocab * 0.8), replace=False)
        chosen = [words[i] for i in present] + [f"absent{i}" for i in range(vocab - len(present))]
        rng.shuffle(chosen)
        vocab_path.write_text(json.dumps(chosen))
    return text, binary, vocab_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=400_000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--vocab", type=int, default=30_000, help="vocabulary size (80%% of it in the file)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/imdb-rnn-bench-vectors"), help="where the files are made")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "vectors.json")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, path, vocab_path, out = args.child
        return child(method, Path(path), Path(vocab_path), Path(out))

    import numpy as np

    from common import print_table, write_json

    files = generate(args.dir, args.words, args.dim, args.vocab)
    vocab_path = files[2]
    rows, outputs = [], {}
    for path in files[:2]:
        for method in ("gensim", "imdb-rnn"):
            out = args.dir / f"rows-{method}-{path.suffix[1:]}.npy"
            proc = subprocess.run([sys.executable, __file__, "--child", method, str(path), str(vocab_path), str(out)],
                                  capture_output=True, text=True, check=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            outputs[(method, path.suffix)] = np.load(out)
            rows.append({"file": f"{path.name} ({path.stat().st_size / 2**20:,.0f} MiB)", "reader": method,
                         "seconds": round(m["seconds"], 2), "peak_rss_mib": round(m["peak_rss_mib"]),
                         "above_imports_mib": round(m["peak_rss_mib"] - m["base_rss_mib"]),
                         "rows_found": m["found"]})
    for suffix in (".txt", ".bin"):
        if not np.array_equal(outputs[("gensim", suffix)], outputs[("imdb-rnn", suffix)]):
            sys.exit(f"the readers' rows differ on the {suffix} file")
    print(f"{args.words:,} words x {args.dim} dims; vocabulary {args.vocab:,} words; identical rows from both readers")
    print_table(rows, ["file", "reader", "seconds", "peak_rss_mib", "above_imports_mib", "rows_found"])
    write_json(args.json, {"words": args.words, "dim": args.dim, "vocab": args.vocab, "rows": rows,
                           "identical": True})


if __name__ == "__main__":
    main()
