"""torchrun --nproc_per_node 2 on CPU (gloo): the same train command, rank 0 alone writes, the
checkpoint evaluates in one process, and resume works across process counts."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from helpers import ROOT, cli, start_and_signal

pytestmark = pytest.mark.slow

NO_DROPOUT = ["model.embedding_dropout=0.0", "train.epochs=3"]


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "imdb_rnn", "train", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture
def two_process_run(tiny_run, tmp_path):
    data, config = tiny_run
    run = tmp_path / "ddp"
    proc = torchrun("--config", config, "--data-dir", data, "--run-dir", run, *NO_DROPOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return data, config, run, proc


def test_two_processes_train_and_rank0_alone_writes(two_process_run, tmp_path):
    data, config, run, proc = two_process_run
    assert "2 processes" in proc.stdout
    for epoch in (1, 2, 3):  # one log line per epoch: the other rank stays silent
        assert proc.stdout.count(f"epoch {epoch}:") == 1, proc.stdout
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.csv", "model-best.pt", "model-last.pt",
                                                     "pipeline.json", "training_curves.png", "vocab.json"]
    assert len(pd.read_csv(run / "metrics.csv")) == 3

    # The checkpoint is the bare model's: a single process evaluates it unchanged.
    ckpt = torch.load(run / "model-last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    metrics = json.loads(cli("eval", "--run", run, "--data-dir", data, "--json", "-q").stdout)
    assert 0.0 <= metrics["accuracy"] <= 1.0

    # batch_size is global, so one process takes the same steps (up to float summation order).
    single = tmp_path / "single"
    cli("train", "--config", config, "--data-dir", data, "--run-dir", single, "-q", *NO_DROPOUT)
    a, b = pd.read_csv(run / "metrics.csv"), pd.read_csv(single / "metrics.csv")
    pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], rtol=1e-4)
    pd.testing.assert_series_equal(a["val_acc"], b["val_acc"], atol=0.02)


def test_resume_under_torchrun(tiny_run, tmp_path):
    data, config = tiny_run
    run = tmp_path / "r"
    start_and_signal(config, data, run, signal.SIGKILL)
    done = torch.load(run / "model-last.pt", weights_only=True)["epoch"]
    proc = torchrun("--config", config, "--data-dir", data, "--run-dir", run, "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resuming {run} after epoch {done}" in proc.stdout
    assert len(pd.read_csv(run / "metrics.csv")) == 8
