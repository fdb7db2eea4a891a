"""Checkpoints: everything eval/predict need to rebuild the model, loadable with weights_only=True."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from imdb_rnn.atomic import atomic_path
from imdb_rnn.config import Config, ModelConfig, config_from_dict
from imdb_rnn.errors import UserError
from imdb_rnn.model import RNNClassifier

FORMAT = 1
BEST = "model-best.pt"
LAST = "model-last.pt"


def save_checkpoint(path: Path, model: RNNClassifier, cfg: Config, vocab_size: int, vocab_sha256: str,
                    processed_dir: Path, epoch: int, metrics: dict[str, float], extra: dict[str, Any] | None = None) -> None:
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model": model.hparams(),
        "vocab_size": vocab_size,
        "num_classes": model.fc.out_features,
        "vocab_sha256": vocab_sha256,
        "processed_dir": str(Path(processed_dir).resolve()),
        "config": cfg.to_dict(),
        "epoch": epoch,
        "metrics": metrics,
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as e:  # torch's writer reports a failed write (disk full, size limit) this way
            raise OSError(errno.EIO, "the write failed part-way") from e


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """`which` = best | last; best falls back to last when the run kept no validation split."""
    run_dir = Path(run_dir)
    names = [BEST, LAST] if which == "best" else [LAST]
    for name in names:
        if (run_dir / name).is_file():
            return run_dir / name
    raise UserError(f"no checkpoint ({' or '.join(names)}) in {run_dir}; train first with 'imdb-rnn train --config ...'")


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint {path} cannot be loaded safely ({first}); retrain or use another run") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not an imdb-rnn checkpoint of format {FORMAT}; retrain with this version")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[RNNClassifier, Config]:
    cfg = config_from_dict(ckpt["config"])
    model = RNNClassifier(ckpt["vocab_size"], ModelConfig(**ckpt["model"]), num_classes=ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model, cfg
