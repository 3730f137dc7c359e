"""The delta rule: how one snapshot becomes the next, in numpy and (for devices) in torch.

A snapshot is its sorted unique edge keys ``src * N + dst`` plus optional float32
weights. A change to it is: new weights at some positions, some positions removed,
sorted new keys inserted. :func:`apply_change` and :func:`apply_change_torch` are that
rule; :func:`diff_snapshots` is its inverse. Removed and re-weighted positions may be
stored as a little-endian bitmask over the previous snapshot's edges:
:func:`positions_to_mask` writes one, :func:`mask_to_positions` (and its torch twin)
reads it back.

Legend: ``N`` nodes, ``E`` edges of the previous snapshot, keys ``int64 [E]``,
pairs ``[M, 2]`` (src, dst), positions ``int64 [R]`` sorted indices into the previous
snapshot, bitmask ``uint8 [ceil(E / 8)]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dyngnn.data.snapshots import edge_keys, key_ends

if TYPE_CHECKING:
    import torch


@dataclass
class Delta:
    """One stored snapshot, decoded.

    Attributes:
        keyframe: True when ``pairs`` is the whole snapshot.
        pairs: ``[M, 2]`` (src, dst), sorted: the keyframe's edges or the added edges.
        weights: ``float32 [M]`` for ``pairs``, or None (unweighted store).
        removed: ``int64 [R]`` sorted positions in the previous snapshot.
        reweighted: ``int64 [W]`` sorted positions in the previous snapshot.
        reweight_values: ``float32 [W]`` new weights, or None.
        nbytes: bytes this snapshot occupies in the store (its counts included).
    """

    keyframe: bool
    pairs: np.ndarray
    weights: np.ndarray | None
    removed: np.ndarray
    reweighted: np.ndarray
    reweight_values: np.ndarray | None
    nbytes: int


def pairs_to_keys(pairs: np.ndarray, num_nodes: int) -> np.ndarray:
    """``[M, 2]`` (src, dst) -> ``int64 [M]`` keys ``src * N + dst``."""
    pairs = np.asarray(pairs)
    return edge_keys(pairs[:, 0].astype(np.int64), pairs[:, 1], num_nodes)


def keys_to_pairs(keys: np.ndarray, num_nodes: int, dtype: np.dtype) -> np.ndarray:
    """``int64 [M]`` keys -> ``[M, 2]`` (src, dst) in ``dtype``."""
    out = np.empty((len(keys), 2), dtype=dtype)
    if len(keys):
        out[:, 0], out[:, 1] = key_ends(keys, num_nodes)
    return out


def apply_delta(
    keys: np.ndarray, weights: np.ndarray | None, delta: Delta, num_nodes: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rebuild snapshot t from snapshot t-1 and delta t (pure; inputs are not modified).

    Args:
        keys: ``int64 [E_{t-1}]`` sorted keys of the previous snapshot.
        weights: ``float32 [E_{t-1}]`` or None.

    Returns:
        ``(keys, weights)`` of snapshot t, keys sorted and unique.
    """
    if delta.keyframe:
        new_w = None if delta.weights is None else np.array(delta.weights, dtype=np.float32)
        return pairs_to_keys(delta.pairs, num_nodes), new_w
    return apply_change(
        keys,
        weights,
        delta.removed,
        pairs_to_keys(delta.pairs, num_nodes),
        delta.weights,
        delta.reweighted,
        delta.reweight_values,
    )


def apply_change(
    keys: np.ndarray,
    weights: np.ndarray | None,
    removed: np.ndarray,
    added: np.ndarray,
    added_weights: np.ndarray | None,
    reweighted: np.ndarray,
    reweight_values: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The delta rule on keys: new weights at ``reweighted`` positions, drop ``removed``
    positions, insert the sorted ``added`` keys at their places (pure)."""
    if weights is not None and len(reweighted):
        weights = weights.copy()
        weights[reweighted] = reweight_values
    if len(removed):
        keep = np.ones(len(keys), dtype=bool)
        keep[removed] = False
        keys = keys[keep]
        weights = None if weights is None else weights[keep]
    if len(added):
        at = sorted_positions(keys, added)
        keys = np.insert(keys, at, added)
        if weights is not None:
            weights = np.insert(weights, at, added_weights)
    return keys, weights


def apply_change_torch(
    keys: torch.Tensor,
    weights: torch.Tensor | None,
    removed: torch.Tensor,
    added: torch.Tensor,
    added_weights: torch.Tensor | None,
    reweighted: torch.Tensor,
    reweight_values: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`apply_change` in torch operations only, for tensors on any device (pure)."""
    import torch

    if weights is not None and reweighted.numel():
        weights = weights.clone()
        weights[reweighted] = reweight_values
    if removed.numel():
        keep = torch.ones(keys.numel(), dtype=torch.bool, device=keys.device)
        keep[removed] = False
        keys = keys[keep]
        weights = None if weights is None else weights[keep]
    if added.numel():
        # torch has no insert: scatter the added keys to their final places, the kept
        # ones fill the rest in order
        at = torch.searchsorted(keys, added) + torch.arange(added.numel(), device=keys.device)
        is_added = torch.zeros(keys.numel() + added.numel(), dtype=torch.bool, device=keys.device)
        is_added[at] = True
        out = torch.empty(is_added.numel(), dtype=keys.dtype, device=keys.device)
        out[at], out[~is_added] = added, keys
        if weights is not None:
            w_out = torch.empty(is_added.numel(), dtype=weights.dtype, device=weights.device)
            w_out[at], w_out[~is_added] = added_weights, weights
            weights = w_out
        keys = out
    return keys, weights


_PARALLEL_SEARCH_MIN = 1 << 20


def sorted_positions(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """``np.searchsorted(haystack, needles)``; on large arrays torch's, which uses every core."""
    if len(haystack) < _PARALLEL_SEARCH_MIN:
        return np.searchsorted(haystack, needles)
    import torch

    return torch.searchsorted(torch.from_numpy(haystack), torch.from_numpy(needles)).numpy()


def diff_snapshots(
    prev_keys: np.ndarray,
    prev_w: np.ndarray | None,
    keys: np.ndarray,
    w: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """What changed from one sorted edge set to the next.

    Returns:
        ``(removed, added_keys, added_w, reweighted, reweight_values)``: positions in the
        previous snapshot of removed and re-weighted edges, the added keys (sorted) and
        their weights. Weights compare bit for bit, so the round trip is exact.
    """
    if len(keys):
        at = np.minimum(np.searchsorted(keys, prev_keys), len(keys) - 1)
        kept = keys[at] == prev_keys
    else:
        at = np.zeros(len(prev_keys), dtype=np.int64)
        kept = np.zeros(len(prev_keys), dtype=bool)
    removed = np.flatnonzero(~kept)
    if len(prev_keys):
        back = np.minimum(np.searchsorted(prev_keys, keys), len(prev_keys) - 1)
        new = prev_keys[back] != keys
    else:
        new = np.ones(len(keys), dtype=bool)
    added, added_w = keys[new], None if w is None else w[new]
    reweighted = np.zeros(0, dtype=np.int64)
    values = None
    if w is not None:
        stay = np.flatnonzero(kept)
        now = w[at[stay]]
        changed = prev_w[stay].view(np.uint32) != now.view(np.uint32)
        reweighted, values = stay[changed], now[changed]
    return removed, added, added_w, reweighted, values


def positions_to_mask(positions: np.ndarray, count: int) -> np.ndarray:
    """Sorted positions below ``count`` -> ``uint8 [ceil(count / 8)]`` little-endian bitmask."""
    bits = np.zeros(count, dtype=bool)
    bits[positions] = True
    return np.packbits(bits, bitorder="little")


def mask_to_positions(mask: np.ndarray, count: int) -> np.ndarray:
    """``uint8`` little-endian bitmask over ``count`` edges -> ``int64`` sorted positions."""
    return np.flatnonzero(np.unpackbits(mask, count=count, bitorder="little"))


def mask_to_positions_torch(mask: torch.Tensor, count: int) -> torch.Tensor:
    """:func:`mask_to_positions` on a ``uint8`` tensor, on its device."""
    import torch

    bits = (mask.unsqueeze(1) >> torch.arange(8, device=mask.device, dtype=torch.uint8)) & 1
    return torch.nonzero(bits.reshape(-1)[:count]).reshape(-1)
