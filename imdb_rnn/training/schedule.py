"""The learning-rate schedule: linear warmup, then constant, cosine or linear decay to 0, per step."""

from __future__ import annotations

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from imdb_rnn.config import TrainConfig


def lr_factor(t: TrainConfig, step: int, total: int) -> float:
    """Multiplier of each group's learning rate at optimizer step `step` (0-based) of `total`.

    Warmup: (step + 1) / warmup steps over the first train.warmup_fraction of the steps; then
    cosine: 0.5 (1 + cos(pi p)), or linear: 1 - p, with p the share of the remaining steps done
    (the schedule of Loshchilov & Hutter 2017 without restarts, for cosine).
    """
    warm = int(total * t.warmup_fraction)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    if t.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if t.lr_schedule == "linear":
        return 1 - progress
    return 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig, total_steps: int) -> LambdaLR:
    """torch's LambdaLR over `lr_factor`; step it after every optimizer step. Its state_dict
    (the step count) goes into model-last.pt, so a resumed run continues the same schedule."""
    return LambdaLR(optimizer, functools.partial(lr_factor, t, total=total_steps))
