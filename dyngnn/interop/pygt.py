"""PyTorch Geometric Temporal signals <-> snapshots / DeltaStore, in memory.

Reading a signal needs only its attributes (``edge_indices``, ``edge_weights``,
``features``, ``targets``; or ``edge_index``/``edge_weight`` for a static graph), so any
object shaped like one works; writing one imports the library through the shim.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dyngnn.data.format import DEFAULT_KEYFRAME_EVERY
from dyngnn.data.snapshots import Snapshots, from_edge_lists
from dyngnn.data.store import DeltaStore
from dyngnn.errors import InputError
from dyngnn.interop.shim import import_pygt


def _stack(items: list[Any], what: str) -> np.ndarray | None:
    if all(v is None for v in items):
        return None
    if any(v is None for v in items):
        raise InputError(f"signal: {what} are given for some snapshots but not all")
    try:
        return np.stack([np.asarray(v) for v in items])
    except ValueError:
        raise InputError(f"signal: {what} change shape between snapshots") from None


def signal_to_snapshots(signal: Any, *, num_nodes: int | None = None, weight_mode: str | None = None) -> Snapshots:
    """A ``DynamicGraphTemporalSignal`` (or ``StaticGraphTemporalSignal``) -> :class:`Snapshots`.

    Args:
        num_nodes: N; default from the features, else the targets, else the largest id + 1.
        weight_mode: how duplicate pairs merge (default ``sum`` when weighted).

    Node features and targets become per-snapshot node data ``[T, N, ...]``.
    """
    num = int(signal.snapshot_count)
    if hasattr(signal, "edge_indices"):
        edge_indices, edge_weights = list(signal.edge_indices), list(signal.edge_weights)
    else:
        edge_indices, edge_weights = [signal.edge_index] * num, [signal.edge_weight] * num
    x = _stack(list(signal.features), "features")
    y = _stack(list(signal.targets), "targets")
    if num_nodes is None:
        if x is not None:
            num_nodes = x.shape[1]
        elif y is not None:
            num_nodes = y.shape[1]
        else:
            num_nodes = max((int(np.max(e)) for e in edge_indices if e is not None and np.size(e)), default=-1) + 1
    ei = [np.zeros((2, 0), np.int64) if e is None else np.asarray(e) for e in edge_indices]
    weighted = any(w is not None for w in edge_weights)
    snaps = from_edge_lists(ei, edge_weights if weighted else None, num_nodes, weight_mode=weight_mode, where="signal")
    snaps.x, snaps.x_per_snapshot = (None if x is None else x.astype(np.float32)), True
    snaps.y, snaps.y_per_snapshot = y, True
    snaps.__post_init__()
    return snaps


def from_signal(
    signal: Any,
    *,
    num_nodes: int | None = None,
    keyframe_every: int = DEFAULT_KEYFRAME_EVERY,
    path: str | None = None,
    force: bool = False,
) -> DeltaStore:
    """Encode a PyTorch Geometric Temporal signal as a DeltaStore (in memory, or at ``path``)."""
    snaps = signal_to_snapshots(signal, num_nodes=num_nodes)
    return DeltaStore.from_snapshots(
        snaps, keyframe_every=keyframe_every, path=path, force=force, source={"format": "pygt-signal"}
    )


def to_signal(store: DeltaStore) -> Any:
    """A DeltaStore -> ``DynamicGraphTemporalSignal`` with numpy arrays per snapshot.

    Edge indices are ``int64 [2, E_t]`` sorted by (src, dst); weights float32 or None;
    features and targets per snapshot (static node data is repeated), or None.
    """
    pygt = import_pygt()
    edge_indices, edge_weights, features, targets = [], [], [], []
    for t in range(store.num_snapshots):
        ei, w = store.snapshot(t)
        edge_indices.append(ei.numpy())
        edge_weights.append(None if w is None else w.numpy())
        # copies: the signal hands its arrays to torch, which wants them writable
        x, y = store.node_data("x", t), store.node_data("y", t)
        features.append(None if x is None else np.array(x))
        targets.append(None if y is None else np.array(y))
    return pygt.signal.DynamicGraphTemporalSignal(edge_indices, edge_weights, features, targets)
