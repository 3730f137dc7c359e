"""DeltaStore: a dynamic graph as keyframes plus per-snapshot edge deltas, on disk.

Each snapshot is stored either whole (a *keyframe*) or as a *delta* against the previous
snapshot; :mod:`dyngnn.data.format` says how (and which is chosen), :mod:`dyngnn.data.delta`
how a delta is applied. :class:`StoreBuilder` writes a store one snapshot at a time,
:class:`DeltaStore` reads one (memory-mapped) and rebuilds any snapshot from the nearest
keyframe before it.

Legend: ``N`` nodes, ``T`` snapshots, ``E_t`` edges in snapshot t, ``A_t`` added,
``R_t`` removed, ``W_t`` re-weighted; keys ``int64`` ``src * N + dst``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dyngnn.data.delta import (
    Delta,
    apply_change,
    apply_delta,
    diff_snapshots,
    keys_to_pairs,
    mask_to_positions,
    pairs_to_keys,
    positions_to_mask,
    sorted_positions,
)
from dyngnn.data.format import (
    COUNT_ARRAYS,
    DEFAULT_KEYFRAME_EVERY,
    FORMAT,
    FORMAT_VERSION,
    GRAPH_ARRAYS,
    KEYFRAME,
    RECORD_ARRAYS,
    REMOVED_AS_MASK,
    REWEIGHTED_AS_MASK,
    WEIGHTED_ARRAYS,
    Encoding,
    RecordLayout,
    choose_encoding,
    compact_counts,
    full_snapshot_bytes,
    id_dtype,
    record_array_specs,
    row_bytes,
)
from dyngnn.data.npyfile import AtomicDirectory, NpyWriter, data_sha256, name_failed_write, open_array, write_array
from dyngnn.data.snapshots import Snapshots, check_num_nodes, keys_to_edge_index
from dyngnn.errors import InputError

# importers of the store's former contents keep working
__all__ = [
    "DEFAULT_KEYFRAME_EVERY",
    "FORMAT",
    "FORMAT_VERSION",
    "KEYFRAME",
    "REMOVED_AS_MASK",
    "REWEIGHTED_AS_MASK",
    "Delta",
    "DeltaStore",
    "StoreBuilder",
    "apply_change",
    "apply_delta",
    "diff_snapshots",
    "keys_to_pairs",
    "pairs_to_keys",
    "sorted_positions",
]


class _MemorySink:
    """:class:`NpyWriter`'s interface for a store built in memory."""

    def __init__(self, dtype: np.dtype, row_shape: tuple[int, ...] = ()) -> None:
        self.dtype, self.row_shape, self.parts = np.dtype(dtype), row_shape, []

    def write(self, rows: np.ndarray) -> None:
        self.parts.append(np.asarray(rows, dtype=self.dtype))

    def close(self) -> np.ndarray:
        if not self.parts:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        return np.concatenate(self.parts)

    def abort(self) -> None:
        self.parts = []


class StoreBuilder:
    """Encodes snapshots one at a time into a store, in memory or streamed to disk.

    Only the current snapshot is held in memory, so a graph of any length can be
    written with memory bounded by one snapshot. Use as a context manager when writing
    to disk: an exception leaves no directory behind.

    Args:
        num_nodes: N. node_ids: ``int64 [N]`` original ids (default ``0..N-1``).
        weighted: whether snapshots carry float32 edge weights.
        keyframe_every: force a keyframe every K snapshots (0: only when smaller).
        path: write to this directory (atomically, at :meth:`finish`); None: in memory.
        force: replace an existing ``path``.
        source: provenance recorded in the manifest (reader and its options).
        keyframes_only: store every snapshot whole, whatever ``keyframe_every`` says (the
            manifest still records it): what :meth:`finish` falls back to when deltas do
            not pay for their index.
    """

    def __init__(
        self,
        num_nodes: int,
        node_ids: np.ndarray | None = None,
        *,
        weighted: bool = False,
        keyframe_every: int = DEFAULT_KEYFRAME_EVERY,
        path: Path | str | None = None,
        force: bool = False,
        source: dict[str, Any] | None = None,
        keyframes_only: bool = False,
    ) -> None:
        check_num_nodes(num_nodes)
        if keyframe_every < 0:
            raise InputError(f"keyframe_every {keyframe_every}: must be >= 0")
        self.num_nodes = num_nodes
        self.node_ids = np.arange(num_nodes, dtype=np.int64) if node_ids is None else np.asarray(node_ids, np.int64)
        if len(self.node_ids) != num_nodes:
            raise InputError(f"{len(self.node_ids)} node ids for {num_nodes} nodes")
        self.weighted = weighted
        self.keyframe_every = keyframe_every
        self._encode_every = 1 if keyframes_only else keyframe_every  # what the encoder forces
        self.source = source or {}
        self.id_dtype = id_dtype(num_nodes)
        self.pos_dtype = self.id_dtype  # see format.id_dtype
        self._dir = None if path is None else AtomicDirectory(path, force)
        specs = record_array_specs(self.id_dtype, weighted)
        self._row_bytes = {name: row_bytes(dtype, rows) for name, (dtype, rows) in specs.items()}
        self._sinks: dict[str, _MemorySink | NpyWriter] = {
            name: _MemorySink(dtype, rows)
            if self._dir is None
            else NpyWriter(self._dir.tmp / f"{name}.npy", dtype, rows)
            for name, (dtype, rows) in specs.items()
        }
        self._counts: dict[str, list[int]] = {name: [] for name in COUNT_ARRAYS}
        self._node_data: dict[str, tuple[np.ndarray, bool]] = {}
        self._keys = np.zeros(0, dtype=np.int64)
        self._w: np.ndarray | None = np.zeros(0, dtype=np.float32) if weighted else None

    @property
    def num_snapshots(self) -> int:
        return len(self._counts["flags"])

    @property
    def current_keys(self) -> np.ndarray:
        """Sorted ``int64`` keys of the last snapshot added (read-only by convention)."""
        return self._keys

    def add(self, keys: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Append the next snapshot, given whole: ``int64 [E]`` sorted unique keys."""
        keys = np.asarray(keys, dtype=np.int64)
        w = self._check_weights(weights, len(keys))
        removed, added, added_w, rew, rew_v = diff_snapshots(self._keys, self._w, keys, w)
        self._emit(keys, w, removed, added, added_w, rew, rew_v)

    def add_change(
        self,
        removed: np.ndarray,
        added: np.ndarray,
        added_weights: np.ndarray | None = None,
        reweighted: np.ndarray | None = None,
        reweight_values: np.ndarray | None = None,
    ) -> None:
        """Append the next snapshot, given as a change to the previous one.

        Args:
            removed: sorted positions in the previous snapshot.
            added: sorted ``int64`` keys, none of them in the previous snapshot.
            reweighted, reweight_values: sorted positions of kept edges and new weights.
        """
        removed = np.asarray(removed, dtype=np.int64)
        added = np.asarray(added, dtype=np.int64)
        added_w = self._check_weights(added_weights, len(added))
        rew = np.zeros(0, np.int64) if reweighted is None else np.asarray(reweighted, np.int64)
        rew_v = None if not self.weighted else self._check_weights(reweight_values, len(rew))
        step = Delta(False, keys_to_pairs(added, self.num_nodes, self.id_dtype), added_w, removed, rew, rew_v, 0)
        keys, w = apply_delta(self._keys, self._w, step, self.num_nodes)
        self._emit(keys, w, removed, added, added_w, rew, rew_v)

    def _check_weights(self, weights: np.ndarray | None, n: int) -> np.ndarray | None:
        if not self.weighted:
            return None
        w = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        if len(w) != n:
            raise InputError(f"{len(w)} weights for {n} edges")
        if not np.isfinite(w).all():
            bad = np.flatnonzero(~np.isfinite(w))[0]
            raise InputError(
                f"snapshot {self.num_snapshots}: edge weight {w[bad]} (edge {bad}); weights must be finite numbers"
            )
        return w

    def _emit(self, keys, w, removed, added, added_w, rew, rew_v) -> None:
        t = self.num_snapshots
        prev_n = len(self._keys)
        if max(prev_n, len(keys)) > np.iinfo(self.pos_dtype).max:
            raise InputError(f"snapshot {t} has {len(keys):,} edges: more than positions of {self.pos_dtype} can index")
        forced = t == 0 or (self._encode_every > 0 and t % self._encode_every == 0)
        enc = choose_encoding(len(keys), len(added), len(removed), len(rew), prev_n, self._row_bytes, forced)
        s = self._sinks
        if enc.keyframe:
            counts = (enc.flags, len(keys), 0, 0)
            s["pairs"].write(keys_to_pairs(keys, self.num_nodes, self.id_dtype))
            if self.weighted:
                s["weights"].write(w)
        else:
            counts = (enc.flags, len(added), len(removed), len(rew))
            s["pairs"].write(keys_to_pairs(added, self.num_nodes, self.id_dtype))
            self._write_positions(enc, "removed", removed, prev_n)
            if self.weighted:
                s["weights"].write(added_w)
                self._write_positions(enc, "reweighted", rew, prev_n)
                s["reweight_values"].write(rew_v)
        for name, v in zip(self._counts, counts, strict=True):
            self._counts[name].append(v)
        self._keys, self._w = keys, w

    def _write_positions(self, enc: Encoding, name: str, positions: np.ndarray, prev_n: int) -> None:
        as_mask = enc.as_mask(name)
        self._sinks[enc.positions_array(name)].write(positions_to_mask(positions, prev_n) if as_mask else positions)

    def set_node_data(self, name: str, array: np.ndarray | None, per_snapshot: bool) -> None:
        """Store node features (``name="x"``) or targets (``"y"``) beside the graph.

        Args:
            array: ``[N, ...]`` when static, ``[T, N, ...]`` when ``per_snapshot``.
        """
        if name not in ("x", "y"):
            raise ValueError(f"StoreBuilder.set_node_data: name must be 'x' or 'y', got {name!r}")
        if array is None:
            self._node_data.pop(name, None)
            return
        array = np.asarray(array)
        array = array.astype(np.int64 if array.dtype.kind in "iub" and name == "y" else np.float32, copy=False)
        self._node_data[name] = (array, per_snapshot)

    def finish(self) -> DeltaStore:
        """Close the store. On disk: write the manifest and move the directory in place."""
        if self.num_snapshots == 0:
            raise InputError("a store needs at least one snapshot")
        t = self.num_snapshots
        meta: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "num_nodes": self.num_nodes,
            "num_snapshots": t,
            "weighted": self.weighted,
            "keyframe_every": self.keyframe_every,
            "id_dtype": self.id_dtype.name,
            "node_data": {},
            "source": self.source,
        }
        for name, (arr, per) in self._node_data.items():
            lead = (t, self.num_nodes) if per else (self.num_nodes,)
            if tuple(arr.shape[: len(lead)]) != lead:
                raise InputError(f"node data {name!r} has shape {tuple(arr.shape)}, expected leading dimensions {lead}")
            meta["node_data"][name] = "snapshot" if per else "static"
        small = {n: compact_counts(n, v) for n, v in self._counts.items()}
        small["node_ids"] = self.node_ids
        small.update({n: a for n, (a, _) in self._node_data.items()})
        if self._dir is None:
            store = DeltaStore({n: s.close() for n, s in self._sinks.items()} | small, meta)
            return self._keyframes_only(store) if self._deltas_too_big(store) else store
        with self._dir:
            entries = {n: s.close() for n, s in self._sinks.items()}
            entries |= {n: write_array(self._dir.tmp / f"{n}.npy", a) for n, a in small.items()}
            meta["arrays"] = entries
            (self._dir.tmp / "manifest.json").write_text(json.dumps(meta, indent=1) + "\n")
            draft = DeltaStore.open(self._dir.tmp)
            if self._deltas_too_big(draft):
                store = self._keyframes_only(draft)  # written to the final path by its own builder
                self._dir.abort()
                return store
            self._dir.commit()
        return DeltaStore.open(self._dir.path)

    def _deltas_too_big(self, store: DeltaStore) -> bool:
        """Whether the deltas did not pay for their index.

        The per-snapshot index (flags, removal counts) costs a few bytes per snapshot; on
        a graph whose deltas save less than that, the store ends up larger than full
        snapshots, and keyframes only are exactly as large as full snapshots.
        """
        st = store.stats(per_snapshot=False)
        return st["stored_graph_bytes"] > st["full_snapshot_bytes"] and self._encode_every != 1

    def _keyframes_only(self, store: DeltaStore) -> DeltaStore:
        """``store`` re-encoded with every snapshot a keyframe (to this builder's path)."""
        b = StoreBuilder(
            self.num_nodes,
            self.node_ids,
            weighted=self.weighted,
            keyframe_every=self.keyframe_every,
            path=None if self._dir is None else self._dir.path,
            force=self._dir is not None and self._dir.force,
            source=self.source,
            keyframes_only=True,
        )
        with b:
            for t in range(store.num_snapshots):
                b.add(*store.snapshot_keys(t))
            for name, (arr, per) in self._node_data.items():
                b.set_node_data(name, arr, per)
            return b.finish()

    def abort(self) -> None:
        """Drop a store being written to disk (nothing is left behind)."""
        for s in self._sinks.values():
            s.abort()
        if self._dir is not None:
            self._dir.abort()

    def __enter__(self) -> StoreBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        if self._dir is not None:
            name_failed_write(exc, self._dir.path)


class DeltaStore:
    """A dynamic graph of T snapshots over N nodes, stored as keyframes plus deltas.

    Open one with :meth:`open` (memory-mapped) or build one with :meth:`from_snapshots`
    (in memory; :meth:`save` writes it). Snapshot ``t`` is rebuilt from the nearest
    keyframe at or before t; walking forward in time applies one delta per step.
    """

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], path: Path | None = None) -> None:
        self._a = arrays
        self.meta = meta
        self.path = path
        self.num_nodes: int = int(meta["num_nodes"])
        self.num_snapshots: int = int(meta["num_snapshots"])
        self.weighted: bool = bool(meta["weighted"])
        self.keyframe_every: int = int(meta["keyframe_every"])
        self._layout = self._index()
        self.num_edges: np.ndarray = self._layout.num_edges  # int64 [T]
        self._cache: tuple[int, np.ndarray, np.ndarray | None] | None = None

    # -- building -------------------------------------------------------------

    @classmethod
    def from_snapshots(
        cls,
        snapshots: Snapshots,
        *,
        keyframe_every: int = DEFAULT_KEYFRAME_EVERY,
        path: Path | str | None = None,
        force: bool = False,
        source: dict[str, Any] | None = None,
    ) -> DeltaStore:
        """Encode in-memory snapshots; in memory, or atomically into ``path``."""
        with StoreBuilder(
            snapshots.num_nodes,
            snapshots.node_ids,
            weighted=snapshots.weights is not None,
            keyframe_every=keyframe_every,
            path=path,
            force=force,
            source=source,
        ) as b:
            for t, keys in enumerate(snapshots.keys):
                b.add(keys, None if snapshots.weights is None else snapshots.weights[t])
            b.set_node_data("x", snapshots.x, snapshots.x_per_snapshot)
            b.set_node_data("y", snapshots.y, snapshots.y_per_snapshot)
            return b.finish()

    def save(self, path: Path | str, force: bool = False) -> DeltaStore:
        """Write this store to ``path`` atomically; return the opened copy."""
        with AtomicDirectory(path, force) as d:
            entries = {name: write_array(d.tmp / f"{name}.npy", arr) for name, arr in self._a.items()}
            meta = {k: v for k, v in self.meta.items() if k != "arrays"} | {"arrays": entries}
            (d.tmp / "manifest.json").write_text(json.dumps(meta, indent=1) + "\n")
            d.commit()
        return DeltaStore.open(path)

    # -- opening --------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str) -> DeltaStore:
        """Open a store directory, memory-mapping its arrays.

        Checks the manifest, the format version and every array's dtype, shape and
        length (cheap); :meth:`verify` also checks checksums and every snapshot.

        Raises:
            InputError: not a store, a newer format, or a damaged array.
        """
        path = Path(path)
        manifest = path / "manifest.json"
        if not path.is_dir():
            raise InputError(f"{path}: no such store directory")
        if not manifest.is_file():
            raise InputError(f"{path}: not a dyngnn store (no manifest.json)")
        try:
            meta = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{manifest}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"{manifest}: not a dyngnn store manifest")
        version = meta.get("format_version")
        if not isinstance(version, int):
            raise InputError(f"{manifest}: format_version is missing")
        if version > FORMAT_VERSION:
            raise InputError(
                f"{path}: store format version {version} is newer than this dyngnn reads "
                f"({FORMAT_VERSION}); upgrade dyngnn"
            )
        for key in ("num_nodes", "num_snapshots", "keyframe_every"):
            if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool) or meta[key] < 0:
                raise InputError(f"{manifest}: {key} must be an integer >= 0, got {meta.get(key)!r}")
        try:
            entries = meta["arrays"]
            arrays = {name: open_array(path, name, entry) for name, entry in entries.items()}
            return cls(arrays, meta, path)
        except (KeyError, TypeError) as e:
            raise InputError(f"{manifest}: malformed manifest (missing {e})") from None

    def _index(self) -> RecordLayout:
        """Check the counts and arrays fit together; the layout they describe."""
        where = self.path or "store"
        t = self.num_snapshots
        a = self._a
        for name in (*COUNT_ARRAYS, "node_ids", "pairs"):
            if name not in a:
                raise InputError(f"{where}: array {name!r} is missing")
        for name in COUNT_ARRAYS:
            if a[name].shape != (t,) and (name == "n_pairs" or a[name].shape != (0,)):
                raise InputError(f"{where}: array {name!r} has shape {a[name].shape}, expected ({t},)")
        if a["node_ids"].shape != (self.num_nodes,):
            raise InputError(f"{where}: node_ids has shape {a['node_ids'].shape}, expected ({self.num_nodes},)")
        layout = RecordLayout.from_counts(*(a[name] for name in COUNT_ARRAYS))
        if t == 0 or not layout.keyframe[0]:
            raise InputError(f"{where}: snapshot 0 is not a keyframe")
        names = [n for n in RECORD_ARRAYS if n not in WEIGHTED_ARRAYS]
        if self.weighted:
            names += WEIGHTED_ARRAYS
        for name in names:
            if name not in a:
                raise InputError(f"{where}: array {name!r} is missing")
            if len(a[name]) != layout.offsets[name][-1]:
                raise InputError(
                    f"{where}: array {name!r} has {len(a[name])} entries, the counts say {layout.offsets[name][-1]}"
                )
        return layout

    # -- reading --------------------------------------------------------------

    @property
    def node_ids(self) -> np.ndarray:
        """``int64 [N]``: the original id of every node."""
        return self._a["node_ids"]

    def __len__(self) -> int:
        return self.num_snapshots

    def is_keyframe(self, t: int) -> bool:
        return bool(self._layout.keyframe[t])

    def encoding(self, t: int) -> Encoding:
        """How snapshot ``t`` is stored: whole, or a delta with its positions as positions
        or as bitmasks."""
        return self._layout.encoding(self._check_t(t))

    def keyframe_before(self, t: int) -> int:
        """The nearest keyframe at or before snapshot ``t``: where rebuilding t starts."""
        return int(self._layout.last_keyframe[self._check_t(t)])

    def _slice(self, name: str, t: int) -> np.ndarray:
        return np.asarray(self._a[name][self._layout.span(name, t)])

    def delta(self, t: int) -> Delta:
        """Decode stored snapshot ``t`` (a keyframe or a delta) without applying it."""
        t = self._check_t(t)
        pairs = self._slice("pairs", t)
        weights = self._slice("weights", t) if self.weighted else None
        removed = self._positions("removed", t)
        if self.weighted:
            reweighted = self._positions("reweighted", t)
            values = self._slice("reweight_values", t)
        else:
            reweighted, values = np.zeros(0, dtype=np.int64), None
        nbytes = sum(self._slice(n, t).nbytes for n in RECORD_ARRAYS if n in self._a) + sum(
            self._a[n].dtype.itemsize for n in COUNT_ARRAYS if len(self._a[n])
        )
        return Delta(self.is_keyframe(t), pairs, weights, removed, reweighted, values, nbytes)

    def encoded_positions(self, name: str, t: int) -> tuple[np.ndarray, bool]:
        """Removed (``name="removed"``) or re-weighted positions of delta t as stored:
        ``(int positions, False)`` or ``(uint8 little-endian bitmask over t-1, True)``."""
        enc = self._layout.encoding(t)
        return self._slice(enc.positions_array(name), t), enc.as_mask(name)

    def _positions(self, name: str, t: int) -> np.ndarray:
        stored, as_mask = self.encoded_positions(name, t)
        return mask_to_positions(stored, int(self._layout.prev[t])) if as_mask else stored.astype(np.int64)

    def _check_t(self, t: int) -> int:
        try:
            t = operator.index(t)  # ints, numpy and torch integers; never 1.5 taken as 1
        except TypeError:
            raise TypeError(f"snapshot index must be an integer, got {t!r}") from None
        if not -self.num_snapshots <= t < self.num_snapshots:
            raise IndexError(f"snapshot {t} out of range for a store of {self.num_snapshots} snapshots")
        return t % self.num_snapshots

    def snapshot_keys(self, t: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Snapshot ``t`` as sorted ``int64`` keys ``src * N + dst`` and float32 weights.

        Starts from the last snapshot read when that is on the way from the nearest
        keyframe, so reading in time order applies one delta per step. The arrays are
        read-only (the store keeps them for the next call); copy them to modify.
        """
        t = self._check_t(t)
        start = self.keyframe_before(t)
        keys, w = np.zeros(0, dtype=np.int64), None
        if self._cache is not None and start <= self._cache[0] <= t:
            start, keys, w = self._cache
            start += 1
        for s in range(start, t + 1):
            keys, w = apply_delta(keys, w, self.delta(s), self.num_nodes)
        # the cache hands out the same arrays again: nobody may write to them
        keys.flags.writeable = False
        if w is not None:
            w.flags.writeable = False
        self._cache = (t, keys, w)
        return keys, w

    def snapshot(self, t: int):
        """Snapshot ``t``: ``(edge_index int64 [2, E] sorted by (src, dst), edge_weight float32 [E] or None)``."""
        import torch

        keys, w = self.snapshot_keys(t)
        ei = torch.from_numpy(keys_to_edge_index(keys, self.num_nodes))
        return ei, None if w is None else torch.from_numpy(w.copy())

    def __iter__(self) -> Iterator:
        for t in range(self.num_snapshots):
            yield self.snapshot(t)

    def node_array(self, name: str) -> np.ndarray | None:
        """The whole stored node features (``"x"``) or targets (``"y"``): ``[N, ...]`` when
        static, ``[T, N, ...]`` per snapshot (see ``meta["node_data"]``), or None."""
        return self._a[name] if name in self.meta.get("node_data", {}) else None

    def node_data(self, name: str, t: int) -> np.ndarray | None:
        """Node features (``"x"``) or targets (``"y"``) at snapshot ``t``, or None."""
        kind = self.meta.get("node_data", {}).get(name)
        if kind is None:
            return None
        return np.asarray(self._a[name][self._check_t(t)] if kind == "snapshot" else self._a[name])

    def to_pyg(self, t: int):
        """Snapshot ``t`` as a ``torch_geometric.data.Data`` (x and y when stored)."""
        import torch
        from torch_geometric.data import Data

        ei, w = self.snapshot(t)
        data = Data(edge_index=ei, num_nodes=self.num_nodes)
        if w is not None:
            data.edge_weight = w
        for name in ("x", "y"):
            arr = self.node_data(name, t)
            if arr is not None:
                data[name] = torch.from_numpy(np.array(arr))
        return data

    def to_snapshots(self) -> Snapshots:
        """Every snapshot, decoded, in memory."""
        keys, weights = [], []
        for t in range(self.num_snapshots):
            k, w = self.snapshot_keys(t)
            keys.append(k)
            weights.append(w)
        kinds = self.meta.get("node_data", {})
        return Snapshots(
            num_nodes=self.num_nodes,
            node_ids=np.asarray(self.node_ids),
            keys=keys,
            weights=weights if self.weighted else None,
            x=None if "x" not in kinds else np.asarray(self.node_array("x")),
            y=None if "y" not in kinds else np.asarray(self.node_array("y")),
            x_per_snapshot=kinds.get("x") == "snapshot",
            y_per_snapshot=kinds.get("y") == "snapshot",
        )

    # -- accounting and checks ------------------------------------------------

    def full_bytes(self) -> np.ndarray:
        """``int64 [T]``: bytes of every snapshot stored whole.

        Its pairs and weights plus one edge count per snapshot (the smallest unsigned
        dtype that holds the largest count), the least a whole-snapshot layout needs.
        """
        return full_snapshot_bytes(self.num_edges, np.dtype(self.meta["id_dtype"]), self.weighted)

    def stats(self, per_snapshot: bool = True) -> dict[str, Any]:
        """Sizes and encodings: what ``dyngnn data inspect`` prints."""
        graph = sum(self._a[n].nbytes for n in GRAPH_ARRAYS if n in self._a)
        index = sum(self._a[n].nbytes for n in COUNT_ARRAYS)
        per = []
        for t in range(self.num_snapshots if per_snapshot else 0):
            kf = self.is_keyframe(t)
            n_pairs = int(self._layout.n_pairs[t])
            per.append(
                {
                    "t": t,
                    "edges": int(self.num_edges[t]),
                    "encoding": "keyframe" if kf else "delta",
                    "added": 0 if kf else n_pairs,
                    "removed": int(self._layout.n_removed[t]),
                    "reweighted": int(self._layout.n_reweighted[t]),
                }
            )
        node_data = {
            name: {"kind": kind, "shape": list(self._a[name].shape), "bytes": int(self._a[name].nbytes)}
            for name, kind in self.meta.get("node_data", {}).items()
        }
        return {
            "path": None if self.path is None else str(self.path),
            "format_version": self.meta["format_version"],
            "num_nodes": self.num_nodes,
            "num_snapshots": self.num_snapshots,
            "weighted": self.weighted,
            "keyframe_every": self.keyframe_every,
            "keyframes": int(self._layout.keyframe.sum()),
            "total_edges": int(self.num_edges.sum()),
            "stored_graph_bytes": int(graph),
            "index_bytes": int(index),
            "full_snapshot_bytes": int(self.full_bytes().sum()),
            "node_table_bytes": int(self._a["node_ids"].nbytes),
            "node_data": node_data,
            "source": self.meta.get("source", {}),
            "snapshots": per,
        }

    def check_node_ids(self) -> None:
        """Every stored edge's node ids are in ``0..N-1``: one pass over the stored pairs,
        where a damaged store would otherwise fail mid-epoch (:meth:`verify` checks all).

        Raises:
            InputError: an id out of range, naming the store.
        """
        pairs = self._a["pairs"]
        if len(pairs) and (int(pairs.min()) < 0 or int(pairs.max()) >= self.num_nodes):
            raise InputError(
                f"{self.path or 'store'}: node ids outside 0..{self.num_nodes - 1} (damaged store? "
                "dyngnn data verify checks it)"
            )

    def check_checksums(self) -> None:
        """Check the sha256 of every array against the manifest (reads every byte once).

        Raises:
            InputError: the first array whose bytes differ, naming its file.
        """
        where = self.path or "store"
        for name, entry in self.meta.get("arrays", {}).items():
            if data_sha256(self._a[name]) != entry["sha256"]:
                raise InputError(f"{where}/{entry['file']}: checksum mismatch (the file is corrupted)")

    def verify(self) -> None:
        """Check every checksum, then replay every snapshot and check its invariants.

        Raises:
            InputError: the first problem found, naming the array or snapshot.
        """
        where = self.path or "store"
        self.check_checksums()
        keys = np.zeros(0, dtype=np.int64)
        n = self.num_nodes
        for t in range(self.num_snapshots):
            d = self.delta(t)
            prev = len(keys)
            if d.pairs.size and (d.pairs.min() < 0 or d.pairs.max() >= n):
                raise InputError(f"{where}: snapshot {t}: node id outside 0..{n - 1}")
            added = pairs_to_keys(d.pairs, n)
            if np.any(np.diff(added) <= 0):
                raise InputError(f"{where}: snapshot {t}: edges are not sorted and unique")
            for what, pos in (("removed", d.removed), ("re-weighted", d.reweighted)):
                if len(pos) and (pos[0] < 0 or pos[-1] >= prev or np.any(np.diff(pos) <= 0)):
                    raise InputError(f"{where}: snapshot {t}: {what} positions are out of range or unsorted")
            if not d.keyframe and len(added):
                at = np.minimum(np.searchsorted(keys, added), max(prev - 1, 0))
                if prev and np.any(keys[at] == added):
                    raise InputError(f"{where}: snapshot {t}: an added edge is already present")
            for values in (d.weights, d.reweight_values):
                if values is not None and not np.isfinite(values).all():
                    raise InputError(f"{where}: snapshot {t}: a weight is not a finite number")
            keys, _ = apply_delta(keys, np.zeros(prev, np.float32) if self.weighted else None, d, n)
            if len(keys) != self.num_edges[t]:
                raise InputError(f"{where}: snapshot {t}: {len(keys)} edges, the counts say {self.num_edges[t]}")
