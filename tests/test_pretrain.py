"""Language-model pretraining: the corpus (no test text), truncated BPTT (state carried and
detached), the stage through the CLI (Ctrl-C and --resume), and model.init_from."""

from __future__ import annotations

import math
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT, cli, write_config, write_tarball
from imdb_rnn.config import ModelConfig, PretrainConfig, load_config
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.data.preprocess import preprocess
from imdb_rnn.data.sources import Review
from imdb_rnn.errors import UserError
from imdb_rnn.evaluate import evaluate
from imdb_rnn.model import RNNClassifier, embedding_norm
from imdb_rnn.pretrain import sampled_softmax
from imdb_rnn.pretrain.corpus import build_corpus
from imdb_rnn.pretrain.model import LanguageModel, perplexity
from imdb_rnn.pretrain.sampled_softmax import accidental_hits, log_expected_count, log_uniform_sample, sampled_nll
from imdb_rnn.pretrain.tbptt import batchify, iter_chunks
from imdb_rnn.pretrain.train import _heldout, pretrain
from imdb_rnn.pretrain.transfer import init_from_pretrained
from imdb_rnn.report import report
from imdb_rnn.training.train import train

MARKER = "zyzzyvatestonly"  # a word that only test reviews hold

LM_CONFIG = {
    "data": {"source": "aclImdb_v1.tar.gz"},
    "preprocess": {"normalize": True, "remove_stopwords": False, "pos_prefixes": None, "lowercase": True,
                   "max_len": 48},
    "model": {"cell": "gru", "embedding_dim": 12, "hidden_size": 12, "num_layers": 1, "bidirectional": True,
              "readout": "pool"},
    "train": {"epochs": 1, "batch_size": 16, "val_fraction": 0.1, "device": "cpu"},
    "pretrain": {"epochs": 2, "batch_size": 8, "bptt": 16, "cutoffs": [40, 200], "dropout": 0.2, "device": "cpu"},
}


@pytest.fixture(scope="module")
def lm_data(sample_reviews, tmp_path_factory):
    """(data dir, config): train and test reviews (the test ones marked), unlabelled reviews."""
    root = tmp_path_factory.mktemp("lm")
    data = root / "data"
    data.mkdir()
    labelled = [r for r in sample_reviews if r.split == "train"]  # grouped by class: take both
    train = labelled[::2][:80]
    test = [Review(r.id, r.split, r.label, f"{r.text} {MARKER} {MARKER}") for r in sample_reviews
            if r.split == "test"][::5]
    # 60 unlabelled reviews: train texts shuffled into new orders (so the LM reads new text).
    rng = random.Random(0)
    unsup = {}
    for i, r in enumerate(labelled[1::2][:60]):
        words = r.text.split()
        rng.shuffle(words)
        unsup[f"aclImdb/train/unsup/{i}_0.txt"] = " ".join(words).encode()
    write_tarball(train + test, data / "aclImdb_v1.tar.gz", unsup)
    config = write_config(root / "lm.yaml", **LM_CONFIG)
    preprocess(load_config(config), data, workers=1)
    return data, config


def test_a_damaged_unlabelled_cache_is_made_again_and_damaged_arrays_are_named(lm_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(lm_data[0], data)
    cfg = load_config(lm_data[1])
    processed = load_artifacts(cfg, data)
    first = build_corpus(cfg, processed, data)
    cache = processed.out_dir / "unlabelled.npz"
    whole = cache.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not a zip file", b""):
        cache.write_bytes(damaged)
        again = build_corpus(cfg, processed, data)
        assert np.array_equal(again.train, first.train) and again.review_ids == first.review_ids
        with np.load(cache, allow_pickle=False) as z:  # remade whole
            assert int(z["offsets"][-1]) == len(z["ids"])
    arrays = processed.out_dir / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:1000])
    for stage in ("train", "pretrain"):
        out = cli(stage, "--config", lm_data[1], "--data-dir", data, "--run-dir", tmp_path / stage, "-q", check=False)
        assert out.returncode == 2 and "are unreadable" in out.stderr and "preprocess" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and not (tmp_path / stage).exists()


def test_perplexity_of_a_diverged_model_is_inf_not_a_clamped_number():
    assert perplexity(20.0, 10) == pytest.approx(math.exp(2.0))
    assert perplexity(113861.0, 1) == math.inf and perplexity(0.0, 0) is None


def test_no_test_text_reaches_pretraining(lm_data):
    data, config = lm_data
    cfg = load_config(config)
    processed = load_artifacts(cfg, data)
    corpus = build_corpus(cfg, processed, data)
    assert MARKER not in processed.vocab.stoi  # the vocabulary counts the training split alone
    assert corpus.unlabelled_reviews == 60 and corpus.reviews == 80 + 60
    assert not [rid for rid in corpus.review_ids if rid.startswith("test/")]
    test_tokens = {t for t in " ".join(processed.texts(processed.split("test"))).split()}
    assert MARKER in test_tokens  # the marker is there to be leaked


def test_no_test_token_counts(lm_data):
    """Counted another way: the corpus's id histogram equals that of train + unlabelled reviews."""
    data, config = lm_data
    cfg = load_config(config)
    processed = load_artifacts(cfg, data)
    corpus = build_corpus(cfg, processed, data)
    got = np.bincount(np.concatenate([corpus.train, corpus.heldout]), minlength=len(processed.vocab))
    from imdb_rnn.pretrain.corpus import _encode_unlabelled

    _, unlabelled = _encode_unlabelled(cfg, processed, data, 1, False)
    train_ids = [processed.vocab.encode(t.split()) for t in processed.texts(processed.split("train"))]
    want = np.bincount(np.concatenate([np.concatenate(train_ids), *unlabelled]).astype(np.int64),
                       minlength=len(processed.vocab))
    want[processed.vocab.pad_id] += corpus.reviews  # one end-of-review id per review
    assert np.array_equal(got, want)


def _tiny_lm(cell: str = "gru") -> LanguageModel:
    torch.manual_seed(0)
    mcfg = ModelConfig(cell=cell, embedding_dim=6, hidden_size=5, num_layers=1, bidirectional=False)
    return LanguageModel(20, mcfg, PretrainConfig(dropout=0.0, softmax="full")).double()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_truncated_bptt_carries_state(cell):
    """Two chunks with the carried state give the states and losses of one pass over both."""
    lm = _tiny_lm(cell).eval()
    stream = np.random.default_rng(0).integers(1, 20, 2 * 25)
    data = batchify(stream, 2)  # (2, 25)
    chunks = list(iter_chunks(data, 8))
    state, losses = lm.initial_state(), []
    for _, x, y in chunks[:3]:
        (loss,), state = lm([x], [y], state)
        losses.append(loss)
    (whole,), whole_state = lm([data[:, :24]], [data[:, 1:25]], lm.initial_state())
    assert torch.allclose(sum(losses), whole, atol=1e-10)
    h = state[0][0][0] if cell == "lstm" else state[0][0]
    h_whole = whole_state[0][0][0] if cell == "lstm" else whole_state[0][0]
    assert torch.allclose(h, h_whole, atol=1e-12)
    # A state reset at every chunk would give other losses.
    reset = sum(lm([x], [y], lm.initial_state())[0][0] for _, x, y in chunks[:3])
    assert not torch.allclose(reset, whole, atol=1e-6)


def test_truncated_bptt_detaches_state():
    """The second chunk's loss sends no gradient into the first chunk: embedding rows that only
    the first chunk's inputs use get none, although the carried state depends on them."""
    lm = _tiny_lm().train()
    first = torch.tensor([[2, 3, 2, 3, 2]])
    second_in, second_out = torch.tensor([[4, 5, 4, 5, 4]]), torch.tensor([[5, 4, 5, 4, 6]])
    (_, ), state = lm([first], [torch.tensor([[3, 2, 3, 2, 4]])], lm.initial_state())
    assert state[0][0].grad_fn is None and not state[0][0].requires_grad
    lm.zero_grad()
    (loss,), _ = lm([second_in], [second_out], state)
    loss.backward()
    grad = lm.embedding.weight.grad
    assert grad[2].abs().sum() == 0 and grad[3].abs().sum() == 0
    assert grad[4].abs().sum() > 0
    # Undetached, the same loss does reach those rows (so the check above can fail).
    lm.zero_grad()
    emb_first = lm.embedding(first)
    _, h = lm.layers[0][0](emb_first)
    out, _ = lm.layers[0][0](lm.embedding(second_in), h)
    lm._nll(0, out.reshape(-1, 5), second_out.reshape(-1)).backward()
    assert lm.embedding.weight.grad[2].abs().sum() > 0


def test_dropout_masks_drawn_ahead_are_nn_dropouts():
    """The masks `draw_noise` draws before a step are the ones `nn.Dropout` draws from the same
    seed as the step goes (so a seed gives the runs it gave before they were drawn ahead): on
    the embeddings, and on the recurrent layer's output, which lies in memory time-major."""
    from torch.nn import functional as F

    from imdb_rnn.pretrain.sampled_softmax import full_nll

    torch.manual_seed(0)
    mcfg = ModelConfig(cell="gru", embedding_dim=6, hidden_size=5, num_layers=1, bidirectional=False)
    lm = LanguageModel(20, mcfg, PretrainConfig(dropout=0.3, softmax="full"))
    x, y = torch.randint(20, (3, 7)), torch.randint(20, (3, 7))
    torch.manual_seed(1)
    (got,), _ = lm([x], [y], lm.initial_state())
    torch.manual_seed(1)
    h, _ = lm.layers[0][0](F.dropout(lm.embedding(x), 0.3))
    want = full_nll(F.dropout(h, 0.3).reshape(-1, 5), y.reshape(-1), lm.heads[0].weight, lm.heads[0].bias)
    assert torch.equal(got, want)


@pytest.mark.parametrize("cell,softmax,shared", [("gru", "sampled", False), ("lstm", "adaptive", False),
                                                ("gru", "sampled", True)])
def test_directions_side_by_side_give_the_steps_they_give_in_turn(cell, softmax, shared):
    """The forward and backward LMs run on two threads (SideBySide) give the losses, carried
    states and gradients they give one after the other (a backward pass each, as `pretrain` runs
    them in turn), to the bit, over two chunks: the random draws are made beforehand, in order,
    and the shared weights' gradient is the same sum, also where each direction sends them
    several (`shared`: tied output weights and normalised embeddings)."""
    from imdb_rnn.pretrain.side_by_side import SideBySide

    torch.manual_seed(0)
    mcfg = ModelConfig(cell=cell, embedding_dim=8, hidden_size=8, num_layers=1, bidirectional=True,
                       normalize_embeddings=shared)
    lm = LanguageModel(300, mcfg, PretrainConfig(dropout=0.3, softmax=softmax, samples=20, cutoffs=[50],
                                                 tie_weights=shared))
    x, y = list(torch.randint(300, (2, 4, 9))), list(torch.randint(300, (2, 4, 9)))
    threads = torch.get_num_threads()
    runner = SideBySide()
    outcomes = []
    try:
        for side_by_side in (False, True):
            torch.manual_seed(1)
            state = lm.initial_state()
            for _ in range(2):  # the second chunk reads the state the first carried over
                lm.zero_grad(set_to_none=True)  # as each step does
                noise = lm.draw_noise(x)
                if side_by_side:
                    losses, state, _ = runner.forward_backward(lm, x, y, state, noise, 0.25, 2)
                else:
                    losses, state = lm(x, y, state, noise)
                    for loss in losses:
                        (loss * 0.25).backward()
            outcomes.append((losses, state, {k: t.grad.clone() for k, t in lm.named_parameters()}))
    finally:
        runner.close()
        torch.set_num_threads(threads)
    (losses_a, state_a, grads_a), (losses_b, state_b, grads_b) = outcomes
    assert all(torch.equal(a, b) for a, b in zip(losses_a, losses_b))
    flat = [torch.utils._pytree.tree_leaves(s) for s in (state_a, state_b)]
    assert len(flat[0]) == (4 if cell == "lstm" else 2) and all(torch.equal(a, b) for a, b in zip(*flat))
    assert grads_a.keys() == grads_b.keys() and all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)


def _cli_pretrain(config, data, run, *extra, check=True):
    return cli("pretrain", "--config", config, "--data-dir", data, "--run-dir", run, "-q", "-j", "1", *extra,
               check=check)


@pytest.mark.slow
def test_pretrain_cli_and_init_from_copies_exactly(lm_data, tmp_path):
    data, config = lm_data
    lm_run = tmp_path / "lm"
    _cli_pretrain(config, data, lm_run)
    rows = (lm_run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_perplexity,val_loss,val_perplexity") and len(rows) == 3
    assert (lm_run / "perplexity.png").stat().st_size > 0
    lm = torch.load(lm_run / "lm-last.pt", weights_only=True)
    cfg = load_config(config, [f"model.init_from={lm_run}", "model.ngram_buckets=1000"])
    processed = load_artifacts(cfg, data)
    torch.manual_seed(1)
    model = RNNClassifier(len(processed.vocab), cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copied = init_from_pretrained(model, lm_run, processed.vocab.sha256())
    after = model.state_dict()
    assert copied == sorted(k for k in lm["state_dict"] if k.startswith(("embedding.", "layers.")))
    assert {f"encoder.{k}" for k in copied} == {k for k in after if k.startswith("encoder.")}
    for k in copied:
        assert torch.equal(after[f"encoder.{k}"], lm["state_dict"][k])
    for k in after:  # the head and the n-gram branch start afresh
        if not k.startswith("encoder."):
            assert torch.equal(after[k], before[k])
    # Through train: the fine-tuned run starts from the pretrained weights, and trains.
    out = cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "clf", "-q",
              f"model.init_from={lm_run}")
    assert out.returncode == 0 and (tmp_path / "clf" / "model-last.pt").is_file()
    # One config serves both stages: --resume compares only what the resumed stage reads.
    other_stage = ["pretrain.lr=0.5", "pretrain.softmax=full", f"model.init_from={tmp_path / 'elsewhere'}"]
    cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "clf", "-q", "--resume", *other_stage)
    out = cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "clf", "-q", "--resume",
              "train.lr=0.5", check=False)
    assert out.returncode == 2 and "train.lr" in out.stderr and "Traceback" not in out.stderr
    _cli_pretrain(config, data, lm_run, "--resume", "train.lr=0.5", "train.adversarial=at", "nbsvm=null",
                  "model.output_dropout=0.4", f"model.init_from={tmp_path / 'elsewhere'}")
    lines = []
    pretrain(load_config(config), data, lm_run, resume=True, log=lines.append, workers=1)
    assert any("has finished its 2 epochs: nothing left to do" in line for line in lines), lines
    for changed in ("pretrain.lr=0.5", "model.hidden_size=8", "preprocess.lowercase=false"):
        out = _cli_pretrain(config, data, lm_run, "--resume", changed, check=False)
        assert out.returncode == 2 and changed.split("=")[0] in out.stderr and "Traceback" not in out.stderr, changed
    # The two kinds of run are told apart: eval and report refuse a language model by name, and
    # pretrain over a classifier's folder names what is there; with --overwrite it leaves none of it.
    with pytest.raises(UserError, match="is a pretrain run"):
        report(lm_run)
    with pytest.raises(UserError, match="is a pretrain run"):
        evaluate(lm_run, data)
    with pytest.raises(UserError, match="holds a classifier run"):
        pretrain(load_config(config), data, tmp_path / "clf")
    _cli_pretrain(config, data, tmp_path / "clf", "--overwrite")
    assert (tmp_path / "clf" / "lm-last.pt").is_file() and not list((tmp_path / "clf").glob("model-*.pt"))
    # The wrong vocabulary or shape is refused, naming what to change.
    with pytest.raises(UserError, match="another vocabulary"):
        init_from_pretrained(model, lm_run, "0" * 64)
    other = RNNClassifier(len(processed.vocab), cfg.model.model_copy(update={"hidden_size": 7}))
    with pytest.raises(UserError, match="model.hidden_size"):
        init_from_pretrained(other, lm_run, processed.vocab.sha256())
    bad = cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "clf2", "-q",
              f"model.init_from={tmp_path / 'nowhere'}", check=False)
    assert bad.returncode == 2 and "no lm-last.pt" in bad.stderr and "Traceback" not in bad.stderr
    # A refused language model is refused before the run directory is written: a corrected retry
    # needs no --overwrite.
    assert not (tmp_path / "clf2").exists()
    with pytest.raises(UserError, match="model.hidden_size"):
        train(load_config(config, [f"model.init_from={lm_run}", "model.hidden_size=7"]), data, tmp_path / "clf2")
    assert not (tmp_path / "clf2").exists()
    # --overwrite into the language model's own folder would delete what it is about to read
    with pytest.raises(UserError, match="is the run directory itself"):
        train(load_config(config, [f"model.init_from={lm_run}"]), data, lm_run, overwrite=True)
    assert (lm_run / "lm-last.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("softmax", ["adaptive", "sampled"])
def test_pretrain_interrupted_then_resumed_matches_uninterrupted(lm_data, tmp_path, softmax):
    """The sampled softmax's draws come from the saved random state too."""
    data, config = lm_data
    extra = ["pretrain.epochs=3", f"pretrain.softmax={softmax}", "pretrain.samples=20"]
    _cli_pretrain(config, data, tmp_path / "straight", *extra)
    run = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "imdb_rnn", "pretrain", "--config", str(config), "--data-dir",
                             str(data), "--run-dir", str(run), "-q", "-j", "1", *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "lm-last.pt").exists() and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err
    if proc.returncode == 130:
        assert "--resume" in err and "Traceback" not in err
        lines = []  # in-process: the CLI's -q leaves the log out
        pretrain(load_config(config, extra), data, run, resume=True, log=lines.append, workers=1)
        assert re.fullmatch(rf"resuming {re.escape(str(run))} (in epoch [1-3] after chunk \d+ of \d+|after epoch [1-3])",
                            next(line for line in lines if line.startswith("resuming"))), lines
    a = torch.load(tmp_path / "straight" / "lm-last.pt", weights_only=True)
    b = torch.load(run / "lm-last.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["history"][-1]["val_loss"] == b["history"][-1]["val_loss"]


@pytest.mark.slow
def test_pretrain_errors(lm_data, tmp_path):
    data, config = lm_data
    no_section = write_config(tmp_path / "plain.yaml", **{k: v for k, v in LM_CONFIG.items() if k != "pretrain"})
    out = _cli_pretrain(no_section, data, tmp_path / "x", check=False)
    assert out.returncode == 2 and "no pretrain section" in out.stderr
    out = _cli_pretrain(config, data, tmp_path / "y", "model.num_layers=2", check=False)
    assert out.returncode == 2 and "model.num_layers=1" in out.stderr and "Traceback" not in out.stderr
    out = _cli_pretrain(config, data, tmp_path / "z", "--resume", check=False)
    assert out.returncode == 2 and "nothing to resume" in out.stderr and "pretrain without --resume" in out.stderr
    # A run that stopped before its first save: each message leads to --overwrite, not round in circles.
    diverged = _cli_pretrain(config, data, tmp_path / "d", "pretrain.lr=1e38", "pretrain.grad_clip=null",
                             "pretrain.softmax=full", check=False)
    assert diverged.returncode == 2 and "non-finite" in diverged.stderr and not (tmp_path / "d" / "lm-last.pt").exists()
    again = _cli_pretrain(config, data, tmp_path / "d", check=False)
    assert again.returncode == 2 and "with nothing to resume" in again.stderr and "--overwrite" in again.stderr
    again = _cli_pretrain(config, data, tmp_path / "d", "--resume", check=False)
    assert again.returncode == 2 and "--overwrite instead of --resume" in again.stderr
    _cli_pretrain(config, data, tmp_path / "d", "--overwrite")
    # --resume on the other kind's folder names it, for both stages
    out = cli("train", "--config", config, "--data-dir", data, "--run-dir", tmp_path / "d", "-q", "--resume", check=False)
    assert out.returncode == 2 and "holds a pretrain run" in out.stderr and "--overwrite instead of --resume" in out.stderr
    out = _cli_pretrain(config, data, tmp_path / "w", "pretrain.batch_size=100000", check=False)
    assert out.returncode == 2 and "lower pretrain.batch_size" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "w").exists()  # refused before anything is written
    caches = list(Path(data).glob("processed/*/unlabelled.npz"))
    assert caches
    for cache in caches:  # the refusal below comes before the unlabelled reviews are tokenized again
        cache.unlink()
    out = _cli_pretrain(config, data, tmp_path / "s", "pretrain.softmax=sampled", "pretrain.samples=100000", check=False)
    assert out.returncode == 2 and "pretrain.samples=100000 is not below" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "s").exists() and not list(Path(data).glob("processed/*/unlabelled.npz"))


def test_hugging_face_folder_feeds_its_unsupervised_split_and_never_its_test_split(sample_reviews, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    labelled = [r for r in sample_reviews if r.split == "train"][::5]  # both classes
    test = [r for r in sample_reviews if r.split == "test"][::20]
    unsup = [f"unlabelled review number {i} about a film" for i in range(7)]
    data = tmp_path / "data"
    folder = data / "imdb-hf" / "plain_text"  # stanfordnlp/imdb's layout
    folder.mkdir(parents=True)
    for split, texts, labels in (("train", [r.text for r in labelled], [r.label for r in labelled]),
                                 ("test", [f"{r.text} {MARKER}" for r in test], [r.label for r in test]),
                                 ("unsupervised", unsup, [-1] * len(unsup))):
        pq.write_table(pa.table({"text": texts, "label": labels}), folder / f"{split}-00000-of-00001.parquet")
    config = write_config(tmp_path / "hf.yaml", **{**LM_CONFIG, "data": {"source": "imdb-hf"},
                                                   "pretrain": {**LM_CONFIG["pretrain"], "heldout_fraction": 0.1}})
    cfg = load_config(config)
    preprocess(cfg, data, workers=1)
    processed = load_artifacts(cfg, data)
    corpus = build_corpus(cfg, processed, data)
    assert corpus.unlabelled_reviews == 7 and corpus.reviews == len(labelled) + 7
    assert sum(rid.startswith("unsupervised/") for rid in corpus.review_ids) == 7
    assert not [rid for rid in corpus.review_ids if rid.startswith("test")]
    assert MARKER not in processed.vocab.stoi


@pytest.mark.slow
def test_pretrain_under_torchrun_takes_the_steps_of_one_process(lm_data, tmp_path):
    """Each rank reads its own rows of the global batch and DDP averages the gradients: without
    dropout two processes end where one does (up to float summation order)."""
    data, config = lm_data
    extra = ["pretrain.dropout=0.0", "pretrain.epochs=1"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "imdb_rnn", "pretrain", "--config", str(config), "--data-dir", str(data), "--run-dir",
                           str(tmp_path / "ddp"), "-j", "1", *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 processes" in proc.stdout and proc.stdout.count("epoch 1:") == 1
    _cli_pretrain(config, data, tmp_path / "one", *extra)
    a = torch.load(tmp_path / "ddp" / "lm-last.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "lm-last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in a["state_dict"])
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-5), k
    assert a["history"][0]["val_loss"] == pytest.approx(b["history"][0]["val_loss"], rel=1e-4)


def test_log_uniform_sample_follows_its_distribution():
    """The sampler draws id k with P(k) = log((k+2)/(k+1)) / log(V+1), the probability the loss's
    correction assumes."""
    torch.manual_seed(0)
    ids = log_uniform_sample(200_000, 10, torch.device("cpu"))
    freq = np.bincount(ids.numpy(), minlength=10) / ids.numel()
    want = np.exp(log_expected_count(torch.arange(10), 1, 10).numpy())
    assert abs(want.sum() - 1) < 1e-9
    np.testing.assert_allclose(freq, want, atol=0.004)


@pytest.mark.parametrize("logits_at_a_time", [None, 12, 18, 1])
def test_sampled_softmax_loss_and_its_accidental_hits(logits_at_a_time, monkeypatch):
    """The loss is the softmax cross-entropy of the target against the drawn words, every logit
    corrected by log(expected count); a drawn word equal to the target is left out. Computed in
    pieces of rows (12, 18, 1 logits: 2, 3 (then the last 1), 1 rows of 1 + 5 at a time), it has
    the same value and gradients."""
    if logits_at_a_time is not None:
        monkeypatch.setattr(sampled_softmax, "_SAMPLED_LOGITS", logits_at_a_time)
    torch.manual_seed(0)
    h, w, b = (torch.randn(shape, dtype=torch.double, requires_grad=True) for shape in [(4, 3), (7, 3), (7,)])
    y = torch.tensor([0, 2, 6, 0])
    torch.manual_seed(1)
    drawn = log_uniform_sample(5, 7, torch.device("cpu"))
    got = sampled_nll(h, y, w, b, drawn)
    assert (drawn[None, :] == y[:, None]).any()  # the case below is exercised
    want = 0.0
    for i in range(4):
        t = h[i] @ w[y[i]] + b[y[i]] - log_expected_count(y[i], 5, 7)
        negatives = [h[i] @ w[k] + b[k] - log_expected_count(k, 5, 7) for k in drawn if k != y[i]]
        want += torch.logsumexp(torch.stack([t, *negatives]), 0) - t
    assert torch.allclose(got, want, atol=1e-12)
    for g_got, g_want in zip(torch.autograd.grad(got, (h, w, b)), torch.autograd.grad(want, (h, w, b))):
        assert torch.allclose(g_got, g_want, atol=1e-12)


@pytest.mark.parametrize("vocab_size", [3, 50, 1000])
def test_accidental_hits_are_every_equal_pair(vocab_size):
    """Binary search in the sorted negatives finds exactly the pairs a comparison of every target
    with every negative finds (repeated negatives, repeated targets, none at all), rows ascending."""
    torch.manual_seed(vocab_size)
    targets = torch.randint(vocab_size, (200,))
    negatives = log_uniform_sample(64, vocab_size, torch.device("cpu"))
    rows, columns = accidental_hits(targets, negatives)
    want = (negatives[None, :] == targets[:, None]).nonzero()
    assert sorted(zip(rows.tolist(), columns.tolist())) == [tuple(p) for p in want.tolist()]
    assert torch.equal(rows, rows.sort().values)
    assert (negatives[columns] == targets[rows]).all()
    none_rows, _ = accidental_hits(torch.tensor([vocab_size + 1]), negatives)
    assert none_rows.numel() == 0


def test_sampled_softmax_trains_the_exact_softmax():
    """A language model trained on a sampled softmax learns a periodic stream: its exact
    (eval-mode) perplexity falls from about the vocabulary's size to near 1."""
    torch.manual_seed(0)
    mcfg = ModelConfig(cell="gru", embedding_dim=16, hidden_size=16, num_layers=1, bidirectional=False)
    lm = LanguageModel(60, mcfg, PretrainConfig(dropout=0.0, softmax="sampled", samples=8))
    period = torch.randperm(59)[:12] + 1
    data = period.repeat(4, 10)  # (4, 120)
    x, y = data[:, :-1], data[:, 1:]

    def exact() -> float:
        lm.eval()
        with torch.no_grad():
            (nll,), _ = lm([x], [y], lm.initial_state())
        lm.train()
        return math.exp(nll.item() / y.numel())

    before = exact()
    optimizer = torch.optim.Adam(lm.parameters(), lr=0.02)
    for _ in range(150):
        (loss,), _ = lm([x], [y], lm.initial_state())
        optimizer.zero_grad()
        (loss / y.numel()).backward()
        optimizer.step()
    assert before > 30 and exact() < 1.5


def test_pretrain_with_a_sampled_softmax(lm_data, tmp_path):
    """softmax=sampled trains and reports the exact held-out perplexity (that of a full softmax
    with the same weights); the train perplexity is left empty, since its loss is the sampled one."""
    data, config = lm_data
    cfg = load_config(config, ["pretrain.softmax=sampled", "pretrain.samples=20", "pretrain.epochs=1"])
    result = pretrain(cfg, data, tmp_path / "lm", log=lambda *_: None)
    row = result.epochs[0]
    assert row.train_perplexity is None and row.train_loss > 0
    assert 1 < row.val_perplexity < 1e5 and abs(math.log(row.val_perplexity) - row.val_loss) < 1e-3
    processed = load_artifacts(cfg, data)
    full = LanguageModel(len(processed.vocab), cfg.model, cfg.pretrain.model_copy(update={"softmax": "full"}))
    full.load_state_dict(torch.load(tmp_path / "lm" / "lm-last.pt", weights_only=True)["state_dict"])
    exact, _ = _heldout(full, build_corpus(cfg, processed, data, 1, False), cfg.pretrain, torch.device("cpu"))
    assert exact == pytest.approx(row.val_loss, abs=1e-5)
    metrics = (tmp_path / "lm" / "metrics.csv").read_text().splitlines()
    assert metrics[1].split(",")[2] == ""  # train_perplexity
    assert (tmp_path / "lm" / "perplexity.png").stat().st_size > 0


def test_normalised_embeddings_are_pretrained_and_transferred_with_their_word_frequencies(lm_data, tmp_path):
    """model.normalize_embeddings: the language model counts its own training stream, and
    model.init_from brings those counts (not the labelled split's) with the embedding; a language
    model and a classifier that disagree on it are refused, naming the key."""
    data, config = lm_data
    on = ["model.normalize_embeddings=true"]
    cfg = load_config(config, [*on, "pretrain.epochs=1"])
    lm_log: list[str] = []
    pretrain(cfg, data, tmp_path / "lm", log=lm_log.append, workers=1)
    assert embedding_norm.DESCRIPTION in lm_log  # said, as the run goes
    processed = load_artifacts(cfg, data)
    counts = np.bincount(build_corpus(cfg, processed, data, 1, False).train, minlength=len(processed.vocab))
    counts[processed.vocab.pad_id] = 0
    lm = torch.load(tmp_path / "lm" / "lm-last.pt", weights_only=True)["state_dict"]
    assert lm["embedding_norm.frequencies"].tolist() == counts.tolist()
    clf_log: list[str] = []
    train(load_config(config, [*on, f"model.init_from={tmp_path / 'lm'}"]), data, tmp_path / "clf", log=clf_log.append)
    assert embedding_norm.DESCRIPTION in clf_log and any("its word counts" in line for line in clf_log)
    clf = torch.load(tmp_path / "clf" / "model-last.pt", weights_only=True)["state_dict"]
    assert torch.equal(clf["encoder.embedding_norm.frequencies"], lm["embedding_norm.frequencies"])
    train(load_config(config, on), data, tmp_path / "alone", log=lambda *_: None)  # counts the labelled split
    alone = torch.load(tmp_path / "alone" / "model-last.pt", weights_only=True)["state_dict"]
    assert alone["encoder.embedding_norm.frequencies"].sum() < counts.sum()
    plain = RNNClassifier(len(processed.vocab), load_config(config).model)
    with pytest.raises(UserError, match="model.normalize_embeddings=true, this config false"):
        init_from_pretrained(plain, tmp_path / "lm", processed.vocab.sha256())


def test_cutoffs_past_the_vocabulary_are_left_out_and_logged(lm_data, tmp_path):
    data, config = lm_data
    cfg = load_config(config, ["pretrain.cutoffs=[40, 100000]", "pretrain.epochs=1"])
    lines: list[str] = []
    pretrain(cfg, data, tmp_path / "lm", log=lines.append)
    vocab = len(load_artifacts(cfg, data).vocab)
    note = [line for line in lines if line.startswith("note: pretrain.cutoffs")]
    assert note == [f"note: pretrain.cutoffs [100000] left out (each must be below {vocab - 1:,}, the vocabulary's "
                    f"{vocab:,} words less one); the adaptive softmax's clusters start at [40]"], lines
    state = torch.load(tmp_path / "lm" / "lm-last.pt", weights_only=True)["state_dict"]
    assert state["heads.0.head.weight"].shape[0] == 40 + 1  # the shortlist and one cluster
