"""The classifier as parts: the RNN encoder, the n-gram bag branch, and the classifier composing them.

`Logits` and `RNNClassifier` load torch on first use, not on `import imdb_rnn.model.nbsvm` or
`.stack`: the torch-free ONNX predictor (imdb_rnn/export/runtime.py) uses those two modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imdb_rnn.model.classifier import Logits, RNNClassifier

__all__ = ["Logits", "RNNClassifier"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from imdb_rnn.model import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
