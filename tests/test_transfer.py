"""SnapshotStream: the three modes rebuild the same snapshots; bytes match hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dyngnn.data.delta import pairs_to_keys
from dyngnn.data.snapshots import Snapshots
from dyngnn.data.store import DeltaStore
from dyngnn.transfer import DeviceRecord, SnapshotStream, apply_record, apply_record_torch


def random_store(seed=0, n=40, t=12, weighted=True, keyframe_every=5):
    rng = np.random.default_rng(seed)
    keys, weights = [], []
    cur = np.unique(rng.integers(0, n * n, 300))
    for step in range(t):
        if step:
            drop = rng.random(len(cur)) < rng.choice([0.0, 0.05, 0.6])
            cur = np.union1d(cur[~drop], rng.integers(0, n * n, rng.integers(0, 30)))
        keys.append(cur)
        w = np.round(rng.random(len(cur)) * 4).astype(np.float32)
        weights.append(w)
    snaps = Snapshots(n, np.arange(n), keys, weights if weighted else None)
    return snaps, DeltaStore.from_snapshots(snaps, keyframe_every=keyframe_every)


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize(("t0", "t1"), [(0, 12), (3, 9), (6, 7)])
def test_modes_rebuild_identical_snapshots(weighted, t0, t1):
    snaps, store = random_store(weighted=weighted)
    for mode in ("full", "delta", "resident"):
        stream = SnapshotStream(store, "cpu", mode, t0, t1)
        for _epoch in range(2):
            seen = []
            for s in stream:
                seen.append(s.t)
                np.testing.assert_array_equal(s.keys.numpy(), snaps.keys[s.t])
                if weighted:
                    np.testing.assert_array_equal(s.weight.numpy(), snaps.weights[s.t])
                else:
                    assert s.weight is None
                src, dst = np.divmod(snaps.keys[s.t], 40)
                assert s.edge_index.tolist() == [src.tolist(), dst.tolist()]
            assert seen == list(range(t0, t1))


def test_bytes_equal_hand_counts():
    # 4 nodes, int32 ids: 8 bytes per pair, 4 per weight
    k = [np.array([1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14]), None, None, None]
    k[1] = np.array([2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14])  # -(0,1) +(2,0), re-weight one
    k[2] = k[1]  # nothing changes
    k[3] = np.array([2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15])  # +(3,3)
    w = [np.arange(11, dtype=np.float32)]
    w.append(np.array([1, 2, 3, 9, 5, 99, 6, 7, 8, 9, 10], np.float32))
    w.append(w[1])
    w.append(np.append(w[1], np.float32(1)))
    store = DeltaStore.from_snapshots(Snapshots(4, np.arange(4), k, w), keyframe_every=0)
    assert [store.is_keyframe(t) for t in range(4)] == [True, False, False, False]
    full = 12 * (11 + 11 + 11 + 12)
    # t1: 1 added pair + weight (12) + removal bitmask (2 bytes < one int32) + re-weight bitmask
    #     (2 bytes) and value (4) = 20; t2: nothing = 0; t3: one added pair + weight = 12
    records = [12 * 11, 20, 0, 12]

    def epoch(stream):
        stream.reset_counters()
        for _ in stream:
            pass
        return stream.h2d_bytes, stream.full_h2d_bytes

    assert epoch(SnapshotStream(store, mode="full")) == (full, full)
    delta = SnapshotStream(store, mode="delta")
    assert epoch(delta) == (sum(records), full) == epoch(delta)
    resident = SnapshotStream(store, mode="resident")
    assert epoch(resident) == (sum(records), full)
    assert epoch(resident) == (0, full)
    # a block starting at t2: delta sends snapshot 2 whole; resident sends t0..t3 as stored
    assert epoch(SnapshotStream(store, mode="delta", t0=2)) == (12 * 11 + 12, 12 * 23)
    assert epoch(SnapshotStream(store, mode="resident", t0=2)) == (sum(records), 12 * 23)


def test_changed_flag_marks_unchanged_snapshots():
    snaps = Snapshots(3, np.arange(3), [np.array([1, 2])] * 3 + [np.array([2])])
    store = DeltaStore.from_snapshots(snaps, keyframe_every=0)
    for mode in ("delta", "resident"):
        assert [s.changed for s in SnapshotStream(store, mode=mode)] == [True, False, False, True]


def test_torch_path_matches_numpy_path():
    # on CPU apply_record runs the numpy rule; apply_record_torch is what accelerators run
    _, store = random_store(keyframe_every=0)
    keys = weight = t_keys = t_weight = None
    for t in range(store.num_snapshots):
        d = store.delta(t)
        arrays = (pairs_to_keys(d.pairs, store.num_nodes), d.weights, d.removed, d.reweighted, d.reweight_values)
        r = DeviceRecord(d.keyframe, *map(torch.from_numpy, arrays))
        keys, weight = apply_record(keys, weight, r)
        t_keys, t_weight = (r.added, r.added_weight) if r.whole else apply_record_torch(t_keys, t_weight, r)
        np.testing.assert_array_equal(t_keys.numpy(), keys.numpy())
        np.testing.assert_array_equal(t_weight.numpy(), weight.numpy())
