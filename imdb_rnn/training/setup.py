"""What the training loop runs on: data splits, model, optimizer, LR scheduler, sampler, DDP
wrapper, and the moving average of the weights (train.ema_decay)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from imdb_rnn.config import Config, TrainConfig
from imdb_rnn.data.arrays import SplitArrays, split_validation
from imdb_rnn.data.artifacts import Processed
from imdb_rnn.data.batches import BatchSampler
from imdb_rnn.model import RNNClassifier
from imdb_rnn.model.vectors import PretrainedEmbedding
from imdb_rnn.training.distributed import Dist
from imdb_rnn.training.interrupt import StopRequest
from imdb_rnn.training.rng import seed_everything
from imdb_rnn.training.schedule import make_scheduler


# model-last.pt's keys, with train.ema_decay, for the trained weights beside their average
TRAINED_WEIGHTS, EMA_STEPS = "trained_state_dict", "ema_steps"


@dataclass
class TrainingSetup:
    train: TrainConfig
    pad_side: str
    model: RNNClassifier  # the bare model: validated and saved
    net: nn.Module  # what the loop calls: the model, or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: BatchSampler
    train_data: SplitArrays
    val_data: Optional[SplitArrays]
    separate_losses: bool  # the RNN and n-gram branches each minimise their own loss
    ctx: Dist
    device: torch.device
    stop: StopRequest
    show_progress: bool
    ema: Optional[AveragedModel] = None  # train.ema_decay's average of `model`'s weights

    @property
    def evaluated(self) -> RNNClassifier:
        """The weights that are validated and saved: the moving average with train.ema_decay, else `model`."""
        return self.ema.module if self.ema is not None else self.model


def build_setup(cfg: Config, processed: Processed, ctx: Dist, device: torch.device, stop: StopRequest,
                state: Optional[dict[str, Any]] = None, show_progress: bool = False,
                pretrained: Optional[PretrainedEmbedding] = None) -> TrainingSetup:
    """Everything the loop needs; with `state` (model-last.pt of a run to resume), every rank
    continues from the same weights, optimizer and scheduler state. `pretrained` (rank 0 of a
    fresh run) overwrites the embedding rows it has."""
    t = cfg.train
    seed_everything(t.seed)
    train_data, val_data = split_validation(processed.split("train"), t.val_fraction, t.seed)
    model = RNNClassifier(len(processed.vocab), cfg.model, num_classes=len(processed.label_names),
                          pad_id=processed.vocab.pad_id).to(device)
    if pretrained is not None:  # after the seeded init, so every other weight is as without vectors
        pretrained.copy_into(model.encoder.embedding)
    if model.encoder.embedding_norm is not None:  # model.init_from below brings the language model's counts
        model.encoder.embedding_norm.set_frequencies(train_data.ids, processed.vocab.pad_id)
    optimizer = model.configure_optimizer(t.lr, t.ngram_lr, t.weight_decay, t.discriminative_lr)
    sampler = BatchSampler(train_data.lengths, t.batch_size, t.seed, t.bucket, ctx.rank, ctx.world_size)
    scheduler = make_scheduler(optimizer, t, t.epochs * len(sampler))
    if state is None and cfg.model.init_from:  # a resumed run has the fine-tuned weights already
        from imdb_rnn.pretrain.transfer import init_from_pretrained

        init_from_pretrained(model, Path(cfg.model.init_from).expanduser(), processed.vocab.sha256())
    # Every rank averages its own copy: the ranks' weights are the same after every step.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay)) if t.ema_decay else None
    if state is not None:
        # With an average, the checkpoint's state_dict is the average, and the trained weights are beside it.
        model.load_state_dict(state[TRAINED_WEIGHTS] if ema is not None else state["state_dict"])
        if ema is not None:
            ema.module.load_state_dict(state["state_dict"])
            ema.n_averaged.fill_(state[EMA_STEPS])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    # DDP broadcasts rank 0's weights and averages gradients; checkpoints save the bare `model`.
    # Gradual unfreezing leaves the lower groups without gradients for a while: DDP must look for them.
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=t.gradual_unfreezing) if ctx.is_distributed else model
    separate = t.ngram_loss == "separate" and model.ngram is not None
    return TrainingSetup(t, cfg.preprocess.pad_side, model, net, optimizer, scheduler, sampler, train_data, val_data,
                         separate, ctx, device, stop, show_progress, ema)
