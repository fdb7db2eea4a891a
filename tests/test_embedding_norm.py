"""model.normalize_embeddings (Miyato et al. 2016): frequency-weighted standardisation of the
word embeddings, in the classifier and the language model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imdb_rnn.config import ModelConfig
from imdb_rnn.model import RNNClassifier
from imdb_rnn.model.embedding_norm import EmbeddingNormalization

IDS = np.array([[2, 3, 3, 4, 0, 0], [5, 3, 2, 2, 2, 1]])  # the pad id 0 counts zero, <UNK> (1) counts


def test_frequencies_are_counts_with_the_pad_id_at_zero():
    norm = EmbeddingNormalization(7)
    norm.set_frequencies(IDS)
    assert norm.frequencies.tolist() == [0, 1, 4, 3, 1, 1, 0]


def test_normalised_embeddings_have_zero_mean_and_unit_variance_under_the_word_frequencies():
    torch.manual_seed(0)
    norm = EmbeddingNormalization(7)
    norm.set_frequencies(IDS)
    weight = 3.0 * torch.randn(7, 5, dtype=torch.double) + 2.0
    v = norm(weight, weight)
    p = norm.frequencies.double() / norm.frequencies.sum()
    assert torch.allclose(p @ v, torch.zeros(5, dtype=torch.double), atol=1e-12)
    assert torch.allclose(p @ v.square(), torch.ones(5, dtype=torch.double), atol=1e-6)
    # the unweighted statistics are not the weighted ones (the frequencies matter)
    assert not torch.allclose(v.mean(0), torch.zeros(5, dtype=torch.double), atol=1e-3)


@pytest.mark.parametrize("normalize_embeddings", [True, False])
def test_the_classifier_ignores_a_per_dimension_scale_and_shift_of_its_embedding_only_when_normalised(
        normalize_embeddings):
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=4, hidden_size=5, num_layers=1, bidirectional=True,
                      last_step="as_packed", normalize_embeddings=normalize_embeddings)
    model = RNNClassifier(7, cfg).double().eval()
    if normalize_embeddings:
        model.encoder.embedding_norm.set_frequencies(IDS)
    ids, lengths = torch.from_numpy(IDS), torch.tensor([4, 6])
    with torch.no_grad():
        before = model(ids, lengths).rnn
        model.encoder.embedding.weight.mul_(torch.tensor([0.5, 3.0, 1.0, 7.0], dtype=torch.double)).add_(2.0)
        after = model(ids, lengths).rnn
    assert torch.allclose(before, after, atol=1e-5) == normalize_embeddings


def test_a_saved_classifier_keeps_its_frequencies():
    cfg = ModelConfig(cell="gru", embedding_dim=4, hidden_size=5, num_layers=1, normalize_embeddings=True)
    model = RNNClassifier(7, cfg)
    model.encoder.embedding_norm.set_frequencies(IDS)
    assert torch.equal(model.state_dict()["encoder.embedding_norm.frequencies"], model.encoder.embedding_norm.frequencies)
    plain = RNNClassifier(7, cfg.model_copy(update={"normalize_embeddings": False}))
    assert not any("embedding_norm" in k for k in plain.state_dict())  # older checkpoints load as they are
