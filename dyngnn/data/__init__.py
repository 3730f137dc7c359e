"""The data path: readers -> snapshots -> delta -> format -> store (see docs/ARCHITECTURE.md).

Legend: ``N`` nodes, ``T`` snapshots; a snapshot is sorted ``int64`` keys ``src * N + dst``.
"""

from __future__ import annotations

from dyngnn.data.delta import Delta, apply_delta
from dyngnn.data.readers import Events, load_snapshots, parse_duration, read_edge_list, read_pygt_json
from dyngnn.data.snapshots import Snapshots, bin_events, from_edge_lists
from dyngnn.data.store import DeltaStore, StoreBuilder

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
