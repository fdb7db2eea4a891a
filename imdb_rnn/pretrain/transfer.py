"""`model.init_from`: start a classifier from a pretrain run's language model (ULMFiT's and Dai &
Le's fine-tuning: the embedding and the recurrent layers are copied, the head starts afresh)."""

from __future__ import annotations

from pathlib import Path

import torch

from imdb_rnn.config import ModelConfig, spelled
from imdb_rnn.errors import UserError
from imdb_rnn.model import RNNClassifier
from imdb_rnn.model.encoder import RNNEncoder
from imdb_rnn.pretrain.model import TRANSFERRED_PREFIXES

# The model keys that fix the transferred tensors' shapes and meaning.
SHAPE_KEYS = ("cell", "nonlinearity", "embedding_dim", "hidden_size", "num_layers", "bidirectional",
              "normalize_embeddings")


def init_from_pretrained(model: RNNClassifier, run_path: Path, vocab_sha256: str) -> list[str]:
    """Copy the pretrained embedding and recurrent weights of the pretrain run at `run_path` into
    `model.encoder`; returns the names of the copied tensors (`RNNEncoder` names).

    Raises UserError as `pretrained_encoder` does.
    """
    weights = pretrained_encoder(run_path, vocab_sha256, model.cfg)
    model.encoder.load_state_dict(weights, strict=False)
    return sorted(weights)


def pretrained_encoder(run_path: Path, vocab_sha256: str, model_cfg: ModelConfig,
                       mmap: bool = False) -> dict[str, torch.Tensor]:
    """The embedding and recurrent tensors of the pretrain run at `run_path` (`RNNEncoder` names),
    checked against a classifier of `model_cfg` on the vocabulary `vocab_sha256`. train calls it
    with `mmap` (the tensors stay in the file: a check, not a second read) before it writes
    anything, so a bad model.init_from leaves no half-made run behind.

    Raises UserError when the run has no finished epoch, was pretrained on another vocabulary, or
    with another model shape (naming the key).
    """
    from imdb_rnn.pretrain.train import LMRunDir

    run = LMRunDir(Path(run_path).expanduser())
    path = run / LMRunDir.LAST
    if run.path.is_file():
        raise UserError(f"model.init_from={run_path} is a file; point it at the folder 'imdb-rnn pretrain' wrote "
                        f"(the one holding {LMRunDir.LAST})")
    other = run.holds_other_kind()
    if other:
        raise UserError(f"model.init_from={run_path} holds {other}, not a language model; point it "
                        "at the folder 'imdb-rnn pretrain' wrote (runs/NAME-lm)")
    if not path.is_file():
        raise UserError(f"model.init_from={run_path}: no {LMRunDir.LAST} there; run 'imdb-rnn pretrain --config ...' "
                        "first, or fix the path (relative to the working directory)")
    ckpt = run.load_checkpoint(path, mmap=mmap)
    if ckpt.get("kind") != "language_model":
        raise UserError(f"model.init_from={run_path} is not a pretrain run; point it at the folder 'imdb-rnn pretrain' "
                        "wrote (runs/NAME-lm)")
    if ckpt["epoch"] < 1:
        raise UserError(f"model.init_from={run_path}: the language model has not finished an epoch; continue it with "
                        "'imdb-rnn pretrain ... --resume'")
    if ckpt["vocab_sha256"] != vocab_sha256:
        raise UserError(f"model.init_from={run_path} was pretrained with another vocabulary; pretrain with this "
                        "config's data and preprocess sections, or set model.init_from=null")
    have = ckpt["config"]["model"]
    for key in SHAPE_KEYS:
        # a key added since that run was pretrained has its default there
        value = have.get(key, ModelConfig.model_fields[key].default)
        if value != getattr(model_cfg, key):
            raise UserError(f"model.init_from={run_path} has model.{key}={spelled(value)}, this config "
                            f"{spelled(getattr(model_cfg, key))}; set model.{key} alike, or pretrain again")
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(TRANSFERRED_PREFIXES)}
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # the names and shapes alone; no RNG drawn
        target = RNNEncoder(2, model_cfg).state_dict()
    for name, tensor in target.items():
        if name.startswith(TRANSFERRED_PREFIXES) and name not in weights:
            raise UserError(f"model.init_from={run_path} lacks {name} (corrupt?); pretrain again")
        # the vocabulary-sized tensors were checked by the vocabulary's sha256
        vocab_sized = name in ("embedding.weight", "embedding_norm.frequencies")
        if name.startswith(TRANSFERRED_PREFIXES) and not vocab_sized and weights[name].shape != tensor.shape:
            raise UserError(f"model.init_from={run_path}: {name} has shape {tuple(weights[name].shape)}, not "
                            f"{tuple(tensor.shape)} (corrupt?); pretrain again")
    return weights
