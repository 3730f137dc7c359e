"""Lists of PyTorch Geometric ``Data`` snapshots <-> snapshots / DeltaStore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dyngnn.data.format import DEFAULT_KEYFRAME_EVERY
from dyngnn.data.snapshots import Snapshots, from_edge_lists
from dyngnn.data.store import DeltaStore
from dyngnn.errors import InputError


def _node_data(items: list[Any], what: str) -> np.ndarray | None:
    if all(v is None for v in items):
        return None
    if any(v is None for v in items):
        raise InputError(f"Data list: {what} are set on some snapshots but not all")
    return np.stack([v.detach().cpu().numpy() for v in items])


def data_list_to_snapshots(data_list: Sequence[Any], *, weight_mode: str | None = None) -> Snapshots:
    """T ``Data`` objects over one node set -> :class:`Snapshots`.

    ``num_nodes`` is the largest ``Data.num_nodes``; ``edge_weight`` (or a 1-D
    ``edge_attr``) gives weights; ``x`` and ``y`` become per-snapshot node data.
    """
    if not data_list:
        raise InputError("Data list: no snapshots")
    n = max(int(d.num_nodes or 0) for d in data_list)
    ei, ew = [], []
    for d in data_list:
        ei.append(d.edge_index.detach().cpu().numpy())
        w = getattr(d, "edge_weight", None)
        if w is None and getattr(d, "edge_attr", None) is not None and d.edge_attr.dim() == 1:
            w = d.edge_attr
        ew.append(None if w is None else w.detach().cpu().numpy())
    weighted = any(w is not None for w in ew)
    snaps = from_edge_lists(ei, ew if weighted else None, n, weight_mode=weight_mode, where="Data list")
    snaps.x, snaps.x_per_snapshot = _node_data([getattr(d, "x", None) for d in data_list], "x"), True
    snaps.y, snaps.y_per_snapshot = _node_data([getattr(d, "y", None) for d in data_list], "y"), True
    snaps.__post_init__()
    return snaps


def from_data_list(
    data_list: Sequence[Any], *, keyframe_every: int = DEFAULT_KEYFRAME_EVERY, path: str | None = None
) -> DeltaStore:
    """Encode a list of ``Data`` snapshots as a DeltaStore (in memory, or at ``path``)."""
    snaps = data_list_to_snapshots(data_list)
    return DeltaStore.from_snapshots(
        snaps, keyframe_every=keyframe_every, path=path, source={"format": "pyg-data-list"}
    )


def to_data_list(store: DeltaStore) -> list[Any]:
    """A DeltaStore -> one ``Data`` per snapshot (``DeltaStore.to_pyg``)."""
    return [store.to_pyg(t) for t in range(store.num_snapshots)]
