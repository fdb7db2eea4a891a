"""The train stage, read top to bottom: setup -> epochs (train, validate, save) -> summary.

Run directory (runs/<name> unless given):
  config.yaml      the resolved config this run used
  metrics.csv      one row per epoch (loss, accuracy, validation, time, tokens/s)
  model-last.pt    after every epoch
  model-best.pt    the epoch with the best validation accuracy (only with train.val_fraction > 0)
  training_curves.png  loss and accuracy per epoch
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from imdb_rnn import plots
from imdb_rnn.atomic import ensure_dir, write_text
from imdb_rnn.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from imdb_rnn.config import Config, dump_config
from imdb_rnn.arrays import split_validation
from imdb_rnn.batches import batch_indices, make_batch
from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError
from imdb_rnn.evaluate import one_class_warning, score
from imdb_rnn.model import RNNClassifier
from imdb_rnn.preprocess import load_processed, processed_dir
from imdb_rnn.progress import progress_bar

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "tokens_per_s"]


@dataclass
class TrainResult:
    run_dir: Path
    epochs: list[dict]
    best_path: Path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_compatible(cfg: Config) -> None:
    if cfg.model.last_step == "exact" and cfg.preprocess.pad_side != "right":
        raise UserError("model.last_step=exact needs preprocess.pad_side=right; set one of them accordingly")


def _metrics_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def prepare_run_dir(run_dir: Path, overwrite: bool) -> Path:
    if (run_dir / LAST).exists() and not overwrite:
        raise UserError(f"{run_dir} already holds a run; pass --overwrite to replace it, --resume to continue it, "
                        "or choose another --run-dir")
    ensure_dir(run_dir)
    for name in (LAST, BEST, "metrics.csv", "training_curves.png"):
        (run_dir / name).unlink(missing_ok=True)
    for old_eval in run_dir.glob("eval-*"):  # scores of the replaced run must not pass for this one's
        shutil.rmtree(old_eval, ignore_errors=True)
    return run_dir


def _resume_state(run_dir: Path, cfg: Config) -> dict:
    ckpt = load_checkpoint(run_dir / LAST) if (run_dir / LAST).is_file() else None
    if ckpt is None or "optimizer" not in ckpt:
        raise UserError(f"nothing to resume in {run_dir} (no {LAST} with training state); train without --resume")
    same = lambda c: {**c, "train": {**c["train"], "device": None}}  # noqa: E731 - any device may continue it
    if same(ckpt["config"]) != same(cfg.to_dict()):
        raise UserError(f"the run in {run_dir} was trained with another config; resume with its config.yaml")
    return ckpt


def train(cfg: Config, data_dir: Path, run_dir: Optional[Path] = None, overwrite: bool = False,
          show_progress: bool = False, log=print, resume: bool = False) -> TrainResult:
    # --- setup ---
    _check_compatible(cfg)
    device = resolve_device(cfg.train.device)
    processed = load_processed(processed_dir(cfg, data_dir), cfg)
    run_dir = Path(run_dir) if run_dir else Path("runs") / cfg.name
    state = _resume_state(run_dir, cfg) if resume else None
    if state is None:
        prepare_run_dir(run_dir, overwrite)
        write_text(run_dir / "config.yaml", dump_config(cfg))
    seed_everything(cfg.train.seed)
    train_data, val_data = split_validation(processed.split("train"), cfg.train.val_fraction, cfg.train.seed)
    model = RNNClassifier(len(processed.vocab), cfg.model, pad_id=processed.vocab.pad_id).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(cfg.train.seed)
    trim, pad_side = cfg.train.trim_batches, cfg.preprocess.pad_side
    log(f"train: {len(train_data)} reviews, val: {len(val_data) if val_data else 0}, vocab {len(processed.vocab)}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, device {device}")

    history: list[dict] = []
    best_acc = -1.0
    if state is not None:
        # Continue exactly where model-last.pt was written: weights, optimizer, RNG streams.
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        shuffle.set_state(state["shuffle_rng"])
        history, best_acc = state["history"], state["best_acc"]
        log(f"resuming {run_dir} after epoch {state['epoch']}")

    def save(path: Path, epoch: int, metrics: dict, training_state: bool = False) -> None:
        extra = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "shuffle_rng": shuffle.get_state(),
                 "history": history, "best_acc": best_acc} if training_state else None
        save_checkpoint(path, model, cfg, len(processed.vocab), processed.vocab.sha256(), processed.out_dir, epoch,
                        metrics, extra)

    # --- epochs ---
    for epoch in range(len(history) + 1, cfg.train.epochs + 1):
        model.train()
        start = time.perf_counter()
        total_loss, correct, tokens = 0.0, 0, 0
        with progress_bar(total=len(train_data), desc=f"epoch {epoch}/{cfg.train.epochs}", unit="review",
                          enabled=show_progress) as bar:
            for index in batch_indices(len(train_data), cfg.train.batch_size, shuffle):
                ids, lengths, labels = make_batch(train_data, index, trim, pad_side, device)
                logits = model(ids, lengths)
                loss = loss_fn(logits, labels)
                if not torch.isfinite(loss):
                    raise UserError(f"loss became {loss.item()} in epoch {epoch}; lower train.lr or set train.grad_clip "
                                    f"(the last good checkpoint is {run_dir / LAST})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                optimizer.step()
                total_loss += loss.item() * len(index)
                correct += (logits.argmax(-1) == labels).sum().item()
                tokens += int(lengths.sum())
                bar.update(len(index))
                bar.set_postfix(loss=f"{total_loss / max(1, bar.n):.4f}")
        seconds = time.perf_counter() - start
        row = {
            "epoch": epoch,
            "train_loss": round(total_loss / len(train_data), 6),
            "train_acc": round(correct / len(train_data), 6),
            "val_loss": "",
            "val_acc": "",
            "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds),
        }
        val_positive_share = None
        if val_data is not None:
            s = score(model, val_data, max(cfg.train.batch_size, 64), trim, pad_side, device)
            row["val_loss"], row["val_acc"] = round(s.loss, 6), round(s.accuracy, 6)
            val_positive_share = float((s.probs >= 0.5).mean())
        history.append(row)
        write_text(run_dir / "metrics.csv", _metrics_csv(history))
        plots.training_curves(history, run_dir / "training_curves.png", cfg.name)
        metrics = {k: v for k, v in row.items() if v != ""}
        if val_data is not None and row["val_acc"] > best_acc:
            best_acc = row["val_acc"]
            save(run_dir / BEST, epoch, metrics)
        save(run_dir / LAST, epoch, metrics, training_state=True)
        val_text = f", val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}" if val_data is not None else ""
        log(f"epoch {epoch}: loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}{val_text} "
            f"({seconds:.1f}s, {row['tokens_per_s']:,} tokens/s)")

    warning = one_class_warning(val_positive_share) if val_positive_share is not None else None
    if warning:
        log(warning)
    best_path = run_dir / (BEST if (run_dir / BEST).exists() else LAST)
    return TrainResult(run_dir, history, best_path)
