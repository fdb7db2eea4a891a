"""Files: written so that a crash never leaves one that looks complete, and hashed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from imdb_rnn.errors import UserError


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create directory {path}: {e.strerror}; choose a writable location") from e
    return path


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds.
    Otherwise the directories it made for `dest` are removed again (those still empty), so a
    failed first download leaves no empty data directory."""
    dest = Path(dest)
    made = _make_dirs(dest.parent)
    # Not mkstemp: its files are mode 0600 whatever the umask, and the rename would keep that.
    tmp_path = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp_path.touch(exist_ok=False)
    except OSError as e:
        _remove_empty(made)
        raise UserError(f"cannot write in {dest.parent}: {e.strerror}; choose a writable location") from e
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        _remove_empty(made)
        raise UserError(f"cannot write {dest}: {e.strerror}; check free space and permissions") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        _remove_empty(made)
        raise


def _make_dirs(path: Path) -> list[Path]:
    """Create `path` and its missing ancestors, one level at a time; returns the directories this
    call made (not those another process made meanwhile), deepest first. Raises UserError when
    one cannot be made."""
    missing = []
    while path.parent != path:
        try:
            if path.is_dir():
                break
        except OSError:  # cannot look inside its parent: the mkdir below names the problem
            break
        missing.append(path)
        path = path.parent
    made: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # made by another writer meanwhile (or a file: the next step says so)
            continue
        except OSError as e:
            _remove_empty(made[::-1])
            raise UserError(f"cannot create directory {missing[0]}: {e.strerror}; choose a writable location") from e
        made.append(d)
    return made[::-1]


def _remove_empty(dirs: list[Path]) -> None:
    """Remove `dirs` (deepest first) while they are empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty (another writer's files), or already gone
            return


@contextlib.contextmanager
def atomic_dir(dest: Path, marker: str, owned: Callable[[str], bool] = lambda name: True) -> Iterator[Path]:
    """Yield a new temporary directory beside `dest`; when the block succeeds, it replaces `dest`.

    An existing `dest` is replaced only if it holds `marker` (a file the same writer made) and
    nothing whose name `owned` rejects, so no folder of anything else, and no file a user put
    beside an earlier export, is ever deleted: UserError then, as for an unwritable location.
    Between the two renames `dest` is briefly absent, never half-written.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} is a file; choose a directory for --out")
    if dest.exists() and not (dest / marker).is_file() and any(dest.iterdir()):
        raise UserError(f"{dest} exists and is not an earlier export (no {marker} in it); choose another --out, "
                        "or remove it")
    foreign = sorted(p.name for p in dest.iterdir() if not owned(p.name)) if dest.exists() else []
    if foreign:
        raise UserError(f"{dest} holds an earlier export and files that are not its ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}), which replacing it would delete; move them, "
                        "or choose another --out")
    ensure_dir(dest.parent)
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp = dest.parent / f".{dest.name}.{tag}.tmp"
    try:
        tmp.mkdir()
    except OSError as e:
        raise UserError(f"cannot write in {dest.parent}: {e.strerror}; choose a writable location") from e
    old = dest.parent / f".{dest.name}.{tag}.old"
    try:
        yield tmp
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        if not dest.exists() and old.exists():  # the second rename failed: put the earlier export back
            os.replace(old, dest)
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write {dest}: {e.strerror}; check free space and permissions") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(dest: Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(dest: Path, obj: Any) -> None:
    write_text(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in `chunk`-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
