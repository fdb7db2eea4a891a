"""Shared fixtures: the real IMDB archive and NLTK data from ../shared, and small real subsets of it."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMDB_RNN_SHARED", ROOT.parent / "shared"))
# `make test` runs the suite in one pytest-xdist worker per core (`-n auto`): each worker, and every
# process it starts (affinity is inherited), gets a core of its own. Workers sharing the cores would
# oversubscribe them (torch takes every core it sees: about 13x slower, imdb_rnn/training/threads.py),
# and one core each keeps the thread count fixed in the runs that tests compare bit for bit.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... under xdist, else unset
if _WORKER:
    _cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_cores[int(_WORKER.removeprefix("gw")) % len(_cores)]})
os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))
# The default thread count shares the cores among the imdb-rnn processes on the machine
# (imdb_rnn/training/threads.py): counting only this session's (its subprocesses inherit the
# variable) keeps tests that compare two runs' weights bit for bit from seeing other jobs.
os.environ["IMDB_RNN_JOBS_DIR"] = tempfile.mkdtemp(prefix="imdb-rnn-test-jobs-")
atexit.register(shutil.rmtree, os.environ["IMDB_RNN_JOBS_DIR"], ignore_errors=True)

from helpers import TINY, write_config, write_tarball  # noqa: E402  (after NLTK_DATA is set)
from imdb_rnn.config import load_config  # noqa: E402
from imdb_rnn.data.preprocess import preprocess  # noqa: E402
from imdb_rnn.data.sources import Review, read_reviews  # noqa: E402


def _archive() -> Path:
    for candidate in (SHARED / "data" / "aclImdb_v1.tar.gz", ROOT / "data" / "aclImdb_v1.tar.gz"):
        if candidate.is_file():
            return candidate
    pytest.skip("the IMDB archive is not here: run 'make data' (or set IMDB_RNN_SHARED)")


@pytest.fixture(scope="session")
def archive() -> Path:
    return _archive()


@pytest.fixture(scope="session")
def all_reviews(archive) -> list[Review]:
    """Every labelled review of the real archive (read once per session)."""
    return read_reviews(archive)


@pytest.fixture(scope="session")
def sample_reviews(all_reviews) -> list[Review]:
    """A seeded sample of 400 real reviews: 100 per split and class."""
    rng = random.Random(1234)
    out = []
    for split in ("train", "test"):
        for label in (0, 1):
            group = [r for r in all_reviews if r.split == split and r.label == label]
            out.extend(rng.sample(group, 100))
    return out


@pytest.fixture(scope="session")
def small_tarball(sample_reviews, tmp_path_factory) -> Path:
    return write_tarball(sample_reviews, tmp_path_factory.mktemp("src") / "aclImdb_v1.tar.gz")


@pytest.fixture
def tiny_run(sample_reviews, tmp_path):
    """(data dir, config) of a small preprocessed subset with the TINY config, dropout on, and a
    warmup + cosine LR schedule (so resume must restore the scheduler's position too)."""
    data = tmp_path / "data"
    data.mkdir()
    write_tarball(sample_reviews[::2], data / "aclImdb_v1.tar.gz")
    config = write_config(tmp_path / "tiny.yaml", **{**TINY, "train": {**TINY["train"], "epochs": 8,
                                                                       "lr_schedule": "cosine", "warmup_fraction": 0.1},
                                                    "model": {**TINY["model"], "embedding_dropout": 0.3}})
    preprocess(load_config(config), data, workers=1)
    return data, config
