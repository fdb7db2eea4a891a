"""Atomic writes (imdb_rnn/files.py): a failed write leaves neither a partial file nor the
folders made for it."""

from __future__ import annotations

import pytest

from imdb_rnn.errors import UserError
from imdb_rnn.files import atomic_path


def test_a_failed_write_removes_the_folders_it_made_and_nothing_else(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    dest = tmp_path / "a" / "b" / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the write broke off")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    # A folder that another writer filled meanwhile stays, with its files.
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            (tmp_path / "a" / "theirs.txt").write_text("y")
            raise RuntimeError("the write broke off")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["theirs.txt"]
    # On success the file is there, whole, and no temporary file is left.
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"whole")
    assert dest.read_bytes() == b"whole" and [p.name for p in dest.parent.iterdir()] == ["out.bin"]


def test_a_temporary_file_that_cannot_be_made_is_one_line_and_leaves_no_folder(tmp_path):
    dest = tmp_path / "new" / ("x" * 250)  # its temporary name, longer still, exceeds the 255 bytes of a name
    with pytest.raises(UserError, match="cannot write in .*new: File name too long"):
        with atomic_path(dest):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_of_a_folder_is_one_line(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(UserError, match=r"cannot create directory .*data/sub: Not a directory; choose a writable"):
        with atomic_path(tmp_path / "data" / "sub" / "out.bin"):
            pass
    assert (tmp_path / "data").read_text() == "not a folder"
