"""More than two classes end to end: the model's output size from the data, scoring, eval's
per-class metrics and confusion matrix, predict (torch and ONNX), explain, report, and the
refusals (NBSVM and stacking are two-class)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from helpers import TINY, cli, write_config, write_tarball
from imdb_rnn.config import DataConfig, ModelConfig, load_config
from imdb_rnn.data.arrays import SplitArrays
from imdb_rnn.data.artifacts import ARRAYS, MANIFEST, TABLE, artifacts_dir
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.errors import UserError
from imdb_rnn.model import RNNClassifier
from imdb_rnn.scoring import classification_metrics, eval_warning, majority_class_warning, score

NAMES = ["neg", "neutral", "pos"]
PNG = b"\x89PNG\r\n\x1a\n"


def band(review_id: str) -> int:
    """A review's class from the rating in its file name (ID_RATING): 1-3 neg, 4 and 7 neutral, 8-10 pos."""
    rating = int(review_id.rsplit("_", 1)[1])
    return 0 if rating <= 3 else 1 if rating in (4, 7) else 2


# --- scoring and metrics, without the data side ------------------------------------------------

def test_three_class_metrics_match_scikit_learn():
    from sklearn.metrics import classification_report, roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[labels]  # better than chance, far from perfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(labels, probs, NAMES)
    preds = probs.argmax(1)
    report = classification_report(labels, preds, target_names=NAMES, output_dict=True, zero_division=0)
    assert m["labels"] == NAMES and m["accuracy"] == pytest.approx(report["accuracy"])
    for name in NAMES:
        got, want = m["per_class"][name], report[name]
        assert got == pytest.approx({"precision": want["precision"], "recall": want["recall"],
                                     "f1": want["f1-score"], "support": want["support"]})
    for key, sk in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        assert m[key] == pytest.approx({k: report[sk][s] for k, s in
                                        (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"))})
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    assert 0.6 < m["roc_auc"] < 0.95
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 300 and np.trace(cm) == (preds == labels).sum()
    assert cm[0].sum() == (labels == 0).sum() and cm[:, 2].sum() == (preds == 2).sum()  # rows true, columns predicted
    assert m["predicted_shares"] == pytest.approx({n: (preds == c).mean() for c, n in enumerate(NAMES)})
    assert json.loads(json.dumps(m)) == m  # metrics.json takes it as it is
    # A class absent from the labels leaves ROC-AUC undefined, not an error.
    assert classification_metrics(labels[labels < 2], probs[labels < 2], NAMES)["roc_auc"] is None


def test_two_classes_keep_their_metrics():
    labels = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.2, 0.5, 0.5, 0.9, 0.4])
    m = classification_metrics(labels, np.stack([1 - p1, p1], 1), ["negative", "positive"])
    assert list(m) == ["accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix",
                       "predicted_positive_share"]
    # P(positive) = 0.5 is labelled positive, as it always was
    assert m["confusion_matrix"] == [[1, 1], [1, 2]] and m["predicted_positive_share"] == pytest.approx(0.6)


def _tiny_model(classes: int, buckets: int = 0) -> RNNClassifier:
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=8, hidden_size=6, num_layers=1, init_hidden="zeros",
                      ngram_buckets=buckets)
    model = RNNClassifier(30, cfg, num_classes=classes)
    with torch.no_grad():  # large enough weights that the classes differ clearly
        model.fc.weight.mul_(8)
    return model


def _split(n: int = 40, width: int = 9, classes: int = 3) -> SplitArrays:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, width + 1, n)
    ids = np.zeros((n, width), dtype=np.int32)
    for row, k in enumerate(lengths):
        ids[row, :k] = rng.integers(2, 30, k)
    return SplitArrays(ids, lengths.astype(np.int64), rng.integers(0, classes, n).astype(np.int64))


def test_scores_of_a_three_class_model_with_an_ngram_branch():
    model, data = _tiny_model(3, buckets=64), _split()
    s = score(model, data, 16, True, "right", torch.device("cpu"))
    logits = model(torch.from_numpy(data.ids.astype(np.int64)), torch.from_numpy(data.lengths))
    assert s.probs.shape == (40, 3)
    np.testing.assert_allclose(s.probs, torch.softmax(logits.total, -1).detach().numpy(), rtol=1e-4, atol=1e-6)
    labels = torch.from_numpy(data.labels)
    assert s.loss == pytest.approx(F.cross_entropy(logits.total, labels).item(), rel=1e-4)
    assert np.array_equal(s.preds, logits.total.argmax(-1).numpy())
    assert s.accuracy == pytest.approx((s.preds == data.labels).mean())
    assert len(set(s.preds.tolist())) > 1  # the check below means something only if the classes differ
    # No margins (stacking, which reads them, is two-class); each branch alone is its own argmax.
    assert s.margins == {}
    assert s.branch_accuracy == pytest.approx({
        name: (getattr(logits, name).argmax(-1) == labels).float().mean().item() for name in ("rnn", "ngram")})


def test_two_class_scores_keep_margins():
    model, data = _tiny_model(2, buckets=64), _split(classes=2)
    s = score(model, data, 16, True, "right", torch.device("cpu"))
    assert s.probs.shape == (40, 2) and set(s.margins) == {"rnn", "ngram"}
    np.testing.assert_array_equal(s.preds, (s.probs[:, 1] >= 0.5).astype(int))
    np.testing.assert_allclose(s.probs[:, 1], 1 / (1 + np.exp(-(s.margins["rnn"] + s.margins["ngram"]))), rtol=1e-4)


def test_confusion_matrix_png_names_every_class(tmp_path):
    from PIL import Image

    from imdb_rnn.plots import confusion_matrix

    two = confusion_matrix(np.array([[5, 1], [2, 7]]), tmp_path / "two.png")
    many = confusion_matrix(np.arange(25).reshape(5, 5), tmp_path / "five.png", "five classes",
                            ["one", "two", "three", "four", "five"])
    assert two.read_bytes()[:8] == PNG and many.read_bytes()[:8] == PNG
    assert Image.open(many).size[0] > Image.open(two).size[0]  # the figure grows with the classes
    with pytest.raises(ValueError, match="3 class names for a 2x2"):
        confusion_matrix(np.eye(2), tmp_path / "bad.png", labels=NAMES)
    assert not (tmp_path / "bad.png").exists()


def test_warnings_name_the_majority_class():
    assert "predicts 'neutral' for 97%" in majority_class_warning([0.01, 0.97, 0.02], NAMES)
    assert majority_class_warning([0.3, 0.4, 0.3], NAMES) is None
    result = {"predicted_shares": dict(zip(NAMES, [0.0, 0.01, 0.99])), "roc_auc": 0.8}
    assert "predicts 'pos' for 99%" in eval_warning(result)
    result = {"predicted_shares": dict(zip(NAMES, [0.3, 0.3, 0.4])), "roc_auc": 0.52}
    assert "about chance" in eval_warning(result)
    assert eval_warning({"predicted_positive_share": 0.99, "roc_auc": 0.9}).startswith(
        "warning: the model predicts 'positive' for 99%")


def test_predict_results_and_table_for_three_classes():
    from imdb_rnn.data.vocab import Vocab
    from imdb_rnn.predict import Encoded, fill_results, format_predictions

    vocab = Vocab(["<PAD>", "<UNK>", "good", "fine"])
    enc = Encoded(["good film", "", "fine"], [["good", "film"], [], ["fine"]], [False, False, False],
                  np.zeros((2, 2), dtype=np.int32), np.array([2, 1]), np.array([0, 2]))
    probs = np.array([[0.1, 0.2, 0.7], [0.3, 0.45, 0.25]])
    results = fill_results(enc, probs, vocab, NAMES, 0.5)
    assert results[0] == {"text": "good film", "label": "pos", "prob": 0.7,
                          "probs": {"neg": 0.1, "neutral": 0.2, "pos": 0.7}, "tokens": 2, "unknown_tokens": 1}
    assert results[1]["label"] is None and results[1]["prob"] is None and "empty" in results[1]["note"]
    assert results[2]["label"] == "neutral" and results[2]["prob"] == 0.45
    table = format_predictions(results).splitlines()
    assert table[0].split() == ["label", "P", "text"]
    assert table[1].split() == ["pos", "0.700", "good", "film"] and table[3].split()[:2] == ["neutral", "0.450"]
    # Two classes: the output predict always gave.
    binary = fill_results(enc, np.array([[0.2, 0.8], [0.5, 0.5]]), vocab, ["negative", "positive"], 0.5)
    assert binary[0] == {"text": "good film", "label": "positive", "prob_positive": 0.8, "tokens": 2,
                         "unknown_tokens": 1}
    assert binary[2]["label"] == "positive" and set(binary[1]) == {"text", "label", "prob_positive", "note"}
    assert format_predictions(binary).splitlines()[0].split() == ["label", "P(pos)", "text"]


def test_nbsvm_and_stacking_refuse_more_than_two_classes():
    from imdb_rnn.model.nbsvm import check_two_classes
    from imdb_rnn.model.stack import fit_stack

    with pytest.raises(UserError, match=r"3 classes \(neg, neutral, pos\); set nbsvm: null"):
        check_two_classes(NAMES)
    check_two_classes(["negative", "positive"])
    with pytest.raises(ValueError, match="two classes"):
        fit_stack({"rnn": np.zeros(3), "ngram": np.ones(3)}, np.array([0, 1, 2]))


def test_class_margin_is_the_binary_log_odds_and_picks_the_argmax():
    from imdb_rnn.explain.attributions import class_margin

    two = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    assert torch.equal(class_margin(two), two[:, 1] - two[:, 0])
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    margins = torch.stack([class_margin(z, c) for c in range(4)], 1)
    assert torch.equal(margins.argmax(1), z.argmax(1))
    torch.testing.assert_close(class_margin(z, 2), z[:, 2] - z[:, [0, 1, 3]].mean(1))
    # Linear: the branches' margins add up as their logits do.
    torch.testing.assert_close(class_margin(z + 2 * z.flip(0), 1), class_margin(z, 1) + 2 * class_margin(z.flip(0), 1))


# --- a three-class data set through the CLI ---------------------------------------------------

CONFIG = {**TINY, "model": {**TINY["model"], "ngram_buckets": 512, "init_hidden": "zeros"},
          "train": {**TINY["train"], "epochs": 3, "lr": 0.01}}


@pytest.fixture(scope="module")
def three_classes(sample_reviews, tmp_path_factory):
    """(data dir, config, run dir, eval result) of a trained and evaluated run on three rating bands.

    The bands are written into real preprocess artifacts of the official layout, so that the
    test needs no reader of arbitrary labels (see test_a_csv_of_three_labels for one)."""
    root = tmp_path_factory.mktemp("three")
    data = root / "data"
    data.mkdir()
    write_tarball(sample_reviews[::2], data / "aclImdb_v1.tar.gz")
    config = write_config(root / "three.yaml", name="three", **CONFIG)
    cfg = load_config(config)
    preprocess(cfg, data, workers=1)
    out = artifacts_dir(cfg, data)
    with np.load(out / ARRAYS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for split in ("train", "test"):
        arrays[f"{split}_labels"] = np.array([band(r) for r in arrays[f"{split}_review_ids"]], dtype=np.int64)
    np.savez(out / ARRAYS, **arrays)
    table = pd.read_csv(out / TABLE, keep_default_na=False)
    table["label"] = [band(r) for r in table["id"]]
    table.to_csv(out / TABLE, index=False)
    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**manifest, "label_names": NAMES}))
    assert len(set(arrays["train_labels"])) == 3

    run = root / "run"
    cli("train", "--config", config, "--data-dir", data, "--run-dir", run, "-q")
    out = cli("eval", "--run", run, "--data-dir", data, "-q")
    return data, config, run, out


def test_a_three_class_run_trains_with_three_outputs(three_classes):
    _, _, run, _ = three_classes
    ckpt = torch.load(run / "model-best.pt", weights_only=True)
    assert ckpt["num_classes"] == 3 and ckpt["state_dict"]["fc.weight"].shape[0] == 3
    assert ckpt["state_dict"]["ngram.unigrams.weight"].shape[1] == 3
    assert json.loads((run / "pipeline.json").read_text())["labels"] == NAMES
    # An n-gram branch and a validation split, yet no stacking: its logistic regression on
    # margins is two-class; the summed logits predict.
    assert "stack" not in ckpt


def test_eval_of_three_classes(three_classes):
    data, _, run, proc = three_classes
    m = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert m["labels"] == NAMES and set(m["per_class"]) == set(NAMES) and m["reviews"] == 100
    assert sum(c["support"] for c in m["per_class"].values()) == 100
    assert {"macro_avg", "weighted_avg", "roc_auc", "predicted_shares"} <= set(m)
    assert "precision" not in m and "stack" not in m and set(m["branch_accuracy"]) == {"rnn", "ngram"}
    assert np.array(m["confusion_matrix"]).shape == (3, 3)
    preds = pd.read_csv(run / "eval-test" / "predictions.csv")
    assert list(preds.columns) == ["review_id", "true_label", "predicted_label", "prob_neg", "prob_neutral", "prob_pos"]
    probs = preds[["prob_neg", "prob_neutral", "prob_pos"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == preds.predicted_label).all()
    assert m["accuracy"] == pytest.approx((preds.predicted_label == preds.true_label).mean())
    assert np.trace(m["confusion_matrix"]) == (preds.predicted_label == preds.true_label).sum()
    assert (run / "eval-test" / "confusion_matrix.png").read_bytes()[:8] == PNG
    out = proc.stdout
    assert "one-vs-rest, macro" in out and "macro avg" in out and "weighted avg" in out
    assert "confusion (rows: true, columns: predicted)" in out and "summed" in out
    for name in NAMES:
        assert any(line.split()[:1] == [name] for line in out.splitlines())
    as_json = json.loads(cli("eval", "--run", run, "--data-dir", data, "--json", "-q").stdout)
    assert as_json["per_class"] == m["per_class"]


def test_predict_agrees_with_eval_and_onnx(three_classes, tmp_path):
    pytest.importorskip("onnxruntime")
    data, _, run, _ = three_classes
    [processed] = (data / "processed").glob("three-*")
    table = pd.read_csv(processed / TABLE, keep_default_na=False).set_index("id")
    preds = pd.read_csv(run / "eval-test" / "predictions.csv", keep_default_na=False).set_index("review_id")
    ids = list(preds.index[:6])
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(table.loc[i, "review"].replace("\n", " ") for i in ids) + "\n")
    got = [json.loads(line) for line in cli("predict", "--run", run, "--file", reviews, "--json").stdout.splitlines()]
    for rid, g in zip(ids, got):
        want = preds.loc[rid]
        assert g["label"] == NAMES[int(want.predicted_label)]
        assert g["probs"] == pytest.approx({n: want[f"prob_{n}"] for n in NAMES}, abs=1e-5)
        assert g["prob"] == max(g["probs"].values())
    table_out = cli("predict", "--run", run, "--file", reviews).stdout.splitlines()
    assert table_out[0].split()[:2] == ["label", "P"] and table_out[1].split()[0] == got[0]["label"]

    export = tmp_path / "onnx"
    cli("export", "--run", run, "--out", export, "--data-dir", data, "--check-reviews", "20")
    onnx = [json.loads(line) for line in cli("predict", "--onnx", export, "--file", reviews, "--json").stdout.splitlines()]
    for g, o in zip(got, onnx):
        assert o["label"] == g["label"] and o["probs"] == pytest.approx(g["probs"], abs=1e-4)


def test_explain_attributes_the_predicted_class(three_classes, tmp_path):
    from imdb_rnn.explain.html import render_page
    from imdb_rnn.explain.review import explain_texts, format_summary

    _, _, run, _ = three_classes
    texts = ["a dull, boring film with a terrible plot", "great acting and a wonderful story, loved it",
             "it was fine, some good scenes and some bad ones"]
    predicted = [json.loads(line) for line in cli("predict", "--run", run, *texts, "--json").stdout.splitlines()]
    explained = explain_texts(run, texts, n_steps=100)
    for e, p in zip(explained, predicted):
        assert e.label == p["label"] == NAMES[e.target] and e.prob == pytest.approx(p["prob"], abs=1e-6)
        assert e.prob_positive is None and set(e.margins) == {"rnn", "ngram"}
        assert e.rnn_margin == pytest.approx(e.margins["rnn"], abs=1e-5)
        assert sum(s for s in e.token_scores if s is not None) == pytest.approx(
            e.rnn_margin - e.rnn_baseline_margin, abs=0.02 + 0.02 * abs(e.rnn_margin - e.rnn_baseline_margin))
        assert sum(c.value for c in e.bag) == pytest.approx(e.margins["ngram"], abs=1e-5)
        # The predicted class has the largest summed margin: the shades explain the prediction.
        assert sum(e.margins.values()) > 0
    summary = format_summary(explained)
    assert f"P({explained[0].label})=" in summary
    page = render_page(explained, "run", "model-best.pt")
    assert "towards the predicted class" in page and "mean of the other classes" in page
    assert "P(negative)" not in page


def test_report_summarises_three_classes(three_classes):
    _, _, run, _ = three_classes
    (run / "eval-test" / "confusion_matrix.png").unlink()
    out = cli("report", run).stdout
    assert "test: accuracy" in out and "macro F1" in out
    assert (run / "eval-test" / "confusion_matrix.png").read_bytes()[:8] == PNG


def test_nbsvm_is_refused_for_three_classes_before_anything_is_written(three_classes, tmp_path):
    data, config, _, _ = three_classes
    run = tmp_path / "nbsvm-run"
    proc = cli("train", "--config", config, "--data-dir", data, "--run-dir", run, "nbsvm.min_df=1", "-q", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "nbsvm is a two-class model" in proc.stderr and "nbsvm=null" in proc.stderr
    assert not run.exists()


def test_classes_that_differ_from_the_run_are_refused(three_classes, tmp_path):
    import shutil

    data, _, run, _ = three_classes
    other = tmp_path / "data"
    shutil.copytree(data / "processed", other / "processed")
    [manifest] = (other / "processed").glob("three-*/manifest.json")
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "label_names": ["bad", "so-so", "good"]}))
    proc = cli("eval", "--run", run, "--data-dir", other, "-q", check=False)
    assert proc.returncode == 2 and "the classes in" in proc.stderr and "(bad, so-so, good) differ" in proc.stderr
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    pipeline = json.loads((copy / "pipeline.json").read_text())
    (copy / "pipeline.json").write_text(json.dumps({**pipeline, "labels": ["negative", "positive"]}))
    proc = cli("predict", "--run", copy, "a film", check=False)
    assert proc.returncode == 2 and "names 2 classes and model-best.pt has 3" in proc.stderr


# --- the same through a CSV of text and label columns (the sources branch) ----------------------

@pytest.mark.skipif("text_column" not in DataConfig.model_fields,
                    reason="needs data.text_column / data.label_column (the sources branch of issue 16)")
def test_a_csv_of_three_labels_trains_evaluates_and_predicts(sample_reviews, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"text": r.text, "label": NAMES[band(r.id)]} for r in sample_reviews[::2]]
    pd.DataFrame(rows).to_csv(data / "three.csv", index=False)
    config = write_config(tmp_path / "csv3.yaml", name="csv3",
                          **{**CONFIG, "data": {"source": "three.csv", "text_column": "text", "label_column": "label"}})
    run = tmp_path / "run"
    cli("preprocess", "--config", config, "--data-dir", data, "-q")
    cli("train", "--config", config, "--data-dir", data, "--run-dir", run, "-q")
    labels = json.loads((run / "pipeline.json").read_text())["labels"]
    assert sorted(labels) == sorted(NAMES)
    assert torch.load(run / "model-best.pt", weights_only=True)["num_classes"] == 3
    cli("eval", "--run", run, "--data-dir", data, "-q")
    m = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert m["labels"] == labels and np.array(m["confusion_matrix"]).shape == (3, 3)
    [p] = [json.loads(line) for line in cli("predict", "--run", run, "a wonderful film", "--json").stdout.splitlines()]
    assert p["label"] in NAMES and set(p["probs"]) == set(NAMES)
