"""The predict stage: label raw text through the run's own preprocessing and vocabulary.

It reads the run directory alone (checkpoint, config, vocab.json, pipeline.json), never the data
directory or the preprocess artifacts. Torch loads inside `predict_texts` only: the text side
(`encode_texts`, `fill_results`, `read_texts`) also serves the torch-free ONNX predictor
(imdb_rnn/export/runtime.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from imdb_rnn.classes import THRESHOLD, predicted_classes
from imdb_rnn.config import PreprocessConfig, load_config
from imdb_rnn.data.arrays import encode
from imdb_rnn.data.nltk_data import needed_resources, require_nltk_resources
from imdb_rnn.data.tables import KIND, TEXT_COLUMNS, read_text_column, read_utf8, table_format
from imdb_rnn.data.vocab import Vocab
from imdb_rnn.errors import UserError


def input_text_column(directory: Path) -> Optional[str]:
    """The data.text_column of the run or ONNX export in `directory`, None when unset (or the
    directory holds neither: an unusable run is refused when it is loaded, with its own message)."""
    directory = Path(directory)
    try:
        if (directory / "export.json").is_file():  # imdb_rnn/export/runtime.py's MANIFEST
            config = json.loads((directory / "export.json").read_text(encoding="utf-8"))["source"]["config"]
            return (config.get("data") or {}).get("text_column")
        if (directory / "config.yaml").is_file():  # RunDir.CONFIG (run.py imports torch; --onnx must not)
            return load_config(directory / "config.yaml").data.text_column
    except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def read_texts(path: Path, text_column: Optional[str] = None) -> list[str]:
    """Reviews from a file: a table's text column (a CSV, TSV, JSONL or Parquet file, by its
    ending; `text_column`, the run's data.text_column; None: the first of review, text present,
    as training reads a table), else one review per line.

    Lines end at "\n" alone (a "\r" before it is dropped), so a review that holds U+0085 or U+2028
    stays one review; blank lines are skipped and a UTF-8 byte order mark is not text. Raises
    UserError for a path that is missing or a directory, a file that cannot be read, is not UTF-8
    or is not a parseable table, and a table without the text column.
    """
    if path.is_dir():
        raise UserError(f"input file {path} is a directory; pass a text file (one review per line) or a CSV")
    if not path.is_file():
        raise UserError(f"input file {path} does not exist; pass an existing file or the text itself")
    fmt = table_format(path)
    if fmt is not None:
        columns, texts = read_text_column(path, text_column)
        if texts is None:
            wanted = f"'{text_column}' column (the run's data.text_column)" if text_column else \
                f"{' or '.join(TEXT_COLUMNS)} column"
            raise UserError(f"{KIND[fmt]} {path} has no {wanted} (has: {', '.join(columns)}); add one, or pass "
                            "a text file with one review per line")
        return texts
    # Bytes, not text mode: text mode's universal newlines would also end a line at a lone "\r".
    text = read_utf8(path, "input file")
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return [line for line in lines if line.strip()]


@dataclass
class Encoded:
    """Texts turned into model input: every text's kept tokens, and the rows that have any."""

    texts: list[str]
    tokens: list[list[str]]  # kept tokens per text ([] when none, or when NLTK gave up)
    failed: list[bool]  # NLTK gave up tokenizing this text (its regex time limit)
    ids: np.ndarray  # (K, width) int32, padded: the texts with tokens left, in order
    lengths: np.ndarray  # (K,) int64, true lengths (> 0)
    keep: np.ndarray  # (K,) index into `texts` of each row

    def joined(self) -> list[str]:
        """Each kept row's tokens, space-joined (the NBSVM branch's input), not cut to the width."""
        return [" ".join(self.tokens[i]) for i in self.keep]


def encode_texts(texts: Sequence[str], pcfg: PreprocessConfig, vocab: Vocab, width: int) -> Encoded:
    """Run the text pipeline of `pcfg` over `texts` and encode them with `vocab`, padded to `width`
    tokens. Raises UserError for no text, or when NLTK resources the pipeline needs are missing."""
    from imdb_rnn.data.text import ReviewProcessor

    if not texts:
        raise UserError("nothing to predict; pass review text as arguments or --file")
    require_nltk_resources(needed_resources(pcfg.remove_stopwords, pcfg.pos_prefixes is not None))
    proc = ReviewProcessor(pcfg)
    processed = [proc.try_process(t) for t in texts]
    tokens = [t or [] for t in processed]
    ids, lengths = encode(tokens, vocab, pcfg, width)
    keep = np.flatnonzero(lengths > 0)
    return Encoded(list(texts), tokens, [p is None for p in processed], ids[keep], lengths[keep], keep)


def fill_results(enc: Encoded, probs: np.ndarray, vocab: Vocab, labels: list[str], threshold: float) -> list[dict]:
    """One dict per text: label (None when nothing is left after filtering), its probability, the
    tokens kept and how many of them are unknown, from the kept rows' class probabilities `probs`
    `(K, C)` (rounded to 6 places). Two classes give P(positive) as "prob_positive" (label 1 at or
    above `threshold`); more give the label's probability as "prob" and every class's as "probs"."""
    two = len(labels) == 2
    empty = {"prob_positive": None} if two else {"prob": None, "probs": None}
    results: list[dict] = [
        {"text": t, "label": None, **empty,
         "note": "NLTK gave up tokenizing it (its regex time limit): no prediction" if failed
         else "empty after preprocessing: no prediction"}
        for t, failed in zip(enc.texts, enc.failed)
    ]
    preds = predicted_classes(probs, threshold) if len(probs) else np.zeros(0, dtype=np.int64)
    for i, p, pred in zip(enc.keep, probs, preds):
        unknown = sum(1 for t in enc.tokens[i] if t not in vocab.stoi)
        scored = {"prob_positive": round(float(p[1]), 6)} if two else \
            {"prob": round(float(p[pred]), 6), "probs": {name: round(float(q), 6) for name, q in zip(labels, p)}}
        results[i] = {"text": enc.texts[i], "label": labels[int(pred)], **scored, "tokens": len(enc.tokens[i]),
                      "unknown_tokens": unknown}
    return results


def predict_texts(run_dir: Path, texts: list[str], which: str = "best", device: str = "auto") -> list[dict]:
    """One dict per text (see `fill_results`): label (None when nothing is left after filtering),
    its probability, tokens kept and how many of them are unknown. Raises UserError for no text or
    an unusable run."""
    from imdb_rnn.data.arrays import SplitArrays
    from imdb_rnn.device import resolve_device
    from imdb_rnn.run import RunDir
    from imdb_rnn.scoring import EVAL_BATCH_SIZE, score_run

    if not texts:
        raise UserError("nothing to predict; pass review text as arguments or --file")
    run = RunDir(run_dir).load(which)
    enc = encode_texts(texts, run.config.preprocess, run.vocab, run.pipeline.width)
    probs = np.zeros((0, run.model.num_classes))
    if len(enc.keep):
        data = SplitArrays(enc.ids, enc.lengths, np.zeros(len(enc.keep), dtype=np.int64))
        probs = score_run(run, data, enc.joined(), resolve_device(device), EVAL_BATCH_SIZE).probs
    return fill_results(enc, probs, run.vocab, run.pipeline.labels, THRESHOLD)


def format_predictions(results: list[dict], width: Optional[int] = 60) -> str:
    """A table: label, its probability (P(positive) for two classes) and the text, cut to `width`."""
    two = not results or "prob_positive" in results[0]
    label_width = max([9] + [len(r["label"]) for r in results if r["label"] is not None])
    head = "P(pos)" if two else "P"
    lines = [f"{'label':<{label_width}} {head:>7}  text"]
    for r in results:
        text = r["text"].replace("\n", " ")
        text = text if width is None or len(text) <= width else text[: width - 1] + "…"
        if r["label"] is None:
            lines.append(f"{'-':<{label_width}} {'-':>7}  {text}  ({r['note']})")
        else:
            lines.append(f"{r['label']:<{label_width}} {r['prob_positive' if two else 'prob']:>7.3f}  {text}")
    return "\n".join(lines)
