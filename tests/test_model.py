"""last_step=as_packed equals pack_padded_sequence; the tutorial's padded mode equals an unpacked nn.RNN."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import batch, reference_and_ours
from imdb_rnn.config import ModelConfig
from imdb_rnn.model import RNNClassifier

@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_as_packed_last_step_equals_packed(cell, layers, bidirectional):
    ref, ours = reference_and_ours(cell, layers, bidirectional, "as_packed")
    ids, lengths = batch([9, 3, 1, 6, 7])
    x = ours.encoder.embedding(ids)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    _, h_n = ref(packed)
    h_n = h_n[0] if cell == "lstm" else h_n
    top = h_n[-2:] if bidirectional else h_n[-1:]
    expected = torch.cat(list(top), dim=-1)
    got = ours.encoder(ids, lengths)
    assert torch.allclose(got, expected, atol=1e-10), (got - expected).abs().max()
    # Padding never enters: changing what lies beyond each review leaves the features alone.
    noisy = ids.clone()
    for row, n in enumerate(lengths.tolist()):
        noisy[row, n:] = 7
    assert torch.allclose(ours.encoder(noisy, lengths), got, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_padded_mode_is_the_tutorial_computation(cell):
    ref, ours = reference_and_ours(cell, 2, True, "padded")
    ids, lengths = batch([9, 3, 5])
    out, _ = ref(ours.encoder.embedding(ids))
    assert torch.allclose(ours.encoder(ids, lengths), out[:, -1, :], atol=1e-10)


def test_a_wrong_reversal_would_be_caught():
    """The equality test can fail: the tutorial's whole-row flip differs from packing on padded rows."""
    ref, ours = reference_and_ours("gru", 1, True, "padded")
    ids, lengths = batch([9, 3])
    _, h_n = ref(pack_padded_sequence(ours.encoder.embedding(ids), lengths, batch_first=True, enforce_sorted=False))
    assert not torch.allclose(ours.encoder(ids, lengths), torch.cat(list(h_n), dim=-1), atol=1e-6)


def test_empty_review_does_not_crash():
    _, ours = reference_and_ours("lstm", 2, True, "as_packed")
    ids, lengths = batch([0, 4])
    logits = ours(ids, lengths).total
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_random_initial_state_is_drawn_per_call():
    torch.manual_seed(0)
    model = RNNClassifier(11, ModelConfig(embedding_dim=4, hidden_size=3, init_hidden="random", last_step="padded")).eval()
    ids, lengths = batch([5, 2])
    assert not torch.equal(model(ids, lengths).total, model(ids, lengths).total)


def test_pool_readout_ignores_padding_and_reads_every_step():
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=5, hidden_size=4, num_layers=2, readout="pool")
    model = RNNClassifier(11, cfg).double().eval()
    ids, lengths = batch([9, 3, 1, 0])
    feats = model.encoder(ids, lengths)
    assert feats.shape == (4, 3 * 8) and torch.isfinite(feats).all()
    noisy = ids.clone()
    for row, n in enumerate(lengths.tolist()):
        noisy[row, max(n, 1):] = 7  # an empty review reads its first (padding) position
    assert torch.allclose(model.encoder(noisy, lengths), feats, atol=1e-12)
    # Max and mean over the review's own steps of the top layer, recomputed one review at a time.
    plain = RNNClassifier(11, cfg.model_copy(update={"readout": "last"})).double().eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}, strict=False)
    x = plain.encoder.embedding(ids[:1, :9])
    for directions in plain.encoder.layers:
        f = directions[0](x)[0]
        b = directions[1](x.flip(1))[0].flip(1)
        x = torch.cat([f, b], -1)
    outs = x[0]
    assert torch.allclose(feats[0, 8:16], outs.max(0).values, atol=1e-10)
    assert torch.allclose(feats[0, 16:], outs.mean(0), atol=1e-10)


@pytest.mark.parametrize("norm,order", [("mean", 2), ("sqrt", 2), ("sqrt", 3), ("binary", 2), ("binary", 3)])
def test_ngram_branch_is_the_scaled_sum_of_word_and_ngram_weights(norm, order):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=5, hidden_size=4, ngram_buckets=13, ngram_norm=norm, ngram_order=order)
    model = RNNClassifier(11, cfg).double()
    nn.init.normal_(model.ngram.unigrams.weight)
    nn.init.normal_(model.ngram.bigrams.weight)
    ids, lengths = batch([4, 1, 0])
    ids[0, :4] = torch.tensor([3, 5, 3, 5])  # a repeated word and bigram: "binary" counts them once
    got = model.ngram(ids, lengths)
    row = ids[0, :4].tolist()
    p = 1_000_003
    expected = (sum(model.ngram.unigrams.weight[w] for w in row)
                + sum(model.ngram.bigrams.weight[(a * p + b) % 13] for a, b in zip(row, row[1:])))
    if order == 3:
        expected = expected + sum(model.ngram.bigrams.weight[((a * p + b) * p + c) % 13]
                                  for a, b, c in zip(row, row[1:], row[2:]))
    if norm == "binary":  # each distinct word and n-gram bucket once, over the root of their number
        grams = {(a * p + b) % 13 for a, b in zip(row, row[1:])}
        if order == 3:
            grams |= {((a * p + b) * p + c) % 13 for a, b, c in zip(row, row[1:], row[2:])}
        expected = (sum(model.ngram.unigrams.weight[w] for w in set(row)) + sum(model.ngram.bigrams.weight[g] for g in grams))
    scale = {"mean": 4, "sqrt": 2, "binary": (len(set(row)) + len(grams) if norm == "binary" else 0) ** 0.5}[norm]
    assert torch.allclose(got[0], expected / scale, atol=1e-12)
    assert torch.allclose(got[1], model.ngram.unigrams.weight[ids[1, 0]], atol=1e-12)
    assert torch.equal(got[2], torch.zeros(2, dtype=got.dtype))  # an empty review: nothing to add
    # The prediction is the RNN's logits plus the n-gram branch's.
    logits = model(ids, lengths)
    assert torch.allclose(logits.total, logits.rnn + logits.ngram, atol=1e-12)
    assert torch.equal(logits.ngram, got)
