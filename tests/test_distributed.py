"""torchrun on CPU (gloo): the same train command on 2 processes, rank 0 alone writes, the
checkpoint evaluates in one process, resume works across process counts, two nodes joined by c10d
rendezvous train as one process would, and an elastic job survives a killed worker."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import ROOT, assert_same_run, cli, start_and_signal

pytestmark = pytest.mark.slow

NO_DROPOUT = ["model.embedding_dropout=0.0", "train.epochs=3"]


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "imdb_rnn", "train", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # each of the 2 processes takes cores / 2 threads (train.threads)


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
                                                     "pipeline.json", "tensorboard", "training_curves.png", "vocab.json"]
    assert len(list((run / "tensorboard").iterdir())) == 1  # rank 0's event file alone
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(*torchrun_args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args, "-m", "imdb_rnn", "train"]


def test_two_nodes_joined_by_c10d_train_as_one_process(tiny_run, tmp_path):
    """Two torchrun agents on 127.0.0.1, one process each, meet through c10d rendezvous."""
    data, config = tiny_run
    run = tmp_path / "two-nodes"
    rdzv = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
            f"127.0.0.1:{free_port()}", "--rdzv-id", "two-nodes"]
    # One thread each: the two agents share this machine's cores but each sees one local process.
    args = ["--config", str(config), "--data-dir", str(data), "--run-dir", str(run), *NO_DROPOUT, "train.threads=1"]
    logs = [tmp_path / f"agent{i}.log" for i in range(2)]
    agents = []
    for log in logs:
        with open(log, "w") as out:  # files, not pipes: an agent never blocks on a full pipe
            agents.append(subprocess.Popen(launcher(*rdzv) + args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                           text=True))
    codes = [a.wait(timeout=600) for a in agents]
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs
    # One job of 2 processes; rank 0 alone logs and writes, whichever agent runs it.
    assert sorted(out.count("2 processes") for out in outputs) == [0, 1], outputs
    assert sorted(out.count("epoch 3:") for out in outputs) == [0, 1], outputs
    assert sorted(out.count("run saved in") for out in outputs) == [0, 1], outputs

    single = tmp_path / "single"
    cli("train", "--config", config, "--data-dir", data, "--run-dir", single, "-q", *NO_DROPOUT)
    a, b = pd.read_csv(run / "metrics.csv"), pd.read_csv(single / "metrics.csv")
    pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], rtol=1e-4)


def worker_pids(agent_pid: int) -> dict[int, int]:
    """{rank: pid} of a torchrun agent's worker processes (Linux /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != agent_pid:  # the parent's pid
                continue
            env = dict(item.split("=", 1) for item in (stat.parent / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            out[int(env["RANK"])] = int(stat.parent.name)
    return out


def test_an_elastic_job_survives_a_killed_worker(tiny_run, tmp_path):
    """torchrun --max-restarts 1 with --auto-resume: SIGKILL rank 1 during epoch 2; torchrun restarts
    the workers, they continue from model-last.pt, and the run equals one never interrupted."""
    data, config = tiny_run
    # 20 epochs of 0.1 s: the kill lands well before the end, whatever the machine's pace.
    args = ["--config", str(config), "--data-dir", str(data), "--auto-resume", "train.epochs=20"]
    elastic = ["--standalone", "--nproc_per_node", "2", "--max-restarts", "1"]
    faulted = tmp_path / "faulted"
    log = tmp_path / "faulted.log"
    with open(log, "w") as out:  # a file, not a pipe: the agent never blocks on a full pipe
        agent = subprocess.Popen(launcher(*elastic) + args + ["--run-dir", str(faulted)], cwd=ROOT, stdout=out,
                                 stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (faulted / "model-last.pt").exists() and agent.poll() is None:
        time.sleep(0.005)
    workers = worker_pids(agent.pid)
    assert 1 in workers, (workers, agent.poll(), log.read_text())
    os.kill(workers[1], signal.SIGKILL)
    assert agent.wait(timeout=600) == 0, log.read_text()
    output = log.read_text()
    assert "resuming" in output and len(pd.read_csv(faulted / "metrics.csv")) == 20, output

    whole = tmp_path / "whole"
    proc = subprocess.run(launcher(*elastic) + args + ["--run-dir", str(whole)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming" not in proc.stdout  # --auto-resume starts a run that is not there
    assert_same_run(faulted, whole)
