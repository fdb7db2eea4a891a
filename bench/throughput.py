"""Training throughput: last_step=as_packed vs pack_padded_sequence vs the tutorial's loop, on the same
reviews and model size; then the real train command on 1 and 2 processes (torchrun, gloo), and
two train commands side by side.

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/throughput.py --config configs/best.yaml --data-dir data

Tokens/s counts real (unpadded) tokens through forward, backward and an Adam step. Every loop
trains whole epochs of the same seeded sample of training reviews (`--reviews`; a random sample
keeps the length distribution), each cut into batches its own way: one epoch of warm-up, then
`--repeats` timed epochs, the loops taking turns epoch by epoch so that a change in the machine's
state touches them all alike. Each loop reports min / median / max tokens/s over its epochs, and
ratios of medians. The `imdb-rnn train` row trains the loops' model (SAME_MODEL: last-step
readout, no dropout, no n-gram branch or NBSVM) for one epoch of `--reviews` reviews drawn with
data.limit (another sample of the same length distribution) and reads tokens/s from metrics.csv,
so the as_packed loop can be checked against what train logs. The scaling rows run `imdb-rnn train`
for one epoch of a 5,000-review configs/quick.yaml on 1 and 2 processes, and two such commands
started side by side, each setup `--scaling-repeats` times in turns (median tokens/s).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_model, print_table, write_json  # noqa: E402
from imdb_rnn.config import ModelConfig, load_config  # noqa: E402
from imdb_rnn.data.artifacts import load_artifacts  # noqa: E402
from imdb_rnn.data.batches import BatchSampler, make_batch  # noqa: E402
from imdb_rnn.data.preprocess import preprocess  # noqa: E402
from imdb_rnn.errors import UserError  # noqa: E402
from imdb_rnn.model import Logits, RNNClassifier  # noqa: E402

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class FusedClassifier(nn.Module):
    """One fused torch RNN module: `packed` reads h_n of a packed batch, else out[:, -1] (the tutorial)."""

    def __init__(self, vocab: int, cfg: ModelConfig, packed: bool) -> None:
        super().__init__()
        self.packed = packed
        self.embedding = nn.Embedding(vocab, cfg.embedding_dim, padding_idx=0)
        self.rnn = CELLS[cfg.cell](cfg.embedding_dim, cfg.hidden_size, num_layers=cfg.num_layers,
                                   bidirectional=cfg.bidirectional, batch_first=True)
        self.fc = nn.Linear(cfg.hidden_size * (2 if cfg.bidirectional else 1), 2)
        self.directions = 2 if cfg.bidirectional else 1

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> Logits:
        x = self.embedding(ids)
        if not self.packed:
            out = self.fc(self.rnn(x)[0][:, -1, :])
            return Logits(out, out, None)
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        h = self.rnn(packed)[1]
        h = h[0] if isinstance(h, tuple) else h
        out = self.fc(torch.cat(list(h[-self.directions:]), dim=-1))
        return Logits(out, out, None)


class Loop:
    """One way to train: a model and how the sample is cut into batches."""

    def __init__(self, name: str, model: nn.Module, batches: list[np.ndarray], dynamic_padding: bool,
                 device: torch.device) -> None:
        self.name, self.batches, self.dynamic_padding, self.device = name, batches, dynamic_padding, device
        self.model = model.to(device).train()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as train uses
        self.rates: list[float] = []

    def epoch(self, data) -> float:
        """Train one epoch over every batch; real tokens/s."""
        tokens, start = 0, time.perf_counter()
        for index in self.batches:
            ids, lengths, labels = make_batch(data, index, self.dynamic_padding, "right", self.device)
            self.optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(self.model(ids, lengths).total, labels).backward()
            self.optimizer.step()
            tokens += int(lengths.sum())
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return tokens / (time.perf_counter() - start)


def loop_rows(args, device: torch.device) -> list[dict]:
    cfg = load_config(args.config, args.overrides)
    try:  # artifacts made with this config are enough (a GPU machine may have no archive)
        processed = load_artifacts(cfg, args.data_dir)
    except UserError:
        preprocess(cfg, args.data_dir)
        processed = load_artifacts(cfg, args.data_dir)
    data = sample(processed.split("train"), args.reviews)
    mcfg = cfg.model.model_copy(update=dict(readout="last", ngram_buckets=0, last_step="as_packed", init_hidden="zeros",
                                            embedding_dropout=0.0, layer_dropout=0.0, output_dropout=0.0))
    vocab = len(processed.vocab)
    batch = cfg.train.batch_size
    bucketed = BatchSampler(data.lengths, batch, 0, bucket=50).global_batches()
    plain_batches = BatchSampler(data.lengths, 16, 0).global_batches()
    size = f"{mcfg.cell} {'bi' if mcfg.bidirectional else 'uni'} {mcfg.num_layers}x{mcfg.hidden_size}, emb {mcfg.embedding_dim}"
    torch.manual_seed(0)
    loops = [
        Loop("tutorial loop: pad to max, batch 16, out[:, -1]", FusedClassifier(vocab, mcfg, packed=False),
             plain_batches, False, device),
        Loop(f"packed: pack_padded_sequence, batch {batch}, bucketed", FusedClassifier(vocab, mcfg, packed=True),
             bucketed, True, device),
        Loop(f"as_packed (imdb-rnn), batch {batch}, bucketed", RNNClassifier(vocab, mcfg), bucketed, True, device),
        Loop("as_packed (imdb-rnn), batch 16, no bucketing", RNNClassifier(vocab, mcfg), plain_batches, True, device),
    ]
    for repeat in range(args.repeats + 1):  # epoch 0 warms up (allocator, kernels) and is not counted
        rates = [loop.epoch(data) for loop in loops]
        if repeat:
            for loop, rate in zip(loops, rates):
                loop.rates.append(rate)
        print(f"  epoch {repeat}{' (warm-up)' if not repeat else ''}: " + ", ".join(f"{r:,.0f}" for r in rates),
              flush=True)
    rows = [{"loop": loop.name, "model": size, "width": data.ids.shape[1], "batches": len(loop.batches),
             "epochs": len(loop.rates), "tokens_per_s_min": min(loop.rates),
             "tokens_per_s": float(np.median(loop.rates)), "tokens_per_s_max": max(loop.rates)} for loop in loops]
    as_packed = rows[2]["tokens_per_s"]
    for row in rows:
        row["as_packed_vs_this"] = as_packed / row["tokens_per_s"]
    rows.append(train_row(args, data.ids.shape[1]))
    rows[-1]["model"] = size
    return rows


def sample(split, reviews: int):
    """A seeded random sample of `reviews` rows of a split (its length distribution kept)."""
    return split.subset(np.sort(np.random.default_rng(0).permutation(len(split))[:reviews]))


SAME_MODEL = ["model.readout=last", "model.ngram_buckets=0", "model.last_step=as_packed", "model.init_hidden=zeros",
              "model.embedding_dropout=0", "model.layer_dropout=0", "model.output_dropout=0", "nbsvm=null"]


def train_row(args, data_width: int) -> dict:
    """`imdb-rnn train`, one epoch of the loops' model on `--reviews` reviews of the official train
    split (data.limit: another seeded sample, the same length distribution); tokens/s as it logs it."""
    overrides = [*args.overrides, *SAME_MODEL, f"data.limit={args.reviews}", "train.epochs=1",
                 "train.val_fraction=0", "train.patience=null", f"train.device={args.device}"]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        for stage in (["preprocess"], ["train", "--run-dir", str(run)]):
            subprocess.run([sys.executable, "-m", "imdb_rnn", *stage, "--config", str(args.config), "--data-dir",
                            str(args.data_dir), "-q", *overrides], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        rate = float(pd.read_csv(run / "metrics.csv").iloc[0]["tokens_per_s"])
    return {"loop": "imdb-rnn train: as_packed, the same model, one epoch", "width": data_width, "epochs": 1,
            "tokens_per_s": rate}


def scaling_rows(args) -> list[dict]:
    """One epoch of a 5,000-review configs/quick.yaml with `imdb-rnn train`: alone, under torchrun on
    2 processes, and two commands started side by side (each thread count by default, then one
    thread each). Each setup runs `args.scaling_repeats` times, the setups taking turns; a row gives
    a job's median tokens/s (min to max beside it) and its ratio to the median of the job alone."""
    quick = ROOT / "configs" / "quick.yaml"
    overrides = ["data.limit=5000", "train.epochs=1", "train.val_fraction=0", "nbsvm=null", "train.device=cpu"]
    preprocess(load_config(quick, overrides), args.data_dir)
    plain = [sys.executable, "-m", "imdb_rnn"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "imdb_rnn"]
    setups = [("1 process", [(plain, [])]), ("torchrun, 2 processes", [(torchrun, [])]),
              ("2 jobs side by side, default threads", [(plain, []), (plain, [])]),
              ("2 jobs side by side, train.threads=1", [(plain, ["train.threads=1"]), (plain, ["train.threads=1"])])]
    rates: dict[str, list[float]] = {}  # row name -> tokens/s of each repeat
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.scaling_repeats):
            for k, (name, jobs) in enumerate(setups):
                runs = [Path(tmp) / f"{repeat}-{k}-{i}" for i in range(len(jobs))]
                procs = [subprocess.Popen([*launcher, "train", "--config", str(quick), "--data-dir",
                                           str(args.data_dir), "--run-dir", str(run), "-q", *overrides, *extra],
                                          stdout=subprocess.DEVNULL) for (launcher, extra), run in zip(jobs, runs)]
                if any([p.wait() for p in procs]):  # a list: wait for every job before judging
                    sys.exit(f"{name}: a train command failed")
                for i, run in enumerate(runs):
                    row = name + (f", job {i + 1}" if len(runs) > 1 else "")
                    rates.setdefault(row, []).append(float(pd.read_csv(run / "metrics.csv").iloc[0]["tokens_per_s"]))
    alone = float(np.median(rates["1 process"]))
    return [{"setup": row, "repeats": len(r), "tokens_per_s_min": min(r), "tokens_per_s": float(np.median(r)),
             "tokens_per_s_max": max(r), "vs_1_process": float(np.median(r)) / alone} for row, r in rates.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "best.yaml", help="data and model size")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--reviews", type=int, default=500, help="size of the sample of training reviews each loop trains on")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs of each loop (after one of warm-up)")
    ap.add_argument("overrides", nargs="*", metavar="section.key=value",
                    help="config overrides, e.g. preprocess.max_len=400 (the tutorial pads to the longest review)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-scaling", action="store_true", help="skip the process and side-by-side rows")
    ap.add_argument("--scaling-only", action="store_true", help="only the process and side-by-side rows")
    ap.add_argument("--scaling-repeats", type=int, default=3, help="runs of each process / side-by-side setup")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = ap.parse_args()

    device = torch.device(args.device)
    loops = [] if args.scaling_only else loop_rows(args, device)
    if loops:
        print(f"training loops on {device} ({cpu_model() if device.type == 'cpu' else torch.cuda.get_device_name(device)}):")
        print_table(loops, ["loop", "model", "width", "batches", "epochs", "tokens_per_s_min", "tokens_per_s",
                            "tokens_per_s_max", "as_packed_vs_this"])
    scaling = [] if args.no_scaling else scaling_rows(args)
    if scaling:
        print(f"\nimdb-rnn train, one epoch of configs/quick.yaml with data.limit=5000, CPU ({cpu_model()}):")
        print_table(scaling, ["setup", "repeats", "tokens_per_s_min", "tokens_per_s", "tokens_per_s_max", "vs_1_process"])
    write_json(args.json, {"config": str(args.config), "overrides": args.overrides, "device": str(device),
                           "reviews": args.reviews, "repeats": args.repeats, "scaling_repeats": args.scaling_repeats,
                           "loops": loops, "scaling": scaling})


if __name__ == "__main__":
    main()
