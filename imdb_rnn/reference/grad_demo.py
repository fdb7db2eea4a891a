"""Why plain RNN gradients vanish or explode, shown two ways.

1. The classic experiment: backpropagating through T steps multiplies the gradient by W_h^T at
   every step (dh <- dh W_h^T; the tanh derivative, at most 1, is left out). Its norm then grows
   or shrinks geometrically with W_h's largest singular value. N=2, H=3, T=20, seed 3.
2. On a real IMDB batch: the gradient of the loss (read at the last step) with respect to each
   time step's input, for fresh rnn, gru and lstm cells of the same size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def backward_product(steps: int = 20, batch: int = 2, hidden: int = 3, seed: int = 3,
                     scale: Optional[float] = None, clip: Optional[float] = None) -> dict:
    """Norms of dh after each of `steps` products dh <- dh W_h^T (norm = sqrt(sum dh^2) / N).

    `scale` rescales W_h so that its largest singular value is `scale` (>1 explodes, <1 vanishes);
    `clip` rescales dh whenever its norm sqrt(sum dh^2) exceeds it, as gradient clipping does.
    """
    W_h = np.random.RandomState(seed).randn(hidden, hidden)
    if scale is not None:
        W_h = W_h * (scale / np.linalg.svd(W_h, compute_uv=False)[0])
    dh = np.ones((batch, hidden))
    norms, clipped_norms = [], []
    dh_clipped = dh.copy()
    for _ in range(steps):
        dh = dh @ W_h.T
        norms.append(float(np.sqrt(np.sum(dh**2)) / batch))
        if clip is not None:
            dh_clipped = dh_clipped @ W_h.T
            total = np.sqrt(np.sum(dh_clipped**2))
            if total > clip:
                dh_clipped = dh_clipped * (clip / total)
            clipped_norms.append(float(np.sqrt(np.sum(dh_clipped**2)) / batch))
    return {
        "largest_singular_value": float(np.linalg.svd(W_h, compute_uv=False)[0]),
        "norms": norms,
        "clipped_norms": clipped_norms or None,
    }


def imdb_gradient_profile(ids: np.ndarray, labels: np.ndarray, vocab_size: int, hidden: int = 64,
                          embedding_dim: int = 64, seed: int = 0) -> dict[str, list[float]]:
    """Mean norm of dLoss/dx_t per time step, for rnn, gru and lstm on the same batch."""
    import torch
    from torch import nn

    x_ids = torch.from_numpy(ids.astype(np.int64))
    y = torch.from_numpy(labels.astype(np.int64))
    torch.manual_seed(seed)
    embedded = nn.Embedding(vocab_size, embedding_dim)(x_ids).detach()
    profile = {}
    for name, cell in (("rnn", nn.RNN), ("gru", nn.GRU), ("lstm", nn.LSTM)):
        torch.manual_seed(seed)
        rnn, fc = cell(embedding_dim, hidden, batch_first=True), nn.Linear(hidden, 2)
        x = embedded.clone().requires_grad_(True)
        out = rnn(x)[0]
        nn.functional.cross_entropy(fc(out[:, -1]), y).backward()
        profile[name] = x.grad.norm(dim=-1).mean(dim=0).tolist()
    return profile


def imdb_batch_profile(cfg, data_dir: Path, steps: int, reviews: int = 16) -> tuple[dict[str, list[float]], int]:
    """`imdb_gradient_profile` on the first `reviews` training reviews of at least `steps` tokens
    in the preprocess artifacts of `cfg` (an imdb_rnn Config); (profile, reviews used).

    Raises UserError when no review is that long or the artifacts are not right-padded."""
    from imdb_rnn.data.artifacts import load_artifacts
    from imdb_rnn.errors import UserError

    if cfg.preprocess.pad_side != "right":
        raise UserError("--imdb needs right-padded artifacts (preprocess.pad_side=right)")
    processed = load_artifacts(cfg, data_dir)
    train = processed.split("train")
    rows = np.flatnonzero(train.lengths >= steps)[:reviews]
    if len(rows) == 0:
        raise UserError(f"no training review has {steps} tokens; pass a smaller --steps")
    return imdb_gradient_profile(train.ids[rows, :steps], train.labels[rows], len(processed.vocab)), len(rows)


def _log_plot(curves: list[tuple[list[int], list[float], str, str]], dest: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """One log-scale figure of (x, y, style, label) curves, saved as PNG."""
    from imdb_rnn.plots import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for x, y, style, label in curves:
        ax.semilogy(x, y, style, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    try:
        return save_png(fig, dest)
    finally:
        plt.close(fig)


def plot_backward_product(result: dict, dest: Path, title: str) -> Path:
    steps = list(range(1, len(result["norms"]) + 1))
    curves = [(steps, result["norms"], "o-", "dh norm")]
    if result["clipped_norms"]:
        curves.append((steps, result["clipped_norms"], "s--", "with clipping"))
    return _log_plot(curves, dest, "time steps back", "norm (log scale)", title)


def plot_profile(profile: dict[str, list[float]], dest: Path, title: str) -> Path:
    curves = [(list(range(len(norms))), norms, "-", name) for name, norms in profile.items()]
    return _log_plot(curves, dest, "time step (the loss reads the last one)", "mean |dLoss/dx_t| (log scale)", title)
