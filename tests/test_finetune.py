"""ULMFiT's fine-tuning options: discriminative learning rates (train.discriminative_lr) and
gradual unfreezing (train.gradual_unfreezing), in one process and under torchrun."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from helpers import ROOT, cli
from imdb_rnn.config import ModelConfig, load_config
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.model import RNNClassifier
from imdb_rnn.training.distributed import Dist
from imdb_rnn.training.interrupt import StopRequest
from imdb_rnn.training.loop import EpochEnd, train_while_improving
from imdb_rnn.training.setup import build_setup


def test_discriminative_lr_divides_each_group_below_the_head():
    cfg = ModelConfig(cell="gru", embedding_dim=6, hidden_size=5, num_layers=2, bidirectional=True, ngram_buckets=50)
    model = RNNClassifier(30, cfg)
    opt = model.configure_optimizer(1e-3, 0.02, discriminative_lr=2.6)
    # head, top recurrent layer, bottom recurrent layer, embedding; then the n-gram branch
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-3 / 2.6, 1e-3 / 2.6 ** 2, 1e-3 / 2.6 ** 3, 0.02])
    assert opt.param_groups[0]["params"] == list(model.fc.parameters())
    assert opt.param_groups[1]["params"] == list(model.encoder.layers[1].parameters())
    assert opt.param_groups[3]["params"] == [model.encoder.embedding.weight]
    held = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(held) == sorted(id(p) for p in model.parameters())  # each parameter once
    # Without it: the RNN branch in one group at lr, as before.
    plain = model.configure_optimizer(1e-3, 0.02)
    assert [g["lr"] for g in plain.param_groups] == [1e-3, 0.02]
    # A frozen embedding is in no group.
    frozen = RNNClassifier(30, cfg.model_copy(update={"freeze_embeddings": True}))
    opt = frozen.configure_optimizer(1e-3, 0.02, discriminative_lr=2.6)
    assert len(opt.param_groups) == 4
    assert all(p is not frozen.encoder.embedding.weight for g in opt.param_groups for p in g["params"])


def _snapshots(config, data, *overrides):
    """{epoch: {parameter name: tensor}} after each epoch of a training run in this process."""
    cfg = load_config(config, list(overrides))
    processed = load_artifacts(cfg, data)
    s = build_setup(cfg, processed, Dist(), torch.device("cpu"), StopRequest())
    out = {0: {k: v.clone() for k, v in s.model.state_dict().items()}}
    for end in train_while_improving(s, []):
        assert isinstance(end, EpochEnd)
        out[end.metrics.epoch] = {k: v.clone() for k, v in s.model.state_dict().items()}
    return out


def _moved(a: dict, b: dict, prefix: str) -> bool:
    names = [k for k in a if k.startswith(prefix)]
    assert names, prefix
    return any(not torch.equal(a[k], b[k]) for k in names)


def test_gradual_unfreezing_trains_one_more_group_each_epoch(tiny_run):
    data, config = tiny_run
    extra = ["train.epochs=3", "train.gradual_unfreezing=true", "train.discriminative_lr=2.6",
             "model.ngram_buckets=500", "train.ngram_loss=separate", "train.patience=null"]
    snap = _snapshots(config, data, *extra)
    # Epoch 1: the head and the n-gram branch; the encoder not at all.
    assert _moved(snap[0], snap[1], "fc.") and _moved(snap[0], snap[1], "ngram.")
    assert not _moved(snap[0], snap[1], "encoder.")
    # Epoch 2: the recurrent layer too, the embedding still not.
    assert _moved(snap[1], snap[2], "encoder.layers.")
    assert not _moved(snap[1], snap[2], "encoder.embedding.")
    # Epoch 3: everything.
    assert _moved(snap[2], snap[3], "encoder.embedding.")
    # model.freeze_embeddings wins over unfreezing.
    frozen = _snapshots(config, data, *extra, "model.freeze_embeddings=true")
    assert not _moved(frozen[0], frozen[3], "encoder.embedding.")
    assert _moved(frozen[2], frozen[3], "encoder.layers.")


@pytest.mark.slow
def test_gradual_unfreezing_under_torchrun_takes_the_steps_of_one_process(tiny_run, tmp_path):
    """DDP must find the frozen groups' missing gradients (find_unused_parameters)."""
    data, config = tiny_run
    # One thread in every process: by default the single process takes the cores the other imdb-rnn
    # jobs of the moment leave it, so its summation order, and the losses' last digits, would hang
    # on what else runs.
    extra = ["train.epochs=3", "train.gradual_unfreezing=true", "train.discriminative_lr=2.6",
             "model.embedding_dropout=0.0", "train.threads=1"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "imdb_rnn", "train", "--config", str(config), "--data-dir", str(data),
                           "--run-dir", str(tmp_path / "ddp"), "-q", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one = cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "one", *extra)
    # The log names the options, and that without a language model they slow untrained layers.
    assert "ULMFiT fine-tuning: discriminative_lr 2.6, gradual unfreezing (note: without model.init_from" in one.stdout
    a, b = pd.read_csv(tmp_path / "ddp" / "metrics.csv"), pd.read_csv(tmp_path / "one" / "metrics.csv")
    pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], rtol=1e-4)
