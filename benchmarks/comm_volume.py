"""Communication volume and memory per rank against the number of ranks (gloo, CPU).

Trains link prediction for ``--epochs`` epochs on one fixed synthetic store with P ranks
(``torchrun --standalone --nproc-per-node P -m dyngnn.train``, gloo), for each P in ``--ranks``,
and reports per epoch:

- ``comm_bytes`` measured in the all-to-alls (all ranks, forward and backward) against the
  formula ``4 * itemsize * F * (T*N - sum_r T_r*N_r)`` (Z out and the states back, F_h = F)
  over the snapshot blocks cut at the training horizon (the training pass exchanges no
  later snapshot), and against the bound ``N*T*(2F + 2F_h)*4`` that holds for any P;
- ``grad_sync_bytes`` (ring all-reduce of the gradients);
- peak resident memory per rank (``metrics.jsonl`` sums it over ranks), beside the fixed
  per-process overhead: the per-rank peak of the same command, with the same P, on a graph
  so small that its data, activations and buffers are negligible (the interpreter, torch,
  gloo, DDP, the autograd engine, the allocator's arenas). The import-only peak (a process
  that imports dyngnn and starts a one-rank group) is printed beside it;
- training seconds per epoch;

for each ``run.malloc`` setting in ``--malloc`` (``reuse``, the default, which keeps freed
memory for the next epoch; ``glibc``; and ``mmap:4``, which gives freed blocks of 4 MiB
and more back to the operating system).

Run: ``.venv/bin/python benchmarks/comm_volume.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._util import (  # noqa: E402
    add_store_options,
    default_horizon,
    link_training_args,
    synthesize_store,
    torchrun,
)

IMPORT_ONLY = """
import resource, torch, torch.distributed as dist, dyngnn.trainer
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, args: list[str]) -> dict:
    """Train on ``world`` local ranks, started the way users start them: torchrun.

    Returns the last epoch's record of ``metrics.jsonl``.
    """
    torchrun(world, "-m", "dyngnn.train", *args)
    run_dir = Path(args[args.index("--run.dir") + 1])
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()][-2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_store_options(p)
    p.add_argument("--ranks", default="1,2,4,8")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--malloc", default="reuse,glibc,mmap:4", help="run.malloc settings to compare")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "comm_volume.json"))
    args = p.parse_args()

    from dyngnn.data.synthetic import synthesize
    from dyngnn.distributed import Layout, all_to_all_bytes, block_ranges

    n, t, f = args.nodes, args.snapshots, args.hidden
    import_only = int(
        subprocess.run(
            [sys.executable, "-c", IMPORT_ONLY.format(port=free_port())],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    worlds = [int(x) for x in args.ranks.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store, tiny = Path(tmp) / "store", Path(tmp) / "tiny"
        synthesize_store(store, args)
        synthesize(tiny, num_nodes=64, num_edges=256, num_snapshots=max(worlds) * 2, churn=0.01, seed=0)
        bound = n * t * (2 * f + 2 * f) * 4
        horizon = default_horizon(t)
        print(
            f"N={n:,} E={args.edges:,} T={t} (training horizon {horizon}) F=F_h={f} float32; bound N*T*(2F+2F_h)*4 = {bound:,} B; "
            f"import-only process {import_only / 2**20:,.0f} MiB"
        )
        for policy in args.malloc.split(","):
            setting, name = ["--run.malloc", policy], policy.replace(":", "")
            print(f"\nrun.malloc = {policy}")
            print(
                f"{'P':>3} {'comm_bytes':>14} {'formula':>14} {'ok':>3} {'<= bound':>8} {'grad_sync':>11} "
                f"{'overhead MiB':>12} {'peak/rank MiB':>14} {'target MiB':>10} {'met':>4} {'train s':>8}"
            )
            single = None
            for world in worlds:
                last = run(
                    world, [*link_training_args(store, Path(tmp) / f"run-{name}-{world}", f, args.epochs), *setting]
                )
                fixed = run(
                    world, [*link_training_args(tiny, Path(tmp) / f"tiny-{name}-{world}", f, args.epochs), *setting]
                )
                cut = Layout(tuple(block_ranges(t, world)), tuple(block_ranges(n, world, "nodes"))).clipped(horizon)
                formula = 4 * all_to_all_bytes(cut.t_ranges, cut.n_ranges, f, 4)
                row = {
                    "malloc": policy,
                    "P": world,
                    "comm_bytes": last["comm_bytes"],
                    "formula": formula,
                    "bound": bound,
                    "grad_sync_bytes": last["grad_sync_bytes"],
                    "peak_per_rank": last["peak_memory_bytes"] / world,
                    "overhead": fixed["peak_memory_bytes"] / world,
                    "import_only": import_only,
                    "train_seconds": last["train_seconds"],
                }
                rows.append(row)
                single = row if world == 1 else single
                target = (
                    None
                    if single is None or world == 1
                    else 1.2 * (single["peak_per_rank"] - single["overhead"]) / world + row["overhead"]
                )
                row["target"] = target
                met = "" if target is None else ("yes" if row["peak_per_rank"] <= target else "NO")
                print(
                    f"{world:>3} {row['comm_bytes']:>14,} {formula:>14,} "
                    f"{'yes' if row['comm_bytes'] == formula else 'NO':>3} "
                    f"{'yes' if row['comm_bytes'] <= bound else 'NO':>8} {row['grad_sync_bytes']:>11,} "
                    f"{row['overhead'] / 2**20:>12,.0f} {row['peak_per_rank'] / 2**20:>14,.0f} "
                    f"{'' if target is None else f'{target / 2**20:,.0f}':>10} {met:>4} {row['train_seconds']:>8.2f}",
                    flush=True,
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
