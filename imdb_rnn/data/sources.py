"""Read labelled reviews: the official tarball, an extracted aclImdb/ directory, a Hugging Face
Parquet folder, or a table (.csv, .tsv, .jsonl, .parquet), with an optional test table.

The format is chosen by what the path is. Sources with a train/test split keep it (each split
in a seeded shuffle: the archive is grouped by class); a single table is split with a seeded,
stratified `train_test_split`. Labels become ids 0..C-1 with names (`imdb_rnn.data.labels`).
Nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from imdb_rnn.config import DataConfig
from imdb_rnn.data import tables
from imdb_rnn.data.hf import hf_fingerprint, is_hf_folder, read_hf_split
from imdb_rnn.data.labels import (RATING_BANDS, SENTIMENT_NAMES, check_names, check_trained, infer_names, rating_band,
                                  to_ids)
from imdb_rnn.data.tables import KIND, TABLE_FORMATS, Table, read_table, table_format
from imdb_rnn.errors import UserError
from imdb_rnn.files import atomic_path, sha256_file

LABELS = {"negative": 0, "positive": 1}
LABEL_NAMES = SENTIMENT_NAMES  # by id
ARCHIVE_FORMATS = ("tar", "dir")  # the official archive, packed or extracted
KAGGLE_CSV = "IMDB Dataset.csv"  # the tutorial's table, which `imdb-rnn make-csv` rebuilds from the archive
# predict reads its --file CSVs with these.
read_csv, utf8_error_line = tables.read_csv, tables.utf8_error_line
_MEMBER = re.compile(r"^(?:\./)?(?:[^/]+/)?(train|test)/(pos|neg)/([0-9]+)_([0-9]+)\.txt$")


@dataclass(frozen=True)
class Review:
    id: str
    split: str  # "train" | "test"
    label: int  # id in the source's label names (sentiment: 0 negative, 1 positive)
    text: str


@dataclass
class Labelled:
    """A source's reviews in their final order, the label names (index = id), and where the user
    finds a review by its id (for messages: a table's line or row, the archive's file)."""

    reviews: list[Review]
    label_names: list[str]
    where: Callable[[str], str] = field(default=str, repr=False, compare=False)


def archive_where(path: Path) -> Callable[[str], str]:
    """Where a review of the archive at `path` is, by its id (its file: train/pos/ID_RATING)."""
    return lambda rid: f"review {rid} of {path}"


def _tables_where(parts: dict[str, list[Table]]) -> Callable[[str], str]:
    """Where a review is, by its id "PREFIXrowN": row N of the PREFIX tables in turn (a split's
    rows count on over its files)."""
    def where(rid: str) -> str:
        prefix, _, number = rid.rpartition("row")
        n = int(number)
        for t in parts[prefix]:
            if n < len(t):
                return t.where(n)
            n -= len(t)
        return rid
    return where


def archive_label_names(target: str) -> list[str]:
    """The label names of the archive for data.target."""
    return list(RATING_BANDS if target == "rating_band" else SENTIMENT_NAMES)


def _is_acl_dir(path: Path) -> bool:
    return any((root / split / cls).is_dir() for root in (path, path / "aclImdb")
               for split in ("train", "test") for cls in ("pos", "neg"))


def detect_format(path: Path) -> str:
    """Return "tar", "dir" (an extracted aclImdb/), "hf" (a Hugging Face Parquet folder), or a
    table's "csv", "tsv", "jsonl" or "parquet" for `path`; raise UserError naming the problem."""
    fmt = table_format(path)
    if not path.exists():
        if path.name == KAGGLE_CSV:
            raise UserError(f"source {path} does not exist; make it from the archive with 'imdb-rnn make-csv "
                            f"data/aclImdb_v1.tar.gz --out \"{path}\"', or point --data-dir (or data.source) at it")
        if fmt:
            raise UserError(f"source {path} does not exist; point data.source (relative to --data-dir) at your table")
        raise UserError(f"source {path} does not exist; run 'imdb-rnn download', or point --data-dir (or data.source) at the data")
    if path.is_dir():
        if _is_acl_dir(path):
            return "dir"
        if is_hf_folder(path):
            return "hf"
        raise UserError(f"directory {path} holds neither train/ and test/ review folders (an extracted aclImdb/) nor "
                        "Hugging Face *-train-*.parquet files; point data.source at one of those")
    if fmt:
        return fmt
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError as e:
        raise UserError(f"cannot read source {path}: {e.strerror}") from e
    raise UserError(
        f"source {path} has an unrecognised format; use a table ({', '.join(TABLE_FORMATS)}), aclImdb_v1.tar.gz, "
        "an extracted aclImdb/ directory, or a Hugging Face folder of *-train-*.parquet and *-test-*.parquet files"
    )


def source_fingerprint(path: Path, fmt: Optional[str] = None) -> str:
    """sha256 of a file's bytes; for an aclImdb/ directory, of its review files' names and sizes;
    for a Hugging Face folder, of its labelled splits' files (hf_fingerprint)."""
    fmt = fmt or detect_format(path)
    if fmt == "hf":
        return hf_fingerprint(path)
    if fmt == "dir":
        h = hashlib.sha256()
        for f in sorted(_dir_files(path)):
            h.update(f"{f.relative_to(path)}\0{f.stat().st_size}\n".encode())
        return "dir:" + h.hexdigest()
    return sha256_file(path)


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{where} is not valid UTF-8 (byte {e.start}); re-save the source as UTF-8") from e


def _read_tar(path: Path) -> Iterator[tuple[re.Match, bytes]]:
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                m = _MEMBER.match(member.name)
                if not m or not member.isfile():  # links, devices and stray paths are never read
                    continue
                f = tf.extractfile(member)
                if f is None:
                    continue
                yield m, f.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise UserError(f"archive {path} is truncated or corrupt ({e}); download it again with 'imdb-rnn download --force'") from e


def _dir_root(path: Path) -> Path:
    if (path / "train").is_dir() or (path / "test").is_dir():
        return path
    if (path / "aclImdb").is_dir():
        return path / "aclImdb"
    raise UserError(f"directory {path} holds no train/ or test/ folder; point data.source at the extracted aclImdb/ directory")


def _dir_files(path: Path) -> Iterable[Path]:
    root = _dir_root(path)
    for split in ("train", "test"):
        for cls in ("neg", "pos"):
            d = root / split / cls
            if d.is_dir():
                yield from (f for f in d.iterdir() if f.suffix == ".txt" and f.is_file() and not f.is_symlink())


def _read_dir(path: Path) -> Iterator[tuple[re.Match, bytes]]:
    root = _dir_root(path)
    for f in _dir_files(path):
        m = _MEMBER.match(f.relative_to(root).as_posix())
        if m:
            yield m, f.read_bytes()


def iter_official(path: Path, fmt: str, target: str = "sentiment") -> Iterator[Review]:
    """Reviews of a tarball or aclImdb/ directory in storage order (grouped by split and class),
    labelled per data.target: "sentiment" by folder (neg 0, pos 1), "rating_band" by the rating
    in the file name (ids into RATING_BANDS).

    Raises UserError for an unreadable archive, a review that is not UTF-8, or (rating_band) a
    rating outside the bands.
    """
    rows = _read_tar(path) if fmt == "tar" else _read_dir(path)
    for m, data in rows:
        split, cls, number, rating = m.groups()
        rid = f"{split}/{cls}/{number}_{rating}"
        if target == "rating_band":
            label = rating_band(int(rating))
            if label is None:
                raise UserError(f"review {rid} in {path} has rating {int(rating)}, outside the bands "
                                f"{', '.join(RATING_BANDS)}; remove it from the source or set data.target=sentiment")
        else:
            label = 1 if cls == "pos" else 0
        yield Review(rid, split, label, _decode(data, f"review {rid} in {path}"))


def official_order(reviews: list[Review], limit: Optional[int], seed: int) -> list[int]:
    """Indices of the reviews to use: train then test, each in a seeded shuffle, cut to `limit`.

    The order depends only on the review ids, never on the order the source stored them in.
    """
    if not any(r.split == "train" for r in reviews):
        raise UserError("the source holds no training reviews (train/pos, train/neg or *-train-*.parquet); check "
                        "that it is the IMDB archive or a folder in its Hugging Face layout")
    order = []
    for split in ("train", "test"):
        idx = sorted((i for i, r in enumerate(reviews) if r.split == split), key=lambda i: reviews[i].id)
        random.Random(seed).shuffle(idx)  # the archive is grouped by class: make any prefix a fair sample
        order.extend(idx[:limit] if limit else idx)
    return order


def check_keys_apply(data: DataConfig, fmt: str, source: Path) -> None:
    """Refuse data keys that the source's format has no use for, naming the key and the fix."""
    if fmt in ARCHIVE_FORMATS:
        for key in ("text_column", "label_column", "labels", "test_source"):
            if getattr(data, key) is not None:
                raise UserError(f"data.{key} applies to tables and Hugging Face Parquet folders, not to the archive "
                                f"{source} (its labels are its folders, or data.target); remove data.{key}")
    elif data.target != "sentiment":
        raise UserError(f"data.target={data.target} reads the ratings in the archive's file names (ID_RATING.txt), "
                        f"which {source} does not have; point data.source at aclImdb_v1.tar.gz or an extracted aclImdb/ "
                        "directory, or set data.target=sentiment")
    if fmt == "hf" and data.test_source is not None:
        raise UserError(f"{source} has a test split of its own (*-test-*.parquet); remove data.test_source")


def _label_names(data: DataConfig, found: list[Table]) -> tuple[list[str], str]:
    """(label names, where they came from): data.labels, else a Hugging Face ClassLabel's
    names, else the values found, sorted."""
    if data.labels is not None:
        check_names(data.labels, "data.labels")
        return list(data.labels), "data.labels"
    for t in found:
        if t.class_names:
            return t.class_names, f"the ClassLabel names of {t.path}"
    return infer_names(v for t in found for v in t.labels), "the labels found"


def stratified_split(ids: list[int], names: list[str], test_size: float, seed: int, what: str) -> list[bool]:
    """Whether each row goes to the test split: a seeded `train_test_split` stratified by label,
    so both splits keep the labels' shares. `what` names the table in messages.

    Raises UserError when a label has a single row, a split would be too small to hold every
    label once, or the split leaves a label out of the test split.
    """
    from sklearn.model_selection import train_test_split

    n = len(ids)
    if n < 2:
        raise UserError(f"{what} has {n} review(s); at least 2 are needed to split train and test")
    counts = Counter(ids)
    lone = sorted(k for k, c in counts.items() if c < 2)
    if lone:
        raise UserError(f"{what} has a single row of label {names[lone[0]]!r}; a stratified split needs 2 or more of "
                        "each label: add rows, remove that row, or give a test table as data.test_source")
    n_test = math.ceil(test_size * n)  # as train_test_split counts it
    if min(n_test, n - n_test) < len(counts):
        raise UserError(f"data.test_size={test_size} splits {what}'s {n} rows into {n - n_test} train and {n_test} test, "
                        f"too few for one of each of the {len(counts)} labels in both; give more rows (data.limit) "
                        "or change data.test_size")
    # Stratified by name, not id: the split stays the same whatever order data.labels lists them in.
    strata = [names[k].casefold() for k in ids]
    _, test_idx = train_test_split(list(range(n)), test_size=test_size, random_state=seed, stratify=strata)
    in_test = set(test_idx)
    # The split keeps shares by rounding, so a rare label can get no row in a split (20/2/2 rows at
    # test_size 0.1): it could not be learned or measured, and the split would look like a sorted source's.
    for split, rows, size in (("test", in_test, "raise"), ("train", set(range(n)) - in_test, "lower")):
        held = Counter(ids[i] for i in rows)
        left_out = sorted((k for k in counts if not held[k]), key=lambda k: (counts[k], names[k]))
        if left_out:
            raise UserError(f"data.test_size={test_size} splits {what}'s {n} rows into {n - n_test} train and {n_test} "
                            f"test, leaving {', '.join(f'label {names[k]!r} ({counts[k]} rows)' for k in left_out)} out of the "
                            f"{split} split; {size} data.test_size, add rows of that label, or give a test table as "
                            "data.test_source")
    return [i in in_test for i in range(n)]


def check_test_source(test_source: Path, source: Path) -> None:
    """Refuse a data.test_source that is missing, not a table, or the file data.source is."""
    if test_source.exists() and source.exists() and test_source.samefile(source):
        raise UserError(f"data.test_source {test_source} is data.source itself, so the test reviews would be the "
                        "training reviews; point it at a separate test table, or set it to null to split data.source")
    if not test_source.exists():
        raise UserError(f"data.test_source {test_source} does not exist; point it at the test table (relative to "
                        "--data-dir), or set it to null to split data.source")
    if table_format(test_source) is None:
        raise UserError(f"data.test_source {test_source} has an unknown file ending '{test_source.suffix}'; use a "
                        f"table ending in {', '.join(TABLE_FORMATS)}")


def _read_tables(data: DataConfig, source: Path, test_source: Optional[Path]) -> Labelled:
    if test_source is not None:
        check_test_source(test_source, source)
    train = read_table(source, data.text_column, data.label_column, data.limit)
    test = read_table(test_source, data.text_column, data.label_column, data.limit) \
        if test_source is not None else None
    found = [train] + ([test] if test is not None else [])
    names, origin = _label_names(data, found)
    ids = [to_ids(t.labels, names, origin, t.label_column, t.where) for t in found]
    check_trained(names, origin, ids[0], ids[1] if test is not None else [],
                  f"the test split (data.test_source {test_source})")
    if test is None:
        what = f"{KIND[train.format]} {source}" + (f" (its first {data.limit} rows: data.limit)" if data.limit else "")
        in_test = stratified_split(ids[0], names, data.test_size, data.split_seed, what)
        reviews = [Review(f"row{i}", "test" if in_test[i] else "train", ids[0][i], train.texts[i])
                   for i in range(len(train))]
    else:
        reviews = [Review(f"row{i}", "train", y, t) for i, (y, t) in enumerate(zip(ids[0], train.texts))]
        reviews += [Review(f"test-row{i}", "test", y, t) for i, (y, t) in enumerate(zip(ids[1], test.texts))]
    return Labelled(reviews, names, _tables_where({"": [train], "test-": [test] if test is not None else []}))


def _read_hf(data: DataConfig, source: Path) -> Labelled:
    found = {split: read_hf_split(source, split, data.text_column, data.label_column) for split in ("train", "test")}
    if not found["test"]:
        raise UserError(f"{source} holds no *-test-*.parquet file; add the test split, or point data.source at the "
                        "train file alone (a table, split by data.test_size)")
    names, origin = _label_names(data, found["train"] + found["test"])
    reviews: list[Review] = []
    for split, split_tables in found.items():
        row = 0  # counts on over a split's shards
        for t in split_tables:
            for y, text in zip(to_ids(t.labels, names, origin, t.label_column, t.where), t.texts):
                reviews.append(Review(f"{split}/row{row}", split, y, text))
                row += 1
    order = official_order(reviews, data.limit, data.split_seed)
    reviews = [reviews[i] for i in order]
    check_trained(names, origin, [r.label for r in reviews if r.split == "train"],
                  [r.label for r in reviews if r.split == "test"], f"the test split of {source} (*-test-*.parquet)")
    return Labelled(reviews, names, _tables_where({f"{split}/": found[split] for split in found}))


def read_labelled(data: DataConfig, source: Path, test_source: Optional[Path] = None) -> Labelled:
    """All labelled reviews of the source (and the test table, if any), each tagged with its
    split, in their final order, with the label names.

    Raises UserError for a missing or unreadable source, a data key its format has no use for,
    a missing column, an empty label, a label outside data.labels, a label no training review
    has, or a split that cannot be made.
    """
    fmt = detect_format(source)
    check_keys_apply(data, fmt, source)
    if fmt == "hf":
        return _read_hf(data, source)
    if fmt not in ARCHIVE_FORMATS:
        return _read_tables(data, source, test_source)
    reviews = list(iter_official(source, fmt, data.target))
    return Labelled([reviews[i] for i in official_order(reviews, data.limit, data.split_seed)],
                    archive_label_names(data.target), archive_where(source))


def read_reviews(path: Path, limit: Optional[int] = None, test_size: float = 0.2, seed: int = 0) -> list[Review]:
    """All labelled reviews of the source with the default columns and labels (sentiment), each
    tagged with its split."""
    return read_labelled(DataConfig(limit=limit, test_size=test_size, split_seed=seed), path).reviews


def write_kaggle_csv(reviews: list[Review], dest: Path, seed: int = 0) -> None:
    """Write reviews as a Kaggle-format CSV (review, sentiment) in a seeded mixed order."""
    import pandas as pd

    order = list(range(len(reviews)))
    random.Random(seed).shuffle(order)
    names = {v: k for k, v in LABELS.items()}
    df = pd.DataFrame({"review": [reviews[i].text for i in order], "sentiment": [names[reviews[i].label] for i in order]})
    with atomic_path(dest) as tmp:
        df.to_csv(tmp, index=False)
