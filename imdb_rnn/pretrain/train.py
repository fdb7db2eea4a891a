"""The pretrain stage: a language model trained with truncated BPTT on the corpus, saved after
every epoch and on Ctrl-C, resumable; under torchrun each rank reads its own rows of the stream.

runs/NAME-lm/ (or --run-dir): config.yaml, vocab.json, pipeline.json (as a classifier run's),
metrics.csv (per epoch: loss and perplexity, train and held-out, seconds, tokens/s, learning
rate, gradient norm), perplexity.png, lm-last.pt (weights; optimizer, scheduler, position in the
epoch and the carried state that --resume needs). `model.init_from: runs/NAME-lm` then starts a
classifier from it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from imdb_rnn.config import Config, first_difference
from imdb_rnn.data.artifacts import load_artifacts
from imdb_rnn.errors import UserError
from imdb_rnn.files import atomic_path
from imdb_rnn.model import embedding_norm
from imdb_rnn.pretrain.corpus import Corpus, build_corpus
from imdb_rnn.pretrain.model import LanguageModel, Noise, configure_optimizer, perplexity, usable_cutoffs
from imdb_rnn.pretrain.side_by_side import SideBySide
from imdb_rnn.pretrain.tbptt import batchify, chunk_starts, iter_chunks
from imdb_rnn.pretrain.transfer import SHAPE_KEYS
from imdb_rnn.progress import progress_bar
from imdb_rnn.run import FORMAT, Pipeline, RunDir, _recipe, cpu_state_dict
from imdb_rnn.training import distributed
from imdb_rnn.training.distributed import Dist
from imdb_rnn.training.interrupt import StopRequest
from imdb_rnn.training.loop import total_norm
from imdb_rnn.training.rng import epoch_seed, rng_state, seed_everything, set_rng_state
from imdb_rnn.training.schedule import make_scheduler
from imdb_rnn.training.threads import cpu_share, recount


class LMRunDir(RunDir):
    """A pretrain run's directory: RunDir's inputs and metrics, and lm-last.pt."""

    LAST = RunDir.LM_LAST
    PLOT = RunDir.LM_PLOT
    FILES = (LAST, RunDir.METRICS, PLOT, RunDir.CONFIG, RunDir.VOCAB, RunDir.PIPELINE)
    CHECKPOINTS = (LAST,)
    OTHER_KIND = ((RunDir.LAST, RunDir.BEST), "a classifier run (model-best.pt, model-last.pt)")


@dataclass
class LMEpoch:
    """One row of a pretrain run's metrics.csv. Losses: mean NLL per predicted token (nats), the
    forward and backward LMs' tokens together; perplexity = exp(loss). With softmax=sampled the
    train loss is the sampled softmax's (no perplexity: it is not the exact NLL); held-out is exact."""

    epoch: int
    train_loss: float
    train_perplexity: Optional[float]
    val_loss: Optional[float]
    val_perplexity: Optional[float]
    seconds: float
    tokens_per_s: int  # predicted tokens (both directions) through forward, backward and the step
    lr: float
    grad_norm: Optional[float]


@dataclass
class PretrainResult:
    run_dir: Path
    epochs: list[LMEpoch]
    interrupted: Optional[str] = None
    is_main: bool = True


def pretrain(cfg: Config, data_dir: Path, run_dir: Optional[Path] = None, overwrite: bool = False,
             resume: bool = False, show_progress: bool = False, log: Callable[[str], Any] = print,
             workers: Optional[int] = None) -> PretrainResult:
    """Pretrain `cfg`'s language model on its preprocess artifacts in `data_dir` (and the source's
    unlabelled reviews); writes `run_dir` (default runs/NAME-lm).

    Raises UserError for a config without a pretrain section, missing artifacts, a source without
    unlabelled reviews, a run directory that holds a run (without `overwrite`), a non-finite loss.
    """
    if cfg.pretrain is None:
        raise UserError("the config has no pretrain section; add one (see configs/pretrain.yaml)")
    ctx = distributed.from_env()
    try:
        device = distributed.start(ctx, cfg.pretrain.device)
        run = LMRunDir(Path(run_dir) if run_dir else Path("runs") / f"{cfg.name}-lm")
        with cpu_share(cfg.pretrain.threads, device) as threads, StopRequest() as stop:
            result = _pretrain(cfg, data_dir, run, overwrite, resume, ctx, device, stop,
                               show_progress and ctx.is_main, log if ctx.is_main else (lambda *_: None), threads,
                               workers)
            result.is_main = ctx.is_main
            return result
    finally:
        distributed.stop()


def _open(run: LMRunDir, cfg: Config, processed, ctx: Dist, overwrite: bool, resume: bool) -> Optional[dict]:
    if resume:
        path = run / LMRunDir.LAST
        if not path.is_file():
            raise run.nothing_to_resume("pretrain")
        state = run.load_checkpoint(path)
        have, want = _lm_recipe(state["config"]), _lm_recipe(cfg.to_dict())
        if have != want:
            diff = first_difference(have, want, "the run has", "this config has")
            raise UserError(f"the run in {run.path} was pretrained with another config ({diff}); resume with its "
                            "config.yaml")
        if state["vocab_sha256"] != processed.vocab.sha256():
            raise UserError(f"the vocabulary in {processed.out_dir} differs from the one {run.path} was pretrained "
                            "with; restore the source it was pretrained on, or start a new run")
        return state
    run.check_free(overwrite)
    ctx.barrier()
    if ctx.is_main:
        run.prepare(overwrite)
        run.write_inputs(cfg, processed.vocab, Pipeline.of(processed))
    return None


def _lm_recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What must not change when a pretrain run continues: what pretraining reads (the text
    pipeline, the model's shape, the pretrain section), less where it runs. The classifier's own
    settings (train, nbsvm, the rest of model) may change meanwhile: one config serves both stages."""
    config = _recipe(config)
    model, lm = config.get("model") or {}, config.get("pretrain") or {}
    return {"data": config.get("data"), "preprocess": config.get("preprocess"),
            "model": {k: model.get(k) for k in SHAPE_KEYS}, "pretrain": {**lm, "device": None, "threads": None}}


def _pretrain(cfg: Config, data_dir: Path, run: LMRunDir, overwrite: bool, resume: bool, ctx: Dist,
              device: torch.device, stop: StopRequest, show_progress: bool, log: Callable[[str], Any],
              threads: Optional[int], workers: Optional[int]) -> PretrainResult:
    p = cfg.pretrain
    assert p is not None
    processed = load_artifacts(cfg, data_dir)
    # Refused before the run directory is touched, and before the unlabelled reviews are tokenized.
    if p.softmax == "sampled" and p.samples >= len(processed.vocab):
        # Each chunk scores its (batch_size x bptt) targets against every sample: past the vocabulary's
        # size that costs more than the full softmax, and memory grows with it (100,000 ran out of 24 GiB).
        raise UserError(f"pretrain.samples={p.samples} is not below the vocabulary's {len(processed.vocab):,} words; "
                        "draw fewer (configs/pretrain.yaml: 512), or use pretrain.softmax=full")
    if p.batch_size % ctx.world_size:
        raise UserError(f"pretrain.batch_size={p.batch_size} must be a multiple of the {ctx.world_size} processes")
    workers = workers or len(os.sched_getaffinity(0))
    if ctx.is_main:  # rank 0 tokenizes the unlabelled reviews once; the others read its cache
        corpus = build_corpus(cfg, processed, data_dir, workers, show_progress)
    ctx.barrier()
    if not ctx.is_main:
        corpus = build_corpus(cfg, processed, data_dir, 1, False)
    if len(corpus.train) < 2 * p.batch_size:
        raise UserError(f"the corpus's {len(corpus.train):,} tokens are too few for pretrain.batch_size="
                        f"{p.batch_size} rows; lower pretrain.batch_size, or raise pretrain.max_tokens or data.limit")
    state = _open(run, cfg, processed, ctx, overwrite, resume)
    seed_everything(p.seed)
    model = LanguageModel(len(processed.vocab), cfg.model, p, processed.vocab.pad_id)
    if model.embedding_norm is not None:  # the counts of the stream it trains on (a resumed run loads them)
        model.embedding_norm.set_frequencies(corpus.train, processed.vocab.pad_id)
    model = model.to(device)
    optimizer = configure_optimizer(model, p.lr, p.weight_decay)
    # Every rank batchifies the whole stream the same way and keeps its own rows: the global batch,
    # and so the steps, are the same whatever the number of processes.
    streams = [batchify(corpus.train, p.batch_size)]
    if model.directions == 2:
        streams.append(batchify(corpus.train[::-1].copy(), p.batch_size))
    streams = [s[ctx.rank :: ctx.world_size].to(device) for s in streams]
    width = streams[0].size(1)
    steps = len(chunk_starts(width, p.bptt))
    scheduler = make_scheduler(optimizer, p, p.epochs * steps)  # type: ignore[arg-type]  # same fields as TrainConfig
    history: list[LMEpoch] = []
    position = None
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = [LMEpoch(**h) for h in state["history"]]
        position = state.get("position")
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=p.softmax == "adaptive") \
        if ctx.is_distributed else model
    cpu = f", {threads} thread{'s' if threads > 1 else ''}" if threads else ""
    log(f"pretrain: {corpus.reviews:,} reviews ({corpus.unlabelled_reviews:,} unlabelled), {len(corpus.train):,} "
        f"tokens to train on, {len(corpus.heldout):,} held out; {p.batch_size} rows x {width:,} steps, "
        f"{steps:,} chunks of {p.bptt}; {sum(t.numel() for t in model.parameters()):,} parameters, device {device}{cpu}"
        + (f", {ctx.world_size} processes" if ctx.is_distributed else ""))
    if cfg.model.normalize_embeddings:
        log(embedding_norm.DESCRIPTION)
    kept = usable_cutoffs(p.cutoffs, len(processed.vocab))
    if p.softmax == "adaptive" and kept != p.cutoffs:
        dropped = [c for c in p.cutoffs if c not in kept]
        log(f"note: pretrain.cutoffs {dropped} left out (each must be below {len(processed.vocab) - 1:,}, the "
            f"vocabulary's {len(processed.vocab):,} words less one); "
            + (f"the adaptive softmax's clusters start at {kept}" if kept else
               "no cluster is left: the output layer is one full softmax"))
    if state and len(history) >= p.epochs:
        log(f"the language model in {run.path} has finished its {p.epochs} epoch{'s' if p.epochs > 1 else ''}: "
            "nothing left to do (--overwrite pretrains it anew)")
    elif state:
        log(f"resuming {run.path} " + (f"in epoch {position['epoch']} after chunk {position['chunk']} of {steps}"
                                       if position else f"after epoch {state['epoch']}"))

    for epoch in range(len(history) + 1, p.epochs + 1):
        here = position if position and position["epoch"] == epoch else None
        outcome = _epoch(net, model, optimizer, scheduler, streams, p, epoch, ctx, device, stop, here, show_progress)
        if isinstance(outcome, dict):  # stopped inside the epoch: save where, and the carried state
            if ctx.is_main:
                _save(run, model, optimizer, scheduler, cfg, processed.vocab.sha256(), epoch - 1, history, outcome)
            return PretrainResult(run.path, history, f"epoch {epoch} after chunk {outcome['chunk']} of {steps}")
        row = outcome
        if ctx.is_main:
            row.val_loss, row.val_perplexity = _heldout(model, corpus, p, device)
        row = ctx.broadcast_from_main(row)
        history.append(row)
        if ctx.is_main:
            run.write_metrics([asdict(h) for h in history])
            _plot(history, run / LMRunDir.PLOT, cfg.name)
            _save(run, model, optimizer, scheduler, cfg, processed.vocab.sha256(), epoch, history, None)
        train = (f"sampled-softmax loss {row.train_loss:.4f}" if row.train_perplexity is None else
                 f"loss {row.train_loss:.4f} (perplexity {row.train_perplexity:.1f})")
        log(f"epoch {epoch}: {train}, held-out perplexity {row.val_perplexity:.1f} ({row.seconds:.1f}s, "
            f"{row.tokens_per_s:,} tokens/s)")
        if row.val_perplexity is not None and row.val_perplexity > len(processed.vocab):
            log(f"note: a held-out perplexity above the vocabulary's {len(processed.vocab):,} words is worse than a "
                "uniform guess: the language model has diverged; lower pretrain.lr or set pretrain.grad_clip")
    return PretrainResult(run.path, history)


def _epoch(net: nn.Module, model: LanguageModel, optimizer, scheduler, streams: list[torch.Tensor], p, epoch: int,
           ctx: Dist, device: torch.device, stop: StopRequest, position: Optional[dict], show_progress: bool):
    """One pass over the stream in chunks of pretrain.bptt; an LMEpoch, or on a stop request the
    position to save (a dict). Raises UserError on a non-finite loss."""
    net.train()
    torch.manual_seed(epoch_seed(p.seed, epoch, ctx.rank))
    carried = model.initial_state()
    first, totals = 0, {"nll": 0.0, "tokens": 0, "seconds": 0.0, "grad_norm": 0.0, "steps": 0, "lr": 0.0}
    if position:
        first, totals, carried = position["chunk"], dict(position["totals"]), _to(position["state"], device)
        if len(position["rng"]) == ctx.world_size:
            set_rng_state(position["rng"][ctx.rank], device)
    steps = len(chunk_starts(streams[0].size(1), p.bptt))
    start = time.perf_counter() - totals["seconds"]
    params = [t for t in model.parameters() if t.requires_grad]
    runner = (contextlib.closing(SideBySide()) if SideBySide.usable(model, device, ctx.is_distributed)
              else contextlib.nullcontext())
    with runner as side_by_side, progress_bar(total=steps, desc=f"pretrain epoch {epoch}/{p.epochs}", unit="chunk",
                                              enabled=show_progress) as bar:
        bar.update(first)
        chunks = list(zip(*(iter_chunks(s, p.bptt, first) for s in streams)))
        drawn = None  # this step's (RNG state before its draws, its draws), when the step before drew them

        def draw(j: int) -> tuple[dict, list[Noise]]:
            # Every random draw of step j, on this thread, in step order: the same draws however the
            # directions then run; the state before them is what a stop at step j saves.
            return rng_state(device), model.draw_noise([x for _, x, _ in chunks[j]])

        for j, parts in enumerate(chunks):
            i = parts[0][0]
            recount()
            inputs, targets = [x for _, x, _ in parts], [y for _, _, y in parts]
            tokens = sum(y.numel() for y in targets)
            rng_before, noise = drawn or draw(j)
            optimizer.zero_grad(set_to_none=True)
            threads = torch.get_num_threads()
            backward_done = side_by_side is not None and threads >= 2
            if backward_done:  # one process: its tokens are the global batch's
                ahead = functools.partial(draw, j + 1) if j + 1 < len(chunks) else None
                losses, new_state, drawn = side_by_side.forward_backward(model, inputs, targets, carried, noise,
                                                                         1.0 / tokens, threads, ahead)
            else:
                drawn = None
                losses, new_state = net(inputs, targets, carried, noise)
            loss = sum(losses)
            bad, stopping, global_tokens = ctx.all_reduce_sum(
                [float(not torch.isfinite(loss)), float(stop.requested), float(tokens)], device)
            if bad:
                raise UserError(f"loss became non-finite in pretrain epoch {epoch}; lower pretrain.lr or set "
                                "pretrain.grad_clip")
            if stopping:
                totals["seconds"] = time.perf_counter() - start
                return {"epoch": epoch, "chunk": i, "totals": totals, "state": _to(carried, torch.device("cpu")),
                        "rng": ctx.all_gather(rng_before)}
            if not backward_done:
                scale = ctx.world_size / global_tokens  # the mean over the global batch's tokens
                if ctx.is_distributed:  # DistributedDataParallel: one backward pass per forward
                    (loss * scale).backward()
                else:  # a backward pass per direction: the shared weights' gradients summed as side by side
                    for direction_loss in losses:
                        (direction_loss * scale).backward()
            grads = [t for t in params if t.grad is not None]
            norm = nn.utils.clip_grad_norm_(grads, p.grad_clip) if p.grad_clip else total_norm([t.grad for t in grads])
            totals["lr"] = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            carried = new_state  # already detached: truncated BPTT
            totals["nll"] += loss.item()
            totals["tokens"] += tokens
            totals["grad_norm"] += norm.item()
            totals["steps"] += 1
            bar.update(1)
            if p.softmax == "sampled":
                bar.set_postfix(sampled_loss=f"{totals['nll'] / totals['tokens']:.3f}")
            else:
                bar.set_postfix(perplexity=f"{perplexity(totals['nll'], totals['tokens']):.1f}")
    seconds = time.perf_counter() - start
    nll, tokens = ctx.all_reduce_sum([totals["nll"], totals["tokens"]], device)
    loss = nll / max(1, tokens)
    train_perplexity = None if p.softmax == "sampled" else round(perplexity(nll, int(tokens)) or 0.0, 3)
    return LMEpoch(epoch, round(loss, 6), train_perplexity, None, None, round(seconds, 2),
                   round(tokens / max(seconds, 1e-9)), float(f"{totals['lr']:.3g}"),
                   float(f"{totals['grad_norm'] / totals['steps']:.6g}") if totals["steps"] else None)


@torch.no_grad()
def _heldout(model: LanguageModel, corpus: Corpus, p, device: torch.device) -> tuple[float, float]:
    """(mean NLL per token, perplexity) on the held-out reviews, state carried as in training."""
    model.eval()
    if len(corpus.heldout) < 2:  # nothing to predict
        return float("nan"), float("nan")
    rows = max(1, min(p.batch_size, len(corpus.heldout) // (2 * p.bptt)))
    streams = [batchify(corpus.heldout, rows).to(device)]
    if model.directions == 2:
        streams.append(batchify(corpus.heldout[::-1].copy(), rows).to(device))
    carried = model.initial_state()
    nll, tokens = 0.0, 0
    for parts in zip(*(iter_chunks(s, p.bptt) for s in streams)):
        losses, carried = model([x for _, x, _ in parts], [y for _, _, y in parts], carried)
        nll += float(sum(losses))
        tokens += sum(y.numel() for _, _, y in parts)
    model.train()
    return round(nll / tokens, 6), round(perplexity(nll, tokens) or 0.0, 3)


def _to(state: Any, device: torch.device) -> Any:
    """The carried state (nested lists and tuples of tensors, or None) on `device`."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, tuple):
        return tuple(_to(s, device) for s in state)
    return [_to(s, device) for s in state]


def _save(run: LMRunDir, model: LanguageModel, optimizer, scheduler, cfg: Config, vocab_sha256: str, epoch: int,
          history: list[LMEpoch], position: Optional[dict]) -> None:
    """lm-last.pt: weights, and what --resume continues from. Raises UserError on a failed write."""
    payload = {
        "format": FORMAT,
        "kind": "language_model",
        "state_dict": cpu_state_dict(model),
        "vocab_sha256": vocab_sha256,
        "config": cfg.to_dict(),
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": [asdict(h) for h in history],
        "position": position,
    }
    with atomic_path(run / LMRunDir.LAST) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as e:
            raise OSError(errno.EIO, "the write failed part-way") from e


def _plot(history: list[LMEpoch], dest: Path, title: str) -> None:
    from imdb_rnn.plots import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    epochs = [h.epoch for h in history]
    if all(h.train_perplexity is not None for h in history):  # none with a sampled softmax
        ax.plot(epochs, [h.train_perplexity for h in history], "o-", label="train")
    ax.plot(epochs, [h.val_perplexity for h in history], "s-", label="held-out")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(f"{title}: language model")
    try:
        save_png(fig, dest)
    finally:
        plt.close(fig)
