"""The data path: readers -> snapshots -> DeltaStore (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dyngnn.data.readers import Events, load_snapshots, parse_duration, read_edge_list, read_pygt_json
from dyngnn.data.snapshots import Snapshots, bin_events, from_edge_lists
from dyngnn.data.store import Delta, DeltaStore, StoreBuilder, apply_delta

__all__ = [
    "Delta",
    "DeltaStore",
    "Events",
    "Snapshots",
    "StoreBuilder",
    "apply_delta",
    "bin_events",
    "from_edge_lists",
    "load_snapshots",
    "parse_duration",
    "read_edge_list",
    "read_pygt_json",
]
