"""DeltaStore round trips: every snapshot comes back exactly, in order, at random, from disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dyngnn.data.format import Encoding
from dyngnn.data.snapshots import Snapshots
from dyngnn.data.store import DeltaStore, StoreBuilder
from dyngnn.errors import InputError

STEPS = ["random", "empty", "turnover", "reweight", "same", "grow", "shrink"]


@st.composite
def sequences(draw):
    """Snapshot sequences over a few nodes, built from named kinds of step."""
    n = draw(st.integers(1, 7))
    weighted = draw(st.booleans())
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=10))
    all_keys = np.arange(n * n, dtype=np.int64)
    weights_pool = np.array([-1.5, 0.0, -0.0, 1.0, 2.5, 1e30], dtype=np.float32)
    keys, w = np.zeros(0, np.int64), np.zeros(0, np.float32)
    out_k, out_w = [], []

    def pick(mask_bits):
        return all_keys[np.array(mask_bits, dtype=bool)] if n * n else all_keys

    for step in steps:
        if step == "random":
            keys = pick(draw(st.lists(st.booleans(), min_size=n * n, max_size=n * n)))
        elif step == "empty":
            keys = keys[:0]
        elif step == "turnover":
            keys = np.setdiff1d(all_keys, keys)
        elif step == "grow":
            keys = np.union1d(keys, pick(draw(st.lists(st.booleans(), min_size=n * n, max_size=n * n))))
        elif step == "shrink" and len(keys):
            keys = keys[draw(st.lists(st.booleans(), min_size=len(keys), max_size=len(keys)))]
        if step == "same":
            w = w.copy()
        else:
            idx = draw(st.lists(st.integers(0, len(weights_pool) - 1), min_size=len(keys), max_size=len(keys)))
            w = weights_pool[np.array(idx, dtype=np.int64)] if len(keys) else np.zeros(0, np.float32)
        out_k.append(keys.copy())
        out_w.append(w.copy())
    return Snapshots(
        num_nodes=n,
        node_ids=np.arange(n, dtype=np.int64) * 1000 - 7,
        keys=out_k,
        weights=out_w if weighted else None,
    )


def assert_same(store: DeltaStore, snaps: Snapshots, order) -> None:
    for t in order:
        keys, w = store.snapshot_keys(t)
        np.testing.assert_array_equal(keys, snaps.keys[t])
        if snaps.weights is None:
            assert w is None
        else:  # bit for bit: -0.0 and 0.0 differ
            np.testing.assert_array_equal(w.view(np.uint32), snaps.weights[t].view(np.uint32))


@given(snaps=sequences(), k=st.sampled_from([0, 1, 2, 3, 64]), seed=st.integers(0, 2**16))
def test_round_trip_in_order_random_access_and_disk(snaps, k, seed, tmp_path_factory):
    store = DeltaStore.from_snapshots(snaps, keyframe_every=k)
    t = snaps.num_snapshots
    random_order = np.random.default_rng(seed).integers(0, t, size=2 * t)
    assert_same(store, snaps, range(t))
    assert_same(store, snaps, random_order)
    st_ = store.stats()
    assert st_["stored_graph_bytes"] <= st_["full_snapshot_bytes"]
    disk = store.save(tmp_path_factory.mktemp("s") / "store")
    disk.verify()
    assert_same(disk, snaps, random_order)
    assert_same(disk, snaps, range(t))
    np.testing.assert_array_equal(disk.node_ids, snaps.node_ids)
    assert [e.tolist() for e, _ in disk] == [snaps.edge_index(i).tolist() for i in range(t)]


def test_public_snapshot_api_on_a_hand_built_sequence(tmp_path):
    # 4 nodes, key = 4 * src + dst. t1 removes (0,1), adds (2,0), re-weights (1,2); t2 is empty
    k0 = np.array([1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14])
    k1 = np.array([2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14])
    w0 = np.arange(1, 12, dtype=np.float32)
    w1 = np.array([2, 3, 4, -5, 6, 99, 7, 8, 9, 10, 11], dtype=np.float32)
    snaps = Snapshots(
        num_nodes=4,
        node_ids=np.array([10, 20, 30, 40]),
        keys=[k0, k1, np.zeros(0, np.int64)],
        weights=[w0, w1, np.zeros(0, np.float32)],
    )
    store = DeltaStore.from_snapshots(snaps, keyframe_every=0).save(tmp_path / "s")
    assert (store.num_nodes, store.num_snapshots, store.node_ids.tolist()) == (4, 3, [10, 20, 30, 40])
    ei, w = store.snapshot(1)
    assert ei.dtype == torch.int64 and w.dtype == torch.float32
    assert ei.tolist() == [[0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3], [2, 3, 1, 2, 3, 0, 1, 2, 3, 1, 2]]
    assert w.tolist() == w1.tolist()
    d = store.delta(1)
    assert not d.keyframe and d.removed.tolist() == [0] and d.reweighted.tolist() == [4]
    assert d.pairs.tolist() == [[2, 0]] and d.weights.tolist() == [99] and d.reweight_values.tolist() == [-5]
    assert store.snapshot(2)[0].shape == (2, 0)
    data = store.to_pyg(1)
    assert data.num_nodes == 4 and data.edge_index.tolist() == ei.tolist()
    assert data.edge_weight.tolist() == w1.tolist()
    with pytest.raises(IndexError):
        store.snapshot(3)


def test_encoder_picks_the_smaller_form():
    n = 1000
    base = np.arange(0, 40_000, 7, dtype=np.int64)  # 5715 edges
    few_changes = np.union1d(base[5:], [3, 4])  # 5 removed, 2 added
    seq = Snapshots(num_nodes=n, node_ids=np.arange(n), keys=[base, few_changes, base[::2], np.arange(3)])
    store = DeltaStore.from_snapshots(seq, keyframe_every=0)
    d1, d2, d3 = store.delta(1), store.delta(2), store.delta(3)
    assert not d1.keyframe and d1.removed.tolist() == list(range(5)) and len(d1.pairs) == 2
    assert store.encoding(1) == Encoding(keyframe=False)  # positions: 5 * 4 bytes < 5715 / 8 bytes of mask
    assert not d2.keyframe and store.encoding(2).removed_as_mask  # half removed: a bitmask is smaller
    assert d3.keyframe  # 3 edges whole beat removing 2858
    forced = DeltaStore.from_snapshots(seq, keyframe_every=2)
    assert forced.is_keyframe(2) and not forced.is_keyframe(1)


def test_node_data_static_and_per_snapshot(tmp_path):
    snaps = Snapshots(
        num_nodes=2,
        node_ids=np.arange(2),
        keys=[np.array([1]), np.array([2])],
        x=np.arange(4, dtype=np.float32).reshape(2, 2),
        y=np.array([[1, 2], [3, 4]]),
        y_per_snapshot=True,
    )
    store = DeltaStore.from_snapshots(snaps).save(tmp_path / "s")
    assert store.node_data("x", 1).tolist() == [[0, 1], [2, 3]]
    assert store.node_data("y", 1).tolist() == [3, 4]
    data = store.to_pyg(0)
    assert data.x.shape == (2, 2) and data.y.tolist() == [1, 2]
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["node_data"] == {"x": "static", "y": "snapshot"}
    with pytest.raises(InputError, match="leading dimensions"):
        Snapshots(num_nodes=3, node_ids=np.arange(3), keys=[np.array([1])], x=np.zeros((2, 1)))


def test_builder_streams_to_disk_and_cleans_up_on_failure(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError), StoreBuilder(4, path=out) as b:
        b.add(np.array([1, 2]))
        raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with StoreBuilder(4, path=out, keyframe_every=0) as b:
        b.add(np.array([1, 2, 3]))
        b.add_change(removed=np.array([1]), added=np.array([0, 15]))
        store = b.finish()
    assert store.snapshot_keys(1)[0].tolist() == [0, 1, 3, 15]
    store.verify()


def test_snapshot_arrays_are_read_only():
    snaps = Snapshots(4, np.arange(4), [np.array([1, 2]), np.array([1, 3])], [np.ones(2, np.float32)] * 2)
    store = DeltaStore.from_snapshots(snaps, keyframe_every=0)
    keys, w = store.snapshot_keys(1)
    with pytest.raises(ValueError, match="read-only"):
        keys[0] = 99
    with pytest.raises(ValueError, match="read-only"):
        w[0] = 5.0
    assert store.snapshot_keys(1)[0].tolist() == [1, 3]


@pytest.mark.parametrize("on_disk", [False, True])
def test_deltas_that_do_not_pay_for_their_index_become_keyframes(tmp_path, on_disk):
    # a delta saving 7 bytes would need 8 bytes of flags and removal counts
    keys = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.array([47, 48]), np.array([48])]
    snaps = Snapshots(num_nodes=7, node_ids=np.arange(7), keys=keys)
    store = DeltaStore.from_snapshots(snaps, keyframe_every=0, path=tmp_path / "s" if on_disk else None)
    st = store.stats()
    assert st["keyframes"] == 4 and st["stored_graph_bytes"] == st["full_snapshot_bytes"]
    assert store.keyframe_every == 0
    assert_same(store, snaps, range(4))
    if on_disk:
        store.verify()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_a_snapshot_index_must_be_an_integer(tmp_path):
    import numpy as np
    import torch

    store = DeltaStore.from_snapshots(Snapshots(4, np.arange(4), [np.array([1, 6]), np.array([2, 7, 9])]))
    assert torch.equal(store.snapshot(np.int64(1))[0], store.snapshot(1)[0])
    assert torch.equal(store.snapshot(torch.tensor(1))[0], store.snapshot(1)[0])
    for bad in (1.5, 1.0, "1"):
        with pytest.raises(TypeError, match="must be an integer"):
            store.snapshot(bad)
