"""train.ema_decay: a moving average of the weights is what training validates and saves, it
follows the recursion step by step, and a run with one resumes exactly."""

from __future__ import annotations

import signal

import pandas as pd
import pytest
import torch
import yaml

from helpers import assert_same_run, cli, start_and_signal
from imdb_rnn.config import load_config
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.data.batches import make_batch
from imdb_rnn.errors import UserError
from imdb_rnn.evaluate import evaluate, format_table
from imdb_rnn.run import RunDir
from imdb_rnn.scoring import score
from imdb_rnn.training.distributed import Dist
from imdb_rnn.training.interrupt import StopRequest
from imdb_rnn.training.loop import batch_loss, optimizer_step
from imdb_rnn.training.setup import EMA_STEPS, TRAINED_WEIGHTS, build_setup
from imdb_rnn.training.train import train


def test_the_average_follows_the_recursion_after_every_step(tiny_run):
    data, config = tiny_run
    cfg = load_config(config, ["train.ema_decay=0.8", "model.ngram_buckets=300"])
    s = build_setup(cfg, load_artifacts(cfg, data), Dist(), torch.device("cpu"), StopRequest())
    expected = None
    for i, index in enumerate(s.sampler):
        if i == 4:
            break
        ids, lengths, labels = make_batch(s.train_data, index, True, s.pad_side, s.device)
        s.optimizer.zero_grad(set_to_none=True)
        objective, _, _ = batch_loss(s.net, ids, lengths, labels, s.separate_losses, s.train, s.model)
        optimizer_step(s, objective)
        trained = {k: v.detach().clone() for k, v in s.model.named_parameters()}
        # The first step copies the weights; each later one moves the average 1 - 0.8 of the way.
        expected = trained if expected is None else {k: 0.8 * expected[k] + 0.2 * trained[k] for k in trained}
    averaged = dict(s.ema.module.named_parameters())
    assert averaged.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(averaged[k], expected[k])
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained)  # four steps: not the trained weights
    assert s.evaluated is s.ema.module


def test_validation_and_checkpoints_use_the_average(tiny_run, tmp_path):
    data, config = tiny_run
    cfg = load_config(config, ["train.ema_decay=0.9", "train.epochs=2"])
    lines = []
    result = train(cfg, data, tmp_path / "r", log=lines.append)
    # The log says which weights it validates, and that 12 steps are too few for this decay.
    assert any("val (average) loss" in line for line in lines)
    assert any(line.startswith("warning: at the end, the weights after the first step still make") for line in lines)
    last = torch.load(result.run_dir / RunDir.LAST, weights_only=True)
    trained = last[TRAINED_WEIGHTS]
    assert last[EMA_STEPS] > 0
    assert any(not torch.equal(last["state_dict"][k], trained[k]) for k in trained)
    # The last epoch's validation loss is the saved (averaged) weights' loss, and eval reads them too.
    loaded = RunDir(result.run_dir).load("last")
    s = build_setup(cfg, load_artifacts(cfg, data), Dist(), torch.device("cpu"), StopRequest())
    val = score(loaded.model, s.val_data, 64, True, s.pad_side, torch.device("cpu"))
    assert pd.read_csv(result.run_dir / RunDir.METRICS)["val_loss"].iloc[-1] == pytest.approx(val.loss, abs=1e-6)
    evaluated = evaluate(result.run_dir, data, "val", which="last")
    assert evaluated["ema_decay"] == 0.9 and "the weights' moving average" in format_table(evaluated)
    assert evaluated["loss"] == pytest.approx(val.loss)


@pytest.mark.slow
def test_ctrl_c_then_resume_matches_uninterrupted_with_an_average(tiny_run, tmp_path):
    data, config = tiny_run
    raw = yaml.safe_load(config.read_text())
    raw["train"]["ema_decay"] = 0.9
    raw["name"] = load_config(config).name  # the same preprocess artifacts
    config = tmp_path / "ema.yaml"
    config.write_text(yaml.safe_dump(raw))
    whole = train(load_config(config), data, tmp_path / "whole", log=lambda *_: None)

    stopped = tmp_path / "stopped"
    proc = start_and_signal(config, data, stopped, signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    cli("train", "--config", config, "--data-dir", data, "--run-dir", stopped, "--resume", "-q")
    assert_same_run(whole.run_dir, stopped)
    a, b = (torch.load(r / RunDir.LAST, weights_only=True) for r in (whole.run_dir, stopped))
    assert a[EMA_STEPS] == b[EMA_STEPS]
    assert all(torch.equal(a[TRAINED_WEIGHTS][k], b[TRAINED_WEIGHTS][k]) for k in a[TRAINED_WEIGHTS])


def test_resume_refuses_a_checkpoint_without_the_trained_weights(tiny_run, tmp_path):
    data, config = tiny_run
    cfg = load_config(config, ["train.ema_decay=0.9", "train.epochs=1"])
    run = train(cfg, data, tmp_path / "r", log=lambda *_: None).run_dir
    last = torch.load(run / RunDir.LAST, weights_only=True)
    del last[TRAINED_WEIGHTS]
    torch.save(last, run / RunDir.LAST)
    with pytest.raises(UserError, match="lacks the trained weights beside their average"):
        train(cfg, data, run, resume=True, log=lambda *_: None)
