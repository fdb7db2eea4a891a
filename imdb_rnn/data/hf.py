"""The Hugging Face layout of a data set: a folder of Parquet files named by split.

`stanfordnlp/imdb` holds plain_text/train-00000-of-00001.parquet, test-... and unsupervised-...,
columns text and label (a ClassLabel: 0 neg, 1 pos; -1 in the unlabelled split). A file belongs
to a split when a dash-, dot- or underscore-separated part of its name, or its folder's name, is
train, test or unsupervised; a split may be sharded over several files (read in name order).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator, Optional

from imdb_rnn.data.tables import TEXT_COLUMNS, Table, read_parquet_column, read_table
from imdb_rnn.errors import UserError
from imdb_rnn.files import sha256_file

SPLITS = ("train", "test", "unsupervised")
_PARTS = re.compile(r"[-_.]")


def _split_of(path: Path) -> Optional[str]:
    for name in (*_PARTS.split(path.stem), path.parent.name):
        if name in SPLITS:
            return name
    return None


def hf_files(path: Path) -> dict[str, list[Path]]:
    """The Parquet files under folder `path` (at any depth) by split, each list in name order;
    splits without a file are absent."""
    found: dict[str, list[Path]] = {}
    for f in sorted(Path(path).rglob("*.parquet")):
        split = _split_of(f)
        if split and f.is_file():
            found.setdefault(split, []).append(f)
    return found


def is_hf_folder(path: Path) -> bool:
    """Whether folder `path` holds a Hugging Face train split (*-train-*.parquet)."""
    return "train" in hf_files(path)


def hf_fingerprint(path: Path) -> str:
    """sha256 over the labelled splits' files (relative name and content hash): adding or
    changing the unlabelled split leaves it unchanged."""
    h = hashlib.sha256()
    files = hf_files(path)
    for split in ("train", "test"):
        for f in files.get(split, []):
            h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return "hf:" + h.hexdigest()


def read_hf_split(path: Path, split: str, text_column: Optional[str], label_column: Optional[str]) -> list[Table]:
    """The tables of one split of the folder, one per file (empty list when it has none)."""
    return [read_table(f, text_column, label_column) for f in hf_files(path).get(split, [])]


def iter_unlabelled_texts(path: Path, text_column: Optional[str] = None) -> Iterator[str]:
    """Yield the texts of the folder's unsupervised split, file by file, in batches (never a
    whole file in memory at once); null or missing texts are skipped.

    `text_column` None: the first of review/text present. Raises UserError when `path` holds no
    *-unsupervised-*.parquet file, a file is unreadable, or lacks the column.
    """
    files = hf_files(Path(path)).get("unsupervised", [])
    if not files:
        raise UserError(f"{path} holds no unlabelled split (*-unsupervised-*.parquet); download it with "
                        "'imdb-rnn download --hf', or point at a folder that has it")
    for f in files:
        for text in read_parquet_column(f, text_column, TEXT_COLUMNS):
            if isinstance(text, str) and text:
                yield text
