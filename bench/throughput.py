"""Training throughput: last_step=as_packed vs pack_padded_sequence vs the tutorial's loop, on the same
reviews and model size; then the real train command on 1 and 2 processes (torchrun, gloo).

    NLTK_DATA=../shared/nltk_data .venv/bin/python bench/throughput.py --config configs/best.yaml --data-dir data

Tokens/s counts real (unpadded) tokens through forward, backward and an Adam step. The three loops
run one after another in this process, so their ratios share the machine's state; the scaling
rows run `imdb-rnn train` for one epoch of configs/quick.yaml and read tokens/s from metrics.csv.
"""

from __future__ import annotations

import argparse
import os
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

from common import print_table, write_json  # noqa: E402
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


def tokens_per_second(model: nn.Module, data, batches: list[np.ndarray], dynamic_padding: bool, device: torch.device,
                      budget: float) -> tuple[float, int]:
    """Train on `batches` until `budget` seconds pass; (real tokens/s, batches run)."""
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as train uses
    loss_fn = nn.CrossEntropyLoss()
    for index in batches[:2]:  # warm-up: allocator, kernels
        ids, lengths, labels = make_batch(data, index, dynamic_padding, "right", device)
        loss_fn(model(ids, lengths).total, labels).backward()
    tokens, done, start = 0, 0, time.perf_counter()
    for index in batches[2:]:
        ids, lengths, labels = make_batch(data, index, dynamic_padding, "right", device)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(ids, lengths).total, labels).backward()
        opt.step()
        tokens += int(lengths.sum())
        done += 1
        if time.perf_counter() - start > budget:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start), done


def loop_rows(args, device: torch.device) -> list[dict]:
    cfg = load_config(args.config, args.overrides)
    try:  # artifacts made with this config are enough (a GPU machine may have no archive)
        processed = load_artifacts(cfg, args.data_dir)
    except UserError:
        preprocess(cfg, args.data_dir)
        processed = load_artifacts(cfg, args.data_dir)
    full = processed.split("train")
    data = full.subset(np.sort(np.random.default_rng(0).permutation(len(full))[: args.reviews]))
    mcfg = cfg.model.model_copy(update=dict(readout="last", ngram_buckets=0, last_step="as_packed", init_hidden="zeros",
                                            embedding_dropout=0.0, layer_dropout=0.0, output_dropout=0.0))
    vocab = len(processed.vocab)
    batch = cfg.train.batch_size
    bucketed = BatchSampler(data.lengths, batch, 0, bucket=50).global_batches()
    plain_batches = BatchSampler(data.lengths, 16, 0).global_batches()
    size = f"{mcfg.cell} {'bi' if mcfg.bidirectional else 'uni'} {mcfg.num_layers}x{mcfg.hidden_size}, emb {mcfg.embedding_dim}"
    loops = [
        ("tutorial loop: pad to max, batch 16, out[:, -1]", FusedClassifier(vocab, mcfg, packed=False), plain_batches,
         False),
        (f"packed: pack_padded_sequence, batch {batch}, bucketed", FusedClassifier(vocab, mcfg, packed=True), bucketed, True),
        (f"as_packed (imdb-rnn), batch {batch}, bucketed", RNNClassifier(vocab, mcfg), bucketed, True),
        ("as_packed (imdb-rnn), batch 16, no bucketing", RNNClassifier(vocab, mcfg), plain_batches, True),
    ]
    rows = []
    for name, model, batches, dynamic_padding in loops:
        torch.manual_seed(0)
        rate, done = tokens_per_second(model, data, batches, dynamic_padding, device, args.seconds)
        rows.append({"loop": name, "model": size, "width": data.ids.shape[1], "batches": done, "tokens_per_s": rate})
        print(f"  {name}: {rate:,.0f} tokens/s", flush=True)
    as_packed = rows[2]["tokens_per_s"]
    for row in rows:
        row["as_packed_vs_this"] = as_packed / row["tokens_per_s"]
    return rows


def scaling_rows(args) -> list[dict]:
    """One epoch of configs/quick.yaml with `imdb-rnn train`, then with torchrun on 2 processes."""
    quick = load_config(ROOT / "configs" / "quick.yaml")
    preprocess(quick, args.data_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, 2):
            run = Path(tmp) / f"p{nproc}"
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                        "-m", "imdb_rnn"] if nproc > 1 else [sys.executable, "-m", "imdb_rnn"]
            env = {**os.environ, **({"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // nproc))}
                                    if nproc > 1 else {})}
            subprocess.run([*launcher, "train", "--config", str(ROOT / "configs" / "quick.yaml"), "--data-dir",
                            str(args.data_dir), "--run-dir", str(run), "-q", "train.epochs=1", "train.val_fraction=0",
                            "train.device=cpu"], check=True, env=env)
            m = pd.read_csv(run / "metrics.csv").iloc[0]
            rows.append({"processes": nproc, "epoch_seconds": float(m["seconds"]), "tokens_per_s": float(m["tokens_per_s"])})
    for row in rows:
        row["vs_1_process"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "best.yaml", help="data and model size")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--reviews", type=int, default=3000, help="training reviews the loops draw from")
    ap.add_argument("--seconds", type=float, default=20.0, help="time budget of each loop")
    ap.add_argument("overrides", nargs="*", metavar="section.key=value",
                    help="config overrides, e.g. preprocess.max_len=400 (the tutorial pads to the longest review)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1 vs 2 process rows")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = ap.parse_args()

    device = torch.device(args.device)
    print(f"training loops on {device}:")
    loops = loop_rows(args, device)
    print_table(loops, ["loop", "model", "width", "batches", "tokens_per_s", "as_packed_vs_this"])
    scaling = [] if args.no_scaling else scaling_rows(args)
    if scaling:
        print("\nimdb-rnn train, one epoch of configs/quick.yaml, CPU:")
        print_table(scaling, ["processes", "epoch_seconds", "tokens_per_s", "vs_1_process"])
    write_json(args.json, {"config": str(args.config), "overrides": args.overrides, "device": str(device), "loops": loops, "scaling": scaling})


if __name__ == "__main__":
    main()
