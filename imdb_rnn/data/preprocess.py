"""The preprocess stage: reviews -> filtered tokens -> vocabulary -> padded id arrays, cached on disk.

What it writes and where: see `imdb_rnn.data.artifacts`. Running it again with the same source
and config is a no-op.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from imdb_rnn import __version__
from imdb_rnn.config import Config, PreprocessConfig
from imdb_rnn.data.artifacts import (artifacts_dir, cache_key, cached_manifest, config_signature, resolve_source,
                                     resolve_test_source, write_artifacts)
from imdb_rnn.data.arrays import encode
from imdb_rnn.data.hygiene import check_classes, drop_cross_split, drop_failed
from imdb_rnn.data.nltk_data import needed_resources, require_nltk_resources
from imdb_rnn.data.sources import (ARCHIVE_FORMATS, Labelled, Review, archive_label_names, archive_where,
                                   check_keys_apply, check_test_source, detect_format, iter_official, official_order,
                                   read_labelled, source_fingerprint)
from imdb_rnn.data.vocab import Vocab, build_vocab
from imdb_rnn.errors import UserError
from imdb_rnn.progress import progress_bar

SPLITS = ("train", "test")
CHUNK = 64  # reviews per task sent to a worker process

# Set once per worker process by _init_worker; each process owns its tokenizer and tagger.
_worker_processor = None


def _init_worker(pcfg: PreprocessConfig) -> None:
    global _worker_processor
    from imdb_rnn.data.text import ReviewProcessor

    # Blocked since the worker's exec (`_sigint_held_back`): ignoring it discards a Ctrl-C that came
    # meanwhile, and unblocking it then lets none through.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _worker_processor = ReviewProcessor(pcfg)


@contextmanager
def _sigint_held_back() -> Iterator[None]:
    """A Ctrl-C held back while the calling thread starts worker processes, then delivered.

    A terminal's Ctrl-C reaches the whole process group: the parent alone handles it (one line, or
    pretrain's save and stop) and stops the pool; a worker would print a traceback of its own. So
    SIGINT is blocked meanwhile: the signal mask is inherited through fork and exec, and a spawned
    worker holds a Ctrl-C pending from its first instruction until its initializer ignores it, which
    discards it. This is how multiprocessing starts its resource tracker (bpo-33613); that start
    unblocks the signals after itself, so the tracker is started first. The pool's threads, started
    meanwhile, keep the block, and so do the workers they start later to replace one that died. In
    the parent, a Ctrl-C that another thread takes is only noted until the workers are started
    (raised in the middle of starting one, it would leave that worker without its instructions) and
    sent again once the handler is back. Where pthread_sigmask is missing (Windows), nothing is held
    back.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    held: list[int] = []
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum)) if main else None
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C runs the noting handler here
        if main:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
            if held:
                signal.raise_signal(signal.SIGINT)


def _process_chunk(texts: list[str]) -> list[tuple[Optional[list[str]], bytes]]:
    return [_worker_processor.process_with_key(t) for t in texts]


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
                     total: Optional[int] = None) -> list[Optional[list[str]]]:
    """Filtered tokens per review, in input order, whatever the number of worker processes; None
    for a review NLTK gave up on (see ReviewProcessor.try_process)."""
    return tokenize_with_keys(reviews, pcfg, workers, show_progress, total)[0]


def tokenize_with_keys(reviews: Iterable[Review], pcfg: PreprocessConfig, workers: int, show_progress: bool,
                       total: Optional[int] = None) -> tuple[list[Optional[list[str]]], list[bytes]]:
    """`tokenize_reviews`, and each review's duplicate key (ReviewProcessor.process_with_key).

    `reviews` may be a stream: the pool works on early chunks while later ones are still read.
    """
    out: list[tuple[Optional[list[str]], bytes]] = []
    total = len(reviews) if total is None and hasattr(reviews, "__len__") else total
    with progress_bar(total=total, desc="preprocess", unit="review", enabled=show_progress) as bar:
        if workers <= 1:
            from imdb_rnn.data.text import ReviewProcessor

            proc = ReviewProcessor(pcfg)
            for chunk in _chunks(reviews):
                out.extend(proc.process_with_key(t) for t in chunk)
                bar.update(len(chunk))
        else:
            # spawn, not fork: the parent may hold torch/OpenMP threads that a fork would copy.
            ctx = multiprocessing.get_context("spawn")
            with ExitStack() as stack:
                # The pool is entered before the block ends: a Ctrl-C held back meanwhile stops it.
                with _sigint_held_back():
                    pool = stack.enter_context(ctx.Pool(workers, initializer=_init_worker, initargs=(pcfg,)))
                for processed in pool.imap(_process_chunk, _chunks(reviews)):
                    out.extend(processed)
                    bar.update(len(processed))
    return [tokens for tokens, _ in out], [key for _, key in out]


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


def read_and_tokenize(cfg: Config, source: Path, fmt: str, workers: int, show_progress: bool,
                      test_source: Optional[Path] = None
                      ) -> tuple[Labelled, list[Optional[list[str]]], list[bytes]]:
    """The reviews to use, in their final order, with the label names (index = id), and each
    review's filtered tokens and duplicate key."""
    if fmt not in ARCHIVE_FORMATS or cfg.data.limit:
        data = read_labelled(cfg.data, source, test_source)
        return (data, *tokenize_with_keys(data.reviews, cfg.preprocess, workers, show_progress))
    # Every review is used: tokenize while the archive is still being read, then order.
    seen: list[Review] = []
    stream = (seen.append(r) or r for r in iter_official(source, fmt, cfg.data.target))
    tokens, keys = tokenize_with_keys(stream, cfg.preprocess, workers, show_progress)
    order = official_order(seen, None, cfg.data.split_seed)
    return (Labelled([seen[i] for i in order], archive_label_names(cfg.data.target), archive_where(source)),
            [tokens[i] for i in order], [keys[i] for i in order])


def drop_empty(reviews: list[Review], tokens: list[list[str]], pcfg: PreprocessConfig,
               where: Callable[[str], str]) -> tuple[list[Review], list[list[str]], int, int]:
    """(reviews, tokens, empty after filtering, dropped). Raises UserError on a blank source
    review unless preprocess.empty=drop; `where` names a review by its id (`Labelled.where`)."""
    blank = [r.id for r in reviews if not r.text.strip()]
    if blank and pcfg.empty != "drop":
        raise UserError(f"{len(blank)} review(s) are empty or whitespace only (first: {where(blank[0])}); "
                        "remove them from the source or set preprocess.empty=drop")
    empty = sum(1 for t in tokens if not t)
    if pcfg.empty != "drop" or not empty:
        return reviews, tokens, empty, 0
    kept = [i for i, t in enumerate(tokens) if t]
    return [reviews[i] for i in kept], [tokens[i] for i in kept], empty, len(tokens) - len(kept)


def build_arrays(reviews: list[Review], tokens: list[list[str]], pcfg: PreprocessConfig,
                 label_names: list[str]) -> tuple[Vocab, int, dict[str, np.ndarray], dict[str, Any]]:
    """(vocabulary from the training split, padded width, arrays per split, summary per split).

    Raises UserError when no training review is left or a split holds fewer than 2 labels."""
    by_split = {s: [i for i, r in enumerate(reviews) if r.split == s] for s in SPLITS}
    if not by_split["train"]:
        raise UserError("no training reviews are left after filtering; loosen the preprocess filters or raise data.limit")
    for split, idx in by_split.items():
        check_classes(split, [reviews[i].label for i in idx], label_names)
    vocab = build_vocab((tokens[i] for i in by_split["train"]), pcfg.min_freq, pcfg.max_vocab)
    width = pcfg.max_len or max(1, max(len(t) for t in tokens))
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    for split, idx in by_split.items():
        ids, lengths = encode([tokens[i] for i in idx], vocab, pcfg, width)
        labels = np.array([reviews[i].label for i in idx], dtype=np.int64)
        arrays |= {f"{split}_ids": ids, f"{split}_lengths": lengths, f"{split}_labels": labels,
                   f"{split}_review_ids": np.array([reviews[i].id for i in idx], dtype=str)}
        n_tok = sum(len(tokens[i]) for i in idx)
        n_unk = sum(1 for i in idx for t in tokens[i] if t not in vocab.stoi)
        summary[split] = {
            "reviews": len(idx),
            "classes": {name: int((labels == k).sum()) for k, name in enumerate(label_names)},
            "tokens": n_tok,
            "unknown_rate": round(n_unk / n_tok, 4) if n_tok else 0.0,
            "length": _percentiles(np.array([len(tokens[i]) for i in idx])),
        }
    return vocab, width, arrays, summary


def preprocess(cfg: Config, data_dir: Path, out_dir: Optional[Path] = None, workers: Optional[int] = None,
               show_progress: bool = False) -> PreprocessResult:
    """Run (or reuse) the preprocess stage for `cfg`; returns where the artifacts are.

    `out_dir` defaults to `artifacts_dir(cfg, data_dir)`, where train and eval look. Raises
    UserError for a missing or unreadable source, a data key it has no use for, bad labels (see
    `read_labelled`), missing NLTK data, blank reviews, a split of one label or a failed write.
    """
    out_dir = Path(out_dir) if out_dir else artifacts_dir(cfg, data_dir)
    workers = workers or len(os.sched_getaffinity(0))
    source = resolve_source(cfg, data_dir)
    test_source = resolve_test_source(cfg, data_dir)
    fmt = detect_format(source)
    check_keys_apply(cfg.data, fmt, source)
    if test_source is not None:
        check_test_source(test_source, source)  # before the cache: an earlier version accepted the source itself
    source_sha = source_fingerprint(source, fmt)
    test_sha = source_fingerprint(test_source, "table") if test_source is not None and test_source.is_file() else None
    if test_sha == source_sha:
        raise UserError(f"data.test_source {test_source} holds the same bytes as data.source {source}, so the test "
                        "reviews would be the training reviews; point it at a separate test table, or set it to null "
                        "to split data.source")
    key = cache_key(cfg, f"{source_sha}+{test_sha}" if test_sha else source_sha)
    cached = cached_manifest(out_dir, key)
    if cached is not None:
        return PreprocessResult(out_dir, True, cached)

    pcfg = cfg.preprocess
    require_nltk_resources(needed_resources(pcfg.remove_stopwords, pcfg.pos_prefixes is not None))
    start = time.perf_counter()
    labelled, tokens, keys = read_and_tokenize(cfg, source, fmt, workers, show_progress, test_source)
    reviews, label_names = labelled.reviews, labelled.label_names
    reviews, tokens, duplicates = drop_cross_split(reviews, tokens, keys, cfg.preprocess)
    reviews, tokens, failed = drop_failed(reviews, tokens, cfg.preprocess, labelled.where)
    reviews, tokens, empty, dropped = drop_empty(reviews, tokens, cfg.preprocess, labelled.where)
    vocab, width, arrays, summary = build_arrays(reviews, tokens, cfg.preprocess, label_names)
    manifest = {
        "cache_key": key,
        "tool_version": __version__,
        "source": {"path": cfg.data.source, "format": fmt, "sha256": source_sha,
                   **({"test_path": cfg.data.test_source, "test_sha256": test_sha} if test_sha else {})},
        "config": config_signature(cfg),
        "label_names": label_names,
        "vocab_size": len(vocab),
        "vocab_sha256": vocab.sha256(),
        "width": width,
        "empty_after_filtering": empty,
        "empty_dropped": dropped,
        "tokenize_failed_skipped": failed,
        "duplicates": duplicates,
        "splits": summary,
        "seconds": round(time.perf_counter() - start, 2),
        "workers": workers,
        "versions": _versions(),
    }
    write_artifacts(out_dir, reviews, tokens, vocab, arrays, manifest)
    return PreprocessResult(out_dir, False, manifest)


def _versions() -> dict[str, str]:
    from imdb_rnn.data.nltk_data import import_nltk

    nltk = import_nltk()
    import pandas

    return {
        "python": platform.python_version(),
        "nltk": nltk.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "platform": sys.platform,
    }
