"""Helpers for tests that run the real CLI and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m imdb_rnn ARGS` in a real subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "imdb_rnn", *map(str, args)],
        cwd=cwd or ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"imdb-rnn {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def http_server(directory: Path, fail: dict[str, int] | None = None) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port); paths in `fail` answer with that status."""
    fail = fail or {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path in fail:
                self.send_error(fail[self.path])
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


TINY = {
    "data": {"source": "aclImdb_v1.tar.gz"},
    "preprocess": {"pos_prefixes": ["NN"], "max_len": 64},
    "model": {"cell": "gru", "embedding_dim": 16, "hidden_size": 8, "num_layers": 1},
    "train": {"epochs": 2, "batch_size": 32, "val_fraction": 0.1, "device": "cpu"},
}
