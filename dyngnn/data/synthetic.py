"""Large synthetic dynamic graphs with controlled churn, streamed to a DeltaStore.

Endpoints follow a Chung-Lu style model: node of rank r is drawn with probability
proportional to ``(r + 1) ** -beta`` (ranks are shuffled over node ids), which gives
power-law degrees with exponent ``1 + 1 / beta``. Snapshot 0 holds E distinct edges
without self-loops; every later snapshot drops ``round(churn * E)`` random edges and
adds as many new ones, so E stays fixed. Only the current snapshot is in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dyngnn.data.format import DEFAULT_KEYFRAME_EVERY
from dyngnn.data.snapshots import edge_keys
from dyngnn.data.store import DeltaStore, StoreBuilder
from dyngnn.errors import InputError

_MAX_ROUNDS = 64


class _EndpointSampler:
    def __init__(self, num_nodes: int, beta: float, rng: np.random.Generator) -> None:
        self.n, self.beta, self.rng = num_nodes, beta, rng
        self.perm = rng.permutation(num_nodes)

    def draw(self, size: int) -> np.ndarray:
        # Inverse CDF of the density x**-beta on [1, N + 1), floored to a rank.
        u = self.rng.random(size)
        a = 1.0 - self.beta
        if abs(a) < 1e-12:
            x = np.exp(u * np.log(self.n + 1.0))
        else:
            x = (1.0 + u * ((self.n + 1.0) ** a - 1.0)) ** (1.0 / a)
        rank = np.clip(x.astype(np.int64) - 1, 0, self.n - 1)
        return self.perm[rank]


def _new_keys(
    sampler: _EndpointSampler, count: int, existing: np.ndarray, exclude_sorted: list[np.ndarray]
) -> np.ndarray:
    """``count`` distinct sorted keys, no self-loops, none in ``existing`` (sorted)."""
    n = sampler.n
    found = np.zeros(0, dtype=np.int64)
    for _ in range(_MAX_ROUNDS):
        need = count - len(found)
        if need <= 0:
            break
        draw = int(need * 1.1) + 16
        src, dst = sampler.draw(draw), sampler.draw(draw)
        # sorted candidates make the lookups below cache-friendly
        keys = np.sort(edge_keys(src[src != dst], dst[src != dst], n))
        for ex in [existing, *exclude_sorted]:
            if len(ex):
                at = np.minimum(np.searchsorted(ex, keys), len(ex) - 1)
                keys = keys[ex[at] != keys]
        # a sort-based union: numpy's own uses hashing, many times slower at this size
        both = np.sort(np.concatenate([found, keys]))
        found = both[np.r_[True, both[1:] != both[:-1]]] if len(both) else both
    if len(found) < count:
        raise InputError(
            f"could not draw {count} new distinct edges over {n} nodes: the graph is too dense "
            "for this churn (use more nodes or fewer edges)"
        )
    if len(found) > count:
        found = np.sort(sampler.rng.choice(found, size=count, replace=False))
    return found


def synthesize(
    out: Path | str,
    *,
    num_nodes: int,
    num_edges: int,
    num_snapshots: int,
    churn: float,
    seed: int = 0,
    beta: float = 0.7,
    keyframe_every: int = DEFAULT_KEYFRAME_EVERY,
    force: bool = False,
    progress: bool = False,
) -> DeltaStore:
    """Write a synthetic dynamic graph to ``out`` and return the opened store.

    Args:
        num_nodes: N >= 2. num_edges: E per snapshot, at most a quarter of N * (N - 1).
        num_snapshots: T >= 1. churn: fraction of edges replaced per step, in [0, 1].
        seed: the same seed gives the same store, byte for byte.
        beta: endpoint skew; degrees follow a power law with exponent ``1 + 1 / beta``.

    Raises:
        InputError: sizes or churn out of range.
    """
    if num_nodes < 2:
        raise InputError(f"--nodes {num_nodes}: need at least 2 nodes")
    if num_edges < 0 or num_edges > num_nodes * (num_nodes - 1) // 4:
        raise InputError(f"--edges {num_edges}: must be between 0 and N*(N-1)/4 = {num_nodes * (num_nodes - 1) // 4}")
    if num_snapshots < 1:
        raise InputError(f"--snapshots {num_snapshots}: must be >= 1")
    if not 0.0 <= churn <= 1.0:
        raise InputError(f"--churn {churn}: must be a fraction in [0, 1]")
    if not beta > 0:
        raise InputError(f"beta {beta}: must be > 0")
    rng = np.random.default_rng(seed)
    sampler = _EndpointSampler(num_nodes, beta, rng)
    source = {
        "synthetic": True,
        "nodes": num_nodes,
        "edges": num_edges,
        "snapshots": num_snapshots,
        "churn": churn,
        "seed": seed,
        "beta": beta,
    }
    replace = round(churn * num_edges)
    steps = range(1, num_snapshots)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="[dyngnn] synth", unit="snapshot", initial=1, total=num_snapshots)
    with StoreBuilder(num_nodes, keyframe_every=keyframe_every, path=out, force=force, source=source) as b:
        keys = _new_keys(sampler, num_edges, np.zeros(0, np.int64), [])
        b.add(keys)
        for _ in steps:
            removed = np.sort(rng.choice(len(keys), size=replace, replace=False))
            added = _new_keys(sampler, replace, keys, [])
            b.add_change(removed, added)
            keys = b.current_keys
        return b.finish()
