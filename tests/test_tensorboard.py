"""TensorBoard events of a real training run, read back with TensorBoard's own EventAccumulator:
one point per epoch for each scalar, equal to metrics.csv's, the config as hparams; a resumed
run appends without logging an epoch twice; the switch off writes none."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard import SummaryWriter

from imdb_rnn.config import load_config
from imdb_rnn.errors import UserError
from imdb_rnn.training.train import train

# Tag -> metrics.csv column: the interface a TensorBoard user sees.
TAGS = {"loss/train": "train_loss", "loss/val": "val_loss", "accuracy/train": "train_acc",
        "accuracy/val": "val_acc", "lr": "lr", "tokens_per_s": "tokens_per_s", "grad_norm": "grad_norm"}


def events(run):
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return acc


def assert_events_match_metrics(run, epochs):
    acc = events(run)
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == list(range(1, epochs + 1))
    assert metrics["grad_norm"].notna().all() and (metrics["grad_norm"] > 0).all()
    for tag, column in TAGS.items():
        points = acc.Scalars(tag)
        assert [p.step for p in points] == list(range(1, epochs + 1)), tag  # one point per epoch
        np.testing.assert_array_equal(np.float32([p.value for p in points]), np.float32(metrics[column]), err_msg=tag)
    best = acc.Scalars("hparams/best_val_acc")
    assert [p.step for p in best] == list(range(1, epochs + 1))
    np.testing.assert_array_equal(np.float32([p.value for p in best]), np.float32(metrics["val_acc"].cummax()))
    return acc


def session_hparams(acc):
    content = acc.PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["hparams/best_val_acc"]
    return start.hparams


def test_a_new_run_beside_another_runs_events_logs_its_own_hparams(tiny_run, tmp_path):
    """A new run starts its own log (the config as hparams, nothing purged) even where another
    run's events are: a tensorboard/ that links elsewhere, which --overwrite leaves alone."""
    data, config = tiny_run
    elsewhere = tmp_path / "other-events"
    with SummaryWriter(str(elsewhere)) as other:
        other.add_scalar("loss/train", 1.0, 1)
    before = set(elsewhere.iterdir())
    run = tmp_path / "r"
    run.mkdir()
    (run / "tensorboard").symlink_to(elsewhere)
    train(load_config(config, ["train.epochs=1"]), data, run, log=lambda *_: None)
    [new] = set(elsewhere.iterdir()) - before
    acc = EventAccumulator(str(new))
    acc.Reload()
    assert session_hparams(acc)["model.cell"].string_value == "gru"


def test_events_hold_each_epoch_and_the_config(tiny_run, tmp_path):
    data, config = tiny_run
    cfg = load_config(config, ["train.epochs=2"])
    result = train(cfg, data, tmp_path / "r", log=lambda *_: None)
    run = result.run_dir
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    hp = session_hparams(assert_events_match_metrics(run, 2))
    assert hp["model.cell"].string_value == "gru" and hp["model.hidden_size"].number_value == 8
    assert hp["train.lr"].number_value == pytest.approx(cfg.train.lr)
    assert hp["preprocess.pos_prefixes"].string_value == "['NN']"
    assert "train.grad_clip" not in hp  # null: left out, as torch's hparams() leaves None out


def test_resumed_run_appends_one_point_per_epoch(tiny_run, tmp_path):
    """Ctrl-C as epoch 1 ends (a real SIGINT to this process), then --resume to epoch 2."""
    data, config = tiny_run
    cfg = load_config(config, ["train.epochs=2"])
    run = tmp_path / "r"

    def ctrl_c_after_epoch_1(line):
        if str(line).startswith("epoch 1:"):
            os.kill(os.getpid(), signal.SIGINT)

    first = train(cfg, data, run, log=ctrl_c_after_epoch_1)
    assert first.interrupted and len(first.epochs) == 1
    assert [p.step for p in events(run).Scalars("loss/train")] == [1]
    # A point past model-last.pt's epoch, as a session killed at the wrong moment could leave:
    # the resumed session's purge_step makes TensorBoard drop it.
    with SummaryWriter(str(run / "tensorboard")) as stale:
        stale.add_scalar("loss/train", 99.0, 2)
    time.sleep(1.1)  # event files are read in name order, and names start with the second they were made
    resumed = train(cfg, data, run, resume=True, log=lambda *_: None)
    assert len(resumed.epochs) == 2 and not resumed.interrupted
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 3
    session_hparams(assert_events_match_metrics(run, 2))  # the hparams once, from the first session


def test_switch_off_writes_no_events(tiny_run, tmp_path):
    data, config = tiny_run
    cfg = load_config(config, ["train.epochs=1", "train.tensorboard=false", "train.grad_clip=1e-9"])
    result = train(cfg, data, tmp_path / "r", log=lambda *_: None)
    assert not (result.run_dir / "tensorboard").exists()
    # metrics.csv has the norm anyway, measured before clipping: far above the clip.
    assert (pd.read_csv(result.run_dir / "metrics.csv")["grad_norm"] > 1e-6).all()


def test_missing_package_stops_before_anything_is_written(tiny_run, tmp_path, monkeypatch):
    data, config = tiny_run
    # None in sys.modules is how Python spells a module that cannot be imported.
    loaded = [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensorboard"))]
    for name in loaded:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(UserError, match=r"pip install tensorboard, or set train.tensorboard=false"):
        train(load_config(config), data, tmp_path / "r", log=lambda *_: None)
    assert not (tmp_path / "r").exists()


def test_unwritable_event_directory_stops_before_training(tiny_run, tmp_path):
    data, config = tiny_run
    run = tmp_path / "r"
    run.mkdir()
    (run / "tensorboard").write_text("a file where the event directory goes")
    with pytest.raises(UserError, match="cannot write TensorBoard events"):
        train(load_config(config), data, run, overwrite=True, log=lambda *_: None)
    assert not (run / "metrics.csv").exists() and not (run / "model-last.pt").exists()


# TensorBoard's writer thread fails first: its traceback must not be printed beside the warning.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_failed_write_warns_and_training_goes_on(tiny_run, tmp_path, capsys):
    """The event directory removed mid-run (TensorBoard's writer reopens its file by path)."""
    import shutil

    data, config = tiny_run
    run = tmp_path / "r"
    before = threading.excepthook

    def remove_events_after_epoch_1(line):
        if str(line).startswith("epoch 1:"):
            shutil.rmtree(run / "tensorboard")

    result = train(load_config(config, ["train.epochs=2"]), data, run, log=remove_events_after_epoch_1)
    assert len(result.epochs) == 2 and len(pd.read_csv(run / "metrics.csv")) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and "training goes on without them" in warnings[0], warnings
    assert threading.excepthook is before  # the writer thread's hook is gone with the writer
