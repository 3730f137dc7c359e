"""Epoch time, bytes to the device and peak memory: dyngnn against PyTorch Geometric Temporal.

Three ways to train link prediction with a GCN-LSTM on the same snapshots, each in its
own process (so peak memory is its own), under a chosen allocator policy (``NAME@POLICY``
in ``--impls``, see :func:`child`):

- ``dyngnn``: the Trainer, snapshots streamed as deltas (``--mode``), batched GCN stage,
  the LSTM over time (cuDNN's on a GPU, steps fused by ``torch.compile`` on a CPU).
- ``pygt-loop``: the loop a PyTorch Geometric Temporal user writes today: iterate a
  ``DynamicGraphTemporalSignal``, ``.to(device)`` every snapshot, two ``GCNConv`` layers
  and an ``LSTMCell`` step per snapshot. The same model math as dyngnn.
- ``pygt-gclstm``: PyTorch Geometric Temporal's ``GCLSTM`` cell with ``K=2`` (one-hop
  Chebyshev graph convolutions of the hidden state inside the LSTM gates), the recurrent
  model users run now. Different math: a reference point, not an equal comparison.
- ``lstm-only``: just the ``LSTMCell`` steps of ``pygt-loop``, forward and backward: how
  much of its epoch the recurrence takes, and so the most any implementation that keeps
  those eager steps could gain over it (dyngnn fuses them on CPU, ``model.compile``).

All three use log-degree node inputs, hidden width ``--hidden``, a dot-product decoder,
and the same positives (at most ``--max-positives`` edges of each target snapshot) and
one uniform negative per positive on the training transitions. Epoch time is the time of
one training pass (stream, forward, backward, optimizer step; dyngnn's ``train_seconds``,
without its validation pass), the median over epochs 2..E (epoch 1 warms up). ``h2d`` is bytes handed to the device per epoch:
dyngnn counts its own; for the PyG-T loops it is every snapshot's ``edge_index``
(int64) and weights, as ``.to(device)`` moves them.

Run: ``.venv/bin/python benchmarks/train_compare.py`` (synthetic N=100k, E=1M, T=32,
churn 1%, and Bitcoin-Alpha weekly; add ``--device cuda`` on a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._util import training_args  # noqa: E402


def _log_degree(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    from dyngnn.models.inputs import structural_features

    return structural_features(edge_index, n, torch.float32)


def _pairs(keys: torch.Tensor, n: int, cap: int, seed: int, epoch: int, t: int):
    from dyngnn.tasks import LinkTask, Split

    task = LinkTask(n, Split((0,), (0,), (0,)), seed=seed, max_positives=cap)
    return task.pairs(keys, 1, seed, epoch, t, cap=cap)


def _bce(h_t: torch.Tensor, src, dst, neg) -> tuple[torch.Tensor, int]:
    f = torch.nn.functional.binary_cross_entropy_with_logits
    pos = (h_t[src] * h_t[dst]).sum(-1)
    negl = (h_t[src] * h_t[neg[:, 0]]).sum(-1)
    loss = f(pos, torch.ones_like(pos), reduction="sum") + f(negl, torch.zeros_like(negl), reduction="sum")
    return loss, 2 * len(pos)


def run_dyngnn(store: str, args) -> dict:
    from dyngnn.config import parse_cli
    from dyngnn.trainer import Trainer

    with tempfile.TemporaryDirectory() as run_dir:
        extra = ["--run.device", args.device, "--task.max_positives", str(args.max_positives)]
        extra += ["--transfer.mode", args.mode, "--run.malloc", args.malloc or "reuse"]
        trainer = Trainer(parse_cli(training_args(store, run_dir, *extra, hidden=args.hidden, epochs=args.epochs)))
        times, h2d = [], []
        for _ in range(args.epochs):
            rec = trainer.train_epoch()[0]  # its evaluation is not kept into the next epoch
            trainer.epoch += 1
            times.append(rec["train_seconds"])
            h2d.append(rec["h2d_bytes"])
        return {"epoch_seconds": times, "h2d_bytes": h2d, "full_h2d_bytes": rec["full_h2d_bytes"]}


def run_pygt(store: str, args, gclstm: bool) -> dict:
    from torch_geometric.nn import GCNConv

    from dyngnn.data.store import DeltaStore
    from dyngnn.interop.pygt import to_signal
    from dyngnn.interop.shim import import_pygt
    from dyngnn.tasks import Split

    pygt = import_pygt()
    device = torch.device(args.device)
    st = DeltaStore.open(store)
    n, t_all = st.num_nodes, st.num_snapshots
    signal = to_signal(st)
    split = Split.by_time(t_all, 0.15, 0.15)
    torch.manual_seed(0)
    if gclstm:
        # K=2: one hop of Chebyshev filtering (K=1 would not look at the graph at all)
        cell = pygt.nn.recurrent.GCLSTM(2, args.hidden, K=2).to(device)
        params = list(cell.parameters())
    else:
        conv1, conv2 = GCNConv(2, args.hidden).to(device), GCNConv(args.hidden, args.hidden).to(device)
        lstm = torch.nn.LSTMCell(args.hidden, args.hidden).to(device)
        params = [*conv1.parameters(), *conv2.parameters(), *lstm.parameters()]
    opt = torch.optim.Adam(params, lr=0.01)
    times, h2d = [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        moved = 0
        h = c = None
        states, keys = [], []
        for snap in signal:
            snap = snap.to(device)
            moved += snap.edge_index.numel() * 8 + (0 if snap.edge_attr is None else snap.edge_attr.numel() * 4)
            x = _log_degree(snap.edge_index, n)
            if gclstm:
                h, c = cell(x, snap.edge_index, snap.edge_attr, h, c)
            else:
                z = conv2(torch.relu(conv1(x, snap.edge_index, snap.edge_attr)), snap.edge_index, snap.edge_attr)
                h, c = lstm(z, None if h is None else (h, c))
            states.append(h)
            keys.append(snap.edge_index[0] * n + snap.edge_index[1])
        total, count = 0.0, 0
        for t in split.train:
            src, dst, neg = _pairs(keys[t + 1], n, args.max_positives, 0, epoch, t)
            loss, k = _bce(states[t], src, dst, neg)
            total, count = total + loss, count + k
        opt.zero_grad()
        (total / count).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        h2d.append(moved)
    return {"epoch_seconds": times, "h2d_bytes": h2d}


def run_lstm_only(store: str, args) -> dict:
    """``pygt-loop``'s recurrence alone: the ``LSTMCell`` steps over T snapshots for all N
    nodes, forward and backward, on inputs that need gradients (as the GCN output does).

    An implementation that keeps these eager steps takes at least this long per epoch.
    """
    from dyngnn.data.store import DeltaStore

    device = torch.device(args.device)
    st = DeltaStore.open(store)
    n, t_all = st.num_nodes, st.num_snapshots
    torch.manual_seed(0)
    lstm = torch.nn.LSTMCell(args.hidden, args.hidden).to(device)
    # one leaf per snapshot, as each snapshot's GCN output is its own tensor
    z = [torch.randn(n, args.hidden, device=device, requires_grad=True) for _ in range(t_all)]
    times = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        h = c = None
        total = 0.0
        for t in range(t_all):
            h, c = lstm(z[t], None if h is None else (h, c))
            total = total + h.sum()
        total.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return {"epoch_seconds": times, "h2d_bytes": [0] * args.epochs}


def child(args) -> None:
    """One measurement in this process; prints one JSON line.

    ``--impl NAME@POLICY`` runs NAME under the ``run.malloc`` policy POLICY (dyngnn's
    setting, for dyngnn; applied to this process for the others). Without ``@``, dyngnn
    runs with its default (``reuse``) and the others with glibc's own policy, as their
    users run them.
    """
    from dyngnn import malloc

    args.impl, _, args.malloc = args.impl.partition("@")
    if args.impl != "dyngnn" and args.malloc:
        malloc.apply(args.malloc)
    if args.impl == "dyngnn":
        out = run_dyngnn(args.store, args)
    elif args.impl == "lstm-only":
        out = run_lstm_only(args.store, args)
    else:
        out = run_pygt(args.store, args, gclstm=args.impl == "pygt-gclstm")
    peak = (
        torch.cuda.max_memory_allocated()
        if args.device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(json.dumps(out | {"peak_memory_bytes": int(peak)}))


def change_floor(store_path: str) -> int:
    """sum_t min(8|E_t|, 8|A_t| + 4|R_t|), from consecutive decoded snapshots."""
    from dyngnn.data.store import DeltaStore

    st = DeltaStore.open(store_path)
    prev, floor = np.zeros(0, np.int64), 0
    for t in range(st.num_snapshots):
        keys = np.asarray(st.snapshot_keys(t)[0])
        added = len(np.setdiff1d(keys, prev, assume_unique=True))
        removed = len(np.setdiff1d(prev, keys, assume_unique=True))
        floor += min(8 * len(keys), 8 * added + 4 * removed)
        prev = keys
    return floor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--nodes", type=int, default=100_000)
    p.add_argument("--edges", type=int, default=1_000_000)
    p.add_argument("--snapshots", type=int, default=32)
    p.add_argument("--churn", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--max-positives", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--mode", default="delta", choices=["full", "delta", "resident"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--impls", default="dyngnn,pygt-loop,pygt-loop@reuse,pygt-gclstm")
    p.add_argument("--skip-bitcoin", action="store_true")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "train_compare.json"))
    args = p.parse_args()
    if args.impl:
        child(args)
        return

    from dyngnn.data.readers import load_snapshots
    from dyngnn.data.store import DeltaStore
    from dyngnn.data.synthetic import synthesize

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        if not args.skip_synthetic:
            synth = f"synth N={args.nodes:,} E={args.edges:,} T={args.snapshots} churn={args.churn}"
            stores[synth] = str(Path(tmp) / "synth")
            synthesize(
                stores[synth],
                num_nodes=args.nodes,
                num_edges=args.edges,
                num_snapshots=args.snapshots,
                churn=args.churn,
                seed=0,
                keyframe_every=0,
            )
        if not args.skip_bitcoin:
            snaps, _ = load_snapshots("bitcoinalpha", window="7d")
            stores["bitcoinalpha weekly"] = str(Path(tmp) / "btc")
            DeltaStore.from_snapshots(snaps, path=stores["bitcoinalpha weekly"], keyframe_every=0)
        for name, store in stores.items():
            floor = change_floor(store)
            for impl in args.impls.split(","):
                cmd = [
                    sys.executable,
                    __file__,
                    "--impl",
                    impl,
                    "--store",
                    store,
                    "--hidden",
                    str(args.hidden),
                    "--max-positives",
                    str(args.max_positives),
                    "--epochs",
                    str(args.epochs),
                    "--mode",
                    args.mode,
                    "--device",
                    args.device,
                ]
                run = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    check=False,
                    env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"},
                )
                if run.returncode:
                    print(run.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{impl} on {name} failed")
                r = json.loads(run.stdout.strip().splitlines()[-1])
                r |= {
                    "case": name,
                    "impl": impl,
                    "change_floor": floor,
                    "median_epoch_seconds": statistics.median(r["epoch_seconds"][1:]),
                }
                results.append(r)
                print(
                    f"{name:<45} {impl:<12} epoch {r['median_epoch_seconds']:8.3f} s  "
                    f"h2d/epoch {r['h2d_bytes'][-1]:>13,} B (1st {r['h2d_bytes'][0]:>13,})  "
                    f"peak {r['peak_memory_bytes'] / 2**30:6.2f} GiB",
                    flush=True,
                )
            base = {r["impl"]: r for r in results if r["case"] == name}
            if "dyngnn" in base:
                d = base["dyngnn"]
                for other in base:
                    if other.startswith("pygt"):
                        print(
                            f"  speed-up over {other}: {base[other]['median_epoch_seconds'] / d['median_epoch_seconds']:.1f}x"
                        )
                if "lstm-only" in base and "pygt-loop" in base:
                    bound = base["pygt-loop"]["median_epoch_seconds"] / base["lstm-only"]["median_epoch_seconds"]
                    print(
                        f"  bound on any speed-up over pygt-loop with its LSTMCell steps (pygt-loop / lstm-only): {bound:.1f}x"
                    )
                print(
                    f"  dyngnn h2d epoch 1 / change floor: {d['h2d_bytes'][0] / floor:.3f}; "
                    f"later epochs: {d['h2d_bytes'][1:]}"
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
