"""CPU threads: each process's share of the node's cores.

torch's intra-op pool takes every core by default; several processes doing so on one node
oversubscribe it, and their OpenMP threads spin against each other: two trainings side by side on
this 2-core machine ran about 13x slower each. Given one thread each, they kept 90-97 % of their
speed alone (bench/throughput.py). So while it trains or scores, every imdb-rnn process that sets
its threads by default (train.threads: null) registers in a directory of lock files, one per
process, and takes `cores // processes registered`; it counts again every few seconds, so jobs that
start or end later change the others' share. The lock (fcntl.flock) goes with its process,
however that ends, so a killed job's file is recognised as stale and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import torch

JOBS_DIR_ENV = "IMDB_RNN_JOBS_DIR"  # where the lock files live; default: <tmp>/imdb-rnn-jobs-<uid>
RECOUNT_SECONDS = 5.0  # how often a registered process counts the others again


def jobs_dir() -> Path:
    return Path(os.environ.get(JOBS_DIR_ENV) or Path(tempfile.gettempdir()) / f"imdb-rnn-jobs-{os.getuid()}")


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _local_world_size() -> int:
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


class Registration:
    """This process's lock file in `directory`, held until `close()`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # Locked under a temporary name, then renamed: another process never sees it unlocked
        # (and so never takes it for a dead job's and removes it).
        fd, tmp = tempfile.mkstemp(prefix=".new-", dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = directory / f"{os.getpid()}-{Path(tmp).name[5:]}"
        os.rename(tmp, self.path)
        self.fd: Optional[int] = fd

    def processes(self) -> int:
        """Live registered processes, this one included; removes the files of dead ones."""
        live = 1
        for path in self.directory.iterdir():
            if path == self.path or path.name.startswith(".new-"):
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:  # removed meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                live += 1  # its process holds the lock
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
            finally:
                os.close(fd)
        return live

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


class _Share:
    registration: Optional[Registration] = None
    threads = 0
    counted_at = 0.0


_share = _Share()


def default_threads(registered: int = 1) -> int:
    """The cores this process may use (its CPU affinity) over the processes on this node: those
    torchrun starts (LOCAL_WORLD_SIZE, 1 without torchrun) or, when more, the `registered`
    imdb-rnn processes; at least 1."""
    return max(1, _cores() // max(_local_world_size(), registered))


def _count() -> int:
    try:
        return _share.registration.processes() if _share.registration else 1
    except OSError:
        return 1


@contextlib.contextmanager
def cpu_share(threads: Optional[int], device: torch.device) -> Iterator[Optional[int]]:
    """Set this process's intra-op CPU threads for the work inside; yields the number set, or None
    on a GPU, where the CPU threads do little and are left alone.

    `threads` given: exactly that many. None: this process registers among the imdb-rnn processes
    on the node, takes `default_threads(processes)`, and `recount()` adjusts it while it works. Where
    the lock directory cannot be written, the share counts torchrun's processes alone.
    """
    if device.type != "cpu" and threads is None:
        yield None
        return
    if threads is not None or _share.registration is not None:  # explicit, or already registered (nested)
        if threads is not None:
            torch.set_num_threads(threads)
        yield threads or _share.threads
        return
    try:
        _share.registration = Registration(jobs_dir())
    except OSError:
        _share.registration = None
    try:
        _share.threads = default_threads(_count())
        _share.counted_at = 0.0  # count again at the first recount(): jobs started together see each other
        torch.set_num_threads(_share.threads)
        yield _share.threads
    finally:
        if _share.registration is not None:
            _share.registration.close()
        _share.registration, _share.threads = None, 0


def recount() -> Optional[int]:
    """Inside a default `cpu_share`, at most every RECOUNT_SECONDS: count the processes again and
    set this one's share; returns the new thread count when it changed, else None. Cheap to call
    every batch."""
    if _share.registration is None or time.monotonic() - _share.counted_at < RECOUNT_SECONDS:
        return None
    _share.counted_at = time.monotonic()
    n = default_threads(_count())
    if n == _share.threads:
        return None
    _share.threads = n
    torch.set_num_threads(n)
    return n
