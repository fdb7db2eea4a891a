"""End to end through the real CLI: download (from 127.0.0.1) -> preprocess -> train -> eval -> predict,
and a run copied elsewhere that works without the data it was trained on."""

import json
import os
import random
import shutil
import struct

import pytest

import numpy as np
import pandas as pd
import torch

from helpers import TINY, cli, http_server, sha256, write_config, write_tarball

pytestmark = pytest.mark.slow


def test_download_preprocess_train_eval(small_tarball, tmp_path):
    data = tmp_path / "data"
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(small_tarball, served / "aclImdb_v1.tar.gz")
    with http_server(served) as url:
        out = cli("download", "--data-dir", data, "--url", f"{url}/aclImdb_v1.tar.gz", "--sha256", sha256(small_tarball), "-q")
    assert "downloaded" in out.stdout
    assert (data / "aclImdb_v1.tar.gz").read_bytes() == small_tarball.read_bytes()
    assert [p.name for p in data.iterdir()] == ["aclImdb_v1.tar.gz"], "no temporary file is left behind"

    config = write_config(tmp_path / "tiny.yaml", **TINY)
    out = cli("preprocess", "--config", config, "--data-dir", data, "-q").stdout
    assert "train: 200 reviews (negative: 100, positive: 100)" in out and "duplicate texts: 0 within train" in out
    [processed] = (data / "processed").glob("tiny-*")  # named by config and content
    table = pd.read_csv(processed / "processed.csv", keep_default_na=False)
    assert list(table.columns) == ["id", "split", "label", "review", "processed"]
    assert len(table) == 400 and set(table.split) == {"train", "test"}
    vocab = json.loads((processed / "vocab.json").read_text())
    assert vocab[:2] == ["<PAD>", "<UNK>"]
    with np.load(processed / "arrays.npz", allow_pickle=False) as z:
        assert z["train_ids"].shape == (200, 64) and z["test_ids"].shape == (200, 64)
        assert z["train_lengths"].max() <= 64 and z["train_labels"].sum() == 100
    manifest = json.loads((processed / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == sha256(small_tarball)
    assert manifest["config"]["preprocess"]["pos_prefixes"] == ["NN"]
    assert {"nltk", "numpy", "python"} <= set(manifest["versions"])
    assert "up to date" in cli("preprocess", "--config", config, "--data-dir", data, "-q").stdout

    run = tmp_path / "run"
    cli("train", "--config", config, "--data-dir", data, "--run-dir", run, "-q")
    assert {"config.yaml", "vocab.json", "pipeline.json", "metrics.csv", "model-last.pt", "model-best.pt"} <= {
        p.name for p in run.iterdir()}
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.epoch) == [1, 2] and metrics.val_acc.notna().all()
    ckpt = torch.load(run / "model-last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["model"]["cell"] == "gru" and json.loads((run / "vocab.json").read_text()) == vocab
    assert json.loads((run / "pipeline.json").read_text())["width"] == 64
    assert ckpt["config"]["train"]["epochs"] == 2

    assert_png(run / "training_curves.png")

    result = json.loads(cli("eval", "--run", run, "--data-dir", data, "--device", "cpu", "-q", "--json").stdout)
    assert result["reviews"] == 200 and 0.0 <= result["accuracy"] <= 1.0
    assert json.loads((run / "eval-test" / "metrics.json").read_text()) == result
    check_metrics_against_predictions(result, run / "eval-test" / "predictions.csv")
    assert_png(run / "eval-test" / "confusion_matrix.png")

    # predict on raw training reviews reproduces eval's predictions for them
    cli("eval", "--run", run, "--data-dir", data, "--split", "train", "-q")
    train_preds = pd.read_csv(run / "eval-train" / "predictions.csv").set_index("review_id")
    cli("eval", "--run", run, "--data-dir", data, "--split", "val", "-q")
    val_ids = set(pd.read_csv(run / "eval-val" / "predictions.csv")["review_id"])
    assert val_ids and not val_ids & set(train_preds.index)  # train: the reviews training fitted, val left out
    texts = dict(zip(table.id, table.review))
    chosen = list(train_preds.index[:5])
    lines = cli("predict", "--run", run, "--json", *[texts[i] for i in chosen]).stdout.splitlines()
    for rid, line in zip(chosen, lines):
        got = json.loads(line)
        assert abs(got["prob_positive"] - train_preds.loc[rid, "prob_positive"]) < 1e-5, rid
        assert (got["label"] == "positive") == bool(train_preds.loc[rid, "predicted_label"])

    empty = json.loads(cli("predict", "--run", run, "--json", "the and of").stdout)
    assert empty["label"] is None and "empty after preprocessing" in empty["note"]
    # A text NLTK gives up on gets a note, not a traceback, and the lines around it their labels.
    (tmp_path / "hard.txt").write_text("A fine film.\n" + "a. " * 1_000_000 + "\nA dull film.\n")
    hard = [json.loads(line) for line in cli("predict", "--run", run, "--json", "--file", tmp_path / "hard.txt").stdout.splitlines()]
    assert [r["label"] is None for r in hard] == [False, True, False] and "gave up" in hard[1]["note"]

    demo = cli("grad-demo", "--imdb", "--config", config, "--data-dir", data, "--steps", "30", "--out", tmp_path / "gi.png").stdout
    assert "rnn" in demo and "lstm" in demo
    assert_png(tmp_path / "gi.png")

    summary = cli("report", str(run)).stdout
    assert "best validation accuracy" in summary and "test: accuracy" in summary


def test_a_copied_run_works_without_its_data(sample_reviews, tmp_path):
    """Train in one project, copy the run elsewhere, delete the project: predict needs the run alone
    (the NBSVM branch and the stacking weights included), and eval scores it on data preprocessed
    afresh in another data directory."""
    project = tmp_path / "project"
    data = project / "data"
    data.mkdir(parents=True)
    write_tarball(sample_reviews[::2], data / "aclImdb_v1.tar.gz")
    config = write_config(project / "tiny.yaml", **TINY, nbsvm={"order": 2})  # its files travel with the run
    cli("preprocess", "--config", config, "--data-dir", data, "-q", "--workers", "1", cwd=project)
    cli("train", "--config", config, "--data-dir", data, "-q", "train.epochs=1", cwd=project)
    assert (project / "runs" / "tiny" / "nbsvm.npz").is_file()
    cli("eval", "--run", "runs/tiny", "--data-dir", data, "-q", cwd=project)
    texts = ["A wonderful, moving film with a superb cast.", "Dull, predictable and far too long."]
    before = cli("predict", "--run", project / "runs" / "tiny", "--json", *texts).stdout

    # No absolute path in any file of the run: not the project's, not the data directory's.
    for f in (project / "runs" / "tiny").rglob("*"):
        if f.is_file():
            assert str(tmp_path).encode() not in f.read_bytes(), f

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(project / "runs" / "tiny", elsewhere / "tiny")
    shutil.rmtree(project)
    assert cli("predict", "--run", elsewhere / "tiny", "--json", *texts, cwd=elsewhere).stdout == before

    fresh = tmp_path / "fresh-data"
    fresh.mkdir()
    write_tarball(sample_reviews[::2], fresh / "aclImdb_v1.tar.gz")
    workers = len(os.sched_getaffinity(0)) + 1  # not the default, whatever the machine
    result = json.loads(cli("eval", "--run", elsewhere / "tiny", "--data-dir", fresh, "--json", "-q", "-j", workers).stdout)
    assert result["reviews"] == 100 and (elsewhere / "tiny" / "eval-test" / "predictions.csv").is_file()
    assert list(fresh.glob("processed/tiny-*/arrays.npz")), "eval preprocessed the split it needed"
    manifest = json.loads(next(fresh.glob("processed/tiny-*/manifest.json")).read_text())
    assert manifest["workers"] == workers  # eval's --workers


def check_metrics_against_predictions(result, predictions_csv):
    """Recompute every metric from predictions.csv by hand (no scikit-learn)."""
    p = pd.read_csv(predictions_csv)
    y, yhat = p.true_label.to_numpy(), p.predicted_label.to_numpy()
    tp, tn = int(((y == 1) & (yhat == 1)).sum()), int(((y == 0) & (yhat == 0)).sum())
    fp, fn = int(((y == 0) & (yhat == 1)).sum()), int(((y == 1) & (yhat == 0)).sum())
    assert result["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert result["accuracy"] == pytest.approx((tp + tn) / len(p))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    assert result["precision"] == pytest.approx(precision) and result["recall"] == pytest.approx(recall)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert result["f1"] == pytest.approx(f1)
    # ROC-AUC as the probability that a random positive outscores a random negative (ties count half)
    pos, neg = p.prob_positive[y == 1].to_numpy(), p.prob_positive[y == 0].to_numpy()
    auc = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert result["roc_auc"] == pytest.approx(auc, abs=1e-4)  # predictions.csv rounds to 6 decimals


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300 and height >= 300 and len(data) > 10_000, (width, height, len(data))


def test_csv_source_is_split_by_config(sample_reviews, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = random.Random(0).sample(sample_reviews, 120)  # both classes in the first 100 rows
    pd.DataFrame({"review": [r.text for r in rows], "sentiment": ["positive" if r.label else "negative" for r in rows]}
                 ).to_csv(data / "IMDB Dataset.csv", index=False)
    config = write_config(tmp_path / "csv.yaml", **{**TINY, "data": {"source": "IMDB Dataset.csv", "limit": 100}})
    cli("preprocess", "--config", config, "--data-dir", data, "-q", "--workers", "1")
    [processed] = (data / "processed").glob("csv-*")
    table = pd.read_csv(processed / "processed.csv", keep_default_na=False)
    assert len(table) == 100 and (table.split == "test").sum() == 20  # the first 100 rows, 80/20
    assert list(table.review) == [r.text for r in rows[:100]]
