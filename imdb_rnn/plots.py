"""PNG figures: training curves and the confusion matrix (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from imdb_rnn.files import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return dest


def training_curves(rows: list[dict], dest: Path, title: str = "", averaged: bool = False) -> Path:
    """Loss and accuracy per epoch, train and (when present) validation; `averaged`: validation
    scored the moving average of the weights (train.ema_decay), and the legend says so."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [float(r[f"train_{key}"]) for r in rows], "o-", label="train")
        val = [r.get(f"val_{key}") for r in rows]
        if all(v not in (None, "") for v in val):
            ax.plot(epochs, [float(v) for v in val], "s-", label="validation (moving average)" if averaged else "validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "training curves")
    try:
        return save_png(fig, dest)
    finally:
        plt.close(fig)


def confusion_matrix(matrix: np.ndarray, dest: Path, title: str = "",
                     labels: Optional[Sequence[str]] = None) -> Path:
    """CxC counts, rows = true label, columns = predicted; `labels` are the class names by id
    (default negative, positive)."""
    plt = pyplot()
    matrix = np.asarray(matrix)
    n = len(matrix)
    labels = list(labels) if labels is not None else ["negative", "positive"]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} class names for a {n}x{n} confusion matrix")
    side = max(4.0, 0.9 * n + 2.0)  # room for every cell's count as the classes grow
    fig, ax = plt.subplots(figsize=(side + 0.5, side))
    ax.imshow(matrix, cmap="Blues")
    font = 13 if n <= 4 else max(6, 13 - n)
    for i in range(n):
        for j in range(n):
            color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, f"{int(matrix[i, j]):,}", ha="center", va="center", color=color, fontsize=font)
    ax.set_xticks(range(n), labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    try:
        return save_png(fig, dest)
    finally:
        plt.close(fig)
