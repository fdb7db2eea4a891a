"""Read labelled reviews from the official tarball, an extracted aclImdb/ directory, or a Kaggle CSV.

The format is chosen by what the path is. Sources with an official train/test split keep it; a
CSV is split with a seeded `train_test_split`. Nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import random
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

from imdb_rnn.errors import UserError
from imdb_rnn.files import atomic_path, sha256_file

if TYPE_CHECKING:
    import pandas as pd

LABELS = {"negative": 0, "positive": 1}
LABEL_NAMES = sorted(LABELS, key=LABELS.get)  # by id
_MEMBER = re.compile(r"^(?:\./)?(?:[^/]+/)?(train|test)/(pos|neg)/([0-9]+_[0-9]+)\.txt$")


@dataclass(frozen=True)
class Review:
    id: str
    split: str  # "train" | "test"
    label: int  # 1 positive, 0 negative
    text: str


def detect_format(path: Path) -> str:
    """Return "dir", "csv" or "tar" for `path`, or raise naming the problem."""
    if not path.exists():
        if path.suffix.lower() == ".csv":
            raise UserError(f"source {path} does not exist; make it from the archive with 'imdb-rnn make-csv "
                            f"data/aclImdb_v1.tar.gz --out \"{path}\"', or point --data-dir (or data.source) at it")
        raise UserError(f"source {path} does not exist; run 'imdb-rnn download', or point --data-dir (or data.source) at the data")
    if path.is_dir():
        return "dir"
    if path.suffix.lower() == ".csv":
        return "csv"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError as e:
        raise UserError(f"cannot read source {path}: {e.strerror}") from e
    raise UserError(
        f"source {path} has an unrecognised format; use aclImdb_v1.tar.gz, an extracted aclImdb/ directory, "
        "or a CSV with columns review,sentiment"
    )


def source_fingerprint(path: Path) -> str:
    """sha256 of a file's bytes; for a directory, of its review files' names and sizes."""
    if path.is_dir():
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


def _read_tar(path: Path) -> Iterator[tuple[str, str, int, bytes]]:
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                m = _MEMBER.match(member.name)
                if not m or not member.isfile():  # links, devices and stray paths are never read
                    continue
                f = tf.extractfile(member)
                if f is None:
                    continue
                yield m.group(1), m.group(2), m.group(3), f.read()
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


def _read_dir(path: Path) -> Iterator[tuple[str, str, int, bytes]]:
    root = _dir_root(path)
    for f in _dir_files(path):
        m = _MEMBER.match(f.relative_to(root).as_posix())
        if m:
            yield m.group(1), m.group(2), m.group(3), f.read_bytes()


def iter_official(path: Path, fmt: str) -> Iterator[Review]:
    """Reviews of a tarball or aclImdb/ directory in storage order (grouped by split and class)."""
    rows = _read_tar(path) if fmt == "tar" else _read_dir(path)
    for split, cls, stem, data in rows:
        rid = f"{split}/{cls}/{stem}"
        yield Review(rid, split, 1 if cls == "pos" else 0, _decode(data, f"review {rid} in {path}"))


def official_order(reviews: list[Review], limit: Optional[int], seed: int) -> list[int]:
    """Indices of the reviews to use: train then test, each in a seeded shuffle, cut to `limit`.

    The order depends only on the review ids, never on the order the source stored them in.
    """
    if not any(r.split == "train" for r in reviews):
        raise UserError("the source holds no train/pos or train/neg reviews; check that it is the IMDB archive")
    order = []
    for split in ("train", "test"):
        idx = sorted((i for i, r in enumerate(reviews) if r.split == split), key=lambda i: reviews[i].id)
        random.Random(seed).shuffle(idx)  # the archive is grouped by class: make any prefix a fair sample
        order.extend(idx[:limit] if limit else idx)
    return order


def utf8_error_line(data: bytes) -> Optional[int]:
    """The 1-based line of the first byte of `data` that is not valid UTF-8, or None if all are."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return data.count(b"\n", 0, e.start) + 1
    return None


def read_csv(path: Path, nrows: Optional[int] = None) -> "pd.DataFrame":
    """A UTF-8 CSV with every cell a string (empty cells stay "", never NaN), the first `nrows` rows.

    Raises UserError, naming the file (and the line, where the decoder or the parser says which),
    for a file that cannot be read, is not valid UTF-8, is empty, or does not parse as a CSV.
    """
    import pandas as pd

    try:
        return pd.read_csv(path, nrows=nrows, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as e:
        # pandas decodes in chunks, so the error's offset is not a position in the file: find it
        # again in the file's bytes (on this error path only).
        line = utf8_error_line(path.read_bytes())
        where = f" (line {line})" if line else ""
        raise UserError(f"CSV {path} is not valid UTF-8{where}; re-save it as UTF-8") from e
    except pd.errors.EmptyDataError as e:
        raise UserError(f"CSV {path} is empty; it needs a header line naming its columns, then one row per review") from e
    except pd.errors.ParserError as e:
        raise UserError(f"CSV {path} cannot be parsed ({str(e).splitlines()[0]}); check that it is a comma-separated "
                        "file and that every quote is closed") from e
    except OSError as e:
        raise UserError(f"cannot read CSV {path}: {e.strerror or e}; check that it is a readable file") from e


def _read_csv(path: Path, limit: Optional[int], test_size: float, seed: int) -> list[Review]:
    from sklearn.model_selection import train_test_split

    df = read_csv(path, nrows=limit)
    missing = [c for c in ("review", "sentiment") if c not in df.columns]
    if missing:
        raise UserError(
            f"CSV {path} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))}); "
            "it needs columns review,sentiment"
        )
    labels = df["sentiment"].str.strip().str.lower()
    bad = ~labels.isin(list(LABELS))
    if bad.any():
        row = int(bad.idxmax())
        raise UserError(
            f"CSV {path} row {row + 2} has sentiment {df['sentiment'][row]!r}; allowed values are positive, negative"
        )
    if len(df) < 2:
        raise UserError(f"CSV {path} has {len(df)} review(s); at least 2 are needed to split train and test")
    train_idx, _ = train_test_split(list(range(len(df))), test_size=test_size, random_state=seed)
    in_train = set(train_idx)
    y = labels.map(LABELS).tolist()
    texts = df["review"].tolist()
    return [Review(f"row{i}", "train" if i in in_train else "test", y[i], texts[i]) for i in range(len(df))]


def read_reviews(path: Path, limit: Optional[int] = None, test_size: float = 0.2, seed: int = 0) -> list[Review]:
    """All labelled reviews of the source, each tagged with its split."""
    fmt = detect_format(path)
    if fmt == "csv":
        return _read_csv(path, limit, test_size, seed)
    reviews = list(iter_official(path, fmt))
    return [reviews[i] for i in official_order(reviews, limit, seed)]


def write_kaggle_csv(reviews: list[Review], dest: Path, seed: int = 0) -> None:
    """Write reviews as a Kaggle-format CSV (review, sentiment) in a seeded mixed order."""
    import pandas as pd

    order = list(range(len(reviews)))
    random.Random(seed).shuffle(order)
    names = {v: k for k, v in LABELS.items()}
    df = pd.DataFrame({"review": [reviews[i].text for i in order], "sentiment": [names[reviews[i].label] for i in order]})
    with atomic_path(dest) as tmp:
        df.to_csv(tmp, index=False)
