"""PNG figures: training curves and the confusion matrix (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

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


def training_curves(rows: list[dict], dest: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train and (when present) validation."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [float(r[f"train_{key}"]) for r in rows], "o-", label="train")
        val = [r.get(f"val_{key}") for r in rows]
        if all(v not in (None, "") for v in val):
            ax.plot(epochs, [float(v) for v in val], "s-", label="validation")
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


def confusion_matrix(matrix: np.ndarray, dest: Path, title: str = "") -> Path:
    """2x2 counts, rows = true label, columns = predicted."""
    plt = pyplot()
    labels = ["negative", "positive"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for i in range(2):
        for j in range(2):
            color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, f"{int(matrix[i, j]):,}", ha="center", va="center", color=color, fontsize=13)
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    try:
        return save_png(fig, dest)
    finally:
        plt.close(fig)
