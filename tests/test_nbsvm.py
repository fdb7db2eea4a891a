"""The NBSVM branch and stacking: features and ratios by hand, a stored branch read back without
pickle, and stacking weights that come from the validation split alone."""

import json
import math

import numpy as np
import pytest
import torch

from helpers import TINY, write_config, write_tarball
from imdb_rnn.config import NBSVMConfig, load_config
from imdb_rnn.data.arrays import split_validation
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.errors import UserError
from imdb_rnn.evaluate import evaluate
from imdb_rnn.model.nbsvm import ARRAYS, NGRAMS, NBSVM, fit_nbsvm, fit_with_validation, log_count_ratio
from imdb_rnn.model.stack import fit_stack
from imdb_rnn.run import RunDir
from imdb_rnn.scoring import score
from imdb_rnn.training.train import train

CORPUS = ["good film", "good good plot", "bad film"]  # two positive reviews, one negative
LABELS = np.array([1, 1, 0])


def test_features_and_ratios_match_a_hand_computation():
    branch = fit_nbsvm(CORPUS, LABELS, NBSVMConfig(order=1, min_df=1, alpha=1.0))
    assert branch.ngrams == ["bad", "film", "good", "plot"]
    # Binary: "good" counts once in "good good plot". p = 1 + [0, 1, 2, 1], q = 1 + [1, 1, 0, 0].
    assert branch.features(["good good good film"]).toarray().tolist() == [[0, 1, 1, 0]]
    p, q = np.array([1, 2, 3, 2]), np.array([2, 2, 1, 1])
    expected = [math.log((pi / 8) / (qi / 6)) for pi, qi in zip(p, q)]
    np.testing.assert_allclose(branch.ratio, expected, rtol=1e-6)
    np.testing.assert_allclose(log_count_ratio(branch.features(CORPUS).toarray(), LABELS, 1.0), expected, rtol=1e-6)
    # The margin is w . (r * x) + b.
    x = branch.features(["bad plot"]).toarray()[0]
    assert branch.decision_function(["bad plot"])[0] == pytest.approx(float((branch.coef * branch.ratio) @ x
                                                                            + branch.intercept), rel=1e-6)


def test_order_and_min_df_choose_the_ngrams():
    branch = fit_nbsvm(CORPUS, LABELS, NBSVMConfig(order=2, min_df=1))
    assert {"good film", "good good", "good plot", "bad film"} <= set(branch.ngrams)
    kept = fit_nbsvm(CORPUS, LABELS, NBSVMConfig(order=2, min_df=2))
    assert kept.ngrams == ["film", "good"]  # each in two reviews; no bigram is
    # Ratios over what is kept: p = 1 + [1, 2], q = 1 + [1, 0].
    np.testing.assert_allclose(kept.ratio, [math.log((2 / 5) / (2 / 3)), math.log((3 / 5) / (1 / 3))], rtol=1e-6)
    with pytest.raises(UserError, match="lower nbsvm.min_df"):
        fit_nbsvm(CORPUS, LABELS, NBSVMConfig(min_df=5))


def test_a_stored_branch_reloads_to_identical_scores_without_pickle(sample_reviews, tmp_path):
    texts = [" ".join(r.text.lower().split()) for r in sample_reviews]
    labels = np.array([r.label for r in sample_reviews])
    train = np.array([r.split == "train" for r in sample_reviews])  # 100 of each class in each split
    branch = fit_nbsvm([t for t, k in zip(texts, train) if k], labels[train], NBSVMConfig())
    branch.save(tmp_path)
    with np.load(tmp_path / ARRAYS, allow_pickle=False) as z:  # plain arrays: no object arrays
        assert all(z[k].dtype != object for k in z.files)
    assert json.loads((tmp_path / NGRAMS).read_text(encoding="utf-8")) == branch.ngrams
    loaded = NBSVM.load(tmp_path)
    test = [t for t, k in zip(texts, train) if not k]
    assert np.array_equal(loaded.decision_function(test), branch.decision_function(test))
    accuracy = ((loaded.decision_function(test) >= 0) == (labels[~train] == 1)).mean()
    assert accuracy > 0.7 and sorted(set(labels[~train])) == [0, 1]  # it learned from 200 real reviews

    assert loaded.val_margins is None  # fit_nbsvm sets none; training does (below)

    (tmp_path / NGRAMS).write_text(json.dumps(branch.ngrams[:-1]))
    with pytest.raises(UserError, match="does not match"):
        NBSVM.load(tmp_path)
    whole = (tmp_path / ARRAYS).read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not a zip file"):  # truncated, overwritten
        (tmp_path / ARRAYS).write_bytes(damaged)
        with pytest.raises(UserError, match="missing or unreadable"):
            NBSVM.load(tmp_path)


@pytest.mark.parametrize("refit", [True, False])
def test_validation_margins_come_from_a_fit_without_the_validation_reviews(refit, sample_reviews, tmp_path):
    texts = [" ".join(r.text.lower().split()) for r in sample_reviews]
    labels = np.array([r.label for r in sample_reviews])
    val = np.arange(len(texts)) % 4 == 0
    pick = lambda keep: [t for t, k in zip(texts, keep) if k]  # noqa: E731
    branch = fit_with_validation(pick(~val), labels[~val], pick(val), labels[val], NBSVMConfig(refit=refit))
    held_out = fit_nbsvm(pick(~val), labels[~val], NBSVMConfig())
    np.testing.assert_allclose(branch.val_margins, held_out.decision_function(pick(val)), rtol=1e-6)
    own = branch.decision_function(pick(val))
    assert np.allclose(own, branch.val_margins, rtol=1e-6) != refit  # the refit saw the validation reviews
    branch.save(tmp_path)
    assert np.array_equal(NBSVM.load(tmp_path).val_margins, branch.val_margins)


@pytest.fixture(scope="module")
def stacked(sample_reviews, tmp_path_factory):
    """(data dir, config, run): 2 epochs of TINY with the NBSVM branch, every token kept."""
    root = tmp_path_factory.mktemp("stacked")
    data = root / "data"
    data.mkdir()
    write_tarball(sample_reviews, data / "aclImdb_v1.tar.gz")
    spec = {**TINY, "preprocess": {**TINY["preprocess"], "pos_prefixes": None, "lowercase": True},
            "nbsvm": {"order": 2, "min_df": 1}, "train": {**TINY["train"], "val_fraction": 0.25}}
    config = write_config(root / "tiny.yaml", **spec)
    preprocess(load_config(config), data, workers=1)
    train(load_config(config), data, root / "run", log=lambda *_: None)
    return data, config, root / "run"


def _margins(run, processed, data):
    s = score(run.model, data, 64, True, "right", torch.device("cpu"))
    return {**s.margins, "nbsvm": run.nbsvm.decision_function(processed.texts(data))}


def test_stacking_weights_are_fitted_on_the_validation_split_alone(stacked):
    data_dir, config, run_dir = stacked
    run = RunDir(run_dir).load("best")
    cfg = run.config
    processed = load_artifacts(cfg, data_dir)
    train_part, val = split_validation(processed.split("train"), cfg.train.val_fraction, cfg.train.seed)
    test = processed.split("test")
    assert run.stack.branches == ["rnn", "nbsvm"] and run.stack.reviews == len(val)

    # The NBSVM margins stacking saw come from a fit on the training part alone...
    held_out = fit_nbsvm(processed.texts(train_part), train_part.labels, cfg.nbsvm)
    np.testing.assert_allclose(run.nbsvm.val_margins, held_out.decision_function(processed.texts(val)), rtol=1e-6)
    # ...and the stored branch is refitted on every training review (nbsvm.refit, the default).
    full = processed.split("train")
    assert cfg.nbsvm.refit and len(full) == len(train_part) + len(val)
    on_full = fit_nbsvm(processed.texts(full), full.labels, cfg.nbsvm)
    assert run.nbsvm.ngrams == on_full.ngrams
    # Equal up to liblinear's tolerance: it saw the same reviews in another order.
    np.testing.assert_allclose(run.nbsvm.decision_function(processed.texts(test)),
                               on_full.decision_function(processed.texts(test)), atol=1e-3)
    assert not np.allclose(run.nbsvm.decision_function(processed.texts(val)), run.nbsvm.val_margins, rtol=1e-3)

    margins = {**score(run.model, val, 64, True, "right", torch.device("cpu")).margins, "nbsvm": run.nbsvm.val_margins}
    refit = fit_stack(margins, val.labels)
    np.testing.assert_allclose(run.stack.coef, refit.coef, rtol=1e-6)
    assert run.stack.intercept == pytest.approx(refit.intercept, rel=1e-6, abs=1e-9)

    # The check can fail: with the test rows added, or the refitted branch's own validation
    # margins (it saw those reviews), the weights differ.
    mt = _margins(run, processed, test)
    leaked = fit_stack({k: np.concatenate([margins[k], mt[k]]) for k in margins},
                       np.concatenate([val.labels, test.labels]))
    assert not np.allclose(leaked.coef, run.stack.coef, rtol=1e-3)
    seen = fit_stack(_margins(run, processed, val), val.labels)
    assert not np.allclose(seen.coef, run.stack.coef, rtol=1e-3)


def test_eval_reports_each_branch_and_the_stack(stacked):
    data_dir, _, run_dir = stacked
    result = evaluate(run_dir, data_dir)
    assert set(result["branch_accuracy"]) == {"rnn", "nbsvm"}
    assert result["stack"]["branches"] == ["rnn", "nbsvm"]
    run = RunDir(run_dir).load("best")
    processed = load_artifacts(run.config, data_dir)
    test = processed.split("test")
    margins = _margins(run, processed, test)
    expected = ((run.stack.margin(margins) >= 0) == (test.labels == 1)).mean()
    assert result["accuracy"] == pytest.approx(expected)
    assert result["branch_accuracy"]["nbsvm"] == pytest.approx(((margins["nbsvm"] >= 0) == (test.labels == 1)).mean())
    assert "note" not in result
    # The validation reviews fitted the stacking weights and, refitted, the NBSVM branch: not held out.
    val = evaluate(run_dir, data_dir, split="val")
    assert "stacking weights were fitted on them" in val["note"] and "nbsvm.refit" in val["note"] and not val["note"].startswith("note")


def test_an_nbsvm_branch_needs_a_validation_split(tmp_path):
    config = write_config(tmp_path / "c.yaml", **{**TINY, "nbsvm": {}, "train": {**TINY["train"], "val_fraction": 0}})
    with pytest.raises(UserError, match="nbsvm needs a validation split"):
        load_config(config)
    with pytest.raises(UserError, match="'nbsvm.ordr'; did you mean 'nbsvm.order'"):
        load_config(write_config(tmp_path / "d.yaml", **TINY), ["nbsvm.ordr=2"])
