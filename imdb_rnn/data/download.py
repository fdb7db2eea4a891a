"""Fetch the IMDB archive or its Hugging Face Parquet files (checksum-verified, atomic) and the NLTK
resources preprocessing needs."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from xml.etree import ElementTree
from typing import Callable, Optional

from imdb_rnn.data.nltk_data import ResourceProblem, describe_corrupt, import_nltk, missing_nltk_resources
from imdb_rnn.files import atomic_path, sha256_file
from imdb_rnn.errors import UserError, one_line

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
IMDB_FILENAME = "aclImdb_v1.tar.gz"

# stanfordnlp/imdb on the Hugging Face Hub, at a pinned revision so that the checksums hold.
HF_IMDB_REVISION = "e6281661ce1c48d982bc483cf8a173c1bbeb5d31"
HF_IMDB_URL = f"https://huggingface.co/datasets/stanfordnlp/imdb/resolve/{HF_IMDB_REVISION}"
HF_IMDB_DIR = "imdb-hf"  # under the data directory: point data.source at it
# split -> (path under the base URL and under DATA_DIR/imdb-hf, sha256 at HF_IMDB_REVISION)
HF_IMDB_FILES = {
    "train": ("plain_text/train-00000-of-00001.parquet",
              "db47d16b5c297cc0dd625e519c81319c24c9149e70e8496de5475f6fa928342c"),
    "test": ("plain_text/test-00000-of-00001.parquet",
             "b52e26e2f872d282ffac460bf9770b25ac6f102cda0e6ca7158df98c94e8b3da"),
    "unsupervised": ("plain_text/unsupervised-00000-of-00001.parquet",
                     "74d14fbfcbb39fb7d299c38ca9f0ae6d231bf97108da85d620027ba437b6d52e"),
}

CHUNK = 1 << 20


def _open_source(source: str, timeout: float, url_option: str = "--url"):
    """Open a URL (http, https, file) or a local path for reading bytes; messages name
    `url_option`, the CLI option that sets another location."""
    scheme = urllib.parse.urlparse(source).scheme
    if scheme in ("http", "https", "file"):
        try:
            return urllib.request.urlopen(source, timeout=timeout)  # noqa: S310 - scheme checked above
        except urllib.error.HTTPError as e:
            raise UserError(f"download of {source} failed: HTTP {e.code} {e.reason}; check the URL or pass {url_option} with a mirror") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(f"cannot reach {source}: {reason}; check the network or pass {url_option} with a local copy") from e
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"source {source} is neither a URL nor an existing file; pass an http(s) URL or a path")
    return open(path, "rb")


def fetch(
    source: str,
    dest: Path,
    sha256: Optional[str],
    timeout: float = 60.0,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    checksum_option: str = "--sha256",
    url_option: str = "--url",
) -> Path:
    """Stream `source` into `dest` via a temporary file; keep it only if the checksum matches
    (a mismatch names `checksum_option`, the CLI option that sets another checksum)."""
    with _open_source(source, timeout, url_option) as response, atomic_path(dest) as tmp:
        total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
        total = int(total) if total and total.isdigit() else None
        h = hashlib.sha256()
        done = 0
        with open(tmp, "wb") as out:
            while True:
                try:
                    block = response.read(CHUNK)
                except OSError as e:
                    raise UserError(f"download of {source} broke off after {done} bytes: {e}; run the command again") from e
                if not block:
                    break
                h.update(block)
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise UserError(f"download of {source} ended after {done} of {total} bytes; run the command again")
        digest = h.hexdigest()
        if sha256 and digest != sha256.lower():
            raise UserError(
                f"checksum mismatch for {source}: got sha256 {digest}, expected {sha256}; "
                f"the file is corrupt or a different copy (pass {checksum_option} for a trusted mirror)"
            )
    return dest


def download_imdb(
    data_dir: Path,
    url: str = IMDB_URL,
    sha256: Optional[str] = IMDB_SHA256,
    force: bool = False,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> tuple[Path, bool]:
    """Ensure `data_dir/aclImdb_v1.tar.gz` exists and matches `sha256`. Returns (path, fetched)."""
    dest = Path(data_dir) / IMDB_FILENAME
    return dest, _ensure(url, dest, sha256, force, progress)


def _ensure(source: str, dest: Path, sha256: Optional[str], force: bool,
            progress: Optional[Callable[[int, Optional[int]], None]], checksum_option: str = "--sha256",
            url_option: str = "--url") -> bool:
    """Keep `dest` if present and matching `sha256` (any copy when None) unless `force`, else
    fetch `source` over it; True when fetched. A present copy whose checksum differs stays as it
    was if the fetch fails, and the error says so first: the network is not the first suspect."""
    present = sha256_file(dest) if dest.is_file() and not force else None
    if present is not None and (sha256 is None or present == sha256.lower()):
        return False
    try:
        fetch(source, dest, sha256, progress=progress, checksum_option=checksum_option, url_option=url_option)
    except UserError as e:
        if present is None:
            raise
        raise UserError(f"{dest} is present but its sha256 {present} is not the expected {sha256} (a re-packed or "
                        f"damaged copy; pass {checksum_option} with its sha256 if you trust it), and fetching a fresh "
                        f"copy failed: {e}") from e
    return True


def parse_hf_sha256(items: list[str]) -> dict[str, str]:
    """The sha256 of each Hugging Face split: the pinned ones, replaced by `SPLIT=HEX` items.
    Raises UserError for an unknown split or a malformed checksum."""
    sums = {split: sha for split, (_, sha) in HF_IMDB_FILES.items()}
    for item in items:
        split, _, digest = item.partition("=")
        split, digest = split.strip(), digest.strip()
        if split not in HF_IMDB_FILES:
            raise UserError(f"--hf-sha256 '{item}' names no split; write SPLIT=HEX with SPLIT one of "
                            f"{', '.join(HF_IMDB_FILES)}")
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise UserError(f"--hf-sha256 {split}= must be 64 hexadecimal digits, got '{digest}'")
        sums[split] = digest.lower()
    return sums


def _join(base: str, rel: str) -> str:
    if urllib.parse.urlparse(base).scheme in ("http", "https", "file"):
        return f"{base.rstrip('/')}/{rel}"
    return str(Path(base).expanduser() / rel)


def download_hf_split(
    data_dir: Path,
    split: str,
    base_url: str = HF_IMDB_URL,
    sha256: Optional[str] = None,
    force: bool = False,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> tuple[Path, bool]:
    """Ensure `data_dir/imdb-hf/<path>` of one split of stanfordnlp/imdb (HF_IMDB_FILES) exists and
    matches `sha256` (default: the pinned one), fetching BASE_URL/<path> (a URL, or a local folder
    of the same layout) when not. Returns (path, fetched).

    Raises UserError when the download fails or the checksum differs; the file is then absent.
    """
    rel, pinned = HF_IMDB_FILES[split]
    sha256 = sha256 or pinned
    dest = Path(data_dir) / HF_IMDB_DIR / rel
    return dest, _ensure(_join(base_url, rel), dest, sha256, force, progress, f"--hf-sha256 {split}=HEX", "--hf-url")


def download_hf_imdb(
    data_dir: Path,
    base_url: str = HF_IMDB_URL,
    sha256s: Optional[dict[str, str]] = None,
    force: bool = False,
) -> list[tuple[Path, bool]]:
    """`download_hf_split` for train, test and unsupervised: afterwards `data.source: imdb-hf`
    reads them. Each file is complete or absent. Returns (path, fetched) per split."""
    sha256s = sha256s or {}
    return [download_hf_split(data_dir, split, base_url, sha256s.get(split), force) for split in HF_IMDB_FILES]


def _remove_corrupt(problem: ResourceProblem) -> None:
    """Delete the one file NLTK found corrupt: NLTK would keep finding it before a fresh copy
    that the downloader puts in another directory of its path. Raises UserError when the file is
    unknown or cannot be removed."""
    fix = "or set NLTK_DATA to a directory that holds a good copy"
    if problem.path is None or not problem.path.is_file():
        raise UserError(f"{describe_corrupt(problem)}; delete the damaged file by hand and run 'imdb-rnn download' "
                        f"again, {fix}")
    try:
        problem.path.unlink()
    except OSError as e:
        raise UserError(f"{describe_corrupt(problem)} and cannot be removed ({e.strerror or e}); delete it by hand, "
                        f"{fix}") from e


def ensure_nltk_resources(download_dir: Optional[Path] = None) -> list[str]:
    """Download the NLTK resources that are missing or corrupt (only those; a corrupt file is
    deleted first). Returns the names fetched.

    Raises UserError when a corrupt file cannot be removed, a download fails (no network), or a
    resource is still unusable afterwards.
    """
    nltk = import_nltk()

    problems = missing_nltk_resources()
    for problem in problems:
        if problem.corrupt:
            _remove_corrupt(problem)
        try:
            # Quiet, and its errors (several lines, on stderr) captured: ours is the one line below.
            ok = nltk.download(problem.name, download_dir=str(download_dir) if download_dir else None, quiet=True,
                               raise_on_error=True, print_error_to=io.StringIO())
            reason = ""
        except (ValueError, OSError, ElementTree.ParseError) as e:  # no network, an HTTP error, a bad index
            ok, reason = False, one_line(e, 300)
        if not ok:
            raise UserError(f"could not download NLTK resource '{problem.name}'{f' ({reason})' if reason else ''}; "
                            "check the network or set NLTK_DATA to a directory that has it")
    left = missing_nltk_resources()
    if left:
        # The downloader judged a package installed that we still cannot read.
        names = ", ".join(p.name for p in left)
        raise UserError(f"NLTK resource(s) {names} still missing or unreadable after downloading; "
                        "set NLTK_DATA to a directory that holds a good copy")
    return [p.name for p in problems]
