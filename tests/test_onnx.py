"""ONNX export: onnxruntime's logits equal torch's on real reviews, and `predict --onnx` labels
text like `predict --run` without importing torch."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import assert_user_error, cli, ROOT, run, TINY, write_config, write_tarball
from imdb_rnn.config import load_config
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.export.onnx import TOLERANCE, export_run
from imdb_rnn.export.runtime import OnnxRun
from imdb_rnn.run import RunDir
from imdb_rnn.training.train import train

# Every exported part at once: a pooled GRU on normalised embeddings, the hashed n-gram bag
# (binary, up to trigrams: the sort), the NBSVM branch and stacking weights over all three.
BRANCHES = {**TINY, "preprocess": {**TINY["preprocess"], "pos_prefixes": None, "lowercase": True},
            "model": {**TINY["model"], "readout": "pool", "ngram_buckets": 4096, "ngram_norm": "binary",
                      "ngram_order": 3, "normalize_embeddings": True},
            "nbsvm": {"order": 2, "min_df": 1}, "train": {**TINY["train"], "val_fraction": 0.25}}
# The tutorial's readout: the padded batch's last column (left padding), a 2-layer LSTM.
PADDED = {**TINY, "preprocess": {**TINY["preprocess"], "pad_side": "left"},
          "model": {**TINY["model"], "cell": "lstm", "num_layers": 2, "last_step": "padded"}}
RUNS = {"branches": BRANCHES, "padded": PADDED}


@pytest.fixture(scope="module", params=sorted(RUNS))
def exported(request, sample_reviews, tmp_path_factory):
    """(run dir, data dir, export dir) of 2 epochs of one of RUNS, exported to ONNX."""
    root = tmp_path_factory.mktemp(request.param)
    data = root / "data"
    data.mkdir()
    write_tarball(sample_reviews, data / "aclImdb_v1.tar.gz")
    config = write_config(root / "tiny.yaml", **RUNS[request.param])
    preprocess(load_config(config), data, workers=1)
    train(load_config(config), data, root / "run", log=lambda *_: None)
    result = export_run(root / "run", root / "onnx", data_dir=data)
    assert result.check.max_abs_diff and max(result.check.max_abs_diff.values()) <= TOLERANCE
    return root / "run", data, root / "onnx"


def _test_rows(run, data_dir, n=200):
    """Padded ids and lengths of `n` test reviews: the longest, others of varied lengths, and the
    shortest cut to one token."""
    test = load_artifacts(run.config, data_dir).split("test")
    order = np.argsort(test.lengths, kind="stable")
    pick = np.concatenate([order[-1:], order[:: max(1, len(order) // (n - 1))]])[:n]
    ids, lengths = test.ids[pick].copy(), test.lengths[pick].copy()
    one = int(np.flatnonzero(lengths > 0)[-1])  # a real review, cut to its first token
    first = ids[one, 0] if run.config.preprocess.pad_side == "right" else ids[one, -lengths[one]]
    ids[one] = run.pipeline.pad_id
    ids[one, 0 if run.config.preprocess.pad_side == "right" else -1] = first
    lengths[one] = 1
    assert len(lengths) == n and lengths.max() == test.lengths.max() and 1 in lengths
    return ids.astype(np.int64), lengths


def test_onnxruntime_logits_equal_torch_on_real_reviews(exported):
    run_dir, data_dir, out = exported
    run = RunDir(run_dir).load("best")
    onnx_run = OnnxRun(out)
    ids, lengths = _test_rows(run, data_dir)
    assert onnx_run.settings.outputs == (["rnn", "ngram"] if run.model.ngram is not None else ["rnn"])
    # Batches of several sizes and widths: one review alone (length 1, and the longest), then
    # chunks of a shuffled order, each cut to its own longest review or padded to the full width.
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(len(lengths))
    batches = [np.flatnonzero(lengths == 1)[:1], np.array([int(np.argmax(lengths))]),
               *np.split(shuffled, [7, 40, 104]), np.arange(len(lengths))]
    pad_right = run.config.preprocess.pad_side == "right"
    with torch.no_grad():
        for k, index in enumerate(batches):
            b_ids, b_len = ids[index], lengths[index]
            if k % 2:  # dynamic padding: only the batch's own longest review's columns
                width = int(b_len.max())
                b_ids = b_ids[:, :width] if pad_right else b_ids[:, b_ids.shape[1] - width:]
            want = run.model(torch.from_numpy(np.ascontiguousarray(b_ids)), torch.from_numpy(b_len))
            got = onnx_run.logits(b_ids, b_len)
            np.testing.assert_allclose(got["rnn"], want.rnn.numpy(), rtol=0, atol=TOLERANCE)
            if run.model.ngram is not None:
                assert np.abs(want.ngram.numpy()).max() > 0  # trained: the check is not of zeros
                np.testing.assert_allclose(got["ngram"], want.ngram.numpy(), rtol=0, atol=TOLERANCE)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["check"]["reviews"] >= 200 and manifest["check"]["shortest"] == 1
    assert manifest["stack"] == (run.stack.to_dict() if run.stack else None)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.onnx", "export.json", "vocab.json"] + (["nbsvm.npz", "nbsvm-ngrams.json"] if run.nbsvm else []))


# Imports the predictor through the CLI, labels the texts, then fails unless torch stayed unloaded.
TORCH_FREE = """
import json, sys
from imdb_rnn.cli import main
sys.argv = ["imdb-rnn", "predict", "--json", "--onnx", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
loaded = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
assert not loaded, loaded
"""


def test_torch_free_predict_equals_torch_predict(exported, sample_reviews):
    run_dir, _, out = exported
    texts = [r.text for r in sample_reviews[::10]] + ["Awful.", "Movie", "the of and", "a. " * 5]
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, str(out), *texts], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.split("\n") if line.strip()]
    want = [json.loads(line) for line in cli("predict", "--run", run_dir, "--json", *texts).stdout.split("\n")
            if line.strip()]
    assert len(got) == len(want) == len(texts)
    assert any(w["label"] is None for w in want) and any(w.get("tokens") == 1 for w in want)
    for g, w in zip(got, want):
        assert g["label"] == w["label"] and g.get("tokens") == w.get("tokens")
        if w["prob_positive"] is None:
            assert g["prob_positive"] is None and g["note"] == w["note"]
        else:
            assert g["prob_positive"] == pytest.approx(w["prob_positive"], abs=1e-4)




def test_export_errors(exported, tmp_path):
    run_dir, _, _ = exported
    assert_user_error(run("export", "--run", run_dir, "--format", "tflite", "--out", tmp_path / "x"),
                      "--format must be one of onnx", "'tflite'")
    assert not (tmp_path / "x").exists()
    assert_user_error(run("export", "--run", tmp_path / "nowhere", "--out", tmp_path / "y"), "does not exist")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_user_error(run("export", "--run", run_dir, "--out", tmp_path / "mine"), "not an earlier export")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert_user_error(run("predict", "--onnx", tmp_path / "mine", "good"), "not an ONNX export")
    assert_user_error(run("predict", "--onnx", tmp_path / "nowhere", "good"), "does not exist")
    # A file a user put beside an earlier export is not deleted by exporting there again.
    shutil.copytree(exported[2], tmp_path / "again")
    (tmp_path / "again" / "notes.txt").write_text("keep me")
    assert_user_error(run("export", "--run", run_dir, "--out", tmp_path / "again"), "files that are not its",
                      "notes.txt")
    assert (tmp_path / "again" / "notes.txt").read_text() == "keep me"
    (tmp_path / "afile").write_text("x")
    assert_user_error(run("export", "--run", run_dir, "--out", tmp_path / "afile"), "is a file")
    assert_user_error(run("predict", "good"), "either --run RUN", "or --onnx DIR")
    assert_user_error(run("predict", "--onnx", exported[2], "--device", "cpu", "good"), "--device applies to --run")


def test_a_random_initial_state_is_refused(exported, tmp_path):
    """The tutorial's init_hidden=random draws a new state per call: no graph reproduces it."""
    shutil.copytree(exported[0], tmp_path / "run")
    for name in ("model-best.pt", "model-last.pt"):
        ckpt = torch.load(tmp_path / "run" / name, weights_only=True)
        ckpt["config"]["model"]["init_hidden"] = "random"
        torch.save(ckpt, tmp_path / "run" / name)
    assert_user_error(run("export", "--run", tmp_path / "run", "--out", tmp_path / "onnx"), "init_hidden=random")
    assert not (tmp_path / "onnx").exists()
