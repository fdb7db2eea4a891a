"""The separate losses of the n-gram branch's ensemble with the RNN, and each branch's accuracy in eval."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from imdb_rnn.config import ModelConfig
from imdb_rnn.data.arrays import SplitArrays
from imdb_rnn.model import RNNClassifier
from imdb_rnn.scoring import score
from imdb_rnn.training.loop import batch_loss


@pytest.mark.parametrize("separate", [False, True])
def test_separate_losses_train_each_path_on_its_own(separate):
    torch.manual_seed(0)
    model = RNNClassifier(9, ModelConfig(cell="gru", embedding_dim=4, hidden_size=3, ngram_buckets=5))
    torch.nn.init.normal_(model.ngram.unigrams.weight)
    ids, lengths, labels = torch.tensor([[2, 3, 4], [5, 6, 0]]), torch.tensor([3, 2]), torch.tensor([1, 0])
    objective, reported, logits = batch_loss(model, ids, lengths, labels, separate)
    objective.backward()
    got = model.fc.weight.grad.clone()
    model.zero_grad()
    rnn, ngram = model(ids, lengths)[1:]
    # The RNN's gradient comes from its own loss (separate) or from the summed logits' (joint).
    F.cross_entropy(rnn if separate else rnn + ngram, labels, reduction="sum").backward()
    assert torch.allclose(got, model.fc.weight.grad, atol=1e-6)
    assert torch.allclose(reported, F.cross_entropy(rnn + ngram, labels, reduction="sum"), atol=1e-6)
    assert torch.allclose(logits, rnn + ngram, atol=1e-6)


def test_eval_reports_each_branch_alone():
    torch.manual_seed(0)
    model = RNNClassifier(9, ModelConfig(cell="gru", embedding_dim=4, hidden_size=3, ngram_buckets=5)).eval()
    torch.nn.init.normal_(model.ngram.unigrams.weight)
    torch.nn.init.normal_(model.ngram.bigrams.weight)
    ids = np.random.default_rng(0).integers(2, 9, size=(40, 6)).astype(np.int32)
    lengths = np.random.default_rng(1).integers(1, 7, size=40)
    labels = np.random.default_rng(2).integers(0, 2, size=40)
    data = SplitArrays(ids, lengths, labels)
    s = score(model, data, 16, True, "right", torch.device("cpu"))
    with torch.no_grad():
        _, rnn, ngram = model(torch.from_numpy(ids).long(), torch.from_numpy(lengths))
    y = torch.from_numpy(labels)
    assert s.branch_accuracy["rnn"] == pytest.approx((rnn.argmax(-1) == y).float().mean().item())
    assert s.branch_accuracy["ngram"] == pytest.approx((ngram.argmax(-1) == y).float().mean().item())
    assert s.accuracy == pytest.approx(((rnn + ngram).argmax(-1) == y).float().mean().item())
