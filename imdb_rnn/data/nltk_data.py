"""The NLTK resources preprocessing needs, and a clear error when they are missing (no network here)."""

from __future__ import annotations

import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional

from imdb_rnn.errors import UserError, one_line

# nltk.download name -> the resource path nltk.data.find looks for.
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "stopwords": "corpora/stopwords/english",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
}


def import_nltk() -> ModuleType:
    """`import nltk`, without the scipy and scikit-learn its package __init__ pulls in for
    collocation statistics, a transition parser and classifier wrappers we never use.

    NLTK guards those imports (they are optional to it), so while they are marked missing it
    loads without them: 0.41 s and 54 MB instead of 1.39 s and 175 MB here, most of what a
    one-review predict costs. Once it is loaded, scipy and scikit-learn import as usual.
    """
    if "nltk" in sys.modules:
        return sys.modules["nltk"]
    blocked = [name for name in ("scipy", "sklearn") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # `import scipy` raises ImportError, which NLTK catches
    try:
        import nltk
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return nltk


# What opening or reading a resource raises when its file is damaged (a truncated or overwritten
# zip, a bad deflate stream, an unreadable file) rather than absent.
CORRUPT_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, LookupError)

# Bytes read from each file of a resource to prove it opens: enough to decompress a first block,
# while reading the tagger's weights in full would add about 30 ms to every predict.
_PROBE_BYTES = 1 << 16


@dataclass(frozen=True)
class ResourceProblem:
    """An NLTK resource preprocessing cannot use: missing, or present but corrupt.

    For a corrupt one, `path` is the file NLTK found and failed to read (None when it cannot be
    told) and `reason` what reading it raised.
    """

    name: str
    corrupt: bool = False
    path: Optional[Path] = None
    reason: str = ""


class _Unreadable(Exception):
    """A file of a resource that NLTK found but that cannot be read: the file and the error."""

    def __init__(self, path: Path, error: BaseException):
        super().__init__(str(error))
        self.path, self.error = path, error


def _probe(pointer: object) -> None:
    """Open each file of a resource NLTK found and read its first bytes. Raises _Unreadable with
    the file (or zip archive) that failed."""
    zip_pointer = getattr(pointer, "zipfile", None)
    if zip_pointer is not None:
        archive = Path(zip_pointer.filename)
        entry = pointer.entry
        try:
            with zipfile.ZipFile(archive) as zf:
                names = [entry]
                if entry.endswith("/"):  # a directory: each file under it
                    names = [n for n in zf.namelist() if n.startswith(entry) and not n.endswith("/")]
                for name in names:
                    with zf.open(name) as f:
                        f.read(_PROBE_BYTES)
        except CORRUPT_ERRORS as e:
            raise _Unreadable(archive, e) from e
        return
    root = Path(str(getattr(pointer, "path", pointer)))
    for file in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]:
        try:
            with open(file, "rb") as f:
                f.read(_PROBE_BYTES)
        except CORRUPT_ERRORS as e:
            raise _Unreadable(file, e) from e


def _corrupt_file(nltk: ModuleType, name: str, resource: str) -> Optional[Path]:
    """The file NLTK's find() fails on for a resource whose archive it cannot open.

    find() raises without naming the file, so search one root at a time: in the first root where
    it fails, the culprit is the root itself (a zip on NLTK's path) or the package's zip there,
    where `nltk.download` installs it (CATEGORY/NAME.zip)."""
    for root in nltk.data.path:
        if not root or not isinstance(root, str):
            continue
        try:
            nltk.data.find(resource, paths=[root])
        except LookupError:
            continue
        except CORRUPT_ERRORS:
            if Path(root).is_file():
                return Path(root)
            package = Path(root) / resource.split("/")[0] / f"{name}.zip"
            return package if package.is_file() else None
    return None


def needed_resources(remove_stopwords: bool = True, tags: bool = True) -> list[str]:
    """The NLTK resources a preprocess config needs: the tokenizer always, the stopword list and
    the tagger only when it removes stopwords or filters by tag."""
    return ["punkt_tab"] + ["stopwords"] * remove_stopwords + ["averaged_perceptron_tagger_eng"] * tags


def missing_nltk_resources(names: Optional[list[str]] = None) -> list[ResourceProblem]:
    """The NLTK resources among `names` (default: all) that are missing, or present but corrupt
    (a file that cannot be opened or read): both are unusable. Raises nothing: problems are returned."""
    nltk = import_nltk()

    problems = []
    for name, resource in NLTK_RESOURCES.items():
        if names is not None and name not in names:
            continue
        try:
            pointer = nltk.data.find(resource)
        except LookupError:
            problems.append(ResourceProblem(name))
            continue
        except CORRUPT_ERRORS as e:
            problems.append(ResourceProblem(name, True, _corrupt_file(nltk, name, resource), one_line(e)))
            continue
        try:
            _probe(pointer)
        except _Unreadable as e:
            problems.append(ResourceProblem(name, True, e.path, one_line(e.error)))
    return problems


def describe_corrupt(problem: ResourceProblem) -> str:
    """`problem` (a corrupt resource) as a phrase: its name, the file and what reading it raised."""
    where = f" at {problem.path}" if problem.path else ""
    return f"NLTK resource {problem.name} is corrupt{where} ({problem.reason})"


def require_nltk_resources(names: Optional[list[str]] = None) -> None:
    """Fail with one line naming what is missing or corrupt among `names` (default: all) and how
    to fix it (no network access here). Raises UserError when a resource is missing or cannot be read."""
    problems = missing_nltk_resources(names)
    missing = ", ".join(p.name for p in problems if not p.corrupt)
    corrupt = [p for p in problems if p.corrupt]
    if corrupt:
        also = f"; also missing: {missing}" if missing else ""
        them = "it" if len(corrupt) == 1 else "them"
        raise UserError(
            f"{'; '.join(map(describe_corrupt, corrupt))}: delete {them} and run 'imdb-rnn download' with a network, "
            f"or set NLTK_DATA to a directory that holds a good copy{also}"
        )
    if missing:
        raise UserError(
            f"NLTK data missing: {missing}; run 'imdb-rnn download' with a network, "
            "or set NLTK_DATA to a directory that holds it"
        )
