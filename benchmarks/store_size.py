"""Store size: DeltaStore bytes vs full-snapshot bytes vs the change floor (all in bytes).

The change floor is ``sum_t min(8 |E_t|, 8 |A_t| + 4 |R_t|)`` (int32 pairs, int32
positions) plus 4 bytes per float32 weight the store keeps (|E_t| for a keyframe,
|A_t| + |W_t| for a delta). A, R and W (added, removed, re-weighted) are computed here
from consecutive decoded snapshots, not taken from the encoder; the encoder's own
counts are only cross-checked against them. Only the keyframe/delta choice of each
snapshot (which decides how many weights are kept) comes from ``stats()``.

``floor_mask`` is an informational second floor: the cheaper of a whole snapshot and a
delta whose removed/re-weighted positions cost ``min(4 * count, ceil(E_{t-1} / 8))``
(a bitmask), per snapshot, with no forced keyframes and no index.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _util import OUT_DIR, banner, print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dyngnn.data.readers import load_snapshots
from dyngnn.data.snapshots import Snapshots
from dyngnn.data.store import DeltaStore
from dyngnn.data.synthetic import synthesize


def change_counts(
    prev: np.ndarray, prev_w: np.ndarray | None, cur: np.ndarray, cur_w: np.ndarray | None
) -> tuple[int, int, int]:
    """(added, removed, re-weighted) between two sorted unique key arrays."""
    common, i_prev, i_cur = np.intersect1d(prev, cur, assume_unique=True, return_indices=True)
    added, removed = len(cur) - len(common), len(prev) - len(common)
    rew = 0
    if cur_w is not None and prev_w is not None:
        # Bit-for-bit, as a lossless store must keep any change at all.
        rew = int(np.count_nonzero(prev_w[i_prev].view(np.uint32) != cur_w[i_cur].view(np.uint32)))
    return added, removed, rew


def measure(name: str, snaps: Snapshots, k: int) -> dict[str, Any]:
    """Encode ``snaps`` with keyframe_every=k in memory; sizes, floor and checks."""
    store = DeltaStore.from_snapshots(snaps, keyframe_every=k)
    st = store.stats()
    weighted = store.weighted
    floor = floor_mask = 0
    mismatches, roundtrip_ok = [], True
    prev, prev_w = np.zeros(0, np.int64), (np.zeros(0, np.float32) if weighted else None)
    for t, per in enumerate(st["snapshots"]):
        keys, w = store.snapshot_keys(t)  # in time order: one delta applied per step
        roundtrip_ok &= bool(np.array_equal(keys, snaps.keys[t]))
        if weighted:
            roundtrip_ok &= bool(
                np.array_equal(w.view(np.uint32), np.asarray(snaps.weights[t], np.float32).view(np.uint32))
            )
        a, r, rw = change_counts(prev, prev_w, keys, w)
        floor += min(8 * len(keys), 8 * a + 4 * r)
        keyframe = per["encoding"] == "keyframe"
        if weighted:
            floor += 4 * (len(keys) if keyframe else a + rw)
        # Same, but positions may also be a bitmask over the previous snapshot, as the
        # store allows: with many removals a mask beats 4 bytes each, so the store can
        # undercut the plain floor.
        mask = -(-len(prev) // 8)
        ww = 4 if weighted else 0
        delta = (8 + ww) * a + min(4 * r, mask) + (ww * rw + min(4 * rw, mask) if weighted else 0)
        floor_mask += min((8 + ww) * len(keys), delta) if t else (8 + ww) * len(keys)
        if not keyframe and (per["added"], per["removed"], per["reweighted"]) != (a, r, rw):
            mismatches.append(
                {"t": t, "store": [per["added"], per["removed"], per["reweighted"]], "measured": [a, r, rw]}
            )
        prev, prev_w = keys, w
    stored, full = st["stored_graph_bytes"], st["full_snapshot_bytes"]
    return {
        "case": name,
        "K": k,
        "T": store.num_snapshots,
        "edges": st["total_edges"],
        "weighted": weighted,
        "keyframes": st["keyframes"],
        "stored": stored,
        "index": st["index_bytes"],
        "full": full,
        "floor": floor,
        "floor_mask": floor_mask,
        "stored/floor_mask": stored / floor_mask if floor_mask else float("nan"),
        "stored/floor": stored / floor if floor else float("nan"),
        "stored/full": stored / full,
        "meets": stored <= 1.1 * floor and stored <= full,
        "roundtrip_ok": roundtrip_ok,
        "count_mismatches": mismatches,
    }


def synthetic_cases(args: argparse.Namespace, tmp: Path):
    for churn in args.churns:
        out = tmp / f"churn{churn}"
        store = synthesize(
            out,
            num_nodes=args.nodes,
            num_edges=args.edges,
            num_snapshots=args.snapshots,
            churn=churn,
            seed=args.seed,
            keyframe_every=0,
        )
        yield f"synth churn={churn:g}", store.to_snapshots()


def real_cases(args: argparse.Namespace):
    snaps, _ = load_snapshots("bitcoinalpha", window=args.bitcoin_window, lifetime=args.bitcoin_lifetime)
    yield f"bitcoinalpha {args.bitcoin_window}/{args.bitcoin_lifetime}", snaps
    if args.covid.is_file():
        snaps, _ = load_snapshots(args.covid)
        yield "england_covid", snaps
    else:
        print(f"skipping England COVID: {args.covid} not found")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=200_000)
    p.add_argument("--edges", type=int, default=500_000)
    p.add_argument("--snapshots", type=int, default=32)
    p.add_argument("--churns", type=lambda s: [float(x) for x in s.split(",")], default=[0.001, 0.01, 0.05, 0.2, 1.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keyframe-every",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 64],
        help="comma-separated K values (0: keyframes only when smaller)",
    )
    p.add_argument("--bitcoin-window", default="1d")
    p.add_argument("--bitcoin-lifetime", default="30d")
    p.add_argument("--covid", type=Path, default=Path("/work/shared/data/pgt_england_covid.json"))
    p.add_argument("--json", type=Path, default=OUT_DIR / "store_size.json")
    args = p.parse_args()
    print(banner(), flush=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="store_size-") as tmp:
        for name, snaps in itertools.chain(synthetic_cases(args, Path(tmp)), real_cases(args)):
            for k in args.keyframe_every:
                rows.append(measure(name, snaps, k))
                r = rows[-1]
                if not r["roundtrip_ok"] or r["count_mismatches"]:
                    print(
                        f"WARNING {name} K={k}: roundtrip_ok={r['roundtrip_ok']}, "
                        f"{len(r['count_mismatches'])} snapshots where the store's counts differ"
                    )

    print_table(
        rows,
        [
            "case",
            "K",
            "T",
            "keyframes",
            "stored",
            "full",
            "floor",
            "stored/floor",
            "stored/full",
            "meets",
            "floor_mask",
            "stored/floor_mask",
        ],
    )
    print("meets: stored <= 1.1 x floor and stored <= full; floor_mask: floor where positions may be a bitmask")
    out = write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
