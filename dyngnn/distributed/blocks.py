"""Who owns what: contiguous snapshot blocks and node blocks per rank.

Rank r owns snapshots ``[t0_r, t1_r)`` (the GCN stage) and nodes ``[n0_r, n1_r)`` (the
LSTM stage). Legend: T snapshots, N nodes, P ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dyngnn.errors import InputError, SharedInputError


def block_ranges(total: int, parts: int, what: str = "snapshots") -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``0..total``, sizes differing by at most one.

    Raises:
        InputError: fewer items than parts (a rank would get nothing).
    """
    if parts < 1:
        raise InputError(f"world size {parts}: must be >= 1")
    if total < parts:
        raise SharedInputError(f"{total} {what} cannot be split over {parts} ranks: every rank needs at least one")
    base, extra = divmod(total, parts)
    bounds = np.cumsum([0] + [base + (r < extra) for r in range(parts)])
    return [(int(bounds[r]), int(bounds[r + 1])) for r in range(parts)]


def balanced_ranges(weights: Sequence[int] | np.ndarray, parts: int, what: str = "snapshots") -> list[tuple[int, int]]:
    """Contiguous ranges whose total weights (e.g. edges per snapshot) are close to equal.

    Each range ends where the running total first reaches its share, so no range is
    empty; for equal weights this is :func:`block_ranges`.

    Raises:
        InputError: fewer items than parts.
    """
    w = np.asarray(weights, dtype=np.float64) + 1.0  # an empty snapshot still costs a step
    total = len(w)
    block_ranges(total, parts, what)  # the same refusal
    cum = np.cumsum(w)
    bounds = [0]
    for r in range(1, parts):
        cut = int(np.searchsorted(cum, cum[-1] * r / parts)) + 1
        cut = max(cut, bounds[-1] + 1)  # at least one item per range...
        cut = min(cut, total - (parts - r))  # ...and enough left for the ranges after it
        bounds.append(cut)
    bounds.append(total)
    return [(bounds[r], bounds[r + 1]) for r in range(parts)]


def all_to_all_bytes(t_ranges, n_ranges, features: int, itemsize: int) -> int:
    """Bytes one all-to-all of ``z`` sends to other ranks, summed over ranks (one direction)."""
    t_sizes = [b - a for a, b in t_ranges]
    n_sizes = [b - a for a, b in n_ranges]
    total = sum(t_sizes) * sum(n_sizes)
    return itemsize * features * (total - sum(t * n for t, n in zip(t_sizes, n_sizes, strict=True)))


@dataclass(frozen=True)
class Block:
    """One rank's share: snapshots ``[t0, t1)`` and nodes ``[n0, n1)``."""

    t0: int
    t1: int
    n0: int
    n1: int


@dataclass(frozen=True)
class Layout:
    """Who owns what: snapshot ranges and node ranges of every rank."""

    t_ranges: tuple[tuple[int, int], ...]
    n_ranges: tuple[tuple[int, int], ...]

    @property
    def world_size(self) -> int:
        return len(self.t_ranges)

    def clipped(self, horizon: int) -> Layout:
        """The same ranks with their snapshot blocks cut at ``horizon`` (some may be empty)."""
        return Layout(tuple((min(a, horizon), min(b, horizon)) for a, b in self.t_ranges), self.n_ranges)

    def block(self, rank: int) -> Block:
        """Rank ``rank``'s snapshots and nodes."""
        return Block(*self.t_ranges[rank], *self.n_ranges[rank])

    @classmethod
    def split(
        cls, num_nodes: int, edges_per_snapshot: Sequence[int], world_size: int, balance: str = "count"
    ) -> Layout:
        """Snapshot blocks by count (``balance`` ``count``) or about equal edges (``edges``),
        node blocks by count.

        Raises:
            InputError: fewer snapshots or nodes than ranks.
        """
        if balance == "edges":
            t_ranges = balanced_ranges(edges_per_snapshot, world_size)
        else:
            t_ranges = block_ranges(len(edges_per_snapshot), world_size)
        return cls(tuple(t_ranges), tuple(block_ranges(num_nodes, world_size, "nodes")))
