"""The train stage: set up, run the loop, and save, log and plot what it yields.

It writes the run directory (see `imdb_rnn.run`): the run's inputs first (config, vocabulary,
pipeline), then the NBSVM branch when the config has one (fitted before the RNN trains), then
after every epoch metrics.csv, training_curves.png, model-last.pt, when validation accuracy
improved model-best.pt, and with train.tensorboard the epoch's TensorBoard events. With more than
one branch, each checkpoint carries stacking weights fitted on the validation split for its own
weights. Under torchrun (WORLD_SIZE > 1) every rank runs the loop with DistributedDataParallel,
and rank 0 alone logs and writes.

With model.pretrained_vectors, a fresh run reads the vectors file before writing anything, puts
its rows into the new model's embedding, and records the file among the inputs (vectors.json).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
import torch

from imdb_rnn import plots
from imdb_rnn.config import Config
from imdb_rnn.data.artifacts import Processed, load_artifacts
from imdb_rnn.errors import UserError
from imdb_rnn.model import embedding_norm
from imdb_rnn.model.nbsvm import NBSVM, check_two_classes, fit_with_validation
from imdb_rnn.model.stack import Stack, fit_stack
from imdb_rnn.model.vectors import PretrainedEmbedding, load_pretrained
from imdb_rnn.run import Pipeline, RunDir, cpu_state_dict
from imdb_rnn.scoring import majority_class_warning
from imdb_rnn.training import distributed
from imdb_rnn.training.distributed import Dist
from imdb_rnn.training.interrupt import StopRequest
from imdb_rnn.training.loop import EpochEnd, EpochMetrics, Interrupted, NonFiniteLoss, StoppedEarly, train_while_improving
from imdb_rnn.training.setup import EMA_STEPS, TRAINED_WEIGHTS, TrainingSetup, build_setup
from imdb_rnn.training.tensorboard_log import TensorBoardLog, summary_writer_class
from imdb_rnn.training.threads import cpu_share


@dataclass
class TrainResult:
    run_dir: Path
    epochs: list[EpochMetrics]
    best_path: Path
    interrupted: Optional[str] = None  # where Ctrl-C / SIGTERM stopped it; model-last.pt holds that point
    stopped_early: bool = False  # validation accuracy stopped improving (train.patience)
    is_main: bool = True  # rank 0 (or the only process): the one that reports


def train(cfg: Config, data_dir: Path, run_dir: Optional[Path] = None, overwrite: bool = False,
          show_progress: bool = False, log: Callable[[str], Any] = print,
          resume: Union[bool, Literal["auto"]] = False) -> TrainResult:
    """Train `cfg` on its preprocess artifacts in `data_dir`; writes `run_dir` (default runs/NAME).

    `resume=True` continues the run in `run_dir` from model-last.pt; "auto" continues it when
    model-last.pt is there and starts afresh otherwise (what an elastic launcher's restarted
    workers need: the same command at the first launch and after a fault). Raises UserError for missing
    artifacts, a run directory that holds a run (without `overwrite`), a non-finite loss, or a
    failed write.
    """
    ctx = distributed.from_env()
    try:
        device = distributed.start(ctx, cfg.train.device)
        run = RunDir(Path(run_dir) if run_dir else Path("runs") / cfg.name)
        with cpu_share(cfg.train.threads, device) as threads, StopRequest() as stop:
            result = _train(cfg, data_dir, run, overwrite, resume, ctx, device, threads, stop,
                            show_progress and ctx.is_main, log if ctx.is_main else (lambda *_: None))
            result.is_main = ctx.is_main
            return result
    finally:
        distributed.stop()


def _open_run(run: RunDir, cfg: Config, processed: Processed, ctx: Dist, overwrite: bool,
              resume: Union[bool, Literal["auto"]], data_dir: Path,
              ) -> tuple[Optional[dict[str, Any]], Optional[PretrainedEmbedding]]:
    """The state to resume from, or None after preparing a fresh run directory; with it, on rank
    0 of a fresh run, the model.pretrained_vectors rows of the vocabulary."""
    if resume == "auto":
        # Rank 0 decides for all, so that no rank resumes while another starts afresh.
        decision = ctx.broadcast_from_main(_auto_resume_decision(run, cfg) if ctx.is_main else None)
        if decision.startswith("error: "):
            raise UserError(decision[len("error: "):])
        resume, overwrite = decision == "resume", True
    if resume:
        state = run.resume_state(cfg)
        if cfg.train.ema_decay and not {TRAINED_WEIGHTS, EMA_STEPS} <= state.keys():
            raise UserError(f"{run / RunDir.LAST} lacks the trained weights beside their average (train.ema_decay), "
                            "so training cannot continue from it; start the run again with --overwrite")
        if state["vocab_sha256"] != processed.vocab.sha256():
            raise UserError(f"the vocabulary in {processed.out_dir} differs from the one {run} was trained with; "
                            "restore the source it was trained on, or train a new run")
        return state, None  # the vectors are in the checkpoint's weights: the file is not read again
    run.check_free(overwrite)  # every rank refuses alike before rank 0 touches anything
    vectors = _pretrained_vectors(cfg, processed, data_dir) if ctx.is_main else None  # a bad file stops it here
    if cfg.model.init_from:  # so does a bad language model, on every rank alike (build_setup copies it later)
        from imdb_rnn.pretrain.transfer import pretrained_encoder

        if Path(cfg.model.init_from).expanduser().resolve() == run.path.resolve():
            raise UserError(f"model.init_from={cfg.model.init_from} is the run directory itself, which training "
                            "replaces; train into another --run-dir")
        pretrained_encoder(Path(cfg.model.init_from), processed.vocab.sha256(), cfg.model, mmap=True)
    ctx.barrier()
    if ctx.is_main:
        run.prepare(overwrite)
        run.write_inputs(cfg, processed.vocab, Pipeline.of(processed), vectors.manifest() if vectors else None)
    return None, vectors


def _pretrained_vectors(cfg: Config, processed: Processed, data_dir: Path) -> Optional[PretrainedEmbedding]:
    """The vocabulary's rows of model.pretrained_vectors, or None without one."""
    m = cfg.model
    if m.pretrained_vectors is None:
        return None
    return load_pretrained(m.pretrained_vectors, data_dir, processed.vocab.itos, m.embedding_dim, m.freeze_embeddings)


def _auto_resume_decision(run: RunDir, cfg: Config) -> str:
    """'resume' when model-last.pt is there; 'fresh' when the directory holds no run, or only the
    inputs of this config's own start that never finished an epoch; else 'error: WHY'."""
    if (run / RunDir.LAST).is_file():
        return "resume"
    if not run.holds_run():
        return "fresh"
    unfinished = not (run / RunDir.BEST).exists() and not (run / RunDir.METRICS).exists() \
        and not any(run.eval_metric_files())
    if not unfinished or not (run / RunDir.CONFIG).is_file():
        return (f"error: {run} holds a run without {RunDir.LAST} to continue from; choose another --run-dir, "
                "or pass --overwrite to replace it")
    try:
        run.check_same_config(cfg)
    except UserError as e:
        return f"error: {e}"
    return "fresh"


def _train(cfg: Config, data_dir: Path, run: RunDir, overwrite: bool, resume: Union[bool, Literal["auto"]], ctx: Dist,
           device: torch.device, threads: Optional[int], stop: StopRequest, show_progress: bool,
           log: Callable[[str], Any]) -> TrainResult:
    if cfg.train.tensorboard and ctx.is_main:
        summary_writer_class()  # a missing tensorboard package stops the run here, before anything is written
    processed = load_artifacts(cfg, data_dir)
    if cfg.nbsvm is not None:
        check_two_classes(processed.label_names)
    state, vectors = _open_run(run, cfg, processed, ctx, overwrite, resume, data_dir)
    s = build_setup(cfg, processed, ctx, device, stop, state, show_progress, vectors)
    history = [EpochMetrics(**row) for row in state["history"]] if state else []
    position = state.get("position") if state else None
    if state:
        log(f"resuming {run} after epoch {state['epoch']}" + (f", batch {position['batches']}" if position else ""))
    cpu = f", {threads} thread{'s' if threads > 1 else ''}" if threads else ""
    if threads and cfg.train.threads is None:
        cpu += " (the node's cores shared among its imdb-rnn processes)"
    log(f"train: {len(s.train_data)} reviews, val: {len(s.val_data) if s.val_data else 0}, vocab {len(processed.vocab)}, "
        f"{sum(p.numel() for p in s.model.parameters()):,} parameters, device {device}{cpu}"
        + (f", {ctx.world_size} processes" if ctx.is_distributed else ""))
    if not state and cfg.model.init_from:
        log(f"started from the language model in {cfg.model.init_from} (embedding and recurrent layers"
            + (", and its word counts for the normalised embeddings)" if cfg.model.normalize_embeddings else ")"))
    if cfg.model.normalize_embeddings:
        log(embedding_norm.DESCRIPTION)
    ulmfit = [f"discriminative_lr {cfg.train.discriminative_lr:g}"] if cfg.train.discriminative_lr else []
    ulmfit += ["gradual unfreezing"] if cfg.train.gradual_unfreezing else []
    if ulmfit:
        log("ULMFiT fine-tuning: " + ", ".join(ulmfit) + ("" if cfg.model.init_from else
            " (note: without model.init_from the recurrent layers it slows or freezes start untrained)"))
    if cfg.train.ema_decay:
        for line in _ema_lines(cfg.train.ema_decay, cfg.train.epochs * len(s.sampler), s.val_data is not None):
            log(line)
    if cfg.train.adversarial != "none":
        log(f"adversarial training: {cfg.train.adversarial}, epsilon {cfg.train.adv_epsilon:g}, weight "
            f"{cfg.train.adv_weight:g}")
    if vectors is not None:
        log(vectors.summary())
        del vectors  # its rows are in the model now
    nbsvm_val = _nbsvm_branch(cfg, processed, run, s, state, log) if ctx.is_main and cfg.nbsvm is not None else None
    board = TensorBoardLog(run / RunDir.TENSORBOARD, cfg, len(history) + 1, bool(state)) if cfg.train.tensorboard and ctx.is_main \
        else None
    save = _Saver(run, s, cfg, processed.vocab.sha256(), nbsvm_val, Stack.from_dict(state["stack"])
                  if state and "stack" in state else None, board)
    stopped_early, val_shares = False, None
    try:
        for event in train_while_improving(s, history, position):
            if isinstance(event, Interrupted):
                if ctx.is_main:
                    save.last(history, event.epoch - 1, event.position)
                return TrainResult(run.path, history, run / RunDir.LAST, interrupted=f"epoch {event.epoch} after "
                                   f"{event.batches_done} of {event.batches_per_epoch} batches")
            if isinstance(event, StoppedEarly):
                log(f"stopping early: validation accuracy has not improved for {event.patience} epochs")
                stopped_early = True
                break
            history.append(event.metrics)
            val_shares = event.val_predicted_shares
            if ctx.is_main:
                save.epoch(history, event)
            log(_epoch_line(event.metrics, s.ema is not None))
    except NonFiniteLoss as e:
        raise UserError(f"{e}; lower train.lr or set train.grad_clip (the last good checkpoint is {run / RunDir.LAST})") from None
    finally:
        if board is not None:
            board.close()
    warning = majority_class_warning(val_shares, processed.label_names) if val_shares is not None else None
    if warning:
        log(warning + ("; or train.ema_decay: the average may still hold the first steps' weights"
                       if cfg.train.ema_decay else ""))
    best = run / (RunDir.BEST if (run / RunDir.BEST).exists() else RunDir.LAST)
    stack = run.load_checkpoint(best, mmap=True).get("stack") if ctx.is_main else None
    if stack:
        log(f"stacking weights of {best.name}, fitted on {stack['reviews']:,} validation reviews: "
            + ", ".join(f"{b} {w:.3f}" for b, w in zip(stack["branches"], stack["coef"]))
            + f", intercept {stack['intercept']:.3f}")
    return TrainResult(run.path, history, best, stopped_early=stopped_early)


def _nbsvm_branch(cfg: Config, processed: Processed, run: RunDir, s: TrainingSetup, state: Optional[dict],
                  log: Callable[[str], Any]) -> np.ndarray:
    """Fit the NBSVM branch and save it in the run (a resumed run loads it); returns its margins
    `(N_val,)` on the validation split, from a fit that did not see them: what stacking is fitted on."""
    branch = NBSVM.load(run.path) if state is not None and all((run / name).is_file()
                                                               for name in RunDir.NBSVM_FILES) else None
    if branch is None or branch.val_margins is None or len(branch.val_margins) != len(s.val_data):
        branch = fit_with_validation(processed.texts(s.train_data), s.train_data.labels,
                                     processed.texts(s.val_data), s.val_data.labels, cfg.nbsvm)
        branch.save(run.path)
    accuracy = float(((branch.val_margins >= 0) == (s.val_data.labels == 1)).mean())
    refit = f", then on all {len(s.train_data) + len(s.val_data):,} training reviews" if cfg.nbsvm.refit else ""
    log(f"nbsvm: {len(branch.ngrams):,} n-grams of 1 to {branch.order} tokens, fitted on {len(s.train_data):,} "
        f"reviews{refit} in {branch.fit_seconds:.1f} s; validation accuracy {accuracy:.4f}")
    return branch.val_margins


class _Saver:
    """Rank 0's writes: metrics.csv, the curves, checkpoints with the state --resume needs and
    the stacking weights fitted for their weights, and the TensorBoard events."""

    def __init__(self, run: RunDir, s: TrainingSetup, cfg: Config, vocab_sha256: str,
                 nbsvm_val: Optional[np.ndarray] = None, stack: Optional[Stack] = None,
                 board: Optional[TensorBoardLog] = None) -> None:
        self.run, self.s, self.cfg, self.vocab_sha256 = run, s, cfg, vocab_sha256
        self.board = board
        self.nbsvm_val = nbsvm_val
        # The latest epoch's; a Ctrl-C point mid-epoch keeps it (the weights moved a little since).
        self.stack = stack

    def _save(self, which: str, epoch: int, metrics: dict, state: Optional[dict] = None) -> None:
        self.run.save_checkpoint(which, self.s.evaluated, self.cfg, self.vocab_sha256, epoch, metrics, state, self.stack)

    def fit_stack(self, event: EpochEnd) -> None:
        """Stacking weights for this epoch's weights, from the branches' margins on validation."""
        if event.val_scores is None:
            return
        margins = dict(event.val_scores.margins)
        if self.nbsvm_val is not None:
            margins["nbsvm"] = self.nbsvm_val
        if len(margins) > 1:
            self.stack = fit_stack(margins, self.s.val_data.labels)

    def last(self, history: list[EpochMetrics], epoch: int, position: Optional[dict] = None) -> None:
        """model-last.pt after `epoch`, with `position` when stopped inside the next one."""
        metrics = {k: v for k, v in asdict(history[-1]).items() if v is not None} if history else {}
        state = {"optimizer": self.s.optimizer.state_dict(), "scheduler": self.s.scheduler.state_dict(),
                 "history": [asdict(h) for h in history], "position": position}
        if self.s.ema is not None:  # the checkpoint's weights are the average: training goes on from these
            state[TRAINED_WEIGHTS] = cpu_state_dict(self.s.model)
            state[EMA_STEPS] = int(self.s.ema.n_averaged)
        self._save("last", epoch, metrics, state)

    def epoch(self, history: list[EpochMetrics], event: EpochEnd) -> None:
        self.fit_stack(event)
        self.run.write_metrics([asdict(h) for h in history])
        plots.training_curves([asdict(h) for h in history], self.run / RunDir.CURVES, self.cfg.name,
                              bool(self.cfg.train.ema_decay))
        if event.improved:
            self._save("best", event.metrics.epoch, {k: v for k, v in asdict(event.metrics).items() if v is not None})
        self.last(history, event.metrics.epoch)
        if self.board is not None:  # after model-last.pt: a resumed run never logs an epoch twice
            self.board.epoch(history)


EMA_FIRST_SHARE = 0.05


def _ema_lines(decay: float, steps: int, validated: bool) -> list[str]:
    """What train.ema_decay does to this run of `steps` optimizer steps, and a warning when the
    weights of its first step still make more than EMA_FIRST_SHARE of the average at the end."""
    lines = [f"{'validated and ' if validated else ''}saved: the moving average of the weights (train.ema_decay "
             f"{decay:g}: about the last {round(1 / (1 - decay)):,} of the run's {steps:,} step{'s' if steps != 1 else ''})"]
    first = decay ** (steps - 1)  # the first step copies the weights; each later one scales them by decay
    if steps > 1 and first > EMA_FIRST_SHARE:
        lines.append(f"warning: at the end, the weights after the first step still make {first:.0%} of the average; "
                     f"lower train.ema_decay (below {math.exp(math.log(EMA_FIRST_SHARE) / (steps - 1)):.4g} to bring it "
                     f"under {EMA_FIRST_SHARE:.0%}), or train for more steps")
    return lines


def _epoch_line(m: EpochMetrics, averaged: bool = False) -> str:
    val = f", val{' (average)' if averaged else ''} loss {m.val_loss:.4f} acc {m.val_acc:.4f}" \
        if m.val_acc is not None else ""
    return (f"epoch {m.epoch}: loss {m.train_loss:.4f} acc {m.train_acc:.4f}{val} "
            f"({m.seconds:.1f}s, {m.tokens_per_s:,} tokens/s)")
