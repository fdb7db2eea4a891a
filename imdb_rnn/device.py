"""Turn --device auto|cpu|cuda|cuda:N into a torch.device, or a clear error."""

from __future__ import annotations

import re

import torch

from imdb_rnn.errors import UserError


def resolve_device(spec: str) -> torch.device:
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not m:
        raise UserError(f"unknown device '{spec}'; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"device '{spec}' requested but CUDA is not available here; use --device cpu (or auto)")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"device '{spec}' does not exist: this machine has {torch.cuda.device_count()} GPU(s); use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)
