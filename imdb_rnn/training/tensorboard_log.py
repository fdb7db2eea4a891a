"""TensorBoard events of a training run, in the run directory's tensorboard/: one point per epoch
(step = the epoch's number) for each scalar of `EpochMetrics`, and the resolved config as hparams
with the best validation accuracy as their metric (the last training accuracy without a
validation split). Written with torch.utils.tensorboard by rank 0 alone.

Each epoch's points are written after its model-last.pt, so a resumed run appends from the epoch
after the checkpoint's and never logs an epoch twice; its writer also opens with `purge_step` at
that epoch, which makes TensorBoard drop any point a killed session left past it. The hparams are
written once, by the session that finds no event file there.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from imdb_rnn.config import Config
from imdb_rnn.errors import UserError, one_line
from imdb_rnn.run import RunDir
from imdb_rnn.training.loop import EpochMetrics

# EpochMetrics field -> tag; "loss/..." and "accuracy/..." group train and validation together.
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "lr": "lr",
    "tokens_per_s": "tokens_per_s",
    "grad_norm": "grad_norm",
}
BEST_VAL_ACC, LAST_TRAIN_ACC = "hparams/best_val_acc", "hparams/last_train_acc"


def summary_writer_class() -> type:
    """torch.utils.tensorboard.SummaryWriter, imported here so that other commands never pay for it.

    Raises UserError naming both fixes when the tensorboard package is missing or broken.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as e:  # ImportError mostly; a broken install (protobuf) raises others
        raise UserError(f"train.tensorboard needs the tensorboard package ({one_line(e)}); "
                        "pip install tensorboard, or set train.tensorboard=false") from e
    return SummaryWriter


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`section.key` -> value for TensorBoard's hparams: numbers, strings and bools as they are,
    lists as their text; None (an unset option, or a section that is off) is left out, as
    torch's `hparams` does."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            out[f"{prefix}{key}"] = str(value)
        elif value is not None:
            out[f"{prefix}{key}"] = value
    return out


class TensorBoardLog:
    """Rank 0's TensorBoard writer for one training session.

    `first_epoch`: the first epoch this session trains (1 for a fresh run); `resumed`: whether it
    continues a saved run (a new run, even with another run's events in the folder, starts its own
    log: the hparams, no purge). Raises UserError when
    the event file cannot be made. A failed write after that is reported once through `warn`
    (default: a line on stderr, which --quiet keeps) and ends the logging; training goes on.
    """

    def __init__(self, log_dir: Path, cfg: Config, first_epoch: int, resumed: bool,
                 warn: Callable[[str], Any] = lambda text: print(text, file=sys.stderr, flush=True)) -> None:
        SummaryWriter = summary_writer_class()
        from torch.utils.tensorboard.summary import hparams

        self.log_dir, self.warn = Path(log_dir), warn
        self.metric = BEST_VAL_ACC if cfg.train.val_fraction > 0 else LAST_TRAIN_ACC
        fresh = not resumed or not any(self.log_dir.glob(f"{RunDir.EVENTS}*"))
        self._previous_hook = threading.excepthook
        threading.excepthook = self._writer_thread_hook
        try:
            self.writer: Optional[Any] = SummaryWriter(str(self.log_dir), purge_step=None if fresh else first_epoch)
            if fresh:
                # The metric's value is a scalar of the same name, written every epoch.
                for summary in hparams(flat_hparams(cfg.to_dict()), {self.metric: 0.0}):
                    self.writer.file_writer.add_summary(summary)
            self.writer.flush()
        except Exception as e:  # OSError mostly: an unwritable or invalid directory
            self._restore_hook()
            raise UserError(f"cannot write TensorBoard events in {self.log_dir} ({one_line(e)}); make it writable, "
                            "or set train.tensorboard=false") from e

    def epoch(self, history: list[EpochMetrics]) -> None:
        """The last epoch of `history`: each scalar it has, and the hparams metric over all of it."""
        if self.writer is None:
            return
        m = history[-1]
        try:
            for field, tag in SCALARS.items():
                value = getattr(m, field)
                if value is not None:
                    self.writer.add_scalar(tag, value, m.epoch)
            val_accs = [h.val_acc for h in history if h.val_acc is not None]
            best = max(val_accs, default=None) if self.metric == BEST_VAL_ACC else None
            self.writer.add_scalar(self.metric, m.train_acc if best is None else best, m.epoch)
            self.writer.flush()  # visible in TensorBoard now, and kept if the process is killed
        except Exception as e:  # the writer's own thread re-raises what failed there
            self._stop(e)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as e:
                self._stop(e)
            self.writer = None
        self._restore_hook()

    def _writer_thread_hook(self, args: Any) -> None:
        # TensorBoard writes from a thread of its own; what fails there it raises again at our next
        # write, where it becomes one warning line, so that thread's traceback is not printed too.
        if type(args.thread).__name__ != "_AsyncWriterThread":
            self._previous_hook(args)

    def _restore_hook(self) -> None:
        if threading.excepthook == self._writer_thread_hook:  # unless someone replaced it since
            threading.excepthook = self._previous_hook

    def _stop(self, error: Exception) -> None:
        self.warn(f"warning: cannot write TensorBoard events in {self.log_dir} ({one_line(error)}); "
                  "training goes on without them")
        writer, self.writer = self.writer, None
        try:
            writer.close()
        except Exception:  # already reported
            pass
