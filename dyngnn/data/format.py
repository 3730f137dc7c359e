"""The on-disk format of a DeltaStore: array names and dtypes, flag bits, cost rule, layout.

A store is one directory: ``manifest.json`` (format version, sizes, dtypes, a sha256 per
array) and one memory-mappable ``.npy`` per array. Each snapshot is a *record*: either a
keyframe (its sorted pairs, and weights) or a delta against the previous snapshot (added
pairs and weights; removed and re-weighted positions, each set as positions or as a
bitmask over the previous snapshot, and the new weights). Every record array is the
concatenation of all snapshots' slices; four count arrays (one entry per snapshot)
locate them. :func:`record_entries` says how long a record's slices are: the writer
costs candidate encodings with it, the reader's :class:`RecordLayout` indexes the store with it.

Legend: ``T`` snapshots, ``E_t`` edges of snapshot t, ``prev`` the edges of snapshot
t-1 (what positions and bitmasks index), entries = rows of an array (a pair is one row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

FORMAT = "dyngnn-delta-store"
FORMAT_VERSION = 1
DEFAULT_KEYFRAME_EVERY = 64

KEYFRAME = 1  # flag bits, one byte per snapshot
REMOVED_AS_MASK = 2
REWEIGHTED_AS_MASK = 4

# one entry per snapshot
COUNT_ARRAYS = ("flags", "n_pairs", "n_removed", "n_reweighted")
# every snapshot's slice, concatenated; the order is the manifest's
RECORD_ARRAYS = (
    "pairs",
    "weights",
    "removed",
    "removed_mask",
    "reweighted",
    "reweighted_mask",
    "reweight_values",
)
# absent from unweighted stores
WEIGHTED_ARRAYS = ("weights", "reweighted", "reweighted_mask", "reweight_values")
GRAPH_ARRAYS = COUNT_ARRAYS + RECORD_ARRAYS


def id_dtype(num_nodes: int) -> np.dtype:
    """Node ids (and positions, which are < E <= N^2; int32 covers what fits memory)."""
    return np.dtype(np.int32 if num_nodes < 2**31 else np.int64)


def record_array_specs(ids: np.dtype, weighted: bool) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """``{name: (dtype, row shape)}`` of the record arrays a store holds, in manifest order."""
    f32, u8 = np.dtype(np.float32), np.dtype(np.uint8)
    dtypes = {
        "pairs": ids,
        "weights": f32,
        "removed": ids,
        "removed_mask": u8,
        "reweighted": ids,
        "reweighted_mask": u8,
        "reweight_values": f32,
    }
    return {
        name: (dtypes[name], (2,) if name == "pairs" else ())
        for name in RECORD_ARRAYS
        if weighted or name not in WEIGHTED_ARRAYS
    }


def row_bytes(dtype: np.dtype, row_shape: tuple[int, ...]) -> int:
    return int(np.dtype(dtype).itemsize * np.prod(row_shape, dtype=np.int64))


def full_edge_bytes(ids: np.dtype, weighted: bool) -> int:
    """Bytes of one edge of a snapshot sent or stored whole: its pair and its weight."""
    return 2 * np.dtype(ids).itemsize + (4 if weighted else 0)


def full_snapshot_bytes(num_edges: np.ndarray, ids: np.dtype, weighted: bool) -> np.ndarray:
    """``int64 [T]``: bytes of every snapshot stored whole.

    Its pairs and weights plus one edge count per snapshot (the smallest unsigned dtype
    that holds the largest count), the least a whole-snapshot layout needs.
    """
    count = count_dtype([int(num_edges.max())]).itemsize
    return num_edges * full_edge_bytes(ids, weighted) + count


# -- flags ------------------------------------------------------------------


def decode_flags(flags: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keyframe, removed_as_mask, reweighted_as_mask)`` booleans, for one flag byte or
    an array of them; a keyframe's mask bits mean nothing."""
    flags = np.asarray(flags)
    kf = (flags & KEYFRAME) != 0
    return kf, ~kf & ((flags & REMOVED_AS_MASK) != 0), ~kf & ((flags & REWEIGHTED_AS_MASK) != 0)


@dataclass(frozen=True)
class Encoding:
    """How one snapshot is stored: whole, or as a delta whose removed and re-weighted
    positions are each stored as positions or as a bitmask over the previous snapshot."""

    keyframe: bool
    removed_as_mask: bool = False
    reweighted_as_mask: bool = False

    @classmethod
    def from_flags(cls, flags: int) -> Encoding:
        return cls(*(bool(b) for b in decode_flags(flags)))

    @property
    def flags(self) -> int:
        if self.keyframe:
            return KEYFRAME
        return (REMOVED_AS_MASK if self.removed_as_mask else 0) | (REWEIGHTED_AS_MASK if self.reweighted_as_mask else 0)

    def as_mask(self, name: str) -> bool:
        """Whether the ``"removed"`` or ``"reweighted"`` positions are stored as a bitmask."""
        return self.removed_as_mask if name == "removed" else self.reweighted_as_mask

    def positions_array(self, name: str) -> str:
        """The record array holding the ``"removed"`` or ``"reweighted"`` positions."""
        return f"{name}_mask" if self.as_mask(name) else name


# -- layout and cost --------------------------------------------------------


def mask_bytes(prev: np.ndarray | int) -> np.ndarray | int:
    """Bytes of a bitmask over ``prev`` edges."""
    return -(-prev // 8)


def record_entries(
    flags: np.ndarray | int,
    n_pairs: np.ndarray | int,
    n_removed: np.ndarray | int,
    n_reweighted: np.ndarray | int,
    prev: np.ndarray | int,
) -> dict[str, np.ndarray]:
    """Entries each record array holds for one snapshot, or for each of an array of them.

    Args:
        flags: the flag byte. n_pairs: the keyframe's edges or the delta's added edges.
        n_removed, n_reweighted: the delta's positions (0 for a keyframe).
        prev: edges of the previous snapshot.
    """
    _, rm_mask, rw_mask = decode_flags(flags)
    masked = mask_bytes(np.asarray(prev, dtype=np.int64))
    return {
        "pairs": np.asarray(n_pairs),
        "weights": np.asarray(n_pairs),
        "removed": np.where(rm_mask, 0, n_removed),
        "removed_mask": np.where(rm_mask, masked, 0),
        "reweighted": np.where(rw_mask, 0, n_reweighted),
        "reweighted_mask": np.where(rw_mask, masked, 0),
        "reweight_values": np.asarray(n_reweighted),
    }


def record_bytes(entries: Mapping[str, np.ndarray], rows: Mapping[str, int]) -> int:
    """Bytes of one record, given its entries and the row bytes of the arrays stored."""
    return sum(int(entries[name]) * b for name, b in rows.items())


def choose_encoding(
    edges: int, n_added: int, n_removed: int, n_reweighted: int, prev: int, rows: Mapping[str, int], forced: bool
) -> Encoding:
    """The cost rule: each position set as positions or a bitmask, whichever is smaller,
    then the smaller of the delta and the whole snapshot (a tie goes to the keyframe,
    which needs nothing before it); ``forced`` keyframes keep random access cheap.

    Args:
        edges: of the snapshot; n_added, n_removed, n_reweighted: its delta.
        rows: row bytes of every record array the store holds.
    """
    pos_b = rows["removed"]  # both position arrays share the dtype
    delta = Encoding(False, mask_bytes(prev) < n_removed * pos_b, mask_bytes(prev) < n_reweighted * pos_b)
    if forced:
        return Encoding(True)
    whole = record_bytes(record_entries(KEYFRAME, edges, 0, 0, prev), rows)
    change = record_bytes(record_entries(delta.flags, n_added, n_removed, n_reweighted, prev), rows)
    return Encoding(True) if whole <= change else delta


# -- counts -----------------------------------------------------------------


def count_dtype(values: list[int]) -> np.dtype:
    """The smallest unsigned dtype holding every value."""
    top = max(values, default=0)
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def compact_counts(name: str, values: list[int]) -> np.ndarray:
    """Per-snapshot counts in the smallest dtype; empty when they hold no information.

    An empty ``flags`` means "every snapshot is a keyframe", an empty count array means
    "all zero", so a store of keyframes only is exactly as large as full snapshots.
    """
    if name == "flags":
        return np.zeros(0, np.uint8) if all(v == KEYFRAME for v in values) else np.asarray(values, np.uint8)
    if name != "n_pairs" and not any(values):
        return np.zeros(0, np.uint8)
    return np.asarray(values, dtype=count_dtype(values))


@dataclass(frozen=True)
class RecordLayout:
    """Where every snapshot's record lies in the record arrays, from the stored counts.

    Attributes (all ``[T]`` but ``offsets``):
        flags: ``uint8`` flag bytes. keyframe: bool.
        n_pairs: keyframe edges or added edges. n_removed, n_reweighted: ``int64``, 0 at keyframes.
        num_edges: ``int64`` edges of each snapshot. prev: ``int64`` edges of the one before.
        last_keyframe: the nearest keyframe at or before each snapshot.
        offsets: ``{record array: int64 [T + 1]}``: snapshot t is ``[offsets[t], offsets[t + 1])``.
    """

    flags: np.ndarray
    keyframe: np.ndarray
    n_pairs: np.ndarray
    n_removed: np.ndarray
    n_reweighted: np.ndarray
    num_edges: np.ndarray
    prev: np.ndarray
    last_keyframe: np.ndarray
    offsets: dict[str, np.ndarray]

    @classmethod
    def from_counts(
        cls, flags: np.ndarray, n_pairs: np.ndarray, n_removed: np.ndarray, n_reweighted: np.ndarray
    ) -> RecordLayout:
        """Index a store from its count arrays as stored (compacted ones empty, see
        :func:`compact_counts`); ``n_pairs`` has one entry per snapshot."""
        t = len(n_pairs)
        flags = np.asarray(flags) if len(flags) else np.full(t, KEYFRAME, np.uint8)
        kf = decode_flags(flags)[0]
        n_pairs = np.asarray(n_pairs, dtype=np.int64)

        def per_delta(stored: np.ndarray) -> np.ndarray:
            return np.where(kf, 0, np.asarray(stored, dtype=np.int64)) if len(stored) else np.zeros(t, np.int64)

        n_rm, n_rw = per_delta(n_removed), per_delta(n_reweighted)
        last_kf = np.maximum.accumulate(np.where(kf, np.arange(t), 0))
        change = np.cumsum(np.where(kf, 0, n_pairs - n_rm))
        num_edges = n_pairs[last_kf] + change - change[last_kf]
        prev = np.concatenate([[0], num_edges[:-1]])
        entries = record_entries(flags, n_pairs, n_rm, n_rw, prev)
        offsets = {name: np.concatenate([[0], np.cumsum(e)]) for name, e in entries.items()}
        return cls(flags, kf, n_pairs, n_rm, n_rw, num_edges, prev, last_kf, offsets)

    def encoding(self, t: int) -> Encoding:
        return Encoding.from_flags(int(self.flags[t]))

    def span(self, name: str, t: int) -> slice:
        """Snapshot t's slice of record array ``name``."""
        p = self.offsets[name]
        return slice(int(p[t]), int(p[t + 1]))
