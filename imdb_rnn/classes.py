"""Predicted classes from class probabilities (NumPy only: the torch-free ONNX predictor uses it too)."""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.5  # with two classes: P(label 1) at or above which a review gets label 1


def predicted_classes(probs: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Class ids `(N,)` int64 from class probabilities `(N, C)`: the most probable class; with two
    classes, label 1 when P(label 1) is at least `threshold` (so an exact tie goes to label 1)."""
    probs = np.asarray(probs)
    if probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(1).astype(np.int64)
