"""The accelerator paths against the CPU: the side-stream transfer, the message-passing
GCN, cuDNN's LSTM, and training.

Each test runs on a CUDA device and compares with the CPU path; without one, that
variant is skipped and says so. The ``cpu`` variant runs the same checks on the CPU, with
the accelerators' message-passing GCN on the device side, which also tests the checks.

Random draws (negatives, dropout masks) come from generators on the device, whose
streams differ between CPU and CUDA; cross-device comparisons therefore use no dropout
and compare the model, and training runs are compared on the device with each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dyngnn.config import parse_cli
from dyngnn.data.snapshots import Snapshots
from dyngnn.data.store import DeltaStore
from dyngnn.data.synthetic import synthesize
from dyngnn.models import GCNLSTM, GraphInput, normalize, structural_features
from dyngnn.trainer import Trainer

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=NO_CUDA)])
def device(request) -> torch.device:
    return torch.device(request.param)


def weighted_store(n=50, t=14, seed=5):
    """Snapshots with heavy and light churn and re-weighting, keyframes every 6."""
    rng = np.random.default_rng(seed)
    keys, weights, cur = [], [], np.unique(rng.integers(0, n * n, 400))
    for step in range(t):
        if step:
            drop = rng.random(len(cur)) < rng.choice([0.0, 0.02, 0.5])
            cur = np.union1d(cur[~drop], rng.integers(0, n * n, rng.integers(0, 40)))
        keys.append(cur)
        weights.append(np.round(rng.random(len(cur)) * 3, 1).astype(np.float32))
    snaps = Snapshots(n, np.arange(n), keys, weights)
    return snaps, DeltaStore.from_snapshots(snaps, keyframe_every=6)


@pytest.mark.parametrize("mode", ["full", "delta", "resident"])
def test_stream_rebuilds_every_snapshot_on_the_device_with_the_cpu_byte_counts(device, mode):
    from dyngnn.transfer import SnapshotStream

    snaps, store = weighted_store()
    on_device, on_cpu = SnapshotStream(store, device, mode, 2, 14), SnapshotStream(store, "cpu", mode, 2, 14)
    for _epoch in range(2):
        for stream in (on_device, on_cpu):
            stream.reset_counters()
        for s, c in zip(on_device, on_cpu, strict=True):
            assert s.keys.device.type == device.type
            np.testing.assert_array_equal(s.keys.cpu().numpy(), snaps.keys[s.t])
            np.testing.assert_array_equal(s.weight.cpu().numpy(), snaps.weights[s.t])
            assert torch.equal(s.edge_index.cpu(), c.edge_index) and s.changed == c.changed
        assert (on_device.h2d_bytes, on_device.full_h2d_bytes) == (on_cpu.h2d_bytes, on_cpu.full_h2d_bytes)


def test_model_forward_and_gradients_equal_the_cpu_path(device, monkeypatch):
    """The message-passing GCN and cuDNN's LSTM (accelerators) against the CSR products
    and the CPU LSTM, float64, with an embedding and two LSTM layers."""
    from dyngnn.models import gcn

    snaps, _ = weighted_store()
    n = snaps.num_nodes

    def inputs(on):
        out = []
        for t in range(snaps.num_snapshots):
            ei = torch.as_tensor(snaps.edge_index(t), device=on).long()
            w = torch.as_tensor(snaps.weights[t], device=on)
            out.append(GraphInput(t, normalize(ei, w, n, torch.float64), structural_features(ei, n, torch.float64)))
        return out

    torch.manual_seed(0)
    cpu = GCNLSTM(n, 2, hidden=6, lstm_layers=2, embedding_dim=3).double()
    dev = GCNLSTM(n, 2, hidden=6, lstm_layers=2, embedding_dim=3).double().to(device)
    dev.load_state_dict(cpu.state_dict())
    weights = torch.randn(snaps.num_snapshots, n, 6, dtype=torch.float64)
    results, asked = [], []
    for model, on in ((cpu, torch.device("cpu")), (dev, device)):
        if model is dev:  # on the CPU too, the device side takes the accelerators' GCN path
            monkeypatch.setattr(gcn, "uses_csr", lambda d: asked.append(d) or False)
        h = model(inputs(on), key=(0, 1))
        (h * weights.to(on)).sum().backward()
        results.append((h.detach().cpu(), [p.grad.cpu() for p in model.parameters()]))
    (h_cpu, g_cpu), (h_dev, g_dev) = results
    assert asked  # the message path ran
    torch.testing.assert_close(h_dev, h_cpu, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_dev, g_cpu, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "store"
    synthesize(path, num_nodes=60, num_edges=150, num_snapshots=12, churn=0.1, seed=1, keyframe_every=5)
    return path


@pytest.fixture
def train(train_args):
    """``train(store, run_dir, device, *extra)``: a finished float64 run, and its metrics lines."""

    def run(store, run_dir, on, *extra):
        trainer = Trainer(
            parse_cli(train_args(store, run_dir, "--run.device", on, "--training.dtype", "float64", *extra))
        )
        trainer.fit()
        lines = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        return trainer, lines

    return run


def test_transfer_modes_train_to_the_same_numbers_on_the_device(train, device, tiny, tmp_path):
    """The three modes stream the same snapshots, so training gives the same numbers;
    bytes to the device are those counted on the CPU (delta), 0 after the first epoch
    (resident), or every snapshot whole (full)."""
    _, cpu_lines = train(tiny, tmp_path / "cpu", "cpu")
    runs = {
        mode: train(tiny, tmp_path / mode, device, "--transfer.mode", mode) for mode in ("full", "delta", "resident")
    }
    first, first_lines = runs["full"]
    assert np.isfinite([r["train_loss"] for r in first_lines[:-1]]).all()
    for mode, (dev, lines) in runs.items():
        np.testing.assert_allclose(
            [r["train_loss"] for r in lines[:-1]], [r["train_loss"] for r in first_lines[:-1]], rtol=1e-9
        )
        for name, value in lines[-1]["test"].items():
            assert value == pytest.approx(first_lines[-1]["test"][name], rel=1e-9)
        for p, q in zip(dev.model.state_dict().values(), first.model.state_dict().values(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
        sent = [r["h2d_bytes"] for r in lines[:-1]]
        if mode == "resident":
            assert sent[0] > 0 and sent[1:] == [0, 0]
        elif mode == "delta":
            assert sent == [r["h2d_bytes"] for r in cpu_lines[:-1]]
        else:
            assert sent == [r["full_h2d_bytes"] for r in lines[:-1]]
        assert all(r["peak_memory_bytes"] > 0 for r in lines[:-1])


def test_resume_on_the_device_reaches_the_uninterrupted_weights(train, device, tiny, tmp_path):
    straight, _ = train(tiny, tmp_path / "a", device, "--training.epochs", "4", "--model.dropout", "0.3")
    train(tiny, tmp_path / "b", device, "--training.epochs", "2", "--model.dropout", "0.3")
    resumed, _ = train(tiny, tmp_path / "b", device, "--training.epochs", "4", "--model.dropout", "0.3", "--resume")
    for p, q in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
