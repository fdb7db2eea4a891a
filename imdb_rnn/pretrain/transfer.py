"""`model.init_from`: start a classifier from a pretrain run's language model (ULMFiT's and Dai &
Le's fine-tuning: the embedding and the recurrent layers are copied, the head starts afresh)."""

from __future__ import annotations

from pathlib import Path

from imdb_rnn.errors import UserError
from imdb_rnn.model import RNNClassifier
from imdb_rnn.pretrain.model import TRANSFERRED_PREFIXES

# The model keys that fix the transferred tensors' shapes and meaning.
SHAPE_KEYS = ("cell", "nonlinearity", "embedding_dim", "hidden_size", "num_layers", "bidirectional")


def init_from_pretrained(model: RNNClassifier, run_path: Path, vocab_sha256: str) -> list[str]:
    """Copy the pretrained embedding and recurrent weights of the pretrain run at `run_path` into
    `model.encoder`; returns the names of the copied tensors (`RNNEncoder` names).

    Raises UserError when the run has no finished epoch, was pretrained on another vocabulary, or
    with another model shape (naming the key).
    """
    from imdb_rnn.pretrain.train import LMRunDir

    run = LMRunDir(Path(run_path))
    path = run / LMRunDir.LAST
    if not path.is_file():
        raise UserError(f"model.init_from={run_path}: no {LMRunDir.LAST} there; run 'imdb-rnn pretrain --config ...' "
                        "first, or fix the path (relative to the working directory)")
    ckpt = run.load_checkpoint(path)
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
        if have.get(key) != getattr(model.cfg, key):
            raise UserError(f"model.init_from={run_path} has model.{key}={have.get(key)!r}, this config "
                            f"{getattr(model.cfg, key)!r}; set model.{key} alike, or pretrain again")
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(TRANSFERRED_PREFIXES)}
    target = model.encoder.state_dict()
    missing = sorted(set(target) - set(weights) - {k for k in target if not k.startswith(TRANSFERRED_PREFIXES)})
    if missing:
        raise UserError(f"model.init_from={run_path} lacks {missing[0]} (corrupt?); pretrain again")
    model.encoder.load_state_dict(weights, strict=False)
    return sorted(weights)
