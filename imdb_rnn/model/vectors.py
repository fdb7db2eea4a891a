"""Pretrained word vectors (GloVe, word2vec, fastText) as the first rows of an embedding.

Formats, told apart by the file's extension and its first line:
  text without a header  GloVe .txt: one `word v1 ... vD` row per line
  text with a header     word2vec .txt, fastText .vec: a first line `COUNT DIM`, then such rows
  binary                 word2vec .bin: the `COUNT DIM` line, then per word `word `, D float32
                         (little-endian) and, as word2vec.c writes it, an optional newline
A trailing .gz (fastText ships its .vec files so) is read through gzip.

The file is read once, as a stream: every row's word is looked up, and only the rows of the
vocabulary's words are parsed and kept, so memory holds a (V, D) array whatever the file's size,
and the file's sha256 is taken in the same pass. gensim's `KeyedVectors.load_word2vec_format`
reads every row into memory; bench/vectors.py measures both on a GloVe-sized file, and the README
has the numbers.

Words match a token exactly, else ignoring case (the file's first such row): GloVe is lowercase,
the tutorial recipe keeps case, and word2vec's GoogleNews vectors are cased.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Optional, Sequence

import numpy as np

from imdb_rnn.errors import UserError, one_line

if TYPE_CHECKING:
    from torch import nn

_CHUNK = 1 << 20
_TEXT_BYTES = frozenset(b"0123456789.-+eE \n\r\t")  # a text row's vector part holds nothing else
_MAX_WORD = 10_000  # bytes; a binary file whose word runs longer is not one


@dataclass
class VectorRows:
    """What a vectors file gave for a list of words."""

    path: Path
    format: str  # "glove text", "word2vec text" or "word2vec binary"
    dim: int
    file_rows: int  # rows in the file
    sha256: str  # of the file's bytes (the compressed ones for .gz)
    vectors: np.ndarray  # (N, D) float32, one row per requested word; zeros where not found
    found: np.ndarray  # (N,) bool
    by_case: int  # words found only with another case

    @property
    def coverage(self) -> float:
        """Share of the requested words found (0.0 for none requested)."""
        return float(self.found.mean()) if len(self.found) else 0.0


@dataclass
class PretrainedEmbedding:
    """Vectors for a vocabulary's tokens; row i is token i's (pad and unknown never found)."""

    source: str  # model.pretrained_vectors as given: relative paths stay relative
    rows: VectorRows  # for the whole vocabulary, <PAD> and <UNK> included
    freeze: bool

    @property
    def tokens(self) -> int:
        """Vocabulary tokens that can be found: all but <PAD> and <UNK>."""
        return len(self.rows.found) - 2

    @property
    def found(self) -> int:
        """Vocabulary tokens the file has a row for."""
        return int(self.rows.found[2:].sum())

    @property
    def coverage(self) -> float:
        """Share of the vocabulary's tokens (<PAD> and <UNK> aside) the file has a row for."""
        return self.found / self.tokens if self.tokens else 0.0

    def manifest(self) -> dict:
        """What the run records about its vectors (vectors.json)."""
        r = self.rows
        return {"path": self.source, "sha256": r.sha256, "format": r.format, "dim": r.dim, "file_rows": r.file_rows,
                "vocab_tokens": self.tokens, "found": self.found, "found_by_case": r.by_case,
                "coverage": round(self.coverage, 6), "freeze": self.freeze}

    def summary(self) -> str:
        """One line for the train log."""
        r = self.rows
        case = f", {r.by_case:,} of them ignoring case" if r.by_case else ""
        return (f"vectors: {self.source} ({r.format}, {r.file_rows:,} rows of {r.dim}): {self.found:,} of "
                f"{self.tokens:,} vocabulary tokens found ({self.coverage:.1%}{case}), the rest initialised as "
                f"usual; embedding {'frozen' if self.freeze else 'trained'}")

    def copy_into(self, embedding: "nn.Embedding") -> None:
        """Overwrite the rows of `embedding` (weight (V, D)) that the file has; the others, the
        padding row among them, keep their initialisation."""
        import torch

        found = torch.from_numpy(self.rows.found)
        with torch.no_grad():
            embedding.weight[found] = torch.from_numpy(self.rows.vectors[self.rows.found]).to(embedding.weight)


def resolve_vectors(path: str, data_dir: Path) -> Path:
    """model.pretrained_vectors, relative to the data directory unless absolute (as data.source)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(data_dir) / p


def load_pretrained(source: str, data_dir: Path, itos: Sequence[str], dim: int, freeze: bool) -> PretrainedEmbedding:
    """The rows of vocabulary `itos` (id -> token, <PAD> and <UNK> first) in the vectors file
    `source` (model.pretrained_vectors); `dim` is model.embedding_dim.

    Raises UserError for a missing file, another dimension, or a file that is not vectors.
    """
    path = resolve_vectors(source, data_dir)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise UserError(f"vectors file {path} (model.pretrained_vectors) {problem}; pass an existing file, relative "
                        f"to the data directory ({data_dir}) or absolute")
    words = [""] * 2 + list(itos[2:])  # "" matches no row: the pad and unknown rows are never taken
    return PretrainedEmbedding(source, read_vectors(path, words, dim), freeze)


def vector_format(path: Path) -> str:
    """'binary' for a .bin file (.bin.gz too), else 'text' (header or not: the first line tells)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    return "binary" if suffixes[-1:] == [".bin"] else "text"


def read_vectors(path: Path, words: Sequence[str], dim: Optional[int] = None) -> VectorRows:
    """Stream the vectors file at `path` and keep the rows of `words` (exact match first, else
    the first row equal to it ignoring case). With `dim`, a file of another dimension is refused.

    Raises UserError (naming the file and the line or entry) for a file that is unreadable, of
    another dimension, or not in the format its name and first line say.
    """
    path = Path(path)
    matcher = _Matcher(words)
    try:
        with open(path, "rb") as raw:
            hashing = _HashingReader(raw)
            stream: IO[bytes] = io.BufferedReader(hashing, _CHUNK)
            if path.suffix.lower() == ".gz":
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
            if vector_format(path) == "binary":
                fmt, file_dim, rows = "word2vec binary", *_read_binary(stream, path, matcher, dim)
            else:
                header, file_dim, rows = _read_text(stream, path, matcher, dim)
                fmt = "word2vec text" if header else "glove text"
            hashing.drain()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read vectors file {path} ({one_line(e)}); check the file, or download it again") from e
    return VectorRows(path, fmt, file_dim, rows, hashing.sha256.hexdigest(), matcher.vectors(file_dim),
                      matcher.found, matcher.by_case)


# --- reading -------------------------------------------------------------------------------

class _HashingReader(io.RawIOBase):
    """A binary file whose bytes go through sha256 as they are read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
        return n

    def drain(self) -> None:
        """Hash what the readers above left unread (a binary file's end, a .gz trailer)."""
        while block := self.raw.read(_CHUNK):
            self.sha256.update(block)


def _error(path: Path, where: str, problem: str, fix: str) -> UserError:
    return UserError(f"vectors file {path}, {where}: {problem}; {fix}")


def _check_dim(path: Path, file_dim: int, want: Optional[int]) -> None:
    if want is not None and file_dim != want:
        raise UserError(f"vectors file {path} has {file_dim}-dimensional vectors but model.embedding_dim is {want}; "
                        f"set model.embedding_dim={file_dim}")


def _is_number(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(vector: np.ndarray, path: Path, where: str) -> np.ndarray:
    if not np.isfinite(vector).all():
        raise _error(path, where, "a value is not finite (nan or inf)", "fix or replace the file")
    return vector


_NOT_TEXT_VECTORS = "the file is damaged, or not a text vectors file (GloVe, word2vec or fastText; a binary " \
                    "word2vec file must end in .bin)"


def _read_text(stream: IO[bytes], path: Path, matcher: _Matcher, want_dim: Optional[int]) -> tuple[bool, int, int]:
    """(has a header, dimension, rows) of a text file; the matcher takes the rows it wants."""
    announced: Optional[int] = None
    dim = header_line = 0
    rows = 0
    for line_no, line in enumerate(stream, start=1):
        line = line.rstrip()  # fastText ends each row with a space, some files with \r\n
        if line_no == 1:
            line = line.removeprefix(codecs.BOM_UTF8)  # an editor's byte order mark is not part of the first word
        if not line:
            continue
        where = f"line {line_no}"
        if not dim:
            fields = line.split()
            if rows == 0 and announced is None and len(fields) == 2 and all(f.isdigit() for f in fields):
                announced, dim, header_line = int(fields[0]), int(fields[1]), line_no
                if dim < 1:
                    raise _error(path, where, f"the header announces {dim}-dimensional vectors", _NOT_TEXT_VECTORS)
                continue  # its dimension is checked against model.embedding_dim once the first row agrees with it
            dim = line.count(b" ")
            if dim < 1:
                raise _error(path, where, "one field where a row is 'word v1 ... vD' (separated by single spaces)",
                             _NOT_TEXT_VECTORS)
        first = rows == 0
        spaces = line.count(b" ")
        if spaces == dim:
            cut = line.index(b" ")
            word, values = line[:cut], line[cut + 1:]
        elif spaces > dim and not _is_number((parts := line.rsplit(b" ", dim))[0].rsplit(b" ", 1)[-1]):
            # A word with spaces in it (GloVe's 840B file has a few): no token has one.
            word, values = parts[0], b" ".join(parts[1:])
        elif first and announced is not None:
            raise _error(path, where, f"the header (line {header_line}) says {dim} values per row, this row has {spaces}",
                         "fix the header ('COUNT DIM') to match the rows")
        else:
            raise _error(path, where, f"{spaces} values where the file's vectors have {dim}", _NOT_TEXT_VECTORS)
        text = word.decode("utf-8", "surrogateescape")
        targets = matcher.targets(text)
        if targets or first:  # the first row is always parsed: a file of words and no numbers stops there
            try:
                vector = np.array(values.split(b" ")).astype(np.float32)
            except ValueError:
                bad = next(v for v in values.split(b" ") if not _is_number(v))
                raise _error(path, where, f"{bad.decode('utf-8', 'replace')[:40]!r} is not a number",
                             _NOT_TEXT_VECTORS) from None
            if first:
                _check_dim(path, dim, want_dim)
            matcher.take(text, targets, _finite(vector, path, where))
        rows += 1
    if not dim:
        raise _error(path, "line 1", "no vectors in the file", "pass a GloVe, word2vec or fastText file")
    if announced is not None and rows != announced:
        raise _error(path, f"line {line_no}", f"the file ends after {rows:,} rows where its header (line 1) announces "
                     f"{announced:,}", "the file is truncated or its header is wrong: download it again")
    if not rows:  # a header announcing no rows, and none: no row checked the dimension
        _check_dim(path, dim, want_dim)
    return announced is not None, dim, rows


def _read_binary(stream: IO[bytes], path: Path, matcher: _Matcher, want_dim: Optional[int]) -> tuple[int, int]:
    """(dimension, rows) of a binary word2vec file; the matcher takes the rows it wants."""
    header = stream.readline(200)
    fields = header.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields) or int(fields[1]) < 1:
        raise _error(path, "line 1", f"expected the binary word2vec header 'COUNT DIM', got "
                     f"{header[:40].decode('utf-8', 'replace').strip()!r}",
                     "a .bin file must be word2vec's binary format (rename a text file to .txt or .vec)")
    count, dim = int(fields[0]), int(fields[1])
    _check_dim(path, dim, want_dim)
    size = 4 * dim
    buf, pos = b"", 0
    for entry in range(1, count + 1):
        where = f"entry {entry} of {count:,}"
        while True:
            while pos < len(buf) and buf[pos] == 0x0A:  # word2vec.c ends each vector with a newline
                pos += 1
            cut = buf.find(b" ", pos)
            if cut - pos > _MAX_WORD or (cut == -1 and len(buf) - pos > _MAX_WORD):
                raise _error(path, where, f"no word of at most {_MAX_WORD:,} bytes", "this is not a binary word2vec "
                             "file (a text file must end in .txt or .vec)")
            if cut != -1 and len(buf) - cut - 1 >= size:
                break
            more = stream.read(_CHUNK)
            if not more:
                raise _error(path, where, "the file ends inside it",
                             "the file is truncated or its header is wrong: download it again")
            buf, pos = buf[pos:] + more, 0
        raw = buf[cut + 1: cut + 1 + size]
        if entry == 1 and set(raw) <= _TEXT_BYTES:
            raise _error(path, "line 2", "the vector is text, not float32 bytes",
                         "this is a text vectors file: rename it to .txt or .vec")
        text = buf[pos:cut].decode("utf-8", "surrogateescape")
        targets = matcher.targets(text)
        if targets:
            matcher.take(text, targets, _finite(np.frombuffer(raw, dtype="<f4").astype(np.float32), path, where))
        pos = cut + 1 + size
    rest = buf[pos:]
    while not rest.strip():
        rest = stream.read(_CHUNK)
        if not rest:
            break
    if rest.strip():
        raise _error(path, f"after entry {count:,}", f"more data than the {count:,} entries its header announces",
                     "the header is wrong, or the file is text (rename it to .txt or .vec)")
    return dim, count


# --- matching -------------------------------------------------------------------------------

class _Matcher:
    """Which requested words a row's word gives its vector to, and the vectors taken so far.

    A word's exact row wins over a row equal to it ignoring case, whichever comes first; among
    the latter the file's first wins (files list frequent words first)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.exact: dict[str, int] = {}
        self.folded: dict[str, list[int]] = {}
        for i, w in enumerate(words):
            if not w:
                continue
            if w in self.exact:
                raise ValueError(f"word {w!r} is listed twice")
            self.exact[w] = i
            self.folded.setdefault(w.lower(), []).append(i)
        self.found = np.zeros(len(words), dtype=bool)
        self.exact_found = np.zeros(len(words), dtype=bool)
        self.rows: dict[int, np.ndarray] = {}

    def targets(self, word: str) -> list[int]:
        """Indices of the words this row's vector goes to (usually none)."""
        i = self.exact.get(word)
        out = [i] if i is not None and not self.exact_found[i] else []
        out += [j for j in self.folded.get(word.lower(), ()) if j != i and not self.found[j]]
        return out

    def take(self, word: str, targets: list[int], vector: np.ndarray) -> None:
        for i in targets:
            self.rows[i] = vector
            self.found[i] = True
        i = self.exact.get(word)
        if i is not None:
            self.exact_found[i] = True

    @property
    def by_case(self) -> int:
        return int(self.found.sum() - self.exact_found.sum())

    def vectors(self, dim: int) -> np.ndarray:
        out = np.zeros((len(self.found), dim), dtype=np.float32)
        for i, v in self.rows.items():
            out[i] = v
        return out
