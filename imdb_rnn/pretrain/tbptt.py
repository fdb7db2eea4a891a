"""Truncated backpropagation through time over a token stream (Williams & Peng 1990; the batching
of Zaremba et al. 2014 and AWD-LSTM's `batchify`).

The stream is cut into `rows` contiguous slices, one per batch row, read in order in chunks of
`bptt` steps. Each row's hidden state carries from one chunk to the next, detached: gradients
flow back at most `bptt` steps, while the state still remembers what came before.
"""

from __future__ import annotations

from typing import Iterator, Union

import numpy as np
import torch

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor], None]


def batchify(stream: np.ndarray, rows: int) -> torch.Tensor:
    """`(rows, N // rows)` int64: row r holds the r-th contiguous slice of `stream` (the tail
    that does not fill a row is dropped)."""
    width = len(stream) // rows
    if width < 2:
        raise ValueError(f"a stream of {len(stream)} tokens is too short for {rows} rows")
    return torch.from_numpy(np.ascontiguousarray(stream[: rows * width]).reshape(rows, width).astype(np.int64))


def chunk_starts(width: int, bptt: int) -> list[int]:
    """Start columns of the chunks of a `(rows, width)` batchified stream: inputs are columns
    `[s, s + L)`, targets `[s + 1, s + L + 1)`, L = min(bptt, width - 1 - s)."""
    return list(range(0, width - 1, bptt))


def chunk(data: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs `(B, L)`, targets `(B, L)`): targets are the inputs shifted one step ahead."""
    length = min(bptt, data.size(1) - 1 - start)
    return data[:, start : start + length], data[:, start + 1 : start + 1 + length]


def detach(state: State) -> State:
    """The state with its history cut: the next chunk's backward pass stops here."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


def iter_chunks(data: torch.Tensor, bptt: int, first: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(chunk index, inputs, targets) from chunk `first` on."""
    for i, start in enumerate(chunk_starts(data.size(1), bptt)):
        if i >= first:
            yield (i, *chunk(data, start, bptt))
