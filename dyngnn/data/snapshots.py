"""Events -> snapshots: window/lifetime binning, id remapping and duplicate merging.

The semantics are exact (docs/ARCHITECTURE.md, "Snapshot semantics"):

- ``t_start = min(time)``, ``T = floor((max(time) - t_start) / W) + 1``, snapshot ``k`` ends
  at ``end_k = t_start + (k + 1) * W`` and holds event ``e`` iff
  ``end_k - L <= time_e < end_k`` (``L = W`` gives disjoint bins, ``L > W`` sliding windows).
- Repeated ``(src, dst)`` pairs in one snapshot become one edge weighted by ``none``,
  ``count``, ``sum`` or ``last`` (latest event; on equal times the later input row wins).
- Node ids are renumbered ``0..N-1`` in ascending order of the original id.
- ``undirected`` adds the reverse of every non-loop event before merging.
- Edges of a snapshot are sorted by ``(src, dst)``.

Inside dyngnn an edge set is a sorted, duplicate-free int64 array of keys
``src * N + dst``: sorting keys sorts by ``(src, dst)`` and set algebra becomes
``searchsorted``. Keys need ``N * N < 2**63``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dyngnn.errors import InputError

WEIGHT_MODES = ("none", "count", "sum", "last")
MAX_NODES = 3_037_000_499  # floor(sqrt(2**63 - 1)): the largest N whose keys fit int64
MAX_SNAPSHOTS = 1_000_000  # beyond this, a window is almost surely in the wrong unit


@dataclass
class Snapshots:
    """A dynamic graph held in memory: T edge sets over one node set.

    Attributes:
        num_nodes: N.
        node_ids: ``int64 [N]``, the original id of every node.
        keys: T sorted, unique ``int64`` arrays of ``src * N + dst``.
        weights: T ``float32`` arrays aligned with ``keys``, or None (unweighted).
        x: node features, ``[N, F]`` (static) or ``[T, N, F]`` (per snapshot), or None.
        y: node targets, ``[N, ...]`` (static) or ``[T, N, ...]`` (per snapshot), or None.
        x_per_snapshot, y_per_snapshot: which of the two layouts x and y use.
    """

    num_nodes: int
    node_ids: np.ndarray
    keys: list[np.ndarray]
    weights: list[np.ndarray] | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    x_per_snapshot: bool = False
    y_per_snapshot: bool = False

    def __post_init__(self) -> None:
        check_num_nodes(self.num_nodes)
        if self.weights is not None and len(self.weights) != len(self.keys):
            raise ValueError(f"Snapshots: {len(self.weights)} weight arrays for {len(self.keys)} snapshots")
        for name, arr, per in (("x", self.x, self.x_per_snapshot), ("y", self.y, self.y_per_snapshot)):
            if arr is None:
                continue
            lead = (len(self.keys), self.num_nodes) if per else (self.num_nodes,)
            if tuple(arr.shape[: len(lead)]) != lead:
                raise InputError(
                    f"node {'features' if name == 'x' else 'targets'} {name} have shape "
                    f"{tuple(arr.shape)}, expected leading dimensions {lead}"
                )

    @property
    def num_snapshots(self) -> int:
        return len(self.keys)

    def edge_index(self, t: int) -> np.ndarray:
        """``int64 [2, E_t]`` edges of snapshot ``t``, sorted by ``(src, dst)``."""
        return keys_to_edge_index(self.keys[t], self.num_nodes)


def check_num_nodes(n: int) -> None:
    if not 0 <= n <= MAX_NODES:
        raise InputError(f"{n} nodes: dyngnn supports 0..{MAX_NODES} nodes")


def edge_keys(src: Any, dst: Any, num_nodes: int) -> Any:
    """Keys ``src * N + dst`` of edges (int64 numpy arrays or tensors): the one place an
    edge becomes a key. Sorting keys sorts edges by ``(src, dst)``."""
    return src * num_nodes + dst


def key_ends(keys: Any, num_nodes: int) -> tuple[Any, Any]:
    """``(src, dst)`` of keys ``src * N + dst`` (numpy arrays or tensors)."""
    return keys // num_nodes, keys % num_nodes


def keys_to_edge_index(keys: np.ndarray, num_nodes: int) -> np.ndarray:
    """``int64 [E]`` keys -> ``int64 [2, E]`` (src, dst)."""
    if num_nodes == 0:
        return np.zeros((2, 0), dtype=np.int64)
    return np.stack(key_ends(keys, num_nodes))


def edge_index_to_keys(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """``[2, E]`` (src, dst) -> ``int64 [E]`` keys, in the input order (not deduplicated)."""
    ei = np.asarray(edge_index, dtype=np.int64)
    return edge_keys(ei[0], ei[1], num_nodes)


def merge_events(
    group: np.ndarray,
    keys: np.ndarray,
    order: np.ndarray,
    weight: np.ndarray | None,
    mode: str,
    num_groups: int,
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Merge events that share ``(group, key)`` into one edge per group.

    Args:
        group: ``int64 [M]`` snapshot index of every event, ``0 <= group < num_groups``.
        keys: ``int64 [M]`` edge key of every event.
        order: ``[M]`` the event's place in time (ties broken by position in the arrays);
            only ``last`` looks at it.
        weight: ``[M]`` event weights, or None (every event weighs 1).
        mode: one of :data:`WEIGHT_MODES`.
        num_groups: T.

    Returns:
        Per group, the sorted unique keys and (unless ``mode == "none"``) float32 weights.
    """
    if mode not in WEIGHT_MODES:
        raise InputError(f"weight mode {mode!r}: expected one of {', '.join(WEIGHT_MODES)}")
    rows = np.arange(len(keys))
    perm = np.lexsort((rows, order, keys, group))
    g, k = group[perm], keys[perm]
    first = np.ones(len(perm), dtype=bool)
    first[1:] = (g[1:] != g[:-1]) | (k[1:] != k[:-1])
    starts = np.flatnonzero(first)
    edge_group, edge_keys = g[starts], k[starts]

    edge_weight: np.ndarray | None = None
    if mode == "count":
        edge_weight = np.diff(np.append(starts, len(perm))).astype(np.float32)
    elif mode in ("sum", "last"):
        w = np.ones(len(perm)) if weight is None else np.asarray(weight, dtype=np.float64)[perm]
        if mode == "sum":
            edge_weight = (np.add.reduceat(w, starts) if len(starts) else np.zeros(0)).astype(np.float32)
        else:
            ends = np.append(starts[1:], len(perm)) - 1
            edge_weight = w[ends].astype(np.float32)

    bounds = np.searchsorted(edge_group, np.arange(num_groups + 1))
    out_keys = [edge_keys[bounds[i] : bounds[i + 1]] for i in range(num_groups)]
    out_w = None if edge_weight is None else [edge_weight[bounds[i] : bounds[i + 1]] for i in range(num_groups)]
    return out_keys, out_w


def _floor_div(a: np.ndarray, b: int | float) -> np.ndarray:
    if a.dtype.kind == "i" and isinstance(b, (int, np.integer)):
        return a // b
    return np.floor(a / b).astype(np.int64)


def snapshot_range(
    time: np.ndarray, t_start: int | float, window: int | float, lifetime: int | float
) -> tuple[np.ndarray, np.ndarray]:
    """First and last snapshot (inclusive, not clipped to T) that hold each event.

    Exact for integer times and durations. For floats the estimate from division is
    corrected against the defining inequality ``end_k - L <= time < end_k`` itself, so
    the result agrees with evaluating that inequality for every k.
    """
    d = time - t_start
    first = _floor_div(d, window)
    last = _floor_div(d + lifetime, window) - 1
    if time.dtype.kind == "f" or isinstance(window, float) or isinstance(lifetime, float):

        def end(k: np.ndarray) -> np.ndarray:
            return t_start + (k + 1) * window

        for _ in range(2):  # rounding moves the estimate by at most one step
            first = np.where(time >= end(first), first + 1, first)
            first = np.where(time < end(first - 1), first - 1, first)
            last = np.where(end(last) - lifetime > time, last - 1, last)
            last = np.where(end(last + 1) - lifetime <= time, last + 1, last)
    return first, last


def bin_events(
    src: np.ndarray,
    dst: np.ndarray,
    time: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    window: int | float,
    lifetime: int | float | None = None,
    weight_mode: str = "none",
    undirected: bool = False,
    where: str = "events",
) -> Snapshots:
    """Turn timestamped events into snapshots (the semantics in the module docstring).

    Args:
        src, dst: ``[M]`` original node ids (any integers that fit int64).
        time: ``[M]`` timestamps, integer or float, in the unit of ``window``.
        weight: ``[M]`` event weights, or None.
        window: W > 0. lifetime: L >= W (default W).
        where: names the source in error messages.

    Raises:
        InputError: no events, ``W <= 0``, ``L < W``, more than :data:`MAX_SNAPSHOTS`
            snapshots, or an unknown weight mode.
    """
    lifetime = window if lifetime is None else lifetime
    if not window > 0:
        raise InputError(f"window {window}: must be > 0")
    if not lifetime >= window:
        raise InputError(f"lifetime {lifetime}: must be >= window ({window})")
    if weight_mode not in WEIGHT_MODES:
        raise InputError(f"weight mode {weight_mode!r}: expected one of {', '.join(WEIGHT_MODES)}")
    src, dst, time = np.asarray(src), np.asarray(dst), np.asarray(time)
    if len(time) == 0:
        raise InputError("no events to bin")
    node_ids, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = len(node_ids)
    check_num_nodes(n)
    s, d = inverse[: len(src)].astype(np.int64), inverse[len(src) :].astype(np.int64)
    order = np.arange(len(time))
    if undirected:
        loop = s == d
        s, d = np.concatenate([s, d[~loop]]), np.concatenate([d, s[~loop]])
        time = np.concatenate([time, time[~loop]])
        order = np.concatenate([order, order[~loop]])
        if weight is not None:
            weight = np.concatenate([weight, np.asarray(weight)[~loop]])

    t_start = time.min()
    t_start = t_start.item()
    span = time.max().item() - t_start
    if span / window >= MAX_SNAPSHOTS:  # checked in floats: the count may not fit int64
        raise InputError(
            f"{where}: window {window} over a time span of {span} makes {span // window + 1:,.0f} snapshots, "
            f"more than {MAX_SNAPSHOTS:,}; are the timestamps in milliseconds? the window is in their unit"
        )
    num_snapshots = int(_floor_div(np.asarray([span]), window)[0]) + 1
    first, last = snapshot_range(time, t_start, window, lifetime)
    last = np.minimum(last, num_snapshots - 1)
    copies = last - first + 1
    ev = np.repeat(np.arange(len(time)), copies)
    offset = np.arange(len(ev)) - np.repeat(np.cumsum(copies) - copies, copies)
    group = first[ev] + offset

    # `order` sorts by time, then input row: the "last" rule on equal times.
    rank = np.lexsort((order, time))
    time_rank = np.empty(len(time), dtype=np.int64)
    time_rank[rank] = np.arange(len(time))
    keys, weights = merge_events(
        group,
        edge_keys(s[ev], d[ev], n),
        time_rank[ev],
        None if weight is None else np.asarray(weight)[ev],
        weight_mode,
        num_snapshots,
    )
    return Snapshots(num_nodes=n, node_ids=node_ids.astype(np.int64), keys=keys, weights=weights)


def from_edge_lists(
    edge_indices: Sequence[np.ndarray],
    edge_weights: Sequence[np.ndarray | None] | None,
    num_nodes: int,
    *,
    weight_mode: str | None = None,
    undirected: bool = False,
    where: str = "input",
) -> Snapshots:
    """Given snapshots (their own ids, their own order) -> :class:`Snapshots`.

    Args:
        edge_indices: T arrays ``[2, E_t]`` of node ids in ``0..num_nodes-1``.
        edge_weights: T arrays ``[E_t]`` or None.
        weight_mode: how duplicate pairs merge; default ``sum`` when weights are given,
            else ``none``.
        where: names the source in error messages.

    Raises:
        InputError: ids outside ``0..num_nodes-1`` or mismatched lengths.
    """
    check_num_nodes(num_nodes)
    has_w = edge_weights is not None and any(w is not None for w in edge_weights)
    mode = weight_mode or ("sum" if has_w else "none")
    groups, keys, weights = [], [], []
    for t, ei in enumerate(edge_indices):
        ei = np.asarray(ei, dtype=np.int64)
        if ei.size == 0:
            ei = np.zeros((2, 0), np.int64)
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise InputError(f"{where}: snapshot {t}: edge_index has shape {ei.shape}, expected [2, E]")
        if ei.size and (ei.min() < 0 or ei.max() >= num_nodes):
            bad = ei[(ei < 0) | (ei >= num_nodes)][0]
            raise InputError(f"{where}: snapshot {t}: node id {bad} outside 0..{num_nodes - 1}")
        w = None if not has_w or edge_weights[t] is None else np.asarray(edge_weights[t], np.float64).reshape(-1)
        if w is not None and len(w) != ei.shape[1]:
            raise InputError(f"{where}: snapshot {t}: {len(w)} weights for {ei.shape[1]} edges")
        if w is not None and not np.isfinite(w).all():
            bad = int(np.flatnonzero(~np.isfinite(w))[0])
            raise InputError(f"{where}: snapshot {t}: the weight of edge {bad} is {w[bad]}, not a finite number")
        if has_w and w is None:
            w = np.ones(ei.shape[1])
        s, d = ei
        if undirected:
            loop = s == d
            s, d = np.concatenate([s, d[~loop]]), np.concatenate([d, s[~loop]])
            if w is not None:
                w = np.concatenate([w, w[~loop]])
        groups.append(np.full(len(s), t, dtype=np.int64))
        keys.append(edge_keys(s, d, num_nodes))
        if w is not None:
            weights.append(w)
    num = len(edge_indices)
    cat = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    out_keys, out_w = merge_events(
        np.concatenate(groups) if groups else np.zeros(0, np.int64),
        cat,
        np.arange(len(cat)),
        np.concatenate(weights) if has_w and weights else None,
        mode,
        num,
    )
    return Snapshots(
        num_nodes=num_nodes,
        node_ids=np.arange(num_nodes, dtype=np.int64),
        keys=out_keys,
        weights=out_w,
    )
