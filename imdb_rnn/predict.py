"""Predict sentiment for raw text through the run's own preprocessing and vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from imdb_rnn.arrays import SplitArrays
from imdb_rnn.device import resolve_device
from imdb_rnn.download import require_nltk_resources
from imdb_rnn.errors import UserError
from imdb_rnn.evaluate import load_run, score
from imdb_rnn.preprocess import encode


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
    """One dict per text: label (or None when nothing is left after filtering) and P(positive)."""
    from imdb_rnn.text import ReviewProcessor

    if not texts:
        raise UserError("nothing to predict; pass review text as arguments or --file")
    model, cfg, processed, _, _ = load_run(run_dir, which)
    require_nltk_resources()
    proc = ReviewProcessor(cfg.preprocess)
    tokens = [proc(t) for t in texts]
    ids, lengths = encode(tokens, processed.vocab, cfg.preprocess, processed.manifest["width"])
    keep = np.flatnonzero(lengths > 0)
    results: list[dict] = [
        {"text": t, "label": None, "prob_positive": None, "note": "empty after preprocessing: no prediction"}
        for t in texts
    ]
    if len(keep):
        dev = resolve_device(device)
        model.to(dev)
        data = SplitArrays(ids[keep], lengths[keep], np.zeros(len(keep), dtype=np.int64))
        probs = score(model, data, 64, cfg.train.trim_batches, cfg.preprocess.pad_side, dev).probs
        for i, p in zip(keep, probs):
            unknown = sum(1 for t in tokens[i] if t not in processed.vocab.stoi)
            results[i] = {"text": texts[i], "label": "positive" if p >= 0.5 else "negative",
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
