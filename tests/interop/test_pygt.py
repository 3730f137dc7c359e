"""PyTorch Geometric Temporal signals and PyG Data lists, both directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from dyngnn.data.store import DeltaStore
from dyngnn.interop.pyg import from_data_list, to_data_list
from dyngnn.interop.pygt import from_signal, to_signal
from dyngnn.interop.shim import import_pygt

pygt = import_pygt()


def random_signal(rng, n=6, t=5, f=3):
    edge_indices, edge_weights, features, targets = [], [], [], []
    for _ in range(t):
        e = rng.integers(3, 15)
        edge_indices.append(rng.integers(0, n, size=(2, e)))
        edge_weights.append(rng.random(e).astype(np.float32))
        features.append(rng.random((n, f)).astype(np.float32))
        targets.append(rng.random(n).astype(np.float32))
    return pygt.signal.DynamicGraphTemporalSignal(edge_indices, edge_weights, features, targets)


def dense(n, ei, w):
    """Dense adjacency with duplicate pairs summed: the merge rule, computed independently."""
    a = np.zeros((n, n), dtype=np.float64)
    np.add.at(a, (ei[0], ei[1]), w)
    return a


@pytest.mark.parametrize("keyframe_every", [0, 2])
def test_signal_to_store_and_back(tmp_path, keyframe_every):
    rng = np.random.default_rng(1)
    signal = random_signal(rng)
    store = from_signal(signal, keyframe_every=keyframe_every, path=tmp_path / "s")
    assert isinstance(store, DeltaStore) and store.num_snapshots == 5 and store.num_nodes == 6
    back = to_signal(store)
    assert isinstance(back, pygt.signal.DynamicGraphTemporalSignal)
    for t, (orig, snap) in enumerate(zip(signal, back, strict=True)):
        np.testing.assert_allclose(
            dense(6, snap.edge_index.numpy(), snap.edge_attr.numpy()),
            dense(6, orig.edge_index.numpy(), orig.edge_attr.numpy()),
            rtol=1e-6,
        )
        ei = snap.edge_index.numpy()
        assert np.all(np.diff(ei[0] * 6 + ei[1]) > 0), "sorted by (src, dst), no duplicates"
        torch.testing.assert_close(snap.x, orig.x)
        torch.testing.assert_close(snap.y, orig.y)
        torch.testing.assert_close(store.to_pyg(t).x, orig.x)


def test_data_list_round_trip():
    rng = np.random.default_rng(2)
    data = []
    for _ in range(4):
        ei = torch.from_numpy(np.unique(rng.integers(0, 25, 12)))
        ei = torch.stack([ei // 5, ei % 5])
        data.append(Data(edge_index=ei, edge_weight=torch.rand(ei.shape[1]), x=torch.rand(5, 2), num_nodes=5))
    store = from_data_list(data, keyframe_every=0)
    back = to_data_list(store)
    for a, b in zip(data, back, strict=True):
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.edge_weight, b.edge_weight)
        assert torch.equal(a.x, b.x) and b.num_nodes == 5
