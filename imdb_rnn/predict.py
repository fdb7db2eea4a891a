"""The predict stage: label raw text through the run's own preprocessing and vocabulary.

It reads the run directory alone (checkpoint, config, vocab.json, pipeline.json), never the data
directory or the preprocess artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from imdb_rnn.data.arrays import SplitArrays, encode
from imdb_rnn.data.nltk_data import needed_resources, require_nltk_resources
from imdb_rnn.data.sources import read_csv, utf8_error_line
from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError
from imdb_rnn.run import RunDir
from imdb_rnn.scoring import EVAL_BATCH_SIZE, THRESHOLD, score_run


def read_texts(path: Path) -> list[str]:
    """Reviews from a file: a CSV with a `review` column, else one review per line.

    Lines end at "\n" alone (a "\r" before it is dropped), so a review that holds U+0085 or U+2028
    stays one review; blank lines are skipped and a UTF-8 byte order mark is not text. Raises
    UserError for a path that is missing or a directory, a file that cannot be read, is not UTF-8
    or is not a parseable CSV, and a CSV without a `review` column.
    """
    if path.is_dir():
        raise UserError(f"input file {path} is a directory; pass a text file (one review per line) or a CSV")
    if not path.is_file():
        raise UserError(f"input file {path} does not exist; pass an existing file or the text itself")
    if path.suffix.lower() == ".csv":
        df = read_csv(path)
        if "review" not in df.columns:
            raise UserError(f"CSV {path} has no 'review' column (has: {', '.join(df.columns)}); add one")
        return df["review"].tolist()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read input file {path}: {e.strerror or e}; check that it is a readable file") from e
    try:
        # Bytes, not text mode: text mode's universal newlines would also end a line at a lone "\r".
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"input file {path} is not valid UTF-8 (line {utf8_error_line(data)}); re-save it as UTF-8") from e
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return [line for line in lines if line.strip()]


def predict_texts(run_dir: Path, texts: list[str], which: str = "best", device: str = "auto") -> list[dict]:
    """One dict per text: label (None when nothing is left after filtering), P(positive), tokens
    kept and how many of them are unknown. Raises UserError for no text or an unusable run."""
    from imdb_rnn.data.text import ReviewProcessor

    if not texts:
        raise UserError("nothing to predict; pass review text as arguments or --file")
    run = RunDir(run_dir).load(which)
    cfg, vocab = run.config, run.vocab
    pcfg = cfg.preprocess
    require_nltk_resources(needed_resources(pcfg.remove_stopwords, pcfg.pos_prefixes is not None))
    proc = ReviewProcessor(pcfg)
    processed = [proc.try_process(t) for t in texts]
    tokens = [t or [] for t in processed]
    ids, lengths = encode(tokens, vocab, cfg.preprocess, run.pipeline.width)
    keep = np.flatnonzero(lengths > 0)
    results: list[dict] = [
        {"text": t, "label": None, "prob_positive": None,
         "note": "empty after preprocessing: no prediction" if p is not None
         else "NLTK gave up tokenizing it (its regex time limit): no prediction"}
        for t, p in zip(texts, processed)
    ]
    if len(keep):
        data = SplitArrays(ids[keep], lengths[keep], np.zeros(len(keep), dtype=np.int64))
        probs = score_run(run, data, [" ".join(tokens[i]) for i in keep], resolve_device(device),
                          EVAL_BATCH_SIZE).probs
        for i, p in zip(keep, probs):
            unknown = sum(1 for t in tokens[i] if t not in vocab.stoi)
            results[i] = {"text": texts[i], "label": run.pipeline.labels[int(p >= THRESHOLD)],
                          "prob_positive": round(float(p), 6), "tokens": len(tokens[i]), "unknown_tokens": unknown}
    return results


def format_predictions(results: list[dict], width: Optional[int] = 60) -> str:
    lines = [f"{'label':<9} {'P(pos)':>7}  text"]
    for r in results:
        text = r["text"].replace("\n", " ")
        text = text if width is None or len(text) <= width else text[: width - 1] + "…"
        if r["label"] is None:
            lines.append(f"{'-':<9} {'-':>7}  {text}  ({r['note']})")
        else:
            lines.append(f"{r['label']:<9} {r['prob_positive']:>7.3f}  {text}")
    return "\n".join(lines)
