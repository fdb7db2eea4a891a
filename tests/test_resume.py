"""kill -9 during training, then --resume: the same final metrics and weights as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import write_tarball
from helpers import ROOT, TINY, cli, write_config
from imdb_rnn.config import load_config
from imdb_rnn.preprocess import preprocess
from imdb_rnn.train import train

EPOCHS = 8


@pytest.fixture
def prepared(sample_reviews, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_tarball(sample_reviews[::2], data / "aclImdb_v1.tar.gz")
    config = write_config(tmp_path / "tiny.yaml", **{**TINY, "train": {**TINY["train"], "epochs": EPOCHS},
                                                    "model": {**TINY["model"], "embedding_dropout": 0.3}})
    preprocess(load_config(config), data, workers=1)
    return data, config


def test_kill_then_resume_matches_uninterrupted(prepared, tmp_path):
    data, config = prepared
    whole = train(load_config(config), data, tmp_path / "whole", log=lambda *_: None)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "imdb_rnn", "train", "--config", str(config), "--data-dir", str(data),
                             "--run-dir", str(killed), "-q"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "model-last.pt").exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = torch.load(killed / "model-last.pt", weights_only=True)["epoch"]
    assert done < EPOCHS, "the run finished before it was killed"

    cli("train", "--config", config, "--data-dir", data, "--run-dir", killed, "--resume", "-q")
    cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    a, b = pd.read_csv(whole.run_dir / "metrics.csv")[cols], pd.read_csv(killed / "metrics.csv")[cols]
    pd.testing.assert_frame_equal(a, b)
    wa = torch.load(whole.run_dir / "model-last.pt", weights_only=True)["state_dict"]
    wb = torch.load(killed / "model-last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_another_config(prepared, tmp_path):
    data, config = prepared
    cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "r", "-q", "train.epochs=1")
    out = cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "r", "--resume", "-q",
              "model.hidden_size=9", check=False)
    assert out.returncode == 2 and "trained with another config" in out.stderr
