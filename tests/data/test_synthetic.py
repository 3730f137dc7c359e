"""The synthetic generator: sizes, churn, determinism, skew."""

from __future__ import annotations

import numpy as np
import pytest

from dyngnn.data.store import DeltaStore
from dyngnn.data.synthetic import synthesize
from dyngnn.errors import InputError


def test_sizes_churn_and_determinism(tmp_path):
    kw = dict(num_nodes=2000, num_edges=5000, num_snapshots=6, churn=0.1, seed=3, keyframe_every=4)
    a = synthesize(tmp_path / "a", **kw)
    b = synthesize(tmp_path / "b", **kw)
    a.verify()
    assert a.meta["arrays"] == b.meta["arrays"]  # same seed, same bytes (checksums)
    prev = None
    for t in range(6):
        keys, w = a.snapshot_keys(t)
        assert w is None and len(keys) == 5000
        src, dst = np.divmod(keys, 2000)
        assert not np.any(src == dst)
        if prev is not None:
            assert len(np.setdiff1d(prev, keys)) == 500 and len(np.setdiff1d(keys, prev)) == 500
        prev = keys
    assert a.is_keyframe(4) and not a.is_keyframe(3)
    st = a.stats()
    assert st["stored_graph_bytes"] < st["full_snapshot_bytes"] / 2


def test_degrees_are_skewed(tmp_path):
    store = synthesize(tmp_path / "s", num_nodes=5000, num_edges=20000, num_snapshots=1, churn=0.0)
    src = store.snapshot(0)[0][0].numpy()
    deg = np.sort(np.bincount(src, minlength=5000))[::-1]
    # the top 1% of nodes hold far more than 1% of the edges
    assert deg[:50].sum() > 0.1 * deg.sum()


def test_full_turnover(tmp_path):
    store = synthesize(tmp_path / "s", num_nodes=300, num_edges=1000, num_snapshots=3, churn=1.0, keyframe_every=0)
    k0, k1 = store.snapshot_keys(0)[0], store.snapshot_keys(1)[0]
    assert len(np.intersect1d(k0, k1)) == 0 and len(k1) == 1000
    assert isinstance(DeltaStore.open(tmp_path / "s"), DeltaStore)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(num_nodes=1), "--nodes"),
        (dict(num_edges=10**9), "--edges"),
        (dict(num_snapshots=0), "--snapshots"),
        (dict(churn=-0.1), "--churn"),
    ],
)
def test_bad_arguments(tmp_path, kw, match):
    args = dict(num_nodes=100, num_edges=50, num_snapshots=2, churn=0.1) | kw
    with pytest.raises(InputError, match=match):
        synthesize(tmp_path / "s", **args)
    assert list(tmp_path.iterdir()) == []
