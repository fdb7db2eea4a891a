"""Language-model throughput by output layer: adaptive, sampled (at several sample counts) and
full softmax, side by side on the same model and chunks.

    .venv/bin/python bench/lm_output.py --config configs/pretrain.yaml [section.key=value ...]

The model is the config's `LanguageModel` (embedding, recurrent layers, both directions for a
bidirectional model) at `pretrain.batch_size` rows x `pretrain.bptt` steps, over a vocabulary of
`preprocess.max_vocab` words; the tokens are drawn from a Zipf distribution (frequency ~ 1/rank,
as the frequency-sorted vocabulary's roughly is), not read from the corpus. Each step is a
forward pass, a backward pass and an Adam step. After one warm-up step each, the output layers
take turns step by step (`--repeats` rounds), so that a change in the machine's state touches them
all alike; the table gives the median tokens/s (predicted tokens, both directions) and the ratio
to the adaptive softmax's median. `--full` adds the full softmax (slow on CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import print_table, write_json  # noqa: E402
from imdb_rnn.config import load_config  # noqa: E402
from imdb_rnn.pretrain.model import LanguageModel, configure_optimizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "pretrain.yaml")
    ap.add_argument("overrides", nargs="*", help="section.key=value, as everywhere")
    ap.add_argument("--samples", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--full", action="store_true", help="also the full softmax")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "lm_output.json")
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    p = cfg.pretrain
    if p is None:
        sys.exit(f"{args.config} has no pretrain section")
    vocab = cfg.preprocess.max_vocab or 40000
    rank_p = 1.0 / np.arange(1, vocab + 1)
    rng = np.random.default_rng(0)
    stream = torch.from_numpy(rng.choice(vocab, size=(p.batch_size, p.bptt + 1), p=rank_p / rank_p.sum()))
    inputs, targets = stream[:, :-1], stream[:, 1:]
    kinds = [("adaptive", {"softmax": "adaptive"})] + \
        [(f"sampled {k}", {"softmax": "sampled", "samples": k}) for k in args.samples] + \
        ([("full", {"softmax": "full"})] if args.full else [])
    setups = []
    for name, update in kinds:
        torch.manual_seed(0)
        model = LanguageModel(vocab, cfg.model, p.model_copy(update=update))
        setups.append((name, model, configure_optimizer(model, p.lr, p.weight_decay)))
    directions = setups[0][1].directions
    tokens = directions * targets.numel()

    def step(model, optimizer) -> float:
        start = time.perf_counter()
        losses, _ = model([inputs] * directions, [targets] * directions, model.initial_state())
        optimizer.zero_grad(set_to_none=True)
        (sum(losses) / tokens).backward()
        optimizer.step()
        return time.perf_counter() - start

    for _, model, optimizer in setups:  # warm-up
        step(model, optimizer)
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in setups}
    for _ in range(args.repeats):
        for name, model, optimizer in setups:
            seconds[name].append(step(model, optimizer))
    base = float(np.median(seconds["adaptive"]))
    rows = [{"output layer": name, "tokens_per_s": round(tokens / float(np.median(seconds[name]))),
             "min": round(tokens / max(seconds[name])), "max": round(tokens / min(seconds[name])),
             "vs adaptive": round(base / float(np.median(seconds[name])), 2),
             "parameters": sum(t.numel() for t in model.parameters())}
            for name, model, _ in setups]
    print(f"{cfg.model.cell} {cfg.model.embedding_dim}/{cfg.model.hidden_size}, {directions} direction(s), vocabulary "
          f"{vocab:,}, {p.batch_size} rows x {p.bptt} steps, {torch.get_num_threads()} threads, median of {args.repeats}")
    print_table(rows, list(rows[0]))
    write_json(args.json, {"config": str(args.config), "overrides": args.overrides, "vocab": vocab,
                           "rows_x_bptt": [p.batch_size, p.bptt], "repeats": args.repeats, "results": rows})


if __name__ == "__main__":
    main()
