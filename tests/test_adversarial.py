"""Adversarial (AT) and virtual adversarial (VAT) training on the embeddings: the perturbation
path's gradients checked against finite differences on a tiny double-precision model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from imdb_rnn.config import ModelConfig, TrainConfig, load_config
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.data.batches import make_batch
from imdb_rnn.model import RNNClassifier
from imdb_rnn.training.adversarial import at_perturbation, kl_divergence, l2_normalize
from imdb_rnn.training.distributed import Dist
from imdb_rnn.training.interrupt import StopRequest
from imdb_rnn.training.loop import batch_loss, optimizer_step, run_epoch
from imdb_rnn.training.rng import epoch_seed
from imdb_rnn.training.setup import build_setup


def _tiny(normalize_embeddings: bool = False, ngram_buckets: int = 0):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=3, hidden_size=4, num_layers=1, bidirectional=True, readout="pool",
                      normalize_embeddings=normalize_embeddings, ngram_buckets=ngram_buckets)
    model = RNNClassifier(9, cfg).double().eval()
    ids = torch.tensor([[2, 5, 7, 3], [4, 8, 0, 0]])
    lengths = torch.tensor([4, 2])
    if normalize_embeddings:
        model.encoder.embedding_norm.set_frequencies(np.array([1, 1, 2, 3, 3, 3, 5, 7, 8, 8]))
    return model, ids, lengths, torch.tensor([1, 0])


# model.normalize_embeddings: the perturbation is added to the normalised embeddings (Miyato et al.)
@pytest.mark.parametrize("normalize_embeddings", [False, True])
def test_loss_gradient_with_respect_to_the_perturbation_matches_finite_differences(normalize_embeddings):
    model, ids, lengths, labels = _tiny(normalize_embeddings)
    delta = torch.zeros(2, 4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: F.cross_entropy(model(ids, lengths, d).rnn, labels), (delta,))
    probe = (0.1 * torch.randn(2, 4, 3, dtype=torch.double)).requires_grad_(True)
    clean = model(ids, lengths).rnn.detach()
    assert torch.autograd.gradcheck(lambda d: kl_divergence(clean, model(ids, lengths, d).rnn), (probe,))


@pytest.mark.parametrize("normalize_embeddings", [False, True])
def test_at_perturbation_is_the_normalised_loss_gradient(normalize_embeddings):
    model, ids, lengths, labels = _tiny(normalize_embeddings)
    delta = torch.zeros(2, 4, 3, dtype=torch.double, requires_grad=True)
    loss = F.cross_entropy(model(ids, lengths, delta).rnn, labels, reduction="sum")
    r = at_perturbation(loss, delta, lengths, epsilon=0.5)
    # The gradient by central differences, element by element.
    h, numeric = 1e-6, torch.zeros(2, 4, 3, dtype=torch.double)
    with torch.no_grad():
        for idx in torch.cartesian_prod(torch.arange(2), torch.arange(4), torch.arange(3)):
            e = torch.zeros_like(numeric)
            e[tuple(idx)] = h
            up = F.cross_entropy(model(ids, lengths, e).rnn, labels, reduction="sum")
            down = F.cross_entropy(model(ids, lengths, -e).rnn, labels, reduction="sum")
            numeric[tuple(idx)] = (up - down) / (2 * h)
    assert torch.allclose(r, 0.5 * l2_normalize(numeric, lengths), atol=1e-6)
    assert torch.allclose(r.flatten(1).norm(dim=1), torch.full((2,), 0.5, dtype=torch.double))
    assert r[1, 2:].abs().sum() == 0  # padding is never perturbed
    with torch.no_grad():  # the perturbation raises the loss, as a step along the gradient should
        assert F.cross_entropy(model(ids, lengths, r).rnn, labels) > F.cross_entropy(model(ids, lengths).rnn, labels)


@pytest.mark.parametrize("kind", ["at", "vat"])
def test_adversarial_objective_treats_the_perturbation_as_a_constant(kind):
    """The parameters' gradient of the objective is that of clean loss + adversarial loss at the
    same (fixed) perturbation: no gradient flows through the perturbation's computation."""
    model, ids, lengths, labels = _tiny()
    t = TrainConfig(adversarial=kind, adv_epsilon=0.7, vat_xi=0.1)
    torch.manual_seed(3)
    objective, reported, _ = batch_loss(model, ids, lengths, labels, False, t, model)
    grads = torch.autograd.grad(objective, list(model.parameters()), allow_unused=True)
    clean = F.cross_entropy(model(ids, lengths).rnn, labels, reduction="sum")
    assert torch.allclose(reported, clean)
    assert objective > clean  # the adversarial term is positive
    # Rebuild the same perturbation, then the objective with it as a constant.
    delta = torch.zeros(2, 4, 3, dtype=torch.double, requires_grad=True)
    logits = model(ids, lengths, delta).rnn
    loss = F.cross_entropy(logits, labels, reduction="sum")
    torch.manual_seed(3)
    if kind == "at":
        r = at_perturbation(loss, delta, lengths, 0.7)
        extra = F.cross_entropy(model(ids, lengths, r).rnn, labels, reduction="sum")
    else:
        probe = (0.1 * l2_normalize(torch.randn_like(delta), lengths)).requires_grad_(True)
        (g,) = torch.autograd.grad(kl_divergence(logits, model(ids, lengths, probe).rnn), probe)
        r = 0.7 * l2_normalize(g, lengths)
        extra = kl_divergence(logits, model(ids, lengths, r).rnn)
    want = torch.autograd.grad(loss + extra, list(model.parameters()), allow_unused=True)
    for a, b in zip(grads, want):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("separate", [False, True])
def test_at_with_the_clean_backward_pass_inside_gives_the_same_gradients(separate):
    """batch_loss(backward_scale=...) backpropagates the clean objective itself and reads the
    perturbation's gradient from that pass: its objective, backpropagated at the same scale, adds
    up to the gradients of the whole objective computed the other way."""
    model, ids, lengths, labels = _tiny(ngram_buckets=50)
    with torch.no_grad():  # the n-gram branch starts at zero: give it gradients that matter
        model.ngram.bigrams.weight.normal_()
    t = TrainConfig(adversarial="at", adv_epsilon=0.7)
    objective, reported, _ = batch_loss(model, ids, lengths, labels, separate, t, model)
    (objective * 0.25).backward()
    want = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    got_objective, got_reported, _ = batch_loss(model, ids, lengths, labels, separate, t, model, backward_scale=0.25)
    assert all(p.grad is not None for p in model.parameters())  # the clean pass has run
    (got_objective * 0.25).backward()
    assert torch.allclose(got_objective, objective, atol=1e-12) and torch.allclose(got_reported, reported)
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, want[k], atol=1e-12), k


def test_an_epoch_with_at_in_one_process_trains_as_with_a_separate_pass(tiny_run):
    """run_epoch in one process (the clean backward pass inside batch_loss, at its step's scale)
    ends the epoch with the weights of the same steps taken with the perturbation's own pass."""
    data, config = tiny_run
    cfg = load_config(config, ["train.adversarial=at", "train.adv_epsilon=2.0", "model.last_step=as_packed",
                               "model.ngram_buckets=300", "train.ngram_loss=separate"])
    processed = load_artifacts(cfg, data)
    fast = build_setup(cfg, processed, Dist(), torch.device("cpu"), StopRequest())
    run_epoch(fast, 1, None)
    s = build_setup(cfg, processed, Dist(), torch.device("cpu"), StopRequest())  # the same initial weights
    s.net.train()
    s.sampler.set_epoch(1)
    torch.manual_seed(epoch_seed(cfg.train.seed, 1, 0))  # the same dropout
    steps = 0
    for index in s.sampler:
        ids, lengths, labels = make_batch(s.train_data, index, cfg.train.dynamic_padding, s.pad_side, s.device)
        s.optimizer.zero_grad(set_to_none=True)
        objective, _, _ = batch_loss(s.net, ids, lengths, labels, s.separate_losses, s.train, s.model)
        optimizer_step(s, objective / len(index))
        steps += 1
    assert steps > 1
    for (name, got), want in zip(fast.model.named_parameters(), s.model.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
