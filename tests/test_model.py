"""The exact last step equals pack_padded_sequence; the seed's mode equals an unpacked nn.RNN."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from imdb_rnn.config import ModelConfig
from imdb_rnn.model import RNNClassifier

TORCH_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def reference_and_ours(cell, layers, bidirectional, last_step):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, embedding_dim=5, hidden_size=4, num_layers=layers, bidirectional=bidirectional,
                      last_step=last_step, init_hidden="zeros")
    ours = RNNClassifier(11, cfg).double().eval()
    ref = TORCH_CELLS[cell](5, 4, num_layers=layers, bidirectional=bidirectional, batch_first=True).double()
    # Copy the fused module's weights into our per-direction modules.
    for layer, directions in enumerate(ours.layers):
        for d, module in enumerate(directions):
            suffix = "_reverse" if d else ""
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(module, f"{name}_l0").data.copy_(getattr(ref, f"{name}_l{layer}{suffix}").data)
    return ref, ours


def batch(lengths, width=9):
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(2, 11, (n,))
    return ids, torch.tensor(lengths)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_exact_last_step_equals_packed(cell, layers, bidirectional):
    ref, ours = reference_and_ours(cell, layers, bidirectional, "exact")
    ids, lengths = batch([9, 3, 1, 6, 7])
    x = ours.embedding(ids)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    _, h_n = ref(packed)
    h_n = h_n[0] if cell == "lstm" else h_n
    top = h_n[-2:] if bidirectional else h_n[-1:]
    expected = torch.cat(list(top), dim=-1)
    got = ours.encode(ids, lengths)
    assert torch.allclose(got, expected, atol=1e-10), (got - expected).abs().max()
    # Padding never enters: changing what lies beyond each review leaves the features alone.
    noisy = ids.clone()
    for row, n in enumerate(lengths.tolist()):
        noisy[row, n:] = 7
    assert torch.allclose(ours.encode(noisy, lengths), got, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_padded_mode_is_the_seed_computation(cell):
    ref, ours = reference_and_ours(cell, 2, True, "padded")
    ids, lengths = batch([9, 3, 5])
    out, _ = ref(ours.embedding(ids))
    assert torch.allclose(ours.encode(ids, lengths), out[:, -1, :], atol=1e-10)


def test_a_wrong_reversal_would_be_caught():
    """The equality test can fail: the seed's whole-row flip differs from packing on padded rows."""
    ref, ours = reference_and_ours("gru", 1, True, "padded")
    ids, lengths = batch([9, 3])
    _, h_n = ref(pack_padded_sequence(ours.embedding(ids), lengths, batch_first=True, enforce_sorted=False))
    assert not torch.allclose(ours.encode(ids, lengths), torch.cat(list(h_n), dim=-1), atol=1e-6)


def test_empty_review_does_not_crash():
    _, ours = reference_and_ours("lstm", 2, True, "exact")
    ids, lengths = batch([0, 4])
    logits = ours(ids, lengths)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_random_initial_state_is_drawn_per_call():
    torch.manual_seed(0)
    model = RNNClassifier(11, ModelConfig(embedding_dim=4, hidden_size=3, init_hidden="random", last_step="padded")).eval()
    ids, lengths = batch([5, 2])
    assert not torch.equal(model(ids, lengths), model(ids, lengths))


def test_pool_readout_ignores_padding_and_reads_every_step():
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=5, hidden_size=4, num_layers=2, readout="pool")
    model = RNNClassifier(11, cfg).double().eval()
    ids, lengths = batch([9, 3, 1, 0])
    feats = model.encode(ids, lengths)
    assert feats.shape == (4, 3 * 8) and torch.isfinite(feats).all()
    noisy = ids.clone()
    for row, n in enumerate(lengths.tolist()):
        noisy[row, max(n, 1):] = 7  # an empty review reads its first (padding) position
    assert torch.allclose(model.encode(noisy, lengths), feats, atol=1e-12)
    # Max and mean over the review's own steps of the top layer, recomputed one review at a time.
    plain = RNNClassifier(11, ModelConfig(**{**cfg.__dict__, "readout": "last"})).double().eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}, strict=False)
    x = plain.embedding(ids[:1, :9])
    for directions in plain.layers:
        f = directions[0](x)[0]
        b = directions[1](x.flip(1))[0].flip(1)
        x = torch.cat([f, b], -1)
    outs = x[0]
    assert torch.allclose(feats[0, 8:16], outs.max(0).values, atol=1e-10)
    assert torch.allclose(feats[0, 16:], outs.mean(0), atol=1e-10)


@pytest.mark.parametrize("norm,order", [("mean", 2), ("sqrt", 2), ("sqrt", 3), ("binary", 2), ("binary", 3)])
def test_ngram_path_is_the_scaled_sum_of_word_and_ngram_weights(norm, order):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=5, hidden_size=4, ngram_buckets=13, ngram_norm=norm, ngram_order=order)
    model = RNNClassifier(11, cfg).double()
    nn.init.normal_(model.unigrams.weight)
    nn.init.normal_(model.bigrams.weight)
    ids, lengths = batch([4, 1, 0])
    ids[0, :4] = torch.tensor([3, 5, 3, 5])  # a repeated word and bigram: "binary" counts them once
    got = model.ngram_logits(ids, lengths)
    row = ids[0, :4].tolist()
    p = 1_000_003
    expected = (sum(model.unigrams.weight[w] for w in row)
                + sum(model.bigrams.weight[(a * p + b) % 13] for a, b in zip(row, row[1:])))
    if order == 3:
        expected = expected + sum(model.bigrams.weight[((a * p + b) * p + c) % 13]
                                  for a, b, c in zip(row, row[1:], row[2:]))
    if norm == "binary":  # each distinct word and n-gram bucket once, over the root of their number
        grams = {(a * p + b) % 13 for a, b in zip(row, row[1:])}
        if order == 3:
            grams |= {((a * p + b) * p + c) % 13 for a, b, c in zip(row, row[1:], row[2:])}
        expected = (sum(model.unigrams.weight[w] for w in set(row)) + sum(model.bigrams.weight[g] for g in grams))
    scale = {"mean": 4, "sqrt": 2, "binary": (len(set(row)) + len(grams) if norm == "binary" else 0) ** 0.5}[norm]
    assert torch.allclose(got[0], expected / scale, atol=1e-12)
    assert torch.allclose(got[1], model.unigrams.weight[ids[1, 0]], atol=1e-12)
    assert torch.equal(got[2], torch.zeros(2, dtype=got.dtype))  # an empty review: nothing to add
    # The prediction is the RNN's logits plus the n-gram path's.
    rnn, ngram = model(ids, lengths, parts=True)
    assert torch.allclose(model(ids, lengths), rnn + ngram, atol=1e-12)
