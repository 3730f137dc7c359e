"""Delta decoding speed, in milliseconds of wall-clock time.

1. ``apply_delta`` on one in-memory snapshot: a 1% churn delta (100k removed positions,
   100k added edges) applied to 10M sorted int64 keys over N=10M nodes; median and p90
   over repeated runs, unweighted and with float32 weights.
2. Random access ``DeltaStore.snapshot_keys(t)`` on a synthetic on-disk store for
   several keyframe intervals K. ``snapshot_keys`` caches the last snapshot read and
   replays forward from it when it lies between t's keyframe and t, so t is read in a
   random order and, for the "cold" figure, on a freshly opened store each time (the
   OS page cache is warm either way: this is decode time, not disk time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _util import OUT_DIR, banner, percentile_ms, print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dyngnn.data.delta import Delta, apply_delta, keys_to_pairs
from dyngnn.data.store import DeltaStore
from dyngnn.data.synthetic import synthesize


def random_snapshot(rng: np.random.Generator, num_nodes: int, num_edges: int) -> np.ndarray:
    """``num_edges`` sorted unique random keys over ``num_nodes`` nodes."""
    keys = np.sort(rng.integers(0, num_nodes * num_nodes, size=int(num_edges * 1.001) + 16))
    # Sort-based dedup: numpy 2.4's hash-based np.unique is ~10x slower at this size.
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return np.sort(rng.choice(keys, size=num_edges, replace=False))


def random_delta(
    rng: np.random.Generator, keys: np.ndarray, num_nodes: int, changes: int, weighted: bool
) -> tuple[Delta, np.ndarray]:
    """A delta removing ``changes`` edges and adding ``changes`` absent ones; also the expected result."""
    removed = np.sort(rng.choice(len(keys), size=changes, replace=False)).astype(np.int64)
    cand = np.unique(rng.integers(0, num_nodes * num_nodes, size=changes * 2))
    at = np.minimum(np.searchsorted(keys, cand), len(keys) - 1)
    cand = cand[keys[at] != cand]
    added = np.sort(rng.choice(cand, size=changes, replace=False))
    pairs = keys_to_pairs(added, num_nodes, np.dtype(np.int32) if num_nodes < 2**31 else np.dtype(np.int64))
    w = rng.random(changes, dtype=np.float32) if weighted else None
    delta = Delta(False, pairs, w, removed, np.zeros(0, np.int64), np.zeros(0, np.float32) if weighted else None, 0)
    keep = np.ones(len(keys), bool)
    keep[removed] = False
    # Added keys are absent from keys, so a plain sort gives the expected union.
    return delta, np.sort(np.concatenate([keys[keep], added]))


def bench_apply(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    keys = random_snapshot(rng, args.nodes, args.edges)
    rows = []
    for weighted in (False, True):
        delta, expected = random_delta(rng, keys, args.nodes, args.changes, weighted)
        weights = rng.random(len(keys), dtype=np.float32) if weighted else None
        out, _ = apply_delta(keys, weights, delta, args.nodes)  # warm-up, and a correctness check
        correct = bool(np.array_equal(out, expected))
        del out
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            apply_delta(keys, weights, delta, args.nodes)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "edges": args.edges,
                "removed": args.changes,
                "added": args.changes,
                "weighted": weighted,
                "repeats": args.repeats,
                "median ms": percentile_ms(times, 50),
                "p90 ms": percentile_ms(times, 90),
                "min ms": percentile_ms(times, 0),
                "correct": correct,
                "meets": percentile_ms(times, 50) <= args.target_ms,
            }
        )
    return rows


def bench_random_access(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(args.ra_snapshots)[: args.ra_reads]
    ks = args.ra_keyframe_every
    with tempfile.TemporaryDirectory(prefix="delta_apply-") as tmp:
        paths, stats = {}, {}
        for k in ks:  # same seed: the same graph, only the keyframe interval differs
            paths[k] = Path(tmp) / f"k{k}"
            stats[k] = synthesize(
                paths[k],
                num_nodes=args.ra_nodes,
                num_edges=args.ra_edges,
                num_snapshots=args.ra_snapshots,
                churn=args.ra_churn,
                seed=args.seed,
                keyframe_every=k,
            ).stats()
        cold: dict[int, list[float]] = {k: [] for k in ks}
        warm: dict[int, list[float]] = {k: [] for k in ks}
        one = {k: DeltaStore.open(paths[k]) for k in ks}
        # K values take turns on every t, so a noisy stretch of the shared machine hits
        # all of them alike.
        for t in order:
            for k in ks:
                fresh = DeltaStore.open(paths[k])
                t0 = time.perf_counter()
                fresh.snapshot_keys(int(t))
                cold[k].append(time.perf_counter() - t0)
            for k in ks:
                t0 = time.perf_counter()
                one[k].snapshot_keys(int(t))
                warm[k].append(time.perf_counter() - t0)
    rows = []
    for k in ks:
        kf = [s["encoding"] == "keyframe" for s in stats[k]["snapshots"]]
        last_kf = np.maximum.accumulate(np.where(kf, np.arange(len(kf)), 0))
        rows.append(
            {
                "K": k,
                "T": len(kf),
                "keyframes": int(sum(kf)),
                "stored": stats[k]["stored_graph_bytes"],
                "full": stats[k]["full_snapshot_bytes"],
                "reads": len(order),
                "mean deltas": float(np.mean(order - last_kf[order])),
                "cold median ms": percentile_ms(cold[k], 50),
                "cold p90 ms": percentile_ms(cold[k], 90),
                "one-object median ms": percentile_ms(warm[k], 50),
            }
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10_000_000)
    p.add_argument("--edges", type=int, default=10_000_000)
    p.add_argument("--changes", type=int, default=100_000, help="removed and added edges each")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--target-ms", type=float, default=50.0)
    p.add_argument("--ra-nodes", type=int, default=1_000_000)
    p.add_argument("--ra-edges", type=int, default=1_000_000)
    p.add_argument("--ra-snapshots", type=int, default=128)
    p.add_argument("--ra-churn", type=float, default=0.01)
    p.add_argument("--ra-keyframe-every", type=lambda s: [int(x) for x in s.split(",")], default=[0, 8, 32, 128])
    p.add_argument("--ra-reads", type=int, default=40, help="random snapshots read per K")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-random-access", action="store_true")
    p.add_argument("--json", type=Path, default=OUT_DIR / "delta_apply.json")
    args = p.parse_args()
    print(banner(), flush=True)

    apply_rows = bench_apply(args)
    print(f"apply_delta: {args.changes:,} removed + {args.changes:,} added on {args.edges:,} edges")
    print_table(apply_rows, ["edges", "weighted", "repeats", "median ms", "p90 ms", "min ms", "correct", "meets"])
    print(f"meets: median <= {args.target_ms:g} ms")
    ra_rows = [] if args.skip_random_access else bench_random_access(args)
    if ra_rows:
        print(
            f"\nrandom snapshot_keys(t): N={args.ra_nodes:,}, E={args.ra_edges:,}, churn {args.ra_churn:g}, "
            f"{args.ra_reads} random t; cold = freshly opened store per read"
        )
        print_table(
            ra_rows,
            [
                "K",
                "T",
                "keyframes",
                "stored",
                "full",
                "reads",
                "mean deltas",
                "cold median ms",
                "cold p90 ms",
                "one-object median ms",
            ],
        )
    out = write_json(
        args.json,
        {"args": {k: str(v) for k, v in vars(args).items()}, "apply_delta": apply_rows, "random_access": ra_rows},
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
