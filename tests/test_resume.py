"""Interrupted runs: kill -9 or Ctrl-C, then --resume, end with the same metrics and weights as an
uninterrupted run."""

import signal

import pytest
import torch

from helpers import assert_same_run, cli, start_and_signal
from imdb_rnn.config import load_config
from imdb_rnn.training.train import train

pytestmark = pytest.mark.slow

def test_kill_then_resume_matches_uninterrupted(tiny_run, tmp_path):
    data, config = tiny_run
    whole = train(load_config(config), data, tmp_path / "whole", log=lambda *_: None)

    killed = tmp_path / "killed"
    start_and_signal(config, data, killed, signal.SIGKILL)
    done = torch.load(killed / "model-last.pt", weights_only=True)["epoch"]
    assert done < load_config(config).train.epochs, "the run finished before it was killed"

    cli("train", "--config", config, "--data-dir", data, "--run-dir", killed, "--resume", "-q")
    assert_same_run(whole.run_dir, killed)


def test_ctrl_c_saves_last_and_resume_matches(tiny_run, tmp_path):
    data, config = tiny_run
    whole = train(load_config(config), data, tmp_path / "whole", log=lambda *_: None)

    stopped = tmp_path / "stopped"
    proc = start_and_signal(config, data, stopped, signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "interrupted in epoch" in proc.stderr and "--resume" in proc.stderr
    ckpt = torch.load(stopped / "model-last.pt", weights_only=True)
    assert ckpt["position"] is not None  # saved where it stopped, inside an epoch
    assert not list(stopped.glob(".*.tmp"))

    cli("train", "--config", config, "--data-dir", data, "--run-dir", stopped, "--resume", "-q")
    assert_same_run(whole.run_dir, stopped)


def test_resume_refuses_another_config(tiny_run, tmp_path):
    data, config = tiny_run
    cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "r", "-q", "train.epochs=1")
    out = cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "r", "--resume", "-q",
              "model.hidden_size=9", check=False)
    assert out.returncode == 2 and "trained with another config" in out.stderr
