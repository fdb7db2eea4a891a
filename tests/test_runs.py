"""A run directory as a thing handed to someone: what is refused, and what still works, when
parts of it are missing or changed, or the data it came from moved."""

import shutil

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from helpers import TINY, write_config, write_tarball
from imdb_rnn.cli import app
from imdb_rnn.config import load_config
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.errors import UserError
from imdb_rnn.run import RunDir
from imdb_rnn.training.train import train


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *phrases):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(sample_reviews, tmp_path_factory):
    """(data dir, config, run dir): 2 epochs of TINY with every token kept (no tagger needed)
    and the source given as an absolute path."""
    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    data.mkdir()
    write_tarball(sample_reviews[::2], data / "aclImdb_v1.tar.gz")
    spec = {**TINY, "data": {"source": str(data / "aclImdb_v1.tar.gz")},
            "preprocess": {**TINY["preprocess"], "pos_prefixes": None}}
    config = write_config(root / "tiny.yaml", **spec)
    preprocess(load_config(config), data, workers=1)
    train(load_config(config), data, root / "run", log=lambda *_: None)
    return data, config, root / "run"


def copy_run(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_a_missing_best_checkpoint_is_not_replaced_by_the_last(trained, tmp_path):
    run = copy_run(trained[2], tmp_path)
    (run / "model-best.pt").unlink()
    one_line_error(run_cli("predict", "--run", run, "a fine film"), "model-best.pt is missing", "--which last")
    assert run_cli("predict", "--run", run, "--which", "last", "a fine film").exit_code == 0


def test_an_unfinished_run_is_refused(trained, tmp_path):
    run = copy_run(trained[2], tmp_path)
    ckpt = torch.load(run / "model-last.pt", weights_only=True)
    torch.save({**ckpt, "epoch": 0}, run / "model-last.pt")
    (run / "model-best.pt").unlink()
    one_line_error(run_cli("predict", "--run", run, "--which", "last", "a fine film"), "not finished an epoch", "--resume")


@pytest.mark.parametrize("damage", ["vocab_mapping", "no_state_dict", "no_directory"])
def test_damaged_runs_are_one_line(trained, tmp_path, damage):
    run = copy_run(trained[2], tmp_path)
    if damage == "vocab_mapping":
        (run / "vocab.json").write_text('{"a": 1}')
        phrase = "vocab.json is missing or unreadable"
    elif damage == "no_state_dict":
        ckpt = torch.load(run / "model-best.pt", weights_only=True)
        del ckpt["state_dict"]
        torch.save(ckpt, run / "model-best.pt")
        phrase = "lacks state_dict"
    else:
        shutil.rmtree(run)
        phrase = "does not exist"
    one_line_error(run_cli("predict", "--run", run, "a fine film"), phrase)


def test_report_of_a_run_without_finished_epochs(trained, tmp_path):
    run = copy_run(trained[2], tmp_path)
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc\n")
    one_line_error(run_cli("report", run), "not finished an epoch")
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc\n1,abc,0.5\n")
    one_line_error(run_cli("report", run), "malformed")
    # --run, as eval and predict take it, names the same run; none, or two, is a one-line error.
    one_line_error(run_cli("report", "--run", run), "malformed")
    one_line_error(run_cli("report"), "no run directory given")
    one_line_error(run_cli("report", run, "--run", tmp_path / "other"), "two run directories given")


def test_an_absolute_source_is_found_by_name_in_another_data_dir(trained, tmp_path, sample_reviews):
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    write_tarball(sample_reviews[::2], fresh / "aclImdb_v1.tar.gz")
    run = copy_run(trained[2], tmp_path)
    moved = trained[0].rename(trained[0].with_name("moved"))  # the absolute path in the run is gone
    try:
        result = run_cli("eval", "--run", run, "--data-dir", fresh, "--json", "-q")
    finally:
        moved.rename(trained[0])
    assert result.exit_code == 0, result.output
    assert '"reviews": 100' in result.stdout


def test_predict_needs_only_the_nltk_data_its_config_uses(trained, tmp_path, monkeypatch):
    import nltk

    from imdb_rnn.predict import predict_texts

    source = next(p for p in map(__import__("pathlib").Path, nltk.data.path) if (p / "tokenizers").is_dir())
    partial = tmp_path / "nltk"
    shutil.copytree(source / "tokenizers", partial / "tokenizers")
    shutil.copytree(source / "corpora", partial / "corpora")  # no taggers/
    monkeypatch.setattr(nltk.data, "path", [str(partial)])
    [result] = predict_texts(trained[2], ["a fine film"])
    assert result["label"] in ("positive", "negative")


def test_a_folder_with_run_files_is_not_cleared_without_overwrite(tmp_path):
    (tmp_path / "config.yaml").write_text("mine")
    (tmp_path / "eval-notes").mkdir()
    (tmp_path / "eval-notes" / "important.txt").write_text("mine")
    (tmp_path / "other.txt").write_text("mine")
    with pytest.raises(UserError, match="holds a run with nothing to resume .*pass --overwrite"):
        RunDir(tmp_path).prepare(overwrite=False)
    assert (tmp_path / "eval-notes" / "important.txt").exists()
    RunDir(tmp_path).prepare(overwrite=True)
    assert (tmp_path / "other.txt").read_text() == "mine"  # not a run's file: never removed


def test_overwrite_removes_the_old_runs_files_and_keeps_a_users_beside_them(tmp_path):
    ours = ["eval-test/metrics.json", "eval-test/predictions.csv", "eval-val/confusion_matrix.png",
            "tensorboard/events.out.tfevents.1700000000.host.1.0", "onnx/model.onnx", "onnx/export.json"]
    mine = ["eval-test/notes.txt", "tensorboard/mine.txt", "onnx/README.md", "onnx/model.onnx.bak",
            "eval-baseline/metrics.json"]  # a user's copy of an earlier eval: eval never writes eval-baseline/
    for name in ours + mine:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("old")
    RunDir(tmp_path).prepare(overwrite=True)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(mine)
    assert not (tmp_path / "eval-val").exists()  # emptied: gone with its files


def test_overwrite_follows_no_link_out_of_the_run(tmp_path):
    elsewhere = tmp_path / "other-runs-events"
    elsewhere.mkdir()
    (elsewhere / "events.out.tfevents.1700000000.host.1.0").write_text("another run's curves")
    (elsewhere / "metrics.json").write_text("another run's scores")
    run = tmp_path / "run"
    run.mkdir()
    (run / "tensorboard").symlink_to(elsewhere)
    (run / "eval-val").symlink_to(elsewhere)
    assert not RunDir(run).holds_run()  # nothing of its own here
    assert list(RunDir(run).eval_metric_files()) == []  # report does not pass them off as this run's
    (run / "model-last.pt").write_text("old")
    RunDir(run).prepare(overwrite=True)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["events.out.tfevents.1700000000.host.1.0", "metrics.json"]


def test_a_users_files_named_like_a_runs_folders_are_not_a_run(tmp_path):
    (tmp_path / "eval-plan.md").write_text("mine")
    (tmp_path / "eval-test").mkdir()
    (tmp_path / "eval-test" / "notes.txt").write_text("mine")
    (tmp_path / "tensorboard").mkdir()
    assert not RunDir(tmp_path).holds_run()
    RunDir(tmp_path).prepare(overwrite=False)  # not refused: nothing of a run to replace
    (tmp_path / "eval-test" / "metrics.json").write_text("{}")
    assert RunDir(tmp_path).holds_run()


def test_overwrite_leaves_one_kind_of_run_and_no_stale_export(tmp_path):
    from imdb_rnn.pretrain.train import LMRunDir

    for name in ("model-best.pt", "nbsvm.npz", "lm-last.pt", "perplexity.png"):
        (tmp_path / name).write_text("old")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_text("old")
    LMRunDir(tmp_path).prepare(overwrite=True)  # a pretrain run replacing a classifier's folder, and the reverse
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "model-last.pt").write_text("old")
    with pytest.raises(UserError, match="holds a classifier run"):
        LMRunDir(tmp_path).prepare(overwrite=False)
    (tmp_path / "model-last.pt").unlink()
    (tmp_path / "lm-last.pt").write_text("old")
    with pytest.raises(UserError, match="holds a pretrain run"):
        RunDir(tmp_path).prepare(overwrite=False)
    with pytest.raises(UserError, match="is a pretrain run"):
        RunDir(tmp_path).find_checkpoint()


def test_init_from_names_what_it_was_pointed_at(tmp_path):
    from imdb_rnn.config import ModelConfig
    from imdb_rnn.pretrain.transfer import pretrained_encoder

    (tmp_path / "model-last.pt").write_text("a classifier's")
    with pytest.raises(UserError, match="holds a classifier run .*, not a language model"):
        pretrained_encoder(tmp_path, "0" * 64, ModelConfig())
    with pytest.raises(UserError, match="is a file; point it at the folder"):
        pretrained_encoder(tmp_path / "model-last.pt", "0" * 64, ModelConfig())


def test_config_shapes_names_and_combinations_are_one_line(tmp_path):
    config = write_config(tmp_path / "c.yaml", **TINY)
    one_line_error(run_cli("train", "--config", config, "model.hidden_size=[1,2]"), "'model.hidden_size' must be int")
    one_line_error(run_cli("train", "--config", config, "model.cell={a: 1}"), "'model.cell' must be")
    one_line_error(run_cli("train", "--config", config, "name=../../escape"), "'name' must be a plain name")
    one_line_error(run_cli("train", "--config", config, "model.cell=gru", "model.nonlinearity=relu"),
                   "applies to cell=rnn only")
    one_line_error(run_cli("train", "--config", config, "--resume", "--overwrite"), "pass one of them")


def test_a_missing_csv_source_points_to_make_csv(tmp_path):
    config = write_config(tmp_path / "c.yaml", data={"source": "IMDB Dataset.csv"})
    one_line_error(run_cli("preprocess", "--config", config, "--data-dir", tmp_path), "imdb-rnn make-csv")


def test_eval_says_when_the_data_is_not_what_the_run_trained_on(sample_reviews, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = sample_reviews[::2]
    table = pd.DataFrame({"review": [r.text for r in rows],
                          "sentiment": ["positive" if r.label else "negative" for r in rows]})
    table.to_csv(data / "r.csv", index=False)
    config = write_config(tmp_path / "c.yaml", **{**TINY, "data": {"source": "r.csv"},
                                                  "preprocess": {**TINY["preprocess"], "pos_prefixes": None}})
    preprocess(load_config(config), data, workers=1)
    run = tmp_path / "run"
    train(load_config(config), data, run, log=lambda *_: None)
    same = run_cli("eval", "--run", run, "--data-dir", data, "-q")
    assert same.exit_code == 0 and "note:" not in same.stderr, same.output
    # Other bytes, the same tokens (so the same vocabulary): scored, and said.
    table["review"] = table["review"] + "  "
    table.to_csv(data / "r.csv", index=False)
    preprocess(load_config(config), data, workers=1)
    changed = run_cli("eval", "--run", run, "--data-dir", data, "-q", "--split", "train")
    assert changed.exit_code == 0, changed.output
    assert "note: the data in" in changed.stderr and "is not what run trained on" in changed.stderr
    assert "its train and val splits are not the reviews training fitted" in changed.stderr
