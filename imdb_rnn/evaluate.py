"""Run a model over a split and score it; the eval command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from imdb_rnn.atomic import write_json
from imdb_rnn.checkpoint import find_checkpoint, load_checkpoint, model_from_checkpoint
from imdb_rnn.data import SplitArrays, batch_indices, make_batch
from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError
from imdb_rnn.model import RNNClassifier
from imdb_rnn.preprocess import load_processed
from imdb_rnn.progress import progress_bar


@dataclass
class Scores:
    loss: float
    accuracy: float
    probs: np.ndarray  # P(positive) per review, in split order


@torch.no_grad()
def score(model: RNNClassifier, data: SplitArrays, batch_size: int, trim: bool, pad_side: str,
          device: torch.device, show_progress: bool = False, desc: str = "eval") -> Scores:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    probs = []
    with progress_bar(total=len(data), desc=desc, unit="review", enabled=show_progress) as bar:
        for index in batch_indices(len(data), batch_size, None):
            ids, lengths, labels = make_batch(data, index, trim, pad_side, device)
            logits = model(ids, lengths)
            total_loss += loss_fn(logits, labels).item()
            correct += (logits.argmax(-1) == labels).sum().item()
            probs.append(torch.softmax(logits.float(), -1)[:, 1].cpu().numpy())
            bar.update(len(index))
    n = max(1, len(data))
    return Scores(total_loss / n, correct / n, np.concatenate(probs) if probs else np.zeros(0))


def evaluate(run_dir: Path, split: str = "test", which: str = "best", device: str = "auto",
             batch_size: Optional[int] = None, show_progress: bool = False) -> dict:
    """Score a run's checkpoint on a split of its preprocess artifacts; writes eval-{split}.json."""
    run_dir = Path(run_dir)
    path = find_checkpoint(run_dir, which)
    ckpt = load_checkpoint(path)
    model, cfg = model_from_checkpoint(ckpt)
    processed = load_processed(Path(ckpt["processed_dir"]), cfg)
    if processed.vocab.sha256() != ckpt["vocab_sha256"]:
        raise UserError(
            f"the vocabulary in {processed.out_dir} differs from the one {path.name} was trained with; "
            "re-run preprocess with the run's config, or retrain"
        )
    if f"{split}_ids" not in processed.arrays or len(processed.arrays[f"{split}_labels"]) == 0:
        raise UserError(f"split '{split}' is empty in {processed.out_dir}; choose another split")
    dev = resolve_device(device)
    model.to(dev)
    data = SplitArrays(*processed.split(split))
    s = score(model, data, batch_size or max(cfg.train.batch_size, 64), cfg.train.trim_batches,
              cfg.preprocess.pad_side, dev, show_progress)
    result = {
        "run": str(run_dir),
        "checkpoint": path.name,
        "epoch": ckpt["epoch"],
        "split": split,
        "reviews": len(data),
        "accuracy": round(s.accuracy, 6),
        "loss": round(s.loss, 6),
    }
    write_json(run_dir / f"eval-{split}.json", result)
    return result
