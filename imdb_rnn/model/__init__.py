"""The classifier as parts: the RNN encoder, the n-gram bag branch, and the classifier composing them."""

from imdb_rnn.model.classifier import Logits, RNNClassifier

__all__ = ["Logits", "RNNClassifier"]
