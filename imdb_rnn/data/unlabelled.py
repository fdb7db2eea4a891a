"""Read the unlabelled reviews of the IMDB archive (train/unsup/, 50,000 reviews), from the
tarball or an extracted aclImdb/ directory. Only train/unsup/ is read: no test review can enter."""

from __future__ import annotations

import re
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

from imdb_rnn.data.sources import _decode, _dir_root, detect_format
from imdb_rnn.errors import UserError

_UNSUP = re.compile(r"^(?:\./)?(?:[^/]+/)?train/unsup/([0-9]+_[0-9]+)\.txt$")


def iter_unlabelled(path: Path) -> Iterator[tuple[str, str]]:
    """(id "train/unsup/ID_0", text) of each unlabelled review of the archive or directory `path`,
    in storage order. Raises UserError for a source without unlabelled reviews or a corrupt one."""
    fmt = detect_format(path)
    found = 0
    if fmt == "tar":
        try:
            with tarfile.open(path, "r:*") as tf:
                for member in tf:
                    m = _UNSUP.match(member.name)
                    if not m or not member.isfile():
                        continue
                    f = tf.extractfile(member)
                    if f is not None:
                        found += 1
                        rid = f"train/unsup/{m.group(1)}"
                        yield rid, _decode(f.read(), f"review {rid} in {path}")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise UserError(f"archive {path} is truncated or corrupt ({e}); download it again with "
                            "'imdb-rnn download --force'") from e
    elif fmt == "dir":
        folder = _dir_root(path) / "train" / "unsup"
        files = sorted(f for f in folder.glob("*.txt") if f.is_file() and not f.is_symlink()) if folder.is_dir() else []
        for f in files:
            found += 1
            rid = f"train/unsup/{f.stem}"
            yield rid, _decode(f.read_bytes(), f"review {rid} in {path}")
    if not found:
        raise UserError(f"source {path} holds no unlabelled reviews (train/unsup/); use the IMDB archive, or set "
                        "pretrain.unlabelled=false to pretrain on the training reviews alone")
