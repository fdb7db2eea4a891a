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
