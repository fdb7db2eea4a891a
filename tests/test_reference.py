"""The NumPy reference RNN equals torch.nn.RNN: outputs, final states and every gradient."""

import numpy as np
import pytest
import torch

from imdb_rnn.reference import RNN, RNNCell, TimeRNN


def compare(layers, bidirectional, nonlinearity, reference=RNN):
    torch.manual_seed(0)
    n, t, d, h = 3, 6, 4, 5
    module = torch.nn.RNN(d, h, num_layers=layers, bidirectional=bidirectional, nonlinearity=nonlinearity,
                          batch_first=True).double()
    dirs = 2 if bidirectional else 1
    x = torch.randn(n, t, d, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(layers * dirs, n, h, dtype=torch.float64, requires_grad=True)
    g_out, g_hn = torch.randn(n, t, dirs * h, dtype=torch.float64), torch.randn(layers * dirs, n, h, dtype=torch.float64)
    out, h_n = module(x, h0)
    ((out * g_out).sum() + (h_n * g_hn).sum()).backward()

    ref = reference.from_torch(module)
    r_out, r_hn = ref.forward(x.detach().numpy(), h0.detach().numpy())
    dx, dh0 = ref.backward(g_out.numpy(), g_hn.numpy())
    errors = {
        "out": np.abs(r_out - out.detach().numpy()).max(),
        "h_n": np.abs(r_hn - h_n.detach().numpy()).max(),
        "dx": np.abs(dx - x.grad.numpy()).max(),
        "dh0": np.abs(dh0 - h0.grad.numpy()).max(),
    }
    for name, grad in ref.grads().items():
        errors[name] = np.abs(grad - getattr(module, name).grad.numpy()).max()
    return errors


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_equals_torch(layers, bidirectional, nonlinearity):
    errors = compare(layers, bidirectional, nonlinearity)
    assert max(errors.values()) <= 1e-10, errors


def test_a_flipped_sign_is_caught():
    class WrongCell(RNNCell):
        def backward(self, dh_next, cache):
            dx, dh_prev = super().backward(dh_next, cache)
            self.dW_h -= 2 * cache[1].T @ (dh_next * (1.0 - cache[2] ** 2))  # flips this step's dW_h
            return dx, dh_prev

    class WrongRNN(RNN):
        @classmethod
        def from_torch(cls, module):
            good = RNN.from_torch(module)
            for row in good.layers:
                for rnn in row:
                    c = rnn.cell
                    rnn.cell = WrongCell(c.W_x, c.W_h, c.b, c.nonlinearity)
            return cls(good.layers)

    errors = compare(1, False, "tanh", reference=WrongRNN)
    assert errors["weight_hh_l0"] > 1e-3
    assert max(v for k, v in errors.items() if k != "weight_hh_l0") <= 1e-10


def test_truncated_bptt_state_carries_over():
    rng = np.random.default_rng(0)
    cell = RNNCell(rng.normal(size=(4, 3)), rng.normal(size=(3, 3)) * 0.5, rng.normal(size=3))
    xs = rng.normal(size=(2, 12, 4))
    full = TimeRNN(cell).forward(xs)
    blocks = TimeRNN(cell, stateful=True)
    pieces = [blocks.forward(xs[:, i : i + 4]) for i in range(0, 12, 4)]
    assert np.allclose(np.concatenate(pieces, axis=1), full, atol=1e-12)
    blocks.reset_state()
    assert not np.allclose(blocks.forward(xs[:, 4:8]), full[:, 4:8])


def classic_experiment(scale=1.0):
    """The textbook experiment, written out independently: N=2, H=3, T=20, seed 3."""
    N, H, T = 2, 3, 20
    dh = np.ones((N, H))
    np.random.seed(3)
    Wh = np.random.randn(H, H) * scale
    norms = []
    for _ in range(T):
        dh = np.dot(dh, Wh.T)
        norms.append(np.sqrt(np.sum(dh**2)) / N)
    return norms


def test_grad_demo_prints_the_classic_norms(tmp_path):
    from typer.testing import CliRunner

    from imdb_rnn.cli import app

    result = CliRunner().invoke(app, ["grad-demo", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    printed = [float(line.split("norm")[1]) for line in result.stdout.splitlines() if line.startswith("step")]
    assert np.allclose(printed, classic_experiment(), rtol=1e-5) and printed[-1] > 100 * printed[0]  # explodes
    png = (tmp_path / "g.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_grad_demo_scale_and_clip():
    from imdb_rnn.reference.grad_demo import backward_product

    vanish = backward_product(scale=0.5)
    assert vanish["largest_singular_value"] == pytest.approx(0.5) and vanish["norms"][-1] < 1e-5
    clipped = backward_product(clip=1.0)
    assert max(clipped["clipped_norms"]) <= 0.5 + 1e-12 and clipped["norms"] == pytest.approx(classic_experiment())
