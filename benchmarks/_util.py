"""Small helpers shared by the benchmark scripts: tables, JSON output, machine info."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT_DIR = Path(__file__).resolve().parent / "out"
REPO = Path(__file__).resolve().parent.parent


def git_state() -> dict[str, Any]:
    """Commit measured, and whether dyngnn/ had uncommitted edits (the code moves)."""

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "dyngnn_dirty": bool(git("status", "--porcelain", "dyngnn"))}


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        **git_state(),
    }


def write_json(path: Path | str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus machine info as JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1) + "\n")
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print ``rows`` as an aligned text table (ints with thousands separators)."""

    def cell(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, (int, np.integer)):
            return f"{int(v):,}"
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.3f}"
        return "" if v is None else str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    width = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, width, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, width, strict=True)))


def percentile_ms(seconds: list[float], q: float) -> float:
    """The ``q``-th percentile of durations given in seconds, in milliseconds."""
    return float(np.percentile(np.asarray(seconds) * 1e3, q))


def banner() -> str:
    """One line saying when, where and on which commit a run happened."""
    m = machine()
    dirty = " (dyngnn/ has uncommitted edits)" if m["dyngnn_dirty"] else ""
    return f"# {m['date']}  {m['cpus']} CPUs  numpy {m['numpy']}  commit {m['commit']}{dirty}"


def best_seconds(fn, reps: int) -> float:
    """The shortest of ``reps`` timed calls of ``fn()``, in seconds."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def default_horizon(num_snapshots: int) -> int:
    """The training horizon the trainer uses for ``num_snapshots`` under its default split."""
    from dyngnn.config import TaskConfig
    from dyngnn.tasks import Split

    task = TaskConfig()
    return Split.by_time(num_snapshots, task.val_fraction, task.test_fraction).horizon


def training_args(store: Path | str, run_dir: Path | str, *extra: str, hidden: int = 32, epochs: int = 4) -> list[str]:
    """``dyngnn train`` arguments of a benchmark run: link prediction on ``store``, no
    progress bars; ``extra`` settings come last, so they win over these."""
    return [
        *("--data.store", str(store), "--run.dir", str(run_dir), "--run.no-progress"),
        *("--model.hidden", str(hidden), "--training.epochs", str(epochs)),
        *(str(e) for e in extra),
    ]


def link_training_args(store: Path, run_dir: Path, hidden: int, epochs: int) -> list[str]:
    """The arguments of the multi-rank benchmarks: :func:`training_args` with at most
    20,000 training and 2,000 evaluation positives per target snapshot."""
    limits = ("--task.max_positives", "20000", "--task.eval_max_positives", "2000")
    return training_args(store, run_dir, *limits, hidden=hidden, epochs=epochs)


def torchrun(world: int, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node world args...`` from the repository root, one
    thread per rank, as users start ranks; a failure ends the benchmark with its stderr."""
    cmd = [Path(sys.executable).with_name("torchrun"), "--standalone", "--nproc-per-node", str(world), *args]
    done = subprocess.run(cmd, cwd=REPO, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{done.stderr[-3000:]}")
    return done


def add_store_options(p) -> None:
    """``--nodes --edges --snapshots --hidden``: the synthetic store of the multi-rank
    benchmarks (``comm_volume.py``, ``scaling_model.py``), the same by default."""
    p.add_argument("--nodes", type=int, default=20_000)
    p.add_argument("--edges", type=int, default=100_000)
    p.add_argument("--snapshots", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32)


def synthesize_store(path: Path, args) -> None:
    """The store of :func:`add_store_options` at ``path`` (churn 1%, seed 0)."""
    from dyngnn.data.synthetic import synthesize

    synthesize(path, num_nodes=args.nodes, num_edges=args.edges, num_snapshots=args.snapshots, churn=0.01, seed=0)
