"""The predict stage: label raw text through the run's own preprocessing and vocabulary.

It reads the run directory alone (checkpoint, config, vocab.json, pipeline.json), never the data
directory or the preprocess artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from imdb_rnn.data.arrays import SplitArrays, encode
from imdb_rnn.data.nltk_data import require_nltk_resources
from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError
from imdb_rnn.run import RunDir
from imdb_rnn.scoring import EVAL_BATCH_SIZE, THRESHOLD, score


def read_texts(path: Path) -> list[str]:
    """Reviews from a file: a CSV with a `review` column, else one review per line."""
    if not path.is_file():
        raise UserError(f"input file {path} does not exist; pass an existing file or the text itself")
    if path.suffix.lower() == ".csv":
        import pandas as pd

        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "review" not in df.columns:
            raise UserError(f"CSV {path} has no 'review' column (has: {', '.join(df.columns)}); add one")
        return df["review"].tolist()
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise UserError(f"input file {path} is not valid UTF-8; re-save it as UTF-8") from e


def predict_texts(run_dir: Path, texts: list[str], which: str = "best", device: str = "auto") -> list[dict]:
    """One dict per text: label (None when nothing is left after filtering), P(positive), tokens
    kept and how many of them are unknown. Raises UserError for no text or an unusable run."""
    from imdb_rnn.data.text import ReviewProcessor

    if not texts:
        raise UserError("nothing to predict; pass review text as arguments or --file")
    run = RunDir(run_dir).load(which)
    cfg, vocab = run.config, run.vocab
    require_nltk_resources()
    proc = ReviewProcessor(cfg.preprocess)
    tokens = [proc(t) for t in texts]
    ids, lengths = encode(tokens, vocab, cfg.preprocess, run.pipeline.width)
    keep = np.flatnonzero(lengths > 0)
    results: list[dict] = [
        {"text": t, "label": None, "prob_positive": None, "note": "empty after preprocessing: no prediction"}
        for t in texts
    ]
    if len(keep):
        dev = resolve_device(device)
        data = SplitArrays(ids[keep], lengths[keep], np.zeros(len(keep), dtype=np.int64))
        probs = score(run.model.to(dev), data, EVAL_BATCH_SIZE, cfg.train.dynamic_padding, cfg.preprocess.pad_side,
                      dev).probs
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
