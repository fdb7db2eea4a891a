"""Training mechanics: the length-bucketing sampler, the LR schedule, early stopping, automatic
resume and CPU threads."""

import re

import numpy as np
import pytest

from imdb_rnn.config import TrainConfig, load_config
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.data.batches import BatchSampler
from imdb_rnn.errors import UserError
from imdb_rnn.training.loop import epochs_without_gain
from imdb_rnn.training.schedule import lr_factor
from imdb_rnn.training.train import train


@pytest.fixture
def real_lengths(tiny_run):
    data, config = tiny_run
    cfg = load_config(config, ["preprocess.max_len=null"])
    from imdb_rnn.data.preprocess import preprocess

    preprocess(cfg, data, workers=1)
    return load_artifacts(cfg, data).split("train").lengths


def padded_cells(lengths, batches):
    return sum(len(b) * int(lengths[b].max()) for b in batches)


@pytest.mark.parametrize("bucket", [0, 4])
def test_sampler_covers_every_row_once_and_is_seeded(real_lengths, bucket):
    s = BatchSampler(real_lengths, 8, seed=3, bucket=bucket)
    s.set_epoch(1)
    first = s.global_batches()
    assert sorted(np.concatenate(first).tolist()) == list(range(len(real_lengths)))
    assert all(np.array_equal(a, b) for a, b in zip(first, s.global_batches()))  # same epoch, same batches
    s.set_epoch(2)
    assert not all(np.array_equal(a, b) for a, b in zip(first, s.global_batches()))


def test_bucketing_cuts_padding(real_lengths):
    plain, bucketed = BatchSampler(real_lengths, 8, 0, bucket=0), BatchSampler(real_lengths, 8, 0, bucket=20)
    ratio = padded_cells(real_lengths, plain.global_batches()) / padded_cells(real_lengths, bucketed.global_batches())
    assert ratio > 1.5, ratio


def test_ranks_split_each_global_batch():
    lengths = np.arange(1, 102)
    one = BatchSampler(lengths, 10, 0, bucket=2)
    ranks = [BatchSampler(lengths, 10, 0, bucket=2, rank=r, world_size=2) for r in (0, 1)]
    for s in (one, *ranks):
        s.set_epoch(5)
    # 101 rows: one global batch has 1 row, fewer than the ranks, and is dropped under DDP.
    kept = [b for b in one.global_batches() if len(b) > 1]
    assert len(one) == 11 and len(kept) == len(ranks[0]) == len(list(ranks[1])) == 10
    for batch, r0, r1 in zip(kept, *ranks):
        assert sorted(np.concatenate([r0, r1]).tolist()) == sorted(batch.tolist())


def test_lr_schedules():
    t = TrainConfig(lr_schedule="cosine", warmup_fraction=0.1)
    f = [lr_factor(t, s, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.01
    t = TrainConfig(lr_schedule="linear")
    assert lr_factor(t, 0, 10) == 1.0 and lr_factor(t, 5, 10) == pytest.approx(0.5)
    assert lr_factor(TrainConfig(), 7, 10) == 1.0


def test_epochs_without_gain():
    assert epochs_without_gain([]) == 0 and epochs_without_gain([None, None]) == 0
    assert epochs_without_gain([0.5, 0.6, 0.6, 0.55]) == 2
    assert epochs_without_gain([0.5, 0.6]) == 0


def test_early_stopping_stops_and_resume_does_not_continue(tiny_run, tmp_path):
    data, config = tiny_run
    # A learning rate this small leaves validation accuracy flat, so patience 1 stops after epoch 2.
    cfg = load_config(config, ["train.patience=1", "train.lr=1e-12", "train.lr_schedule=cosine"])
    result = train(cfg, data, tmp_path / "r", log=lambda *_: None)
    assert result.stopped_early and len(result.epochs) == 2
    assert result.epochs[0].lr > 0
    again = train(cfg, data, tmp_path / "r", resume=True, log=lambda *_: None)
    assert again.stopped_early and len(again.epochs) == 2


def test_auto_resume_starts_continues_and_refuses_another_config(tiny_run, tmp_path):
    data, config = tiny_run
    cfg = load_config(config, ["train.epochs=2"])
    run = tmp_path / "r"
    lines: list[str] = []
    first = train(cfg, data, run, resume="auto", log=lines.append)  # nothing there: a fresh run
    assert len(first.epochs) == 2 and not any("resuming" in line for line in lines)
    assert any(re.search(r", \d+ threads? \(", line) for line in lines)  # the CPU threads it chose are logged

    more = load_config(config, ["train.epochs=3"])
    with pytest.raises(UserError, match="another config"):  # model-last.pt of another config
        train(more, data, run, resume="auto", log=lambda *_: None)
    resumed: list[str] = []
    assert len(train(cfg, data, run, resume="auto", log=resumed.append).epochs) == 2  # nothing left to train
    assert any("resuming" in line for line in resumed)

    (run / "model-last.pt").unlink()  # a finished run without model-last.pt is not wiped
    with pytest.raises(UserError, match="without model-last.pt"):
        train(cfg, data, run, resume="auto", log=lambda *_: None)
    for name in ("model-best.pt", "metrics.csv", "training_curves.png"):  # now the inputs of a start alone
        (run / name).unlink()
    with pytest.raises(UserError, match="holds a run made with another config"):
        train(more, data, run, resume="auto", log=lambda *_: None)
    again: list[str] = []
    assert len(train(cfg, data, run, resume="auto", log=again.append).epochs) == 2  # started again
    assert not any("resuming" in line for line in again)


def test_threads_follow_the_config_and_the_local_processes(monkeypatch, tmp_path):
    import os

    import torch

    from imdb_rnn.training.threads import JOBS_DIR_ENV, cpu_share, default_threads

    monkeypatch.setenv(JOBS_DIR_ENV, str(tmp_path))
    before = torch.get_num_threads()
    try:
        with cpu_share(1, torch.device("cpu")) as n:
            assert n == 1 and torch.get_num_threads() == 1 and not list(tmp_path.iterdir())  # explicit: no share
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(len(os.sched_getaffinity(0)) * 2))
        assert default_threads() == 1  # never fewer than one
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        assert default_threads() == len(os.sched_getaffinity(0))
        assert default_threads(registered=2) == max(1, len(os.sched_getaffinity(0)) // 2)
    finally:
        torch.set_num_threads(before)


SHARE_HOLDER = """
import sys, torch
from imdb_rnn.training.threads import cpu_share
with cpu_share(None, torch.device("cpu")) as n:
    print(n, flush=True)
    sys.stdin.read()  # hold the share until killed
"""


def test_default_threads_share_the_cores_among_imdb_rnn_processes(monkeypatch, tmp_path):
    """A second real process registering halves the share at the next count; killed (SIGKILL, no
    clean-up), its stale lock file is removed and the share comes back."""
    import os
    import subprocess
    import sys

    import torch

    from imdb_rnn.training import threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv(threads.JOBS_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setattr(threads, "RECOUNT_SECONDS", 0.0)
    before = torch.get_num_threads()
    try:
        with threads.cpu_share(None, torch.device("cpu")) as n:
            assert n == cores and torch.get_num_threads() == cores and len(list(tmp_path.iterdir())) == 1
            other = subprocess.Popen([sys.executable, "-c", SHARE_HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
            try:
                assert int(other.stdout.readline()) == max(1, cores // 2)  # it counted this process too
                assert threads._share.registration.processes() == 2
                threads.recount()
                assert torch.get_num_threads() == max(1, cores // 2)
            finally:
                other.kill()
                other.wait()
            assert len(list(tmp_path.iterdir())) == 2  # its file stays: SIGKILL ran no clean-up
            threads.recount()
            assert torch.get_num_threads() == cores and threads._share.registration.processes() == 1
            assert len(list(tmp_path.iterdir())) == 1
        assert not list(tmp_path.iterdir())  # this process's own file goes when its work ends
    finally:
        torch.set_num_threads(before)