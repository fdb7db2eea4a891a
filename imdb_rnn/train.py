"""The train stage, read top to bottom: setup -> epochs (train, validate, save) -> summary.

Run directory (runs/<name> unless given):
  config.yaml      the resolved config this run used
  metrics.csv      one row per epoch (loss, accuracy, validation, time, tokens/s, learning rate)
  model-last.pt    after every epoch, and on Ctrl-C: weights plus the state --resume needs
  model-best.pt    the epoch with the best validation accuracy (only with train.val_fraction > 0)
  training_curves.png  loss and accuracy per epoch

Under torchrun (WORLD_SIZE > 1) the same loop runs on every rank with DistributedDataParallel:
each rank trains on its rows of every global batch, and rank 0 alone validates, logs and writes.
"""

from __future__ import annotations

import csv
import io
import math
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from imdb_rnn import distributed, plots
from imdb_rnn.arrays import split_validation
from imdb_rnn.atomic import ensure_dir, write_text
from imdb_rnn.batches import BatchSampler, make_batch
from imdb_rnn.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from imdb_rnn.config import Config, TrainConfig, dump_config
from imdb_rnn.errors import UserError
from imdb_rnn.evaluate import one_class_warning, score
from imdb_rnn.model import RNNClassifier
from imdb_rnn.preprocess import load_processed, processed_dir
from imdb_rnn.progress import progress_bar

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "tokens_per_s", "lr"]


@dataclass
class TrainResult:
    run_dir: Path
    epochs: list[dict]
    best_path: Path
    interrupted: Optional[str] = None  # where Ctrl-C / SIGTERM stopped it; model-last.pt holds that point
    stopped_early: bool = False  # validation accuracy stopped improving (train.patience)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Dropout/h0 randomness of one epoch on one rank: a resumed run redraws the same."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def lr_factor(t: TrainConfig, step: int, total: int) -> float:
    """Multiplier of train.lr at optimizer step `step` (0-based) of `total`."""
    warm = int(total * t.warmup_fraction)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    if t.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if t.lr_schedule == "linear":
        return 1 - progress
    return 1.0


def param_groups(model: RNNClassifier, t: TrainConfig) -> list[dict]:
    """The n-gram path's weights in a group of their own, at train.ngram_lr."""
    rest, ngram = [], []
    for name, p in model.named_parameters():
        (ngram if name.split(".")[0] in ("unigrams", "bigrams") else rest).append(p)
    lrs = [t.lr, t.ngram_lr or t.lr]
    return [{"params": ps, "lr": lr, "base_lr": lr} for ps, lr in zip((rest, ngram), lrs) if ps]


def make_optimizer(model: RNNClassifier, t: TrainConfig) -> torch.optim.Adam:
    # The fused kernel is the same Adam in one pass over each tensor: on CPU it updates the
    # 28M-weight embedding of seed-fixed about 8x faster than the default per-tensor loop.
    return torch.optim.Adam(param_groups(model, t), weight_decay=t.weight_decay, fused=True)


def batch_loss(net: nn.Module, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
               separate: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective to minimise, summed loss of the prediction, logits). `separate`: the RNN and the
    n-gram path each minimise their own loss, and the prediction is their summed logits."""
    if not separate:
        logits = net(ids, lengths)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        return loss, loss, logits
    rnn_logits, ngram_logits = net(ids, lengths, parts=True)
    objective = F.cross_entropy(rnn_logits, labels, reduction="sum") + F.cross_entropy(ngram_logits, labels, reduction="sum")
    logits = rnn_logits.detach() + ngram_logits.detach()
    return objective, F.cross_entropy(logits, labels, reduction="sum"), logits


def _val_accs(history: list[dict]) -> list[float]:
    return [row["val_acc"] for row in history if row["val_acc"] != ""]


def epochs_without_gain(history: list[dict]) -> int:
    """Epochs since the best validation accuracy so far (0 when the last epoch was the best)."""
    accs = _val_accs(history)
    return len(accs) - 1 - int(np.argmax(accs)) if accs else 0


def _check_compatible(cfg: Config) -> None:
    if cfg.model.last_step == "exact" and cfg.preprocess.pad_side != "right":
        raise UserError("model.last_step=exact needs preprocess.pad_side=right; set one of them accordingly")
    for key, value in (("readout", cfg.model.readout != "last"), ("ngram_buckets", cfg.model.ngram_buckets)):
        if value and cfg.model.last_step != "exact":
            raise UserError(f"model.{key} needs model.last_step=exact (it reads each review's true length)")
    if cfg.train.patience and not cfg.train.val_fraction:
        raise UserError("train.patience needs a validation split; set train.val_fraction (e.g. 0.1) or patience=null")


def _metrics_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    if (run_dir / LAST).exists() and not overwrite:
        raise UserError(f"{run_dir} already holds a run; pass --overwrite to replace it, --resume to continue it, "
                        "or choose another --run-dir")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> Path:
    check_run_dir(run_dir, overwrite)
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


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to save and stop after the current batch.

    A second Ctrl-C stops at once. Outside the main thread no handler can be set, and the
    signals keep their usual effect.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        try:
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def train(cfg: Config, data_dir: Path, run_dir: Optional[Path] = None, overwrite: bool = False,
          show_progress: bool = False, log=print, resume: bool = False) -> TrainResult:
    ctx = distributed.from_env()
    try:
        device = distributed.start(ctx, cfg.train.device)
        with StopRequest() as stop:
            return _train(cfg, data_dir, run_dir, overwrite, show_progress and ctx.main,
                          log if ctx.main else (lambda *_: None), resume, ctx, device, stop)
    finally:
        distributed.stop()


def _train(cfg: Config, data_dir: Path, run_dir: Optional[Path], overwrite: bool, show_progress: bool, log,
           resume: bool, ctx: distributed.Dist, device: torch.device, stop: StopRequest) -> TrainResult:
    # --- setup ---
    _check_compatible(cfg)
    t = cfg.train
    processed = load_processed(processed_dir(cfg, data_dir), cfg)
    run_dir = Path(run_dir) if run_dir else Path("runs") / cfg.name
    state = _resume_state(run_dir, cfg) if resume else None
    if state is None:
        check_run_dir(run_dir, overwrite)  # every rank refuses alike before rank 0 touches anything
        ctx.barrier()
        if ctx.main:
            prepare_run_dir(run_dir, overwrite)
            write_text(run_dir / "config.yaml", dump_config(cfg))
    seed_everything(t.seed)
    train_data, val_data = split_validation(processed.split("train"), t.val_fraction, t.seed)
    model = RNNClassifier(len(processed.vocab), cfg.model, pad_id=processed.vocab.pad_id).to(device)
    optimizer = make_optimizer(model, t)
    history: list[dict] = []
    position = None  # where inside an epoch a Ctrl-C'd run stopped
    if state is not None:
        # Every rank continues from the same model-last.pt: weights, optimizer, history.
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        history, position = state["history"], state.get("position")
        log(f"resuming {run_dir} after epoch {state['epoch']}"
            + (f", batch {position['batches']}" if position else ""))
    # DDP broadcasts rank 0's weights and averages gradients; checkpoints save the bare `model`.
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ctx.active else model
    separate = t.ngram_loss == "separate" and bool(cfg.model.ngram_buckets)
    sampler = BatchSampler(train_data.lengths, t.batch_size, t.seed, t.bucket, ctx.rank, ctx.world)
    steps_per_epoch = len(sampler)
    trim, pad_side = t.trim_batches, cfg.preprocess.pad_side
    log(f"train: {len(train_data)} reviews, val: {len(val_data) if val_data else 0}, vocab {len(processed.vocab)}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, device {device}"
        + (f", {ctx.world} processes" if ctx.active else ""))

    def save(path: Path, epoch: int, metrics: dict, training: bool = False, where: Optional[dict] = None) -> None:
        """`training`: with the state --resume continues from; `where`: the point inside an epoch."""
        extra = {"optimizer": optimizer.state_dict(), "history": history, "position": where} if training else None
        save_checkpoint(path, model, cfg, len(processed.vocab), processed.vocab.sha256(), processed.out_dir, epoch,
                        metrics, extra)

    # --- epochs ---
    stopped_early, val_positive_share = False, None
    for epoch in range(len(history) + 1, t.epochs + 1):
        if t.patience and epochs_without_gain(history) >= t.patience:
            stopped_early = True
            log(f"stopping early: validation accuracy has not improved for {t.patience} epochs")
            break
        net.train()
        sampler.set_epoch(epoch)
        torch.manual_seed(epoch_seed(t.seed, epoch, ctx.rank))
        skip, totals = 0, [0.0, 0.0, 0.0, 0.0, 0.0]  # loss sum, correct, reviews, tokens, seconds
        if position and position["epoch"] == epoch:
            skip, totals = position["batches"], list(position["totals"])
            if len(position["rng"]) == ctx.world:  # else another process count: the epoch's seed stands
                set_rng_state(position["rng"][ctx.rank], device)
        start = time.perf_counter() - totals[4]
        with progress_bar(total=len(train_data), desc=f"epoch {epoch}/{t.epochs}", unit="review",
                          enabled=show_progress) as bar:
            bar.update(int(totals[2]))
            for i, index in enumerate(sampler):
                if i < skip:
                    continue
                step = (epoch - 1) * steps_per_epoch + i
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * lr_factor(t, step, t.epochs * steps_per_epoch)
                rng_before = rng_state(device)  # a Ctrl-C'd run redoes this batch with the same dropout
                ids, lengths, labels = make_batch(train_data, index, trim, pad_side, device)
                objective, loss_sum, logits = batch_loss(net, ids, lengths, labels, separate)
                # One collective a batch: every rank learns of a bad loss or a stop request at once.
                bad, stopping, rows = ctx.sum([float(not torch.isfinite(objective)), float(stop.requested),
                                               float(len(index))], device)
                if bad:
                    raise UserError(f"loss became non-finite in epoch {epoch}; lower train.lr or set train.grad_clip "
                                    f"(the last good checkpoint is {run_dir / LAST})")
                if stopping:
                    totals[4] = time.perf_counter() - start
                    where = {"epoch": epoch, "batches": i, "totals": totals, "rng": ctx.gather(rng_before)}
                    if ctx.main:
                        save(run_dir / LAST, epoch - 1, history[-1] if history else {}, True, where)
                    return TrainResult(run_dir, history, run_dir / LAST,
                                       interrupted=f"epoch {epoch} after {i} of {steps_per_epoch} batches")
                # Mean over the global batch (DDP averages gradients over ranks, hence * world), so
                # any number of processes takes the same steps.
                loss = objective * (ctx.world / rows)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if t.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                totals[0] += loss_sum.item()
                totals[1] += (logits.argmax(-1) == labels).sum().item()
                totals[2] += len(index)
                totals[3] += int(lengths.sum())
                bar.update(len(index) * ctx.world)
                bar.set_postfix(loss=f"{totals[0] / max(1, totals[2]):.4f}")
        seconds = time.perf_counter() - start
        loss_total, correct, reviews, tokens = ctx.sum(totals[:4], device)
        row = {
            "epoch": epoch,
            "train_loss": round(loss_total / reviews, 6),
            "train_acc": round(correct / reviews, 6),
            "val_loss": "",
            "val_acc": "",
            "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds),
            "lr": float(f"{optimizer.param_groups[0]['lr']:.3g}"),
        }
        if val_data is not None and ctx.main:
            s = score(model, val_data, max(t.batch_size, 64), trim, pad_side, device)
            row["val_loss"], row["val_acc"] = round(s.loss, 6), round(s.accuracy, 6)
            val_positive_share = float((s.probs >= 0.5).mean())
        row = ctx.from_main(row)  # every rank keeps the same history, so all stop early alike
        improved = val_data is not None and row["val_acc"] > max(_val_accs(history), default=-1.0)
        history.append(row)
        position = None
        if ctx.main:
            write_text(run_dir / "metrics.csv", _metrics_csv(history))
            plots.training_curves(history, run_dir / "training_curves.png", cfg.name)
            metrics = {k: v for k, v in row.items() if v != ""}
            if improved:
                save(run_dir / BEST, epoch, metrics)
            save(run_dir / LAST, epoch, metrics, training=True)
        val_text = f", val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}" if val_data is not None else ""
        log(f"epoch {epoch}: loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}{val_text} "
            f"({seconds:.1f}s, {row['tokens_per_s']:,} tokens/s)")

    warning = one_class_warning(val_positive_share) if val_positive_share is not None else None
    if warning:
        log(warning)
    best_path = run_dir / (BEST if (run_dir / BEST).exists() else LAST)
    return TrainResult(run_dir, history, best_path, stopped_early=stopped_early)
