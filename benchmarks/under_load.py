"""Epoch time of ``dyngnn train`` idle and under a competing load, for OpenMP settings.

A competing load is one busy process per core (``python -c "while True: pass"``), as
when another job shares the node. Each case trains link prediction on weekly
Bitcoin-Alpha for ``--epochs`` epochs in its own process and reports the median
``train_seconds`` of epochs 2..E (epoch 1 warms up), idle and under load:

- ``dyngnn``: dyngnn's default (no OpenMP variable set by the user): threads fitted to
  the free CPUs every epoch (:mod:`dyngnn.threads`);
- ``fixed``: one thread per CPU whatever the load (``OMP_NUM_THREADS`` set to the CPU
  count), as dyngnn ran before;
- ``pygt-loop``: the PyTorch Geometric Temporal loop of ``train_compare.py``, as it runs.

Run: ``.venv/bin/python benchmarks/under_load.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import OUT_DIR, banner, write_json

ROOT = Path(__file__).resolve().parent.parent
CASES = {"dyngnn": {}, "fixed": {"OMP_NUM_THREADS": str(os.cpu_count())}}
LOADS = {
    "python": "while True: pass",
    "torch": "import torch\nx = torch.randn(1500, 1500)\nwhile True: x @ x",
}


def dyngnn_epochs(run_dir: Path, cache: Path, epochs: int, env: dict[str, str]) -> list[float]:
    args = [sys.executable, "-m", "dyngnn.cli", "train", "--run.dir", str(run_dir), "--data.cache_dir", str(cache)]
    args += ["--training.epochs", str(epochs), "--run.no-progress"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    subprocess.run(args, env=clean | env, check=True, capture_output=True, cwd=ROOT)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_seconds"] for r in lines if "train_seconds" in r]


def pygt_epochs(store: Path, epochs: int) -> list[float]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_compare.py"), "--impl", "pygt-loop", "--store", str(store)]
    cmd += ["--epochs", str(epochs), "--hidden", "32", "--max-positives", "10000", "--mode", "delta", "--device", "cpu"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])["epoch_seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--busy", type=int, default=os.cpu_count(), help="competing busy processes")
    p.add_argument(
        "--load",
        choices=["python", "torch"],
        default="python",
        help="each busy process: a Python loop (one thread), or torch matrix products (its default threads)",
    )
    p.add_argument("--case", action="append", default=[], help="one more case, NAME:VAR=VALUE[,VAR=VALUE]")
    p.add_argument("--no-pygt", action="store_true", help="skip the PyG-T loop")
    p.add_argument("--out", default=str(OUT_DIR / "under_load.json"))
    a = p.parse_args()
    cases = dict(CASES)
    for spec in a.case:
        name, _, assignments = spec.partition(":")
        cases[name] = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    print(banner())
    sys.path.insert(0, str(ROOT))
    from dyngnn.data.readers import load_snapshots
    from dyngnn.data.store import DeltaStore

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "btc"
        DeltaStore.from_snapshots(load_snapshots("bitcoinalpha", window="7d")[0], path=store, keyframe_every=0)
        dyngnn_epochs(tmp / "warm", tmp / "cache", 1, {})  # converts the source once, for every case
        for load in ("idle", "loaded"):
            busy = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(a.busy if load == "loaded" else 0)
            ]
            time.sleep(0.5)
            try:
                for name, env in cases.items():
                    times = dyngnn_epochs(tmp / f"{name}-{load}", tmp / "cache", a.epochs, env)
                    results[f"{name} {load}"] = times
                if not a.no_pygt:
                    results[f"pygt-loop {load}"] = pygt_epochs(store, a.epochs)
            finally:
                for b in busy:
                    b.kill()
                    b.wait()
    print(f"median seconds per epoch (epochs 2..{a.epochs}), {a.busy} busy processes ({a.load}) when loaded")
    print(f"  {'case':<12} {'idle':>8} {'loaded':>8} {'loaded/idle':>12}")
    medians = {k: statistics.median(v[1:]) for k, v in results.items()}
    for name in (*cases, *(() if a.no_pygt else ("pygt-loop",))):
        idle, loaded = medians[f"{name} idle"], medians[f"{name} loaded"]
        print(f"  {name:<12} {idle:8.3f} {loaded:8.3f} {loaded / idle:11.1f}x")
    write_json(a.out, {"args": vars(a), "epoch_seconds": results, "median_seconds": medians})


if __name__ == "__main__":
    main()
