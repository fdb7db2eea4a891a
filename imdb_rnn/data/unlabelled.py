"""Read the unlabelled reviews of IMDB (50,000 reviews): train/unsup/ of the tarball or an
extracted aclImdb/ directory, or the unsupervised split of the Hugging Face Parquet folder. Only
those are read: no test review can enter."""

from __future__ import annotations

import re
import tarfile
import zlib
from pathlib import Path
from typing import Iterator, Optional

from imdb_rnn.data.sources import _decode, _dir_root, detect_format
from imdb_rnn.errors import UserError

_UNSUP = re.compile(r"^(?:\./)?(?:[^/]+/)?train/unsup/([0-9]+_[0-9]+)\.txt$")


def iter_unlabelled(path: Path, text_column: Optional[str] = None) -> Iterator[tuple[str, str]]:
    """(id, text) of each unlabelled review of `path`, in storage order: ids "train/unsup/ID_0"
    from the archive or directory, "unsupervised/rowN" from a Hugging Face folder (whose
    `text_column` is read, data.text_column). Raises UserError for a source without unlabelled
    reviews or a corrupt one."""
    fmt = detect_format(path)
    found = 0
    if fmt == "hf":
        from imdb_rnn.data.hf import iter_unlabelled_texts

        for i, text in enumerate(iter_unlabelled_texts(path, text_column)):
            found += 1
            yield f"unsupervised/row{i:06d}", text
    elif fmt == "tar":
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
        raise UserError(f"source {path} holds no unlabelled reviews (train/unsup/ of the IMDB archive, or a Hugging "
                        "Face unsupervised split); use such a source, or set pretrain.unlabelled=false to pretrain "
                        "on the training reviews alone")
