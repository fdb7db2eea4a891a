"""The CUDA path (skipped without a GPU): cuDNN's exact last step, CPU/GPU agreement, and a real
train -> kill -> resume -> eval/predict on the GPU with the checkpoints read back on the CPU."""

import signal

import pandas as pd
import pytest
import torch
import yaml
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import COLUMNS, batch, cli, reference_and_ours, start_and_signal
from imdb_rnn.config import ModelConfig, load_config
from imdb_rnn.model import RNNClassifier
from imdb_rnn.training.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
GPU = torch.device("cuda")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_as_packed_last_step_equals_packed_with_cudnn(cell, layers, bidirectional):
    ref, ours = reference_and_ours(cell, layers, bidirectional, "as_packed")  # float64: cuDNN without TF32
    ref, ours = ref.to(GPU), ours.to(GPU)
    ids, lengths = batch([9, 3, 1, 6, 7])
    ids = ids.to(GPU)
    packed = pack_padded_sequence(ours.encoder.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
    h_n = ref(packed)[1]
    h_n = h_n[0] if cell == "lstm" else h_n
    expected = torch.cat(list(h_n[-2:] if bidirectional else h_n[-1:]), dim=-1)
    got = ours.encoder(ids, lengths.to(GPU))
    assert torch.allclose(got, expected, atol=1e-10), (got - expected).abs().max()


def test_gpu_matches_cpu_forward_and_backward():
    torch.manual_seed(0)
    cfg = ModelConfig(cell="gru", embedding_dim=6, hidden_size=5, num_layers=2, readout="pool", ngram_buckets=17,
                      ngram_norm="sqrt")
    cpu = RNNClassifier(11, cfg).double()
    torch.nn.init.normal_(cpu.ngram.bigrams.weight)
    gpu = RNNClassifier(11, cfg).double().to(GPU)
    gpu.load_state_dict(cpu.state_dict())
    ids, lengths = batch([9, 3, 1, 0, 6])
    labels = torch.tensor([0, 1, 1, 0, 1])
    for model, device in ((cpu, "cpu"), (gpu, GPU)):
        torch.nn.functional.cross_entropy(model(ids.to(device), lengths.to(device)).total, labels.to(device)).backward()
    assert torch.allclose(gpu(ids.to(GPU), lengths.to(GPU)).total.cpu(), cpu(ids, lengths).total, atol=1e-10)
    for (name, a), b in zip(cpu.named_parameters(), gpu.parameters()):
        assert torch.allclose(a.grad, b.grad.cpu(), atol=1e-10), name


def test_train_kill_resume_eval_predict_on_gpu(tiny_run, tmp_path):
    data, config = tiny_run
    on_gpu = tmp_path / "gpu" / config.name  # same name: the same preprocess artifacts
    on_gpu.parent.mkdir()
    spec = yaml.safe_load(config.read_text())
    spec["train"]["device"] = "cuda"
    on_gpu.write_text(yaml.safe_dump(spec))
    whole = train(load_config(on_gpu), data, tmp_path / "whole", log=lambda *_: None)
    assert len(whole.epochs) == spec["train"]["epochs"]

    killed = tmp_path / "killed"
    start_and_signal(on_gpu, data, killed, signal.SIGKILL)
    cli("train", "--config", on_gpu, "--data-dir", data, "--run-dir", killed, "--resume", "-q")
    # cuDNN and CUDA's atomics need not repeat bit for bit; the runs must agree closely.
    a, b = (pd.read_csv(r / "metrics.csv")[COLUMNS] for r in (whole.run_dir, killed))
    pd.testing.assert_frame_equal(a, b, rtol=1e-3, atol=1e-3)

    # A GPU checkpoint is read on the CPU by eval and predict.
    out = cli("eval", "--run", killed, "--data-dir", data, "--device", "cpu", "--json", "-q").stdout
    assert '"accuracy"' in out
    pred = cli("predict", "--run", killed, "--device", "cpu", "a wonderful, moving film").stdout
    assert "positive" in pred or "negative" in pred
