"""Index helpers over right-padded batches of token ids `(B, T)` with true lengths `(B,)`."""

from __future__ import annotations

import torch


def step_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """`(B, T)` bool, True at each review's own positions [0, length)."""
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """`(B, T)` index that reverses positions [0, length) of each row and leaves padding in place."""
    t = torch.arange(width, device=lengths.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    return torch.where(t < n, n - 1 - t, t)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x` `(B, T, F)` with its time steps picked per row by `index` `(B, T)`."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))
