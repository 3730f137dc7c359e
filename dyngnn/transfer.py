"""Host-to-device snapshot streaming: the device keeps the current snapshot and applies deltas.

Three modes behind one interface (:class:`SnapshotStream`), with exact byte accounting:

- ``full``: every snapshot of the block is sent whole (the baseline);
- ``delta``: the block's first snapshot is sent whole, then each stored record as it is
  stored (a delta's encoded arrays; a forced keyframe whole);
- ``resident``: the block's slice of the store (its nearest keyframe and the records
  after it) is sent once and kept on the device; later epochs move nothing.

``h2d_bytes`` counts the bytes of every array copied to the device; ``full_h2d_bytes``
what sending every snapshot whole (int pairs plus float32 weights) would have cost.
On CPU nothing is copied but the accounting is the same, so it is checked anywhere.

On CUDA, copies go from pinned memory on a side stream, and the next record is copied
while the current snapshot is being used. The delta rule applied on the device is
:mod:`dyngnn.data.delta`'s.

Legend: ``N`` nodes, ``E`` edges of a snapshot, keys ``int64 [E]`` ``src * N + dst``,
positions ``int64`` indices into the previous snapshot, a block ``[t0, t1)`` of snapshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dyngnn.data.delta import apply_change, apply_change_torch, keys_to_pairs, mask_to_positions_torch
from dyngnn.data.format import full_edge_bytes
from dyngnn.data.snapshots import edge_keys, key_ends
from dyngnn.data.store import DeltaStore

MODES = ("full", "delta", "resident")
_NO_CHANGE = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), None)


@dataclass
class DeviceSnapshot:
    """One snapshot on the device.

    Attributes:
        t: snapshot index in the store.
        keys: ``int64 [E]`` sorted keys ``src * N + dst``.
        weight: ``float32 [E]`` or None.
        changed: False when the edges and weights equal the previous snapshot's, so
            anything derived from the graph (its GCN normalisation) can be reused.
    """

    t: int
    keys: torch.Tensor
    weight: torch.Tensor | None
    changed: bool
    num_nodes: int

    @property
    def edge_index(self) -> torch.Tensor:
        """``int64 [2, E]`` sorted by (src, dst)."""
        return torch.stack(key_ends(self.keys, self.num_nodes))


@dataclass
class DeviceRecord:
    """A stored record on the device: a whole snapshot, or a change to the previous one."""

    whole: bool
    added: torch.Tensor  # int64 keys: the snapshot's edges when whole
    added_weight: torch.Tensor | None
    removed: torch.Tensor  # int64 positions in the previous snapshot
    reweighted: torch.Tensor
    reweight_values: torch.Tensor | None

    @property
    def empty(self) -> bool:
        return not self.whole and not (self.added.numel() or self.removed.numel() or self.reweighted.numel())

    @property
    def change(self) -> tuple[torch.Tensor | None, ...]:
        """The arguments of the delta rule after the snapshot's own keys and weights."""
        return self.removed, self.added, self.added_weight, self.reweighted, self.reweight_values


def apply_record(
    keys: torch.Tensor | None, weight: torch.Tensor | None, r: DeviceRecord
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply one record to a snapshot held as tensors on any device (pure).

    On CPU the numpy rule runs on the tensors' memory (it is faster there); elsewhere
    its torch twin (:func:`apply_record_torch`).
    """
    if r.whole:
        return r.added, r.added_weight
    if keys.device.type != "cpu":
        return apply_record_torch(keys, weight, r)
    k, w = apply_change(*(None if x is None else x.numpy() for x in (keys, weight, *r.change)))
    return torch.from_numpy(k), None if w is None else torch.from_numpy(w)


def apply_record_torch(
    keys: torch.Tensor, weight: torch.Tensor | None, r: DeviceRecord
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply a delta record in torch operations only (the accelerator path)."""
    return apply_change_torch(keys, weight, *r.change)


class SnapshotStream:
    """Streams snapshots ``[t0, t1)`` of a store to ``device``, one per step.

    Args:
        store: the DeltaStore.
        device: where snapshots live.
        mode: ``full``, ``delta`` or ``resident``.
        t0, t1: the block of snapshots to stream (default: all).

    Each pass (an epoch) adds to :attr:`h2d_bytes` and :attr:`full_h2d_bytes`;
    :meth:`reset_counters` zeroes them.
    """

    def __init__(
        self,
        store: DeltaStore,
        device: torch.device | str = "cpu",
        mode: str = "delta",
        t0: int = 0,
        t1: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"SnapshotStream: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.store, self.device, self.mode = store, torch.device(device), mode
        self.t0, self.t1 = t0, store.num_snapshots if t1 is None else t1
        if not 0 <= self.t0 < self.t1 <= store.num_snapshots:
            raise ValueError(f"SnapshotStream: block [{t0}, {t1}) outside 0..{store.num_snapshots}")
        self.h2d_bytes = 0
        self.full_h2d_bytes = 0
        self._kf = store.keyframe_before(self.t0)
        self._resident: list[DeviceRecord] | None = None
        self._side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._id_dtype = np.dtype(store.meta["id_dtype"])
        self._full_per_edge = full_edge_bytes(self._id_dtype, store.weighted)

    def __len__(self) -> int:
        return self.t1 - self.t0

    def reset_counters(self) -> None:
        self.h2d_bytes = 0
        self.full_h2d_bytes = 0

    def _copy(self, array: np.ndarray | None) -> torch.Tensor | None:
        """Copy one host array to the device, counting its bytes."""
        if array is None:
            return None
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # a memory-mapped slice: torch wants its own copy
            array = array.copy()
        host = torch.from_numpy(array)
        self.h2d_bytes += host.numel() * host.element_size()
        if self._side is None:
            return host
        with torch.cuda.stream(self._side):
            out = host.pin_memory().to(self.device, non_blocking=True)
        out.record_stream(torch.cuda.current_stream(self.device))
        return out

    def whole(self, t: int) -> torch.Tensor:
        """Snapshot ``t`` (outside the block, e.g. the next block's first snapshot as a
        link target) sent whole: its keys on the device. Counts in both byte totals."""
        before = self.h2d_bytes
        keys = self._whole(t).added
        self.full_h2d_bytes += self.h2d_bytes - before
        return keys

    def _keys(self, pairs: np.ndarray) -> torch.Tensor:
        dev = self._copy(pairs)
        return edge_keys(dev[:, 0].long(), dev[:, 1].long(), self.store.num_nodes)

    def _whole(self, t: int) -> DeviceRecord:
        keys, w = self.store.snapshot_keys(t)
        pairs = keys_to_pairs(keys, self.store.num_nodes, self._id_dtype)
        return DeviceRecord(True, self._keys(pairs), self._copy(w), *_NO_CHANGE)

    def _stored(self, t: int) -> DeviceRecord:
        """Snapshot t as stored: a keyframe whole, or a delta's encoded arrays."""
        d = self.store.delta(t)
        if d.keyframe:
            return DeviceRecord(True, self._keys(d.pairs), self._copy(d.weights), *_NO_CHANGE)
        weighted = self.store.weighted
        return DeviceRecord(
            False,
            self._keys(d.pairs),
            self._copy(d.weights),
            self._positions("removed", t),
            self._positions("reweighted", t) if weighted else _NO_CHANGE[0],
            self._copy(d.reweight_values) if weighted else None,
        )

    def _positions(self, name: str, t: int) -> torch.Tensor:
        """Positions cross in their stored form; a bitmask is expanded on the device."""
        raw, as_mask = self.store.encoded_positions(name, t)
        dev = self._copy(raw)
        return mask_to_positions_torch(dev, int(self.store.num_edges[t - 1])) if as_mask else dev.long()

    def _fetch(self, t: int) -> DeviceRecord | None:
        if self.mode == "full" or (self.mode == "delta" and t == self.t0):
            return self._whole(t)
        if self.mode == "delta":
            return self._stored(t)
        return None  # resident: already on the device

    def __iter__(self) -> Iterator[DeviceSnapshot]:
        if self.mode == "resident" and self._resident is None:
            self._resident = [self._stored(t) for t in range(self._kf, self.t1)]
        keys = weight = None
        pending = self._fetch(self.t0)
        for t in range(self.t0, self.t1):
            self.full_h2d_bytes += int(self.store.num_edges[t]) * self._full_per_edge
            if self._side is not None:
                torch.cuda.current_stream(self.device).wait_stream(self._side)
            if self.mode == "resident":
                start = self._kf if t == self.t0 else t
                records = self._resident[start - self._kf : t - self._kf + 1]
            else:
                records = [pending]
            for r in records:
                keys, weight = apply_record(keys, weight, r)
            # issue the next copy before the caller computes on this snapshot
            pending = self._fetch(t + 1) if t + 1 < self.t1 else None
            changed = t == self.t0 or not all(r.empty for r in records)
            yield DeviceSnapshot(t, keys, weight, changed, self.store.num_nodes)
