"""`imdb-rnn export --format onnx`: a run's network as an ONNX graph, with what a torch-free
predictor needs beside it (imdb_rnn/export/runtime.py reads the directory), checked against torch.

The graph is traced by torch's current exporter (`torch.onnx.export(..., dynamo=True)`) with a
dynamic batch and length axis. Its inputs are ids `(B, T)` int64 and lengths `(B,)` int64; its
outputs the RNN branch's logits "rnn" `(B, C)` and, with an n-gram bag branch, that branch's
logits "ngram" `(B, C)` (the prediction is their sum; stacking reads each branch's margin).

The n-gram branch's hashing is integer tensor math (multiply, add, modulo in int64, then a sort
for norm="binary"), so it is exported as it is: the graph hashes ids exactly as torch does. The
NBSVM branch (scikit-learn) and the stacking weights are no graph: their files are copied and
runtime.py applies them with the same NumPy code as `imdb-rnn predict --run`.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imdb_rnn.data.arrays import trim_batch
from imdb_rnn.errors import UserError, one_line
from imdb_rnn.export.runtime import FORMAT, MANIFEST, MODEL, VOCAB, OnnxRun, export_owns
from imdb_rnn.files import atomic_dir, write_json
from imdb_rnn.model import RNNClassifier
from imdb_rnn.run import LoadedRun, RunDir

FORMATS = ("onnx",)
TOLERANCE = 1e-4  # largest |onnxruntime - torch| allowed in any logit
CHECK_REVIEWS = 200


class _Graph(nn.Module):
    """What is exported: `RNNClassifier.forward` split into its branches' logits.

    The n-gram branch reads ids right-padded by `order` columns. Its n-grams of order n exist only
    when T >= n (a Python `if` in NgramBag), which the exporter would otherwise fix as a guard on
    the length axis (T >= order) and bake in as a constant; the added columns lie past every
    review's length, where NgramBag masks them, so the logits are those of the unpadded ids.
    """

    def __init__(self, model: RNNClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        rnn = m.fc(m.output_dropout(m.encoder(ids, lengths)))
        if m.ngram is None:
            return (rnn,)
        padded = F.pad(ids, (0, m.ngram.order), value=m.encoder.embedding.padding_idx or 0)
        return rnn, m.ngram(padded, lengths)


@dataclass
class CheckResult:
    reviews: int  # rows compared
    source: str  # where they came from
    max_abs_diff: dict[str, float]  # per output, over every logit
    longest: int  # tokens of the longest row
    shortest: int


@dataclass
class ExportResult:
    out: Path
    check: CheckResult
    outputs: list[str]
    files: list[str]


def export_run(run_dir: Path, out: Optional[Path] = None, fmt: str = "onnx", which: str = "best",
               data_dir: Optional[Path] = None, check_reviews: int = CHECK_REVIEWS,
               log: Callable[[str], None] = lambda _: None) -> ExportResult:
    """Export the run in `run_dir` to `out` (default RUN/onnx), then check the exported graph with
    onnxruntime against torch on `check_reviews` reviews: the test split of the run's preprocess
    artifacts in `data_dir` when they are there, else seeded random ids of every length.

    The directory is written under a temporary name and renamed when complete and checked; an
    earlier export in `out` is replaced. Raises UserError for an unknown format, an unusable run,
    one the graph cannot reproduce (model.init_hidden=random), a failed export, or outputs that
    differ from torch's by more than TOLERANCE.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    run_dir = Path(run_dir)
    run = RunDir(run_dir).load(which)
    if run.config.model.init_hidden == "random":
        raise UserError("this run draws a random initial RNN state on every call (model.init_hidden=random), "
                        "which an exported graph cannot reproduce; export a run trained with init_hidden=zeros")
    out = Path(out) if out is not None else run_dir / RunDir.ONNX
    # What an export holds (the graph, with any external-data file, and what _write_beside copies):
    # anything else in an earlier export's folder is the user's, and is not deleted.
    with atomic_dir(out, MANIFEST, owned=export_owns) as tmp:
        log(f"exporting {run.checkpoint_path.name} (epoch {run.checkpoint['epoch']}) to ONNX")
        outputs = _export_graph(run.model, tmp / MODEL, run.pipeline.pad_id)
        _write_beside(run, run_dir, tmp, outputs)
        ids, lengths, source = _check_inputs(run, data_dir, check_reviews)
        log(f"checking onnxruntime against torch on {len(lengths)} reviews ({source})")
        check = check_export(run.model, OnnxRun(tmp), ids, lengths, source)
        manifest = json.loads((tmp / MANIFEST).read_text())
        write_json(tmp / MANIFEST, {**manifest, "check": {**asdict(check), "tolerance": TOLERANCE}})
        files = sorted(p.name for p in tmp.iterdir())
    return ExportResult(out, check, outputs, files)


def _export_graph(model: RNNClassifier, path: Path, pad_id: int) -> list[str]:
    """Trace `model` into `path` with dynamic batch and length axes; the output names."""
    graph = _Graph(model).eval()
    outputs = ["rnn"] + (["ngram"] if model.ngram is not None else [])
    # An example batch of three lengths: rows of different lengths keep every length-dependent
    # step general, and none of size 1 (the exporter specialises dimensions seen as 1).
    lengths = torch.tensor([5, 2, 3])
    ids = torch.full((3, 5), pad_id, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        ids[row, :n] = torch.arange(2, 2 + n) % model.encoder.embedding.num_embeddings
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    try:
        # The exporter reports its progress and torchvision's absence as warnings and log lines.
        with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (ids, lengths), dynamo=True, input_names=["ids", "lengths"],
                                        output_names=outputs, dynamic_shapes=({0: batch, 1: time}, {0: batch}),
                                        verbose=False)
            program.save(str(path))
    except UserError:
        raise
    except Exception as e:  # the exporter raises many types (constraint violations, unsupported ops)
        raise UserError(f"torch.onnx.export failed for this run ({one_line(e)})") from e
    return outputs


class _quiet:
    """Raise the named loggers to ERROR inside the block."""

    def __init__(self, *names: str) -> None:
        self.loggers = [logging.getLogger(n) for n in names]

    def __enter__(self) -> None:
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc) -> None:
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)


def _write_beside(run: LoadedRun, run_dir: Path, dest: Path, outputs: list[str]) -> None:
    """export.json, vocab.json and the NBSVM files: everything runtime.py reads besides the graph."""
    from imdb_rnn import __version__
    from imdb_rnn.classes import THRESHOLD
    from imdb_rnn.scoring import EVAL_BATCH_SIZE

    cfg = run.config
    shutil.copyfile(run_dir / RunDir.VOCAB, dest / VOCAB)
    if run.nbsvm is not None:
        for name in RunDir.NBSVM_FILES:
            shutil.copyfile(run_dir / name, dest / name)
    write_json(dest / MANIFEST, {
        "format": FORMAT,
        "model": MODEL,
        "inputs": {"ids": "(B, T) int64 token ids, padded", "lengths": "(B,) int64 true lengths"},
        "outputs": outputs,
        "preprocess": cfg.preprocess.model_dump(),
        "pipeline": asdict(run.pipeline),
        # As `imdb-rnn predict` scores (imdb_rnn/predict.py, imdb_rnn/scoring.py).
        "scoring": {"batch_size": EVAL_BATCH_SIZE, "dynamic_padding": cfg.train.dynamic_padding,
                    "pad_side": cfg.preprocess.pad_side, "threshold": THRESHOLD},
        "stack": run.stack.to_dict() if run.stack is not None else None,
        "nbsvm": run.nbsvm is not None,
        "source": {"checkpoint": run.checkpoint_path.name, "epoch": run.checkpoint["epoch"],
                   "metrics": run.checkpoint.get("metrics"), "config": cfg.to_dict()},
        "versions": {"imdb_rnn": __version__, "torch": torch.__version__, "onnx_opset": _opset(dest / MODEL)},
    })


def _opset(path: Path) -> Optional[int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _check_inputs(run: LoadedRun, data_dir: Optional[Path], n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Padded ids `(N, width)` and lengths `(N,)` to check on: test reviews of the run's artifacts
    (the shortest and the longest among them, and a length-1 copy of one), else random ids."""
    from imdb_rnn.data.artifacts import load_artifacts

    rng = np.random.default_rng(0)
    if data_dir is not None:
        try:
            processed = load_artifacts(run.config, data_dir)
        except UserError:
            processed = None
        if processed is not None and processed.vocab.sha256() == run.pipeline.vocab_sha256:
            test = processed.split("test")
            rows = np.flatnonzero(test.lengths > 0)
            if len(rows):
                by_length = rows[np.argsort(test.lengths[rows], kind="stable")]
                rest = rng.permutation(by_length[1:-1])[: max(0, n - 3)]
                pick = np.concatenate([by_length[:1], by_length[-1:], rest])
                ids, lengths = test.ids[pick].copy(), test.lengths[pick].copy()
                # A one-token review: the first real token of a review, the rest padding.
                one = np.full_like(ids[:1], run.pipeline.pad_id)
                side = 0 if run.config.preprocess.pad_side == "right" else -1
                one[0, side] = ids[-1, 0 if side == 0 else ids.shape[1] - lengths[-1]]
                return (np.concatenate([ids, one]), np.concatenate([lengths, [1]]),
                        f"test reviews of the run's preprocess artifacts in {data_dir}")
    width, vocab = run.pipeline.width, len(run.vocab)
    lengths = np.unique(np.linspace(1, width, num=max(2, n)).astype(np.int64))
    lengths = np.concatenate([lengths, rng.integers(1, width + 1, size=max(0, n - len(lengths)))])[:max(n, 2)]
    ids = np.full((len(lengths), width), run.pipeline.pad_id, dtype=np.int64)
    for row, k in enumerate(lengths):
        seq = rng.integers(2, max(3, vocab), size=k)  # 0 and 1 are <PAD> and <UNK>
        if run.config.preprocess.pad_side == "right":
            ids[row, :k] = seq
        else:
            ids[row, width - k:] = seq
    return ids, lengths, "random ids of lengths 1 to the padded width (no preprocess artifacts given or found)"


@torch.no_grad()
def check_export(model: RNNClassifier, onnx_run: OnnxRun, ids: np.ndarray, lengths: np.ndarray,
                 source: str = "") -> CheckResult:
    """Compare onnxruntime's logits with torch's on padded ids `(N, width)` and lengths `(N,)`,
    batched as predict batches them, plus each review alone (batch 1). Raises UserError naming the
    output and the difference when any logit differs by more than TOLERANCE, or onnxruntime fails."""
    model.eval()
    s = onnx_run.settings
    order = np.argsort(lengths, kind="stable") if s.dynamic_padding else np.arange(len(lengths))
    batches = [order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size)]
    batches += [order[:1], order[-1:]]  # the shortest and the longest alone
    worst = {name: 0.0 for name in s.outputs}
    for index in batches:
        b_ids = trim_batch(ids[index], lengths[index], s.dynamic_padding, s.pad_side).astype(np.int64)
        b_len = lengths[index].astype(np.int64)
        logits = model(torch.from_numpy(b_ids), torch.from_numpy(b_len))
        want = {"rnn": logits.rnn, "ngram": logits.ngram}
        try:
            got = onnx_run.logits(b_ids, b_len)
        except Exception as e:  # onnxruntime's own exception types
            raise UserError(f"onnxruntime failed on a batch of shape {b_ids.shape} ({one_line(e)}); "
                            "the export is not usable") from e
        for name in s.outputs:
            worst[name] = max(worst[name], float(np.abs(got[name] - want[name].numpy()).max()))
    for name, diff in worst.items():
        if not diff <= TOLERANCE:  # also catches NaN
            raise UserError(f"the exported graph's '{name}' logits differ from torch's by {diff:.3g} "
                            f"(more than {TOLERANCE:g}) on {source or 'the check reviews'}; the export is not usable")
    return CheckResult(len(lengths), source, worst, int(lengths.max()), int(lengths.min()))
