"""Label text with an exported run, without torch: onnxruntime for the network, NumPy and
scikit-learn for the NBSVM branch and the stacking weights.

An export directory (written by imdb_rnn/export/onnx.py) holds:

  model.onnx        ids (B, T) int64, lengths (B,) int64 -> "rnn" logits (B, C), and "ngram"
                    logits (B, C) with an n-gram bag branch; both axes dynamic
  export.json       the text pipeline (the preprocess config), the padded width and label names,
                    how predict batches reviews, the stacking weights, and what the check measured
  vocab.json        the vocabulary (the id -> token list), as in the run
  nbsvm.npz, nbsvm-ngrams.json   with an NBSVM branch: the run's files, copied

Nothing here imports torch (tests/test_onnx.py checks `sys.modules`); the text pipeline, the
vocabulary, NBSVM and Stack are the same modules `imdb-rnn predict --run` uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from imdb_rnn.config import PreprocessConfig
from imdb_rnn.data.arrays import trim_batch
from imdb_rnn.data.vocab import Vocab
from imdb_rnn.errors import UserError, one_line
from imdb_rnn.model import nbsvm as nbsvm_files
from imdb_rnn.model.nbsvm import NBSVM
from imdb_rnn.model.stack import Stack

FORMAT = 1  # of export.json
MODEL, MANIFEST, VOCAB = "model.onnx", "export.json", "vocab.json"
EXTERNAL_DATA = MODEL + ".data"  # where torch.onnx puts the weights of a graph too large for one file


def export_owns(name: str) -> bool:
    """Whether a file named `name` in an export directory is one the exporter writes (replacing or
    overwriting an export deletes those alone)."""
    return name in (MANIFEST, VOCAB, nbsvm_files.ARRAYS, nbsvm_files.NGRAMS, MODEL, EXTERNAL_DATA)


@dataclass
class Settings:
    """What export.json says besides the stacking weights: how text becomes the model's input, and
    how predict batches it (the batch composition matters to last_step="padded")."""

    preprocess: PreprocessConfig
    width: int  # padded width (tokens)
    labels: list[str]  # class names by id
    batch_size: int  # reviews per model call, as `imdb-rnn predict` scores them
    dynamic_padding: bool
    pad_side: str
    threshold: float  # with two classes: P(label 1) at or above which a review gets label 1
    outputs: list[str]  # the graph's outputs: "rnn", then "ngram" with that branch


class OnnxRun:
    """An export directory, loaded: `probabilities(ids, lengths, texts)` is the run's class probabilities."""

    def __init__(self, directory: Path, threads: Optional[int] = None) -> None:
        """Raises UserError for a missing or unreadable directory, or files of another format.

        threads: onnxruntime's intra-op threads (None: its default, one per core).
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise UserError(f"{directory} does not exist or is not a directory; pass the folder `imdb-rnn export` "
                            "wrote (default RUN/onnx)")
        if not (directory / MANIFEST).is_file():
            raise UserError(f"{directory} is not an ONNX export (no {MANIFEST}); make one with "
                            "'imdb-rnn export --run RUN --format onnx --out DIR'")
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT}")
            self.settings = Settings(preprocess=PreprocessConfig.model_validate(manifest["preprocess"]),
                                     **{k: manifest["pipeline"][k] for k in ("width", "labels")},
                                     **manifest["scoring"], outputs=list(manifest["outputs"]))
        except (OSError, ValueError, KeyError, TypeError) as e:  # pydantic's ValidationError is a ValueError
            raise UserError(f"{directory / MANIFEST} is unreadable ({one_line(e)}); export the run again") from e
        self.directory = directory
        self.manifest: dict[str, Any] = manifest
        self.vocab = Vocab.load(directory / VOCAB)
        self.stack = Stack.from_dict(manifest["stack"]) if manifest.get("stack") else None
        self.nbsvm = NBSVM.load(directory) if manifest.get("nbsvm") else None
        self.session = _session(directory / MODEL, threads)

    def logits(self, ids: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs for one batch: name -> `(B, C)` float32 logits.

        ids: `(B, T)` token ids (any integer type), lengths: `(B,)` true lengths.
        """
        feed = {"ids": np.ascontiguousarray(ids, dtype=np.int64), "lengths": np.asarray(lengths, dtype=np.int64)}
        return dict(zip(self.settings.outputs, self.session.run(self.settings.outputs, feed)))

    def margins(self, ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The network's class probabilities `(N, C)`, and with two classes each network branch's
        margin `(N,)` (the log-odds of label 1, float64; empty with more classes) over padded ids
        `(N, width)` and lengths `(N,)`, batched as `imdb-rnn predict` batches them."""
        s = self.settings
        n = len(lengths)
        probs = np.zeros((n, len(s.labels)))
        margins = {name: np.zeros(n) for name in s.outputs} if len(s.labels) == 2 else {}
        # The order and the padding of torch's scoring (imdb_rnn/scoring.py): sorted by length.
        order = np.argsort(lengths, kind="stable") if s.dynamic_padding else np.arange(n)
        for start in range(0, n, s.batch_size):
            index = order[start : start + s.batch_size]
            out = self.logits(trim_batch(ids[index], lengths[index], s.dynamic_padding, s.pad_side), lengths[index])
            total = out["rnn"] + out["ngram"] if "ngram" in out else out["rnn"]  # float32, as torch sums them
            for name, margin in margins.items():
                margin[index] = out[name][:, 1] - out[name][:, 0]
            probs[index] = _softmax(total)
        return probs, margins

    def probabilities(self, ids: np.ndarray, lengths: np.ndarray, texts: Optional[Sequence[str]]) -> np.ndarray:
        """The run's class probabilities `(N, C)`: the network's, or with stacking weights (two
        classes) those of the stacked margin.

        texts: each row's kept tokens, space-joined (the NBSVM branch's input); needed with that branch.
        """
        probs, margins = self.margins(ids, lengths)
        if self.stack is None:
            return probs
        if self.nbsvm is not None:
            if texts is None:
                raise UserError("this export has an NBSVM branch, which needs the reviews' tokens; pass them")
            margins["nbsvm"] = self.nbsvm.decision_function(texts)
        from scipy.special import expit

        positive = expit(self.stack.margin(margins))
        return np.stack([1.0 - positive, positive], 1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float32, as torch.softmax computes it for the prediction."""
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _session(path: Path, threads: Optional[int]):
    """An onnxruntime CPU session; UserError when onnxruntime is missing or the file is unusable."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UserError("onnxruntime is not installed; pip install 'imdb-rnn[onnx]'") from e
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for missing or corrupt files
        raise UserError(f"{path} is missing or not a usable ONNX model ({one_line(e)}); export the run again") from e


def predict_texts_onnx(directory: Path, texts: list[str], threads: Optional[int] = None) -> list[dict]:
    """`imdb-rnn predict --onnx DIR`: the same dicts as `imdb_rnn.predict.predict_texts`, without torch.

    Raises UserError for no text, an unusable export, or missing NLTK resources.
    """
    from imdb_rnn.predict import encode_texts, fill_results

    if not texts:
        raise UserError("nothing to predict; pass review text as arguments or --file")
    run = OnnxRun(directory, threads)
    s = run.settings
    enc = encode_texts(texts, s.preprocess, run.vocab, s.width)
    probs = run.probabilities(enc.ids, enc.lengths, enc.joined()) if len(enc.keep) else np.zeros((0, len(s.labels)))
    return fill_results(enc, probs, run.vocab, s.labels, s.threshold)
