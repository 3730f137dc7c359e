"""Binning semantics against a hand-written example and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyngnn.data.snapshots import bin_events, from_edge_lists
from dyngnn.errors import InputError

# rows: src, dst, weight, time (ids 3, 7, 10**12 -> 0, 1, 2)
ROWS = [
    (10**12, 7, 5.0, 25),
    (7, 10**12, -1.0, 3),
    (7, 7, 2.0, 14),
    (3, 7, 1.0, 9),
    (7, 10**12, 4.0, 3),
]


def _events(rows=ROWS):
    a = np.array(rows, dtype=object)
    return (
        a[:, 0].astype(np.int64),
        a[:, 1].astype(np.int64),
        np.array([r[3] for r in rows]),
        a[:, 2].astype(np.float64),
    )


def _edges(snaps, t):
    return [tuple(e) for e in snaps.edge_index(t).T.tolist()]


def test_hand_written_bins():
    s, d, t, w = _events()
    snaps = bin_events(s, d, t, w, window=10)
    assert snaps.node_ids.tolist() == [3, 7, 10**12]
    assert [_edges(snaps, k) for k in range(3)] == [[(0, 1), (1, 2)], [(1, 1)], [(2, 1)]]
    assert snaps.weights is None


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("last", [[1, 4], [2], [5]]), ("sum", [[1, 3], [2], [5]]), ("count", [[1, 2], [1], [1]])],
)
def test_hand_written_weight_modes(mode, expected):
    s, d, t, w = _events()
    snaps = bin_events(s, d, t, w, window=10, weight_mode=mode)
    assert [snaps.weights[k].tolist() for k in range(3)] == expected
    assert all(x.dtype == np.float32 for x in snaps.weights)


def test_hand_written_lifetime_and_undirected():
    s, d, t, w = _events()
    sliding = bin_events(s, d, t, w, window=10, lifetime=20)
    assert [_edges(sliding, k) for k in range(3)] == [[(0, 1), (1, 2)], [(0, 1), (1, 1), (1, 2)], [(1, 1), (2, 1)]]
    und = bin_events(s, d, t, w, window=10, weight_mode="count", undirected=True)
    assert [_edges(und, k) for k in range(3)] == [[(0, 1), (1, 0), (1, 2), (2, 1)], [(1, 1)], [(1, 2), (2, 1)]]
    # the self-loop is not mirrored onto itself; the two (7, 10**12) events are
    assert und.weights[1].tolist() == [1] and und.weights[0].tolist() == [1, 1, 2, 2]


def test_last_on_equal_times_takes_the_later_row():
    snaps = bin_events([1, 1], [2, 2], [5, 5], [10.0, 20.0], window=1, weight_mode="last")
    assert snaps.weights[0].tolist() == [20.0]
    snaps = bin_events([1, 1], [2, 2], [6, 5], [10.0, 20.0], window=10, weight_mode="last")
    assert snaps.weights[0].tolist() == [10.0]


def test_bad_window_and_lifetime():
    with pytest.raises(InputError, match="window"):
        bin_events([1], [2], [0], window=0)
    with pytest.raises(InputError, match="lifetime"):
        bin_events([1], [2], [0], window=10, lifetime=5)
    with pytest.raises(InputError, match="weight mode"):
        bin_events([1], [2], [0], window=10, weight_mode="mean")


def brute_force(rows, window, lifetime, mode, undirected):
    """The definition, written out event by event."""
    ids = sorted({r[0] for r in rows} | {r[1] for r in rows})
    idx = {v: i for i, v in enumerate(ids)}
    t0 = min(r[3] for r in rows)
    num = math.floor((max(r[3] for r in rows) - t0) / window) + 1
    events = []
    for row_no, (s, d, w, t) in enumerate(rows):
        events.append((idx[s], idx[d], w, t, row_no))
        if undirected and s != d:
            events.append((idx[d], idx[s], w, t, row_no))
    out = []
    for k in range(num):
        end = t0 + (k + 1) * window
        inside = [e for e in events if end - lifetime <= e[3] < end]
        pairs = sorted({(e[0], e[1]) for e in inside})
        weights = []
        for p in pairs:
            group = [e for e in inside if (e[0], e[1]) == p]
            if mode == "count":
                weights.append(len(group))
            elif mode == "sum":
                weights.append(sum(e[2] for e in group))
            elif mode == "last":
                weights.append(max(group, key=lambda e: (e[3], e[4]))[2])
        out.append((pairs, weights))
    return ids, out


# few ids, so that repeated pairs inside one snapshot are common
row = st.tuples(
    st.sampled_from([0, -3, 2**40]),
    st.sampled_from([0, -3, 2**40]),
    st.sampled_from([-2.0, 0.5, 1.0, 3.0]),
    st.integers(0, 60),
)


@given(
    rows=st.lists(row, min_size=1, max_size=25),
    window=st.integers(1, 12),
    extra=st.integers(0, 30),
    mode=st.sampled_from(["none", "count", "sum", "last"]),
    undirected=st.booleans(),
    scale=st.sampled_from([1, 0.25]),
)
def test_binning_matches_brute_force(rows, window, extra, mode, undirected, scale):
    # scale 0.25 makes times and durations fractional but exact in binary floating point
    rows = [(s, d, w, t * scale) for s, d, w, t in rows]
    window, lifetime = window * scale, (window + extra) * scale
    s, d, t, w = _events(rows)
    snaps = bin_events(s, d, t, w, window=window, lifetime=lifetime, weight_mode=mode, undirected=undirected)
    ids, expected = brute_force(rows, window, lifetime, mode, undirected)
    assert snaps.node_ids.tolist() == ids
    assert snaps.num_snapshots == len(expected)
    for k, (pairs, weights) in enumerate(expected):
        assert _edges(snaps, k) == pairs
        if mode == "none":
            assert snaps.weights is None
        else:
            np.testing.assert_allclose(snaps.weights[k], np.array(weights, dtype=np.float32), rtol=1e-6)


def test_given_snapshots_merge_duplicates_and_keep_ids():
    ei = [np.array([[2, 0, 2], [1, 1, 1]]), np.zeros((2, 0), dtype=np.int64)]
    ew = [np.array([1.0, 2.0, 3.0]), np.zeros(0)]
    snaps = from_edge_lists(ei, ew, 4)
    assert snaps.node_ids.tolist() == [0, 1, 2, 3]
    assert _edges(snaps, 0) == [(0, 1), (2, 1)] and snaps.weights[0].tolist() == [2.0, 4.0]
    assert _edges(snaps, 1) == []
    last = from_edge_lists(ei, ew, 4, weight_mode="last")
    assert last.weights[0].tolist() == [2.0, 3.0]
    with pytest.raises(InputError, match=r"node id 9 outside 0\.\.3"):
        from_edge_lists([np.array([[9], [0]])], None, 4)
