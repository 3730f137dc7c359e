"""Readers on small fixture files written by hand (tests/fixtures)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dyngnn.data import load_snapshots, parse_duration, read_edge_list, read_pygt_json
from dyngnn.errors import InputError

FIX = Path(__file__).parent.parent / "fixtures"


def edges(snaps, t):
    return [tuple(e) for e in snaps.edge_index(t).T.tolist()]


def test_comma_with_header_large_ids_self_loops_unsorted_rows():
    ev = read_edge_list(FIX / "bitcoin_like.csv")
    assert ev.src.tolist() == [10**12, 7, 7, 3, 7]
    assert ev.time.dtype == np.int64 and ev.time.tolist() == [25, 3, 14, 9, 3]
    assert ev.weight.tolist() == [5, -1, 2, 1, 4]
    snaps, meta = load_snapshots(FIX / "bitcoin_like.csv", window=10, weight="last")
    assert snaps.node_ids.tolist() == [3, 7, 10**12]
    assert [edges(snaps, t) for t in range(3)] == [[(0, 1), (1, 2)], [(1, 1)], [(2, 1)]]
    assert [w.tolist() for w in snaps.weights] == [[1, 4], [2], [5]]
    assert meta["window"] == 10 and meta["events"] == 5


def test_tab_separated_fractional_times_and_an_empty_snapshot():
    ev = read_edge_list(FIX / "fractional.tsv")
    assert ev.time.dtype == np.float64 and ev.weight is None
    snaps, _ = load_snapshots(FIX / "fractional.tsv", window="1s")
    assert snaps.node_ids.tolist() == [1, 2, 3]
    assert [edges(snaps, t) for t in range(3)] == [[(0, 1), (1, 2)], [], [(2, 2)]]


@pytest.mark.parametrize("gz", [False, True])
def test_space_separated_with_comments_and_gzip(tmp_path, gz):
    text = "% konect style\n# another comment\n5 6 100\n\n6 5 250 \n5 6 130\n"
    path = tmp_path / ("e.txt.gz" if gz else "e.txt")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    snaps, _ = load_snapshots(path, window=100, weight="count")
    assert [edges(snaps, t) for t in range(2)] == [[(0, 1)], [(1, 0)]]
    assert snaps.weights[0].tolist() == [2]


def test_header_names_and_columns_flag(tmp_path):
    path = tmp_path / "named.csv"
    path.write_text("ts,from,to\n10,1,2\n11,2,1\n")
    ev = read_edge_list(path)
    assert (ev.src.tolist(), ev.dst.tolist(), ev.time.tolist()) == ([1, 2], [2, 1], [10, 11])
    ev = read_edge_list(FIX / "bitcoin_like.csv", columns="dst,src,-,time")
    assert ev.src.tolist()[0] == 7 and ev.weight is None


def test_pygt_edge_mapping_schema():
    snaps = read_pygt_json(FIX / "edge_mapping.json")
    assert snaps.num_nodes == 3 and snaps.num_snapshots == 3
    assert edges(snaps, 0) == [(0, 1), (1, 2), (2, 2)] and snaps.weights[0].tolist() == [1.5, 2.0, 3.0]
    assert edges(snaps, 1) == [(0, 1), (1, 0)] and snaps.weights[1].tolist() == [10.0, 5.0]  # summed
    assert edges(snaps, 2) == []
    assert snaps.y_per_snapshot and snaps.y.tolist()[1] == [4.0, 5.0, 6.0]


def test_pygt_per_snapshot_schema():
    snaps = read_pygt_json(FIX / "per_snapshot.json")
    assert snaps.num_nodes == 3 and snaps.num_snapshots == 2
    assert edges(snaps, 0) == [(0, 1), (2, 1)] and snaps.weights[0].tolist() == [1, 2]
    assert snaps.x.shape == (2, 3, 2) and snaps.x[1, 2].tolist() == [2.0, 2.0]
    assert snaps.y.tolist() == [[1, 0, 2], [0, 0, 1]]


def test_bundled_dataset_by_name():
    snaps, meta = load_snapshots("bitcoinalpha", window="7d")
    assert snaps.num_nodes == 3783 and meta["events"] == 24186
    assert snaps.node_ids[0] == 1 and snaps.node_ids[-1] == 7604


@pytest.mark.parametrize(
    ("text", "seconds"), [("86400", 86400), ("1.5h", 5400), ("7d", 604800), ("2w", 1209600), ("0.5", 0.5)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1d", "7x", "", "d"])
def test_bad_durations(text):
    with pytest.raises(InputError, match="window"):
        parse_duration(text, "window")
