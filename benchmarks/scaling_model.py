"""A scaling model of one training epoch, checked against measured runs, then projected.

The epoch time of rank r is modelled as

    t_r = T_r * c_prep                      streaming its snapshots
        + H_r * (c_snap + c_score)          GCN forward + backward, link scoring of its snapshots
                                            before the training horizon
        + H * N_r * c_lstm                  LSTM forward + backward of its nodes up to the horizon
        + a2a_bytes_r / B + 4 (P - 1) a     four all-to-alls (Z out and back, the states out and back)
        + 2 (P - 1) / P * W / B + 2 (P - 1) a   the ring all-reduce of the W gradient bytes (DDP)

and the epoch takes ``max_r t_r``. The training pass stops at the horizon H, the snapshot
after the last train transition (70% of the sequence under the default split), and H_r
is the part of rank r's block before it. ``a2a_bytes_r = 4 * F * s * (H_r * N + H * N_r
- 2 H_r N_r)`` are the bytes rank r sends and receives (F features of s bytes). ``c_prep`` (rebuild the
snapshot from its delta, normalise, structural features), ``c_snap``, ``c_score`` and
``c_lstm`` are measured here by timing the model's own stages on one process; the link
bandwidth ``B`` and latency ``a`` of gloo on this machine are measured with two processes.

Check: the model's prediction for P = 1 and 2 beside the measured ``train_seconds`` of
``torchrun --nproc-per-node P -m dyngnn.train`` on the same store.

Projection to 8, 32 and 128 ranks, for a longer sequence (``--project-snapshots``, since a
rank needs one snapshot at least), in two settings: ranks as fast as one core of this
machine on its measured gloo link, and GPU-like ranks (compute ``--gpu-speedup`` times
faster, ``--link-gbps`` per GPU, ``--link-latency-us``), which is where communication
weighs most. Printed beside the published figure of the block-distribution approach
(about 30x on 128 GPUs).

Run: ``.venv/bin/python benchmarks/scaling_model.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._util import (  # noqa: E402
    OUT_DIR,
    add_store_options,
    banner,
    best_seconds,
    default_horizon,
    link_training_args,
    print_table,
    synthesize_store,
    torchrun,
    write_json,
)

PINGPONG = """
import os, sys, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
out = {}
for size in (8, 64 << 20):
    x = torch.zeros(size // 4)
    for rep in range(7):
        dist.barrier()
        t = time.perf_counter()
        if rank == 0:
            dist.send(x, 1); dist.recv(x, 1)
        else:
            dist.recv(x, 0); dist.send(x, 0)
        if rep >= 2:
            out.setdefault(size, []).append((time.perf_counter() - t) / 2)
if rank == 0:
    print(min(out[8]), 64 * 2**20 / (min(out[64 << 20]) - min(out[8])))
"""


def measure_link() -> tuple[float, float]:
    """Latency (s) and bandwidth (B/s) of a gloo send/recv between two processes here."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PINGPONG)
    try:
        latency, bandwidth = torchrun(2, f.name).stdout.split()
    finally:
        os.unlink(f.name)
    return float(latency), float(bandwidth)


def measure_stages(args: list[str], reps: int) -> dict[str, float]:
    """Per-unit costs of the stages of one process's epoch, forward and backward."""
    import torch

    from dyngnn.config import parse_cli
    from dyngnn.trainer import Trainer

    torch.set_num_threads(1)  # one core per rank, as the multi-rank runs have
    tr = Trainer(parse_cli(args))
    graphs, targets = tr.inputs.prepare()
    c_prep = best_seconds(tr.inputs.prepare, reps) / len(graphs)
    model, head, task = tr.model, tr.head, tr.task
    t, n = len(graphs), tr.store.num_nodes

    def gcn():
        z = model.encode_snapshots(graphs, (0, 0))
        z.backward(torch.ones_like(z))

    z = model.encode_snapshots(graphs, (0, 0)).detach()

    def lstm():
        x = z.clone().requires_grad_()
        h = model.temporal(x)
        h.backward(torch.ones_like(h))

    h = model.temporal(z).detach()

    def score():
        x = h.clone().requires_grad_()
        loss, _ = task.loss(x, head, targets, 0)
        loss.backward()

    return {
        "c_prep": c_prep,
        "c_snap": best_seconds(gcn, reps) / t,
        "c_lstm": best_seconds(lstm, reps) / (t * n),
        "c_score": best_seconds(score, reps) / tr.split.horizon,  # the loss scores train transitions only
        "param_bytes": tr.param_bytes,
    }


def predict(costs: dict[str, float], t: int, n: int, f: int, world: int, bandwidth: float, latency: float) -> float:
    from dyngnn.distributed import Layout, block_ranges

    h = default_horizon(t)
    layout = Layout(tuple(block_ranges(t, world)), tuple(block_ranges(n, world, "nodes")))
    worst = 0.0
    for (a, b), (ha, hb), (c, d) in zip(layout.t_ranges, layout.clipped(h).t_ranges, layout.n_ranges, strict=True):
        t_r, h_r, n_r = b - a, hb - ha, d - c
        compute = t_r * costs["c_prep"] + h_r * (costs["c_snap"] + costs["c_score"]) + h * n_r * costs["c_lstm"]
        a2a = 4 * f * 4 * (h_r * n + h * n_r - 2 * h_r * n_r) / bandwidth + 4 * (world - 1) * latency
        grads = 2 * (world - 1) / world * costs["param_bytes"] / bandwidth + 2 * (world - 1) * latency
        worst = max(worst, compute + a2a + grads)
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_store_options(p)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--project-snapshots", type=int, default=1024)
    p.add_argument("--gpu-speedup", type=float, default=100.0, help="GPU rank compute speed / one core here")
    p.add_argument("--link-gbps", type=float, default=200.0, help="per-GPU link (200: InfiniBand HDR)")
    p.add_argument("--link-latency-us", type=float, default=5.0)
    p.add_argument("--out", default=str(OUT_DIR / "scaling_model.json"))
    a = p.parse_args()
    print(banner())

    n, t, f = a.nodes, a.snapshots, a.hidden
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        synthesize_store(store, a)

        costs = measure_stages(link_training_args(store, Path(tmp) / "stages", f, 1), a.reps)
        latency, bandwidth = measure_link()
        print(
            f"N={n:,} E={a.edges:,} T={t} F={f}: c_prep {costs['c_prep'] * 1e3:.1f} ms/snapshot, c_snap {costs['c_snap'] * 1e3:.1f} ms/snapshot, "
            f"c_score {costs['c_score'] * 1e3:.1f} ms/snapshot, c_lstm {costs['c_lstm'] * 1e9:.0f} ns/node-step; "
            f"gloo here: {latency * 1e6:.0f} us, {bandwidth / 1e9:.2f} GB/s"
        )
        check = []
        for world in (1, 2):
            torchrun(world, "-m", "dyngnn.train", *link_training_args(store, Path(tmp) / f"run-{world}", f, 3))
            lines = [json.loads(x) for x in (Path(tmp) / f"run-{world}" / "metrics.jsonl").read_text().splitlines()]
            measured = min(x["train_seconds"] for x in lines[:-1])
            model = predict(costs, t, n, f, world, bandwidth, latency)
            check.append({"P": world, "measured s": measured, "model s": model, "model/measured": model / measured})
    print("\nCheck on this machine (train seconds per epoch, best of 3 epochs):")
    print_table(check, ["P", "measured s", "model s", "model/measured"])

    tp = a.project_snapshots
    gpu = {
        "c_prep": costs["c_prep"] / a.gpu_speedup,
        "c_snap": costs["c_snap"] / a.gpu_speedup,
        "c_score": costs["c_score"] / a.gpu_speedup,
        "c_lstm": costs["c_lstm"] / a.gpu_speedup,
        "param_bytes": costs["param_bytes"],
    }
    link, lat = a.link_gbps * 1e9 / 8, a.link_latency_us * 1e-6
    rows = []
    base_cpu = predict(costs, tp, n, f, 1, bandwidth, latency)
    base_gpu = predict(gpu, tp, n, f, 1, link, lat)
    for world in (1, 2, 8, 32, 128):
        cpu_s = predict(costs, tp, n, f, world, bandwidth, latency)
        gpu_s = predict(gpu, tp, n, f, world, link, lat)
        rows.append(
            {
                "P": world,
                "cores s": cpu_s,
                "cores speed-up": base_cpu / cpu_s,
                "GPUs s": gpu_s,
                "GPUs speed-up": base_gpu / gpu_s,
                "GPUs comm share": 1 - predict({**gpu, "param_bytes": 0}, tp, n, f, world, float("inf"), 0.0) / gpu_s,
            }
        )
    print(
        f"\nProjection, T={tp} snapshots of the same graph: ranks like one core here on its gloo link; "
        f"GPU ranks {a.gpu_speedup:g}x faster on {a.link_gbps:g} Gb/s, {a.link_latency_us:g} us. "
        "Published for the block-distribution approach: about 30x on 128 GPUs."
    )
    print_table(rows, ["P", "cores s", "cores speed-up", "GPUs s", "GPUs speed-up", "GPUs comm share"])
    write_json(
        a.out,
        {
            "args": vars(a),
            "costs": costs,
            "gloo": {"latency_s": latency, "bandwidth_Bps": bandwidth},
            "check": check,
            "projection": rows,
        },
    )


if __name__ == "__main__":
    main()
