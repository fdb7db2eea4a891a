"""The preprocess stage: reviews -> filtered tokens -> vocabulary -> padded id arrays, cached on disk.

Artifacts in the output directory (written to a temporary directory, then swapped in whole):
  processed.csv   id, split, label, review (original), processed (the kept tokens, space-joined)
  vocab.json      the id -> token list (0 = <PAD>, 1 = <UNK>)
  arrays.npz      {split}_ids (padded int32), {split}_lengths, {split}_labels, {split}_review_ids
  manifest.json   source and its checksum, config, counts, summary, library versions, cache key
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from imdb_rnn import __version__
from imdb_rnn.atomic import ensure_dir
from imdb_rnn.config import Config, PreprocessConfig
from imdb_rnn.arrays import SplitArrays
from imdb_rnn.download import require_nltk_resources
from imdb_rnn.errors import UserError
from imdb_rnn.progress import progress_bar
from imdb_rnn.sources import Review, detect_format, iter_official, official_order, read_reviews, source_fingerprint
from imdb_rnn.vocab import Vocab, build_vocab

# Bump when the artifacts' meaning changes, so old caches rebuild.
PIPELINE_VERSION = 2
SPLITS = ("train", "test")
CHUNK = 64

# Set once per worker process by _init_worker; each process owns its tokenizer and tagger.
_worker_processor = None


def resolve_source(cfg: Config, data_dir: Path) -> Path:
    path = Path(cfg.data.source).expanduser()
    return path if path.is_absolute() else Path(data_dir) / path


def processed_dir(cfg: Config, data_dir: Path) -> Path:
    return Path(data_dir) / "processed" / cfg.name


def cache_key(cfg: Config, source_sha: str) -> str:
    import nltk

    blob = json.dumps(
        {
            "source_sha256": source_sha,
            "data": asdict(cfg.data) | {"source": None},
            "preprocess": asdict(cfg.preprocess),
            "pipeline": PIPELINE_VERSION,
            "nltk": nltk.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_signature(cfg: Config) -> dict[str, Any]:
    """What train/eval compare against a manifest to refuse artifacts made with another config."""
    return {"data": asdict(cfg.data) | {"source": None}, "preprocess": asdict(cfg.preprocess)}


def _init_worker(pcfg: PreprocessConfig) -> None:
    global _worker_processor
    from imdb_rnn.text import ReviewProcessor

    _worker_processor = ReviewProcessor(pcfg)


def _process_chunk(texts: list[str]) -> list[list[str]]:
    return [_worker_processor(t) for t in texts]


def _chunks(reviews: Iterable[Review]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for r in reviews:
        chunk.append(r.text)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tokenize_reviews(reviews: Iterable[Review], pcfg: PreprocessConfig, workers: int, show_progress: bool,
                     total: Optional[int] = None) -> list[list[str]]:
    """Filtered tokens per review, in input order, whatever the number of workers.

    `reviews` may be a stream: the pool works on early chunks while later ones are still read.
    """
    out: list[list[str]] = []
    total = len(reviews) if total is None and hasattr(reviews, "__len__") else total
    with progress_bar(total=total, desc="preprocess", unit="review", enabled=show_progress) as bar:
        if workers <= 1:
            from imdb_rnn.text import ReviewProcessor

            proc = ReviewProcessor(pcfg)
            for chunk in _chunks(reviews):
                out.extend(proc(t) for t in chunk)
                bar.update(len(chunk))
        else:
            # spawn, not fork: the parent may hold torch/OpenMP threads that a fork would copy.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(pcfg,)) as pool:
                for tokens in pool.imap(_process_chunk, _chunks(reviews)):
                    out.extend(tokens)
                    bar.update(len(tokens))
    return out


def encode(tokens: list[list[str]], vocab: Vocab, pcfg: PreprocessConfig, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded id matrix (n, width) and true lengths, per the truncation and padding side."""
    ids = np.full((len(tokens), width), vocab.pad_id, dtype=np.int32)
    lengths = np.zeros(len(tokens), dtype=np.int64)
    for row, toks in enumerate(tokens):
        seq = vocab.encode(toks)
        if len(seq) > width:
            seq = seq[:width] if pcfg.truncate == "end" else seq[len(seq) - width :]
        n = len(seq)
        lengths[row] = n
        if n:
            if pcfg.pad_side == "right":
                ids[row, :n] = seq
            else:
                ids[row, width - n :] = seq
    return ids, lengths


def _percentiles(lengths: np.ndarray) -> dict[str, int]:
    if len(lengths) == 0:
        return {}
    q = np.percentile(lengths, [50, 90, 99]).round().astype(int)
    return {"p50": int(q[0]), "p90": int(q[1]), "p99": int(q[2]), "max": int(lengths.max())}


@dataclass
class PreprocessResult:
    out_dir: Path
    cached: bool
    manifest: dict[str, Any]


def _cached_manifest(out_dir: Path, key: str) -> Optional[dict[str, Any]]:
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    files_ok = all((out_dir / f).is_file() for f in ("processed.csv", "vocab.json", "arrays.npz"))
    return manifest if files_ok and manifest.get("cache_key") == key else None


def _write_artifacts(
    tmp: Path, reviews: list[Review], tokens: list[list[str]], vocab: Vocab, arrays: dict[str, np.ndarray], manifest: dict
) -> None:
    import pandas as pd

    pd.DataFrame(
        {
            "id": [r.id for r in reviews],
            "split": [r.split for r in reviews],
            "label": [r.label for r in reviews],
            "review": [r.text for r in reviews],
            "processed": [" ".join(t) for t in tokens],
        }
    ).to_csv(tmp / "processed.csv", index=False)
    (tmp / "vocab.json").write_text(json.dumps(vocab.itos, ensure_ascii=False))
    np.savez(tmp / "arrays.npz", **arrays)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace out_dir by tmp; a reader sees the old complete set or the new one."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def preprocess(
    cfg: Config, data_dir: Path, out_dir: Optional[Path] = None, workers: Optional[int] = None, show_progress: bool = False
) -> PreprocessResult:
    """Run (or reuse) the preprocess stage for `cfg`; returns where the artifacts are."""
    pcfg = cfg.preprocess
    out_dir = Path(out_dir) if out_dir else processed_dir(cfg, data_dir)
    workers = workers or len(os.sched_getaffinity(0))
    source = resolve_source(cfg, data_dir)
    fmt = detect_format(source)
    source_sha = source_fingerprint(source)
    key = cache_key(cfg, source_sha)
    cached = _cached_manifest(out_dir, key)
    if cached is not None:
        return PreprocessResult(out_dir, True, cached)

    require_nltk_resources()
    start = time.perf_counter()
    if fmt == "csv" or cfg.data.limit:
        reviews = read_reviews(source, cfg.data.limit, cfg.data.test_size, cfg.data.split_seed)
        tokens = tokenize_reviews(reviews, pcfg, workers, show_progress)
    else:
        # Every review is used: tokenize while the archive is still being read, then order.
        seen: list[Review] = []
        stream = (seen.append(r) or r for r in iter_official(source, fmt))
        streamed = tokenize_reviews(stream, pcfg, workers, show_progress)
        order = official_order(seen, None, cfg.data.split_seed)
        reviews, tokens = [seen[i] for i in order], [streamed[i] for i in order]
    blank = [r.id for r in reviews if not r.text.strip()]
    if blank and pcfg.empty != "drop":
        raise UserError(f"{len(blank)} review(s) in {source} are empty or whitespace only (first: {blank[0]}); "
                        "remove them from the source or set preprocess.empty=drop")
    empty = sum(1 for t in tokens if not t)
    dropped = 0
    if pcfg.empty == "drop" and empty:
        kept = [i for i, t in enumerate(tokens) if t]
        dropped = len(tokens) - len(kept)
        reviews = [reviews[i] for i in kept]
        tokens = [tokens[i] for i in kept]
    by_split = {s: [i for i, r in enumerate(reviews) if r.split == s] for s in SPLITS}
    if not by_split["train"]:
        raise UserError("no training reviews are left after filtering; loosen the preprocess filters or raise data.limit")
    vocab = build_vocab((tokens[i] for i in by_split["train"]), pcfg.min_freq, pcfg.max_vocab)
    width = pcfg.max_len or max(1, max(len(t) for t in tokens))
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    for split, idx in by_split.items():
        ids, lengths = encode([tokens[i] for i in idx], vocab, pcfg, width)
        arrays[f"{split}_ids"] = ids
        arrays[f"{split}_lengths"] = lengths
        arrays[f"{split}_labels"] = np.array([reviews[i].label for i in idx], dtype=np.int64)
        arrays[f"{split}_review_ids"] = np.array([reviews[i].id for i in idx], dtype=str)
        n_tok = sum(len(tokens[i]) for i in idx)
        n_unk = sum(1 for i in idx for t in tokens[i] if t not in vocab.stoi)
        summary[split] = {
            "reviews": len(idx),
            "positive": int(arrays[f"{split}_labels"].sum()),
            "tokens": n_tok,
            "unknown_rate": round(n_unk / n_tok, 4) if n_tok else 0.0,
            "length": _percentiles(np.array([len(tokens[i]) for i in idx])),
        }
    manifest = {
        "cache_key": key,
        "tool_version": __version__,
        "source": {"path": str(source.resolve()), "format": fmt, "sha256": source_sha},
        "config": config_signature(cfg),
        "vocab_size": len(vocab),
        "vocab_sha256": vocab.sha256(),
        "width": width,
        "empty_after_filtering": empty,
        "empty_dropped": dropped,
        "splits": summary,
        "seconds": round(time.perf_counter() - start, 2),
        "workers": workers,
        "versions": _versions(),
    }
    ensure_dir(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _write_artifacts(tmp, reviews, tokens, vocab, arrays, manifest)
        _swap_in(tmp, out_dir)
    except OSError as e:
        raise UserError(f"cannot write preprocess artifacts to {out_dir}: {e.strerror}; check free space and permissions") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreprocessResult(out_dir, False, manifest)


def _versions() -> dict[str, str]:
    import nltk
    import pandas

    return {
        "python": platform.python_version(),
        "nltk": nltk.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "platform": sys.platform,
    }


@dataclass
class Processed:
    """Loaded preprocess artifacts."""

    out_dir: Path
    manifest: dict[str, Any]
    vocab: Vocab
    arrays: dict[str, np.ndarray]

    def split(self, name: str) -> SplitArrays:
        a = self.arrays
        return SplitArrays(a[f"{name}_ids"], a[f"{name}_lengths"], a[f"{name}_labels"], a.get(f"{name}_review_ids"))


def load_processed(out_dir: Path, cfg: Optional[Config] = None) -> Processed:
    """Load artifacts; with `cfg`, refuse ones made with a different data/preprocess config."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"no preprocess artifacts in {out_dir}; run 'imdb-rnn preprocess --config <same config>' first")
    try:
        manifest = json.loads(manifest_path.read_text())
        vocab = Vocab(json.loads((out_dir / "vocab.json").read_text(encoding="utf-8")))
        with np.load(out_dir / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"preprocess artifacts in {out_dir} are unreadable ({e}); run 'imdb-rnn preprocess' again") from e
    if cfg is not None:
        want = json.loads(json.dumps(config_signature(cfg)))
        have = manifest.get("config", {})
        if have != want:
            diff = _first_difference(have, want)
            raise UserError(
                f"preprocess artifacts in {out_dir} were made with a different config ({diff}); "
                "run 'imdb-rnn preprocess' with this config"
            )
    return Processed(out_dir, manifest, vocab, arrays)


def _first_difference(have: dict, want: dict, prefix: str = "") -> str:
    for key in sorted(set(have) | set(want)):
        a, b = have.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: artifacts have {a!r}, config has {b!r}"
    return ""
