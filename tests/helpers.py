"""Helpers shared by the tests: the real CLI in a subprocess, a real HTTP server on 127.0.0.1,
small archives in the official layout, a training run interrupted by a signal, and small models
beside torch's fused RNN modules."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch
import yaml
from torch import nn

from imdb_rnn.config import ModelConfig
from imdb_rnn.data.sources import Review
from imdb_rnn.model import RNNClassifier

ROOT = Path(__file__).resolve().parents[1]


def default_sigint() -> None:
    """A Popen preexec_fn: SIGINT at its default in the child. A shell's background job starts with
    SIGINT ignored, and a Python started so never raises KeyboardInterrupt: a Ctrl-C test must not
    depend on how the test run was launched."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def run(*args: object):
    """The CLI in this process (typer's CliRunner): a Result with exit_code, stdout and stderr."""
    from typer.testing import CliRunner

    from imdb_rnn.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, *phrases: str) -> None:
    """Exit status 2 and one line on stderr, 'error: ...', holding each of `phrases`; no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


TINY = {
    "data": {"source": "aclImdb_v1.tar.gz"},
    "preprocess": {"pos_prefixes": ["NN"], "max_len": 64},
    "model": {"cell": "gru", "embedding_dim": 16, "hidden_size": 8, "num_layers": 1},
    "train": {"epochs": 2, "batch_size": 32, "val_fraction": 0.1, "device": "cpu"},
}


def write_tarball(reviews: list[Review], dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    """An archive in the official layout (aclImdb/{split}/{pos,neg}/{id}.txt)."""
    with tarfile.open(dest, "w:gz") as tf:
        for name, data in {"aclImdb/README": b"subset for tests\n", **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for r in reviews:
            data = r.text.encode("utf-8")
            info = tarfile.TarInfo(f"aclImdb/{r.id}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]


def start_and_signal(config: Path, data: Path, run_dir: Path, sig: int) -> subprocess.CompletedProcess:
    """Start a training subprocess and send it `sig` once its first model-last.pt exists."""
    proc = subprocess.Popen([sys.executable, "-m", "imdb_rnn", "train", "--config", str(config), "--data-dir", str(data),
                             "--run-dir", str(run_dir), "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "model-last.pt").exists():
        time.sleep(0.005)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_same_run(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv")[COLUMNS], pd.read_csv(b / "metrics.csv")[COLUMNS])
    wa = torch.load(a / "model-last.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "model-last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


TORCH_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def reference_and_ours(cell, layers, bidirectional, last_step):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, embedding_dim=5, hidden_size=4, num_layers=layers, bidirectional=bidirectional,
                      last_step=last_step, init_hidden="zeros")
    ours = RNNClassifier(11, cfg).double().eval()
    ref = TORCH_CELLS[cell](5, 4, num_layers=layers, bidirectional=bidirectional, batch_first=True).double()
    # Copy the fused module's weights into our per-direction modules.
    for layer, directions in enumerate(ours.encoder.layers):
        for d, module in enumerate(directions):
            suffix = "_reverse" if d else ""
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(module, f"{name}_l0").data.copy_(getattr(ref, f"{name}_l{layer}{suffix}").data)
    return ref, ours


def batch(lengths, width=9):
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(2, 11, (n,))
    return ids, torch.tensor(lengths)
