"""A run directory: the one owner of its file names, its checkpoints, and loading a run.

runs/NAME/
  config.yaml          the resolved config (the text pipeline's settings included)
  vocab.json           the vocabulary (the id -> token list)
  pipeline.json        what turns text into model input: padded width, pad/unknown ids, label
                       names, the vocabulary's checksum
  vectors.json         with model.pretrained_vectors: the file's path as configured, its sha256,
                       format and dimension, and the share of the vocabulary it covered (the
                       vectors themselves are in the checkpoints' weights)
  metrics.csv          one row per epoch
  training_curves.png  loss and accuracy per epoch
  tensorboard/         with train.tensorboard: one TensorBoard event file per training session
                       (per-epoch scalars, the config as hparams)
  model-last.pt        after every epoch, and on Ctrl-C: weights plus the state --resume needs
  model-best.pt        the epoch with the best validation accuracy (with train.val_fraction > 0)
  nbsvm.npz, nbsvm-ngrams.json   with an NBSVM branch: its fitted weights and n-grams
  eval-SPLIT/          metrics.json, predictions.csv, confusion_matrix.png

A run is self-contained: eval, predict and export need nothing outside it, and nothing in it
names an absolute path, so a copied run works anywhere. Checkpoints load with
`torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import torch

from imdb_rnn.config import Config, config_from_dict, dump_config, first_difference
from imdb_rnn.data.vocab import Vocab
from imdb_rnn.errors import UserError
from imdb_rnn.export.runtime import export_owns
from imdb_rnn.files import atomic_path, ensure_dir, write_json, write_text
from imdb_rnn.model import RNNClassifier
from imdb_rnn.model import nbsvm as nbsvm_files
from imdb_rnn.model.nbsvm import NBSVM
from imdb_rnn.model.stack import Stack

if TYPE_CHECKING:
    from imdb_rnn.data.artifacts import Processed

FORMAT = 2  # of checkpoints; 1 (before self-contained runs) pointed at the training data


@dataclass
class Pipeline:
    """What turns raw text into the model's input, besides the preprocess config and vocabulary."""

    width: int  # padded width of the training arrays (tokens)
    pad_id: int
    unk_id: int
    labels: list[str]  # class names by id
    vocab_size: int
    vocab_sha256: str
    # The sha256 of the data it was built from (the preprocess manifest's source, and test source if
    # any): eval says when it scores other data. None in runs made before it was kept.
    source_sha256: Optional[str] = None
    test_source_sha256: Optional[str] = None

    @classmethod
    def of(cls, processed: "Processed") -> "Pipeline":
        """The pipeline of preprocess artifacts: what a run trained on them keeps."""
        v, source = processed.vocab, processed.manifest.get("source", {})
        return cls(processed.manifest["width"], v.pad_id, v.unk_id, processed.label_names, len(v), v.sha256(),
                   source.get("sha256"), source.get("test_sha256"))


@dataclass
class LoadedRun:
    model: RNNClassifier  # on the CPU, in eval mode
    config: Config
    vocab: Vocab
    pipeline: Pipeline
    checkpoint_path: Path
    checkpoint: dict[str, Any]
    nbsvm: Optional[NBSVM] = None  # with config.nbsvm
    stack: Optional[Stack] = None  # the checkpoint's stacking weights, when it has more than one branch


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    """A config mapping, with the defaults of keys added since it was saved, without what may
    change when a run continues elsewhere (device, threads) or leaves its results alone (tensorboard)."""
    try:
        config = config_from_dict(config).to_dict()
    except UserError:  # not a valid config today: compared as it is, so the difference is named
        pass
    return {**config, "train": {**(config.get("train") or {}), "device": None, "threads": None,
                                 "tensorboard": None}}


def _classifier_recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What must not change when a training run continues: `_recipe`, less what training does not
    read (the pretrain section) or reads only when it starts (model.init_from), so one config file
    can serve both stages and its pretrain part change while a fine-tuning run is interrupted."""
    config = _recipe(config)
    return {**{k: v for k, v in config.items() if k != "pretrain"},
            "model": {**(config.get("model") or {}), "init_from": None}}


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s state_dict with every tensor detached and on the CPU: what a checkpoint saves."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


class RunDir:
    """Paths, writing and loading for one run directory."""

    CONFIG, VOCAB, PIPELINE = "config.yaml", "vocab.json", "pipeline.json"
    VECTORS = "vectors.json"
    METRICS, CURVES = "metrics.csv", "training_curves.png"
    TENSORBOARD = "tensorboard"  # a directory of event files
    ONNX = "onnx"  # `imdb-rnn export`'s default output directory
    BEST, LAST = "model-best.pt", "model-last.pt"
    NBSVM_FILES = (nbsvm_files.ARRAYS, nbsvm_files.NGRAMS)
    FILES = (LAST, BEST, METRICS, CURVES, CONFIG, VOCAB, PIPELINE, VECTORS, *NBSVM_FILES)  # what makes a folder a run
    # A pretrain run's own files (imdb_rnn/pretrain/train.py's LMRunDir): --overwrite clears both
    # kinds, so a folder never mixes a classifier's files with a language model's.
    LM_LAST, LM_PLOT = "lm-last.pt", "perplexity.png"
    ALL_FILES = (*FILES, LM_LAST, LM_PLOT)
    CHECKPOINTS = (LAST, BEST)  # what marks a folder as this kind of run
    OTHER_KIND = ((LM_LAST,), "a pretrain run (a language model, lm-last.pt)")  # the other kind's marks
    EVAL_METRICS, PREDICTIONS, CONFUSION = "metrics.json", "predictions.csv", "confusion_matrix.png"
    EVAL_SPLITS = ("test", "val", "train")  # eval's --split: it writes eval-SPLIT/
    EVAL_FILES = (EVAL_METRICS, PREDICTIONS, CONFUSION)  # what eval writes there
    EVENTS = "events.out.tfevents."  # the prefix of TensorBoard's event files

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    def checkpoint(self, which: str) -> Path:
        """model-best.pt (which="best") or model-last.pt ("last")."""
        return self.path / (self.BEST if which == "best" else self.LAST)

    def eval_dir(self, split: str) -> Path:
        return self.path / f"eval-{split}"

    def eval_metric_files(self) -> Iterator[Path]:
        """eval-SPLIT/metrics.json of each split scored (not through a symbolic link: see below)."""
        return iter(sorted(p for p in self.written_by_commands() if p.name == self.EVAL_METRICS))

    def written_by_commands(self) -> Iterator[Path]:
        """The files of this run that eval, TensorBoard's writer and export wrote in its folders
        (eval-SPLIT/, tensorboard/, onnx/). A folder that is a symbolic link is not followed: the
        files it leads to are not this run's."""
        for folder, owned in self._command_folders():
            if folder.is_dir() and not folder.is_symlink():
                yield from (p for p in folder.iterdir() if owned(p.name) and p.is_file())

    def _command_folders(self) -> list[tuple[Path, Callable[[str], bool]]]:
        return [*((self.eval_dir(s), lambda name: name in self.EVAL_FILES) for s in self.EVAL_SPLITS),
                (self.path / self.TENSORBOARD, lambda name: name.startswith(self.EVENTS)),
                (self.path / self.ONNX, export_owns)]

    # --- a new run -------------------------------------------------------------------------

    def holds_run(self) -> bool:
        """Whether any file of a run (of either kind) is here: then --overwrite (or --resume) must say
        what to do."""
        return (any((self.path / n).exists() for n in self.ALL_FILES)
                or next(self.written_by_commands(), None) is not None)

    def holds_other_kind(self) -> Optional[str]:
        """What the folder holds when it is a run of the other kind (a language model here for a
        classifier, and the reverse), else None."""
        marks, what = self.OTHER_KIND
        mine = any((self.path / n).is_file() for n in self.CHECKPOINTS)
        return what if not mine and any((self.path / n).is_file() for n in marks) else None

    def check_free(self, overwrite: bool) -> None:
        if self.holds_run() and not overwrite:
            other = self.holds_other_kind()
            if other:
                raise UserError(f"{self.path} holds {other}; choose another --run-dir, or pass --overwrite to "
                                "replace it")
            if not (self.path / self.LAST).is_file():  # e.g. stopped before its first save: --resume would refuse
                raise UserError(f"{self.path} holds a run with nothing to resume (no {self.LAST}); pass "
                                "--overwrite to start it again, or choose another --run-dir")
            raise UserError(f"{self.path} already holds a run; pass --overwrite to replace it, --resume to continue "
                            "it, or choose another --run-dir")

    def nothing_to_resume(self, stage: str) -> UserError:
        """The error for --resume where this kind's last checkpoint is missing, saying what to do
        instead given what the folder holds; `stage` names the command ("train", "pretrain")."""
        other = self.holds_other_kind()
        if other:
            return UserError(f"{self.path} holds {other}, nothing that {stage} can resume; choose another --run-dir, "
                             "or replace it with --overwrite instead of --resume")
        if self.holds_run():
            return UserError(f"nothing to resume in {self.path} (no {self.LAST}; a run stopped before its first "
                             "save has none); start it again with --overwrite instead of --resume")
        return UserError(f"nothing to resume in {self.path} (no {self.LAST}); {stage} without --resume")

    def refuse_language_model(self) -> None:
        """Raise UserError when a classifier's folder (this class, not LMRunDir) is a pretrain run:
        eval, predict and report need a classifier."""
        if self.holds_other_kind():
            raise UserError(f"{self.path} is a pretrain run (a language model), not a classifier; fine-tune one from "
                            f"it with 'imdb-rnn train --config ... model.init_from={self.path}'")

    def check_same_config(self, cfg: Config) -> None:
        """Refuse a directory holding a run made with another config (its config.yaml differs)."""
        path = self.path / self.CONFIG
        if not path.is_file():
            return
        import yaml

        try:
            have = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise UserError(f"{path} is unreadable ({e}); choose another --run-dir or remove it") from e
        if not isinstance(have, dict) or _classifier_recipe(have) != _classifier_recipe(cfg.to_dict()):
            diff = first_difference(_classifier_recipe(have), _classifier_recipe(cfg.to_dict()), "the run has",
                                    "this config has") \
                if isinstance(have, dict) else "not a mapping"
            raise UserError(f"{self.path} holds a run made with another config ({diff}); choose another --run-dir, "
                            "or pass --overwrite to replace it")

    def prepare(self, overwrite: bool) -> None:
        """Make the directory, clearing a previous run's files (refused unless `overwrite`)."""
        self.check_free(overwrite)
        ensure_dir(self.path)
        for name in self.ALL_FILES:
            (self.path / name).unlink(missing_ok=True)
        # The replaced run's scores, curves and export (export's default --out) must not pass for
        # this one's; a user's files beside them stay, and so do their folders.
        old = list(self.written_by_commands())
        for path in old:
            path.unlink(missing_ok=True)
        for folder in {path.parent for path in old}:
            with contextlib.suppress(OSError):  # not empty: a user's file is in it
                folder.rmdir()

    def write_inputs(self, cfg: Config, vocab: Vocab, pipeline: Pipeline, vectors: Optional[dict] = None) -> None:
        """config.yaml, vocab.json and pipeline.json: what predict needs besides the weights;
        with `vectors`, vectors.json: a record of the pretrained vectors, which nothing reads back."""
        write_text(self.path / self.CONFIG, dump_config(cfg))
        vocab.save(self.path / self.VOCAB)
        write_json(self.path / self.PIPELINE, asdict(pipeline))
        if vectors is not None:
            write_json(self.path / self.VECTORS, vectors)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """metrics.csv with one row per epoch; None is an empty cell."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        write_text(self.path / self.METRICS, buf.getvalue())

    def read_metrics(self) -> list[dict[str, str]]:
        """metrics.csv's rows; raises UserError when there is no finished epoch to read."""
        self.refuse_language_model()
        path = self.path / self.METRICS
        rows = []
        if path.is_file():
            with open(path, newline="", encoding="utf-8", errors="replace") as f:
                rows = list(csv.DictReader(f))
        if rows:
            return rows
        if (self.path / self.LAST).is_file():
            raise UserError(f"the run in {self.path} has not finished an epoch yet (no rows in {self.METRICS}); "
                            "continue it with 'imdb-rnn train ... --resume'")
        raise UserError(f"no {self.METRICS} in {self.path}; is it a run directory written by 'imdb-rnn train'?")

    def save_checkpoint(self, which: str, model: RNNClassifier, cfg: Config, vocab_sha256: str, epoch: int,
                        metrics: dict[str, float], training_state: Optional[dict[str, Any]] = None,
                        stack: Optional[Stack] = None) -> Path:
        """Weights, the model's hyperparameters and config, the stacking weights fitted for these
        weights; with `training_state`, what --resume continues from (optimizer, scheduler, history,
        position). Raises UserError on a failed write."""
        payload = {
            "format": FORMAT,
            "state_dict": cpu_state_dict(model),
            "model": model.cfg.model_dump(),
            "num_classes": model.num_classes,
            "vocab_sha256": vocab_sha256,
            "config": cfg.to_dict(),
            "epoch": epoch,
            "metrics": metrics,
            **({"stack": stack.to_dict()} if stack is not None else {}),
            **(training_state or {}),
        }
        path = self.checkpoint(which)
        with atomic_path(path) as tmp:
            try:
                torch.save(payload, tmp)
            except RuntimeError as e:  # torch's writer reports a failed write (disk full, size limit) this way
                raise OSError(errno.EIO, "the write failed part-way") from e
        return path

    # --- an existing run -------------------------------------------------------------------

    def find_checkpoint(self, which: str = "best") -> Path:
        """`which` = best | last; best falls back to last when the run kept no validation split."""
        names = [self.BEST, self.LAST] if which == "best" else [self.LAST]
        for name in names:
            if (self.path / name).is_file():
                return self.path / name
        self.refuse_language_model()
        raise UserError(f"no checkpoint ({' or '.join(names)}) in {self.path}; train first with "
                        "'imdb-rnn train --config ...'")

    def load_checkpoint(self, path: Path, mmap: bool = False) -> dict[str, Any]:
        """The checkpoint's contents, read with weights_only=True (no arbitrary objects); with
        `mmap`, tensors stay in the file and are read as they are used."""
        try:
            with warnings.catch_warnings():  # torch warns on stderr about some foreign files: our line says it
                warnings.simplefilter("ignore")
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as e:  # torch raises many types for corrupt or unsafe files
            import pickle

            # Our own words, never torch's: its message advises loading with weights_only=False,
            # which would run whatever code the file holds. Torch also raises UnpicklingError for
            # bytes that are no pickle at all, so only a checkpoint torch can list disallowed
            # globals of is called unsafe.
            unsafe: list[str] = []
            if isinstance(e, pickle.UnpicklingError):
                try:
                    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
                except Exception:  # not a torch.save archive: corrupt, below
                    unsafe = []
            if unsafe:
                names = " ".join(", ".join(unsafe[:3]).split())[:200]  # one line, whatever the file names
                raise UserError(f"checkpoint {path} is refused: it holds arbitrary pickled objects ({names}), and "
                                "imdb-rnn loads only weights (tensors and plain values), so that loading never runs "
                                "code; retrain, or use another run") from e
            if isinstance(e, PermissionError):
                raise UserError(f"cannot read checkpoint {path}: permission denied; make it readable, "
                                "or use another run") from e
            raise UserError(f"checkpoint {path} is corrupt or not a checkpoint (truncated or overwritten?); "
                            "retrain, or use another run") from e
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise UserError(f"{path} is not an imdb-rnn checkpoint of format {FORMAT} (runs made before "
                            "self-contained runs are not); retrain with this version")
        return ckpt

    def resume_state(self, cfg: Config) -> dict[str, Any]:
        """model-last.pt's training state, if it was trained with `cfg` (any device may continue it)."""
        path = self.path / self.LAST
        ckpt = self.load_checkpoint(path) if path.is_file() else None
        if ckpt is None:
            raise self.nothing_to_resume("train")
        if "optimizer" not in ckpt:
            raise UserError(f"{path} holds no training state to resume; start the run again with --overwrite "
                            "instead of --resume")
        have, want = _classifier_recipe(ckpt["config"]), _classifier_recipe(cfg.to_dict())
        if have != want:
            diff = first_difference(have, want, "the run has", "this config has")
            raise UserError(f"the run in {self.path} was trained with another config ({diff}); resume with its "
                            "config.yaml")
        return ckpt

    def load(self, which: str = "best") -> LoadedRun:
        """The model (CPU, eval mode), config, vocabulary and pipeline of this run alone.

        Raises UserError for a missing or unsafe checkpoint, or a vocabulary that is not the one
        the checkpoint was trained with.
        """
        if not self.path.is_dir():
            raise UserError(f"run directory {self.path} does not exist; pass the folder 'imdb-rnn train' wrote, "
                            "e.g. --run runs/quick")
        path = self.find_checkpoint(which)
        ckpt = self.load_checkpoint(path, mmap=True)
        lacking = [k for k in ("state_dict", "config", "num_classes", "vocab_sha256", "epoch") if k not in ckpt]
        if lacking:
            raise UserError(f"checkpoint {path} is corrupt (it lacks {', '.join(lacking)}); retrain, or use another run")
        cfg = config_from_dict(ckpt["config"])
        if which == "best" and path.name == self.LAST and cfg.train.val_fraction > 0:
            raise UserError(f"{self.BEST} is missing from {self.path}, although the run kept a validation split; "
                            "restore it, or pass --which last for the last epoch's weights")
        if ckpt["epoch"] == 0:
            raise UserError(f"the run in {self.path} has not finished an epoch yet (it was interrupted); continue it "
                            "with 'imdb-rnn train ... --resume'")
        vocab = Vocab.load(self.path / self.VOCAB)
        try:
            pipeline = Pipeline(**json.loads((self.path / self.PIPELINE).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise UserError(f"{self.path / self.PIPELINE} is missing or unreadable ({e}); retrain, or restore it") from e
        if vocab.sha256() != ckpt["vocab_sha256"] or pipeline.vocab_sha256 != ckpt["vocab_sha256"]:
            raise UserError(f"{self.path / self.VOCAB} is not the vocabulary {path.name} was trained with; "
                            "restore the run's files or retrain")
        if len(pipeline.labels) != ckpt["num_classes"]:
            raise UserError(f"{self.path / self.PIPELINE} names {len(pipeline.labels)} classes and {path.name} has "
                            f"{ckpt['num_classes']}; restore the run's files or retrain")
        model = RNNClassifier(len(vocab), cfg.model, num_classes=ckpt["num_classes"], pad_id=pipeline.pad_id)
        # The checkpoint's (memory-mapped) tensors become the parameters: no second copy, and
        # rows of the n-gram table that no review uses are never read from disk.
        try:
            model.load_state_dict(ckpt["state_dict"], assign=True)
        except (RuntimeError, TypeError) as e:  # missing, extra or misshapen tensors
            raise UserError(f"checkpoint {path} does not fit its own config (corrupt?); retrain, or use another run") from e
        stack = Stack.from_dict(ckpt["stack"]) if "stack" in ckpt else None
        nbsvm = NBSVM.load(self.path) if cfg.nbsvm is not None else None
        if nbsvm is not None and (stack is None or "nbsvm" not in stack.branches):
            raise UserError(f"checkpoint {path} has no stacking weights for its NBSVM branch (corrupt?); retrain")
        return LoadedRun(model.eval(), cfg, vocab, pipeline, path, ckpt, nbsvm, stack)
