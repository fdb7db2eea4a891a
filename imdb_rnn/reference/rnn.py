"""A NumPy RNN equal to `torch.nn.RNN` (tested to 1e-10 in float64), with hand-written backward.

Shapes: N batch, T time steps, D input size, H hidden size.

    h_t = act(h_{t-1} W_h + x_t W_x + b)        act = tanh or relu

`RNNCell` is one step, `TimeRNN` runs T steps (optionally carrying its state across calls, for
truncated backpropagation through time), and `RNN` stacks layers and directions as nn.RNN does.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class RNNCell:
    """One step. W_x (D, H), W_h (H, H), b (H,). Gradients accumulate in dW_x, dW_h, db."""

    def __init__(self, W_x: np.ndarray, W_h: np.ndarray, b: np.ndarray, nonlinearity: str = "tanh") -> None:
        self.W_x, self.W_h, self.b = W_x, W_h, b
        self.nonlinearity = nonlinearity
        self.zero_grad()

    def zero_grad(self) -> None:
        self.dW_x, self.dW_h, self.db = np.zeros_like(self.W_x), np.zeros_like(self.W_h), np.zeros_like(self.b)

    def forward(self, x: np.ndarray, h_prev: np.ndarray) -> tuple[np.ndarray, tuple]:
        """x (N, D), h_prev (N, H) -> h_next (N, H) and the cache backward needs."""
        a = h_prev @ self.W_h + x @ self.W_x + self.b
        h_next = np.tanh(a) if self.nonlinearity == "tanh" else np.maximum(a, 0.0)
        return h_next, (x, h_prev, h_next)

    def backward(self, dh_next: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
        """dh_next (N, H) -> dx (N, D), dh_prev (N, H); adds to dW_x, dW_h, db."""
        x, h_prev, h_next = cache
        if self.nonlinearity == "tanh":
            da = dh_next * (1.0 - h_next**2)
        else:
            da = dh_next * (h_next > 0)
        self.db += da.sum(axis=0)
        self.dW_x += x.T @ da
        self.dW_h += h_prev.T @ da
        return da @ self.W_x.T, da @ self.W_h.T


class TimeRNN:
    """T steps of one cell. With stateful=True the last state carries over to the next forward
    (truncated BPTT: gradients stop at the block boundary, the state does not)."""

    def __init__(self, cell: RNNCell, stateful: bool = False) -> None:
        self.cell = cell
        self.stateful = stateful
        self.h: Optional[np.ndarray] = None
        self.caches: list[tuple] = []

    def reset_state(self) -> None:
        self.h = None

    def forward(self, xs: np.ndarray, h0: Optional[np.ndarray] = None) -> np.ndarray:
        """xs (N, T, D) -> hs (N, T, H)."""
        n, t_steps, _ = xs.shape
        h = h0 if h0 is not None else (self.h if self.stateful and self.h is not None else np.zeros((n, self.cell.W_h.shape[0])))
        hs = np.empty((n, t_steps, self.cell.W_h.shape[0]))
        self.caches = []
        for t in range(t_steps):
            h, cache = self.cell.forward(xs[:, t], h)
            self.caches.append(cache)
            hs[:, t] = h
        self.h = h
        return hs

    def backward(self, dhs: np.ndarray, dh_last: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """dhs (N, T, H) gradient of every output, dh_last extra gradient of the final state ->
        dxs (N, T, D), dh0 (N, H)."""
        n, t_steps, _ = dhs.shape
        dxs = np.empty((n, t_steps, self.cell.W_x.shape[0]))
        dh = np.zeros_like(dhs[:, 0]) if dh_last is None else dh_last.copy()
        for t in reversed(range(t_steps)):
            dxs[:, t], dh = self.cell.backward(dhs[:, t] + dh, self.caches[t])
        return dxs, dh


class RNN:
    """Stacked, optionally bidirectional RNN with nn.RNN's layout (batch_first=True)."""

    def __init__(self, layers: list[list[TimeRNN]]) -> None:
        self.layers = layers  # layers[l][d], d = 0 forward, 1 backward

    @classmethod
    def from_torch(cls, module) -> "RNN":
        """Copy the weights of a torch.nn.RNN (as float64 NumPy arrays)."""
        nonlinearity = module.nonlinearity
        directions = 2 if module.bidirectional else 1
        layers = []
        for layer in range(module.num_layers):
            row = []
            for d in range(directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                get = lambda name: getattr(module, name + sfx).detach().double().numpy()  # noqa: E731
                cell = RNNCell(get("weight_ih").T.copy(), get("weight_hh").T.copy(), get("bias_ih") + get("bias_hh"), nonlinearity)
                row.append(TimeRNN(cell))
            layers.append(row)
        return cls(layers)

    def forward(self, xs: np.ndarray, h0: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """xs (N, T, D), h0 (layers * directions, N, H) -> out (N, T, directions * H), h_n like h0."""
        h_n = []
        for layer, row in enumerate(self.layers):
            outs = []
            for d, rnn in enumerate(row):
                k = layer * len(row) + d
                init = None if h0 is None else h0[k]
                if d == 0:
                    hs = rnn.forward(xs, init)
                else:  # the backward direction reads time reversed
                    hs = rnn.forward(xs[:, ::-1], init)[:, ::-1]
                outs.append(hs)
                h_n.append(rnn.h)
            xs = np.concatenate(outs, axis=-1)
        return xs, np.stack(h_n)

    def backward(self, dout: np.ndarray, dh_n: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """dout like out, dh_n like h_n -> dxs (N, T, D), dh0 like h_n."""
        dh0 = [None] * sum(len(row) for row in self.layers)
        for layer in reversed(range(len(self.layers))):
            row = self.layers[layer]
            hidden = row[0].cell.W_h.shape[0]
            dxs = 0.0
            for d, rnn in enumerate(row):
                k = layer * len(row) + d
                dhs = dout[..., d * hidden : (d + 1) * hidden]
                last = None if dh_n is None else dh_n[k]
                if d == 0:
                    dx, dh0[k] = rnn.backward(dhs, last)
                else:
                    dx, dh0[k] = rnn.backward(dhs[:, ::-1], last)
                    dx = dx[:, ::-1]
                dxs = dxs + dx
            dout = dxs
        return dout, np.stack(dh0)

    def grads(self) -> dict[str, np.ndarray]:
        """Gradients under torch's parameter names (b's gradient goes to bias_ih and bias_hh alike)."""
        out = {}
        for layer, row in enumerate(self.layers):
            for d, rnn in enumerate(row):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                out["weight_ih" + sfx] = rnn.cell.dW_x.T
                out["weight_hh" + sfx] = rnn.cell.dW_h.T
                out["bias_ih" + sfx] = out["bias_hh" + sfx] = rnn.cell.db
        return out
