"""The training loop: it trains and validates, and yields one typed result per epoch; the caller
saves, logs and plots (as spaCy's `train_while_improving` does).

Per epoch: stop early when validation accuracy has not improved for train.patience epochs;
else, for every batch, forward, loss, one collective (a non-finite loss or a stop request on any
rank), backward, gradient norm (and clipping), Adam step, LR step; then validation on rank 0. A
stop request (Ctrl-C, SIGTERM) ends the loop with an `Interrupted` that holds where it stopped.

Under torchrun every rank runs this loop on its rows of each global batch; the loss is the mean
over the global batch, so any number of processes takes the same steps.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterator, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imdb_rnn.config import TrainConfig
from imdb_rnn.data.batches import make_batch
from imdb_rnn.progress import progress_bar
from imdb_rnn.scoring import EVAL_BATCH_SIZE, Scores, score
from imdb_rnn.training.adversarial import adversarial_loss
from imdb_rnn.training.rng import epoch_seed, rng_state, set_rng_state
from imdb_rnn.training.setup import TrainingSetup
from imdb_rnn.training.threads import recount


@dataclass
class EpochMetrics:
    """One row of metrics.csv. Losses: mean cross-entropy per review (nats); accuracies: 0..1."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: Optional[float]  # None without a validation split
    val_acc: Optional[float]
    seconds: float
    tokens_per_s: int  # real (unpadded) tokens through forward, backward and the optimizer step
    lr: float  # of the first parameter group, at the epoch's last step
    # Mean over the epoch's optimizer steps of the gradients' total L2 norm, before clipping
    # (rank 0's: DDP has averaged the gradients by then); None in rows of runs saved before it.
    grad_norm: Optional[float] = None


@dataclass
class EpochEnd:
    metrics: EpochMetrics
    improved: bool  # the best validation accuracy so far
    val_predicted_shares: Optional[list[float]]  # share of validation reviews predicted as each class, by id
    val_scores: Optional[Scores] = None  # on rank 0, with a validation split: what stacking is fitted on


@dataclass
class StoppedEarly:
    epoch: int  # the last epoch trained
    patience: int


@dataclass
class Interrupted:
    epoch: int
    batches_done: int
    batches_per_epoch: int
    position: dict  # what --resume continues from: epoch, batches, totals, each rank's RNG state


class NonFiniteLoss(Exception):
    def __init__(self, epoch: int) -> None:
        super().__init__(f"loss became non-finite in epoch {epoch}")
        self.epoch = epoch


@dataclass
class Totals:
    """Running sums of one epoch on one rank; saved inside a Ctrl-C point."""

    loss: float = 0.0  # summed cross-entropy of the prediction (nats)
    correct: int = 0
    reviews: int = 0
    tokens: int = 0
    seconds: float = 0.0
    lr: float = 0.0  # of the last step
    grad_norm: float = 0.0  # summed over the steps: the total L2 norm before clipping
    steps: int = 0  # optimizer steps taken


def epochs_without_gain(val_accs: list[Optional[float]]) -> int:
    """Epochs since the best validation accuracy so far (0 when the last epoch was the best)."""
    accs = [a for a in val_accs if a is not None]
    return len(accs) - 1 - int(np.argmax(accs)) if accs else 0


def batch_loss(net: nn.Module, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
               separate: bool, t: Optional[TrainConfig] = None, model: Optional[nn.Module] = None,
               backward_scale: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective to minimise, summed loss of the prediction, predicted logits `(B, C)`).

    `separate`: the RNN and the n-gram branch each minimise their own cross-entropy, as two
    classifiers trained side by side; the accuracy training reports reads their summed logits.
    With train.adversarial in `t`, the objective adds adv_weight times the adversarial loss
    (imdb_rnn/training/adversarial.py), computed on `model` (the bare model under DDP).

    `backward_scale` (one process only), with train.adversarial "at": the clean objective times
    it is backpropagated here, into the parameters' gradients, and that same backward pass gives
    the perturbation its gradient, where a separate pass would otherwise compute it. The objective
    returned then carries the adversarial term's graph alone (its value is still the whole
    objective's): backpropagated times the same scale, the gradients are those of the whole.
    Under DDP that backward pass would all-reduce the clean gradients alone, and the adversarial
    term's (computed on the bare model) would be left unsynchronised: leave it None there.
    """
    adversarial = t is not None and t.adversarial != "none"
    delta = None
    if adversarial:
        weight = (model or net).encoder.embedding.weight
        delta = torch.zeros(*ids.shape, weight.size(1), dtype=weight.dtype, device=ids.device, requires_grad=True)
    logits = net(ids, lengths, delta) if adversarial else net(ids, lengths)
    if not separate:
        loss = F.cross_entropy(logits.total, labels, reduction="sum")
        objective, reported, predicted = loss, loss, logits.total
    else:
        objective = (F.cross_entropy(logits.rnn, labels, reduction="sum")
                     + F.cross_entropy(logits.ngram, labels, reduction="sum"))
        predicted = logits.total.detach()
        reported = F.cross_entropy(predicted, labels, reduction="sum")
    if adversarial:
        branch = "rnn" if separate else "total"
        clean_loss: Optional[torch.Tensor] = objective
        if backward_scale is not None and t.adversarial == "at":
            (objective * backward_scale).backward()
            # The unscaled objective's gradient, as autograd.grad gives it: l2_normalize's floor on
            # the norm makes the perturbation depend on the scale for a review with a tiny gradient.
            delta.grad.div_(backward_scale)
            objective, clean_loss = objective.detach(), None
        objective = objective + t.adv_weight * adversarial_loss(
            model or net, t.adversarial, branch, ids, lengths, labels, getattr(logits, branch), clean_loss, delta,
            t.adv_epsilon, t.vat_xi)
    return objective, reported, predicted


def train_while_improving(s: TrainingSetup, history: list[EpochMetrics],
                          position: Optional[dict] = None) -> Iterator[Union[EpochEnd, StoppedEarly, Interrupted]]:
    """Train from the epoch after `history` (and from `position` inside it) to train.epochs."""
    history = list(history)
    for epoch in range(len(history) + 1, s.train.epochs + 1):
        if s.train.patience and epochs_without_gain([h.val_acc for h in history]) >= s.train.patience:
            yield StoppedEarly(epoch - 1, s.train.patience)
            return
        outcome = run_epoch(s, epoch, position if position and position["epoch"] == epoch else None)
        if isinstance(outcome, Interrupted):
            yield outcome
            return
        end = finish_epoch(s, epoch, outcome, history)
        history.append(end.metrics)
        yield end


def run_epoch(s: TrainingSetup, epoch: int, position: Optional[dict]) -> Union[Totals, Interrupted]:
    """One pass over this rank's rows of every batch; raises NonFiniteLoss."""
    t, ctx = s.train, s.ctx
    s.net.train()
    if t.gradual_unfreezing:
        s.model.unfreeze(epoch)
    s.sampler.set_epoch(epoch)
    torch.manual_seed(epoch_seed(t.seed, epoch, ctx.rank))
    skip, totals = 0, Totals()
    if position:
        skip, totals = position["batches"], Totals(**position["totals"])
        if len(position["rng"]) == ctx.world_size:  # else another process count: the epoch's seed stands
            set_rng_state(position["rng"][ctx.rank], s.device)
    start = time.perf_counter() - totals.seconds
    with progress_bar(total=len(s.train_data), desc=f"epoch {epoch}/{t.epochs}", unit="review",
                      enabled=s.show_progress) as bar:
        bar.update(totals.reviews)
        for i, index in enumerate(s.sampler):
            if i < skip:
                continue
            recount()  # jobs that started or ended beside this one change its share of the cores
            rng_before = rng_state(s.device)  # a Ctrl-C'd run redoes this batch with the same dropout
            ids, lengths, labels = make_batch(s.train_data, index, t.dynamic_padding, s.pad_side, s.device)
            s.optimizer.zero_grad(set_to_none=True)
            # One process: AT's clean backward pass runs inside, at the scale of the step's below.
            objective, loss_sum, logits = batch_loss(s.net, ids, lengths, labels, s.separate_losses, t, s.model,
                                                     None if ctx.is_distributed else 1.0 / len(index))
            # One collective a batch: every rank learns of a bad loss or a stop request at once.
            bad, stopping, rows = ctx.all_reduce_sum(
                [float(not torch.isfinite(objective)), float(s.stop.requested), float(len(index))], s.device)
            if bad:
                raise NonFiniteLoss(epoch)
            if stopping:
                totals.seconds = time.perf_counter() - start
                where = {"epoch": epoch, "batches": i, "totals": asdict(totals), "rng": ctx.all_gather(rng_before)}
                return Interrupted(epoch, i, len(s.sampler), where)
            # The mean over the global batch (DDP averages gradients over ranks, hence * world_size).
            totals.lr, grad_norm = optimizer_step(s, objective * (ctx.world_size / rows))
            totals.grad_norm += grad_norm
            totals.steps += 1
            totals.loss += loss_sum.item()
            totals.correct += (logits.argmax(-1) == labels).sum().item()
            totals.reviews += len(index)
            totals.tokens += int(lengths.sum())
            bar.update(len(index) * ctx.world_size)
            bar.set_postfix(loss=f"{totals.loss / max(1, totals.reviews):.4f}")
    totals.seconds = time.perf_counter() - start
    return totals


def optimizer_step(s: TrainingSetup, loss: torch.Tensor) -> tuple[float, float]:
    """Backward (adding to what the gradients hold: zero them first), clip, Adam step, LR step,
    then the weights' moving average (train.ema_decay); returns the learning rate this step used
    and the gradients' total L2 norm before clipping."""
    loss.backward()
    params = [p for p in s.model.parameters() if p.grad is not None]
    if s.train.grad_clip:
        norm = nn.utils.clip_grad_norm_(params, s.train.grad_clip)
    else:
        norm = total_norm([p.grad for p in params])
    lr = s.optimizer.param_groups[0]["lr"]
    s.optimizer.step()
    s.scheduler.step()
    if s.ema is not None:
        s.ema.update_parameters(s.model)
    return lr, norm.item()  # a sync, as the loss's .item() already is at every step


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all of `grads` together (a 0-d tensor), as clip_grad_norm_ measures it,
    without scaling them."""
    if not grads:
        return torch.zeros(())
    if hasattr(nn.utils, "get_total_norm"):  # torch >= 2.6: one fused kernel per device and dtype
        return nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def finish_epoch(s: TrainingSetup, epoch: int, totals: Totals, history: list[EpochMetrics]) -> EpochEnd:
    """The epoch's metrics summed over ranks, and validation on rank 0, shared with every rank."""
    t, ctx = s.train, s.ctx
    loss, correct, reviews, tokens = ctx.all_reduce_sum([totals.loss, totals.correct, totals.reviews, totals.tokens],
                                                        s.device)
    # Every rank saw the same averaged gradients: rank 0's norm is the one broadcast below.
    grad_norm = float(f"{totals.grad_norm / totals.steps:.6g}") if totals.steps else None
    metrics = EpochMetrics(epoch, round(loss / reviews, 6), round(correct / reviews, 6), None, None,
                           round(totals.seconds, 2), round(tokens / totals.seconds), float(f"{totals.lr:.3g}"),
                           grad_norm)
    share, val = None, None
    if s.val_data is not None and ctx.is_main:
        val = score(s.evaluated, s.val_data, max(t.batch_size, EVAL_BATCH_SIZE), t.dynamic_padding, s.pad_side, s.device)
        metrics.val_loss, metrics.val_acc = round(val.loss, 6), round(val.accuracy, 6)
        share = (np.bincount(val.preds, minlength=val.probs.shape[1]) / max(1, len(val.preds))).tolist()
    metrics = ctx.broadcast_from_main(metrics)  # every rank keeps the same history, so all stop early alike
    best = max((h.val_acc for h in history if h.val_acc is not None), default=-1.0)
    return EpochEnd(metrics, metrics.val_acc is not None and metrics.val_acc > best, share, val)
