"""The preprocess stage's artifacts on disk: where they live, what they hold, loading them.

DATA_DIR/processed/NAME-KEY/, where KEY hashes the config's data and preprocess sections: a run
with overrides gets a directory of its own and never replaces the base config's artifacts.
  processed.csv   id, split, label, review (original), processed (the kept tokens, space-joined)
  vocab.json      the id -> token list (0 = <PAD>, 1 = <UNK>)
  arrays.npz      {split}_ids (padded int32), {split}_lengths, {split}_labels, {split}_review_ids
  manifest.json   source and its checksum, config, label_names (index = label id), counts, summary
                  (each split's reviews per label name), library versions, cache key
The set is written to a temporary directory and swapped in whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from imdb_rnn.config import Config, first_difference
from imdb_rnn.data.arrays import SplitArrays
from imdb_rnn.data.labels import SENTIMENT_NAMES
from imdb_rnn.data.sources import Review
from imdb_rnn.data.vocab import Vocab
from imdb_rnn.errors import UserError
from imdb_rnn.files import ensure_dir

# Bump when the artifacts' meaning changes, so old caches rebuild.
PIPELINE_VERSION = 2
TABLE, VOCAB, ARRAYS, MANIFEST = "processed.csv", "vocab.json", "arrays.npz", "manifest.json"


def _resolve(path: str, data_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(data_dir) / p


def resolve_source(cfg: Config, data_dir: Path) -> Path:
    """data.source, relative to the data directory unless absolute."""
    return _resolve(cfg.data.source, data_dir)


def resolve_test_source(cfg: Config, data_dir: Path) -> Optional[Path]:
    """data.test_source, relative to the data directory unless absolute; None when unset."""
    return _resolve(cfg.data.test_source, data_dir) if cfg.data.test_source is not None else None


def config_signature(cfg: Config) -> dict[str, Any]:
    """What the artifacts depend on in the config (the sources' paths aside: a moved file is the same)."""
    return {"data": cfg.data.model_dump() | {"source": None, "test_source": None}, "preprocess": cfg.preprocess.model_dump()}


def _digest(obj: Any, size: int) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:size]


def artifacts_dir(cfg: Config, data_dir: Path) -> Path:
    """DATA_DIR/processed/NAME-KEY: KEY names the data source and the data/preprocess settings."""
    key = _digest({**config_signature(cfg), "source": cfg.data.source, "test_source": cfg.data.test_source,
                   "pipeline": PIPELINE_VERSION}, 10)
    return Path(data_dir) / "processed" / f"{cfg.name}-{key}"


def cache_key(cfg: Config, source_sha: str) -> str:
    """Artifacts are current when their manifest holds this key: same source bytes, same settings,
    same NLTK."""
    from imdb_rnn.data.nltk_data import import_nltk

    nltk = import_nltk()

    return _digest({"source_sha256": source_sha, **config_signature(cfg), "pipeline": PIPELINE_VERSION,
                    "nltk": nltk.__version__}, 16)


@dataclass
class Processed:
    """Loaded preprocess artifacts."""

    out_dir: Path
    manifest: dict[str, Any]
    vocab: Vocab
    arrays: dict[str, np.ndarray]
    _texts: Optional[dict[str, str]] = field(default=None, repr=False)  # review id -> kept tokens, space-joined (processed.csv)

    @property
    def label_names(self) -> list[str]:
        """The label names, index = label id (manifest "label_names"); artifacts made before
        labels had names are IMDB sentiment: negative, positive."""
        return list(self.manifest.get("label_names") or SENTIMENT_NAMES)

    def split(self, name: str) -> SplitArrays:
        a = self.arrays
        return SplitArrays(a[f"{name}_ids"], a[f"{name}_lengths"], a[f"{name}_labels"], a.get(f"{name}_review_ids"))

    def texts(self, data: SplitArrays) -> list[str]:
        """Each review of `data`'s kept tokens, space-joined and not cut to max_len (the NBSVM
        branch's input), in `data`'s order. Raises UserError when processed.csv lacks one."""
        import pandas as pd

        if self._texts is None:  # read once: training asks for the train and the validation rows
            try:
                table = pd.read_csv(self.out_dir / TABLE, usecols=["id", "processed"], dtype=str, keep_default_na=False)
            except (OSError, ValueError) as e:
                raise UserError(f"{self.out_dir / TABLE} is unreadable ({e}); run 'imdb-rnn preprocess' again") from e
            self._texts = dict(zip(table["id"], table["processed"]))
        try:
            return [self._texts[rid] for rid in data.review_ids]
        except (KeyError, TypeError) as e:
            raise UserError(f"{self.out_dir / TABLE} does not hold every review of {ARRAYS}; run 'imdb-rnn preprocess' "
                            "again") from e


def cached_manifest(out_dir: Path, key: str) -> Optional[dict[str, Any]]:
    """The manifest of complete artifacts made with cache key `key`, else None."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    files_ok = all((out_dir / f).is_file() for f in (TABLE, VOCAB, ARRAYS))
    return manifest if files_ok and manifest.get("cache_key") == key else None


def write_artifacts(out_dir: Path, reviews: list[Review], tokens: list[list[str]], vocab: Vocab,
                    arrays: dict[str, np.ndarray], manifest: dict) -> None:
    """Write the whole set beside `out_dir`, then swap it in. Raises UserError on a failed write."""
    import pandas as pd

    ensure_dir(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        pd.DataFrame({
            "id": [r.id for r in reviews],
            "split": [r.split for r in reviews],
            "label": [r.label for r in reviews],
            "review": [r.text for r in reviews],
            "processed": [" ".join(t) for t in tokens],
        }).to_csv(tmp / TABLE, index=False)
        (tmp / VOCAB).write_text(json.dumps(vocab.itos, ensure_ascii=False))
        np.savez(tmp / ARRAYS, **arrays)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(tmp, out_dir)
    except OSError as e:
        raise UserError(f"cannot write preprocess artifacts to {out_dir}: {e.strerror}; check free space and permissions") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace out_dir by tmp; a reader sees the old complete set or the new one."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_processed(out_dir: Path, cfg: Optional[Config] = None) -> Processed:
    """Load artifacts; with `cfg`, refuse ones made with a different data/preprocess config.

    Raises UserError when they are missing, unreadable or made with another config.
    """
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).is_file():
        raise UserError(f"no preprocess artifacts in {out_dir}; run 'imdb-rnn preprocess --config <same config>' first")
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        vocab = Vocab(json.loads((out_dir / VOCAB).read_text(encoding="utf-8")))
        with np.load(out_dir / ARRAYS, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"preprocess artifacts in {out_dir} are unreadable ({e}); run 'imdb-rnn preprocess' again") from e
    if cfg is not None:
        _check_config(manifest, cfg, out_dir)
    return Processed(out_dir, manifest, vocab, arrays)


def _check_config(manifest: dict, cfg: Config, where: Path) -> None:
    want = json.loads(json.dumps(config_signature(cfg)))
    have = manifest.get("config", {})
    if have != want:
        raise UserError(f"preprocess artifacts in {where} were made with a different config "
                        f"({first_difference(have, want, 'artifacts have', 'config has')}); run 'imdb-rnn preprocess' with this config")


def load_artifacts(cfg: Config, data_dir: Path) -> Processed:
    """The artifacts of `cfg` in `data_dir`. Raises UserError when there are none, naming the
    first setting that differs from artifacts made for the same config name, if any."""
    out_dir = artifacts_dir(cfg, data_dir)
    if not (out_dir / MANIFEST).is_file():
        for other in sorted(out_dir.parent.glob(f"{cfg.name}-*/{MANIFEST}")):
            try:
                _check_config(json.loads(other.read_text()), cfg, other.parent)
            except (OSError, json.JSONDecodeError):
                continue
        raise UserError(f"no preprocess artifacts for config '{cfg.name}' in {out_dir.parent}; "
                        "run 'imdb-rnn preprocess --config <same config>' first")
    return load_processed(out_dir, cfg)
