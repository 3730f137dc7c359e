"""Scale test: ``dyngnn data synth`` at N=10M nodes, E=50M edges, T=100, churn 1%.

Runs the CLI as a subprocess and measures wall-clock build time (seconds), the child's
peak resident memory (bytes, from ``wait4`` rusage, i.e. what ``/usr/bin/time -v``
reports as "Maximum resident set size"), and the store size on disk (bytes, file sizes
and allocated blocks). The store is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import OUT_DIR, banner, print_table, write_json

REPO = Path(__file__).resolve().parent.parent
GB = 10**9


def dir_bytes(path: Path) -> tuple[int, int]:
    """(sum of file sizes, allocated bytes as ``du`` counts them) under ``path``."""
    size = alloc = 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            size += st.st_size
            alloc += st.st_blocks * 512
    return size, alloc


def rss_bytes(pid: int) -> int:
    """Current resident memory of ``pid`` (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_synth(cmd: list[str], time_limit: float, mem_limit: int, poll: float, workdir: Path) -> dict[str, Any]:
    """Run ``cmd``; kill it past ``time_limit`` seconds or ``mem_limit`` bytes RSS.

    ``seconds`` is wall-clock time to within ``poll``.
    """
    killed, peak_seen = None, 0
    # A file, not a pipe, so a chatty child can never block on a full pipe.
    with tempfile.TemporaryFile(mode="w+") as log:
        start = last_report = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        while True:
            # wait4 on the exact child gives its own rusage, not that of every child so far.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            rss = rss_bytes(proc.pid)
            peak_seen = max(peak_seen, rss)
            if killed is None and now - start > time_limit:
                killed = f"time {now - start:.0f} s > {time_limit:.0f} s"
            elif killed is None and rss > mem_limit:
                killed = f"RSS {rss:,} B > {mem_limit:,} B"
            if killed and proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                proc.returncode = -9
            if now - last_report >= 30:
                # Progress lines so a long run can be followed from a log file.
                written = dir_bytes(workdir)[0]
                print(f"  ... {now - start:6.0f} s  rss {rss / GB:5.2f} GB  written {written / GB:6.2f} GB", flush=True)
                last_report = now
            time.sleep(poll)
        elapsed = time.perf_counter() - start
        log.seek(0)
        output = log.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": proc.returncode,
        "killed": killed,
        "seconds": elapsed,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "peak_rss_polled_bytes": peak_seen,
        "output": output.strip(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10_000_000)
    p.add_argument("--edges", type=int, default=50_000_000)
    p.add_argument("--snapshots", type=int, default=100)
    p.add_argument("--churn", type=float, default=0.01)
    p.add_argument("--keyframe-every", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None, help="where to write the store (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the store afterwards")
    p.add_argument("--time-limit", type=float, default=1500, help="kill the build after this many seconds")
    p.add_argument("--mem-limit-gb", type=float, default=20, help="kill the build above this RSS (GB)")
    p.add_argument("--target-store-gb", type=float, default=2.5)
    p.add_argument("--target-mem-gb", type=float, default=8)
    p.add_argument("--json", type=Path, default=None, help="result file (default: out/synth_scale_<sizes>.json)")
    args = p.parse_args()
    print(banner(), flush=True)

    tag = f"N{args.nodes}_E{args.edges}_T{args.snapshots}"
    work = Path(tempfile.mkdtemp(prefix="synth_scale-", dir=args.workdir))
    store = work / "store"
    exe = Path(sys.executable).with_name("dyngnn")
    cmd = [
        str(exe),
        "data",
        "synth",
        "--out",
        str(store),
        "--nodes",
        str(args.nodes),
        "--edges",
        str(args.edges),
        "--snapshots",
        str(args.snapshots),
        "--churn",
        str(args.churn),
        "--seed",
        str(args.seed),
        "--keyframe-every",
        str(args.keyframe_every),
    ]
    print("$", " ".join(cmd), flush=True)
    try:
        res = run_synth(cmd, args.time_limit, int(args.mem_limit_gb * GB), 0.2, work)
        size, alloc = dir_bytes(store) if store.is_dir() else (0, 0)
        stats: dict[str, Any] = {}
        if res["returncode"] == 0:
            sys.path.insert(0, str(REPO))
            from dyngnn.data.store import DeltaStore

            st = DeltaStore.open(store).stats()
            stats = {
                k: st[k]
                for k in ("stored_graph_bytes", "full_snapshot_bytes", "index_bytes", "keyframes", "total_edges")
            }
            # Checksums let a later run (e.g. after a generator speed-up) prove it wrote the same store.
            stats["sha256"] = {n: e["sha256"] for n, e in sorted(DeltaStore.open(store).meta["arrays"].items())}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    full = args.edges * 8 * args.snapshots  # int32 (src, dst) pairs, every snapshot whole
    row = {
        "N": args.nodes,
        "E": args.edges,
        "T": args.snapshots,
        "churn": args.churn,
        "K": args.keyframe_every,
        "rc": res["returncode"],
        "seconds": round(res["seconds"], 1),
        "peak RSS GB": res["peak_rss_bytes"] / GB,
        "store GB": size / GB,
        "du GB": alloc / GB,
        "full GB": full / GB,
        "store ok": res["returncode"] == 0 and size <= args.target_store_gb * GB,
        "mem ok": res["returncode"] == 0 and res["peak_rss_bytes"] <= args.target_mem_gb * GB,
    }
    print(res["output"])
    if res["killed"]:
        print(f"KILLED: {res['killed']}")
    print_table([row], list(row))
    print(f"targets: store <= {args.target_store_gb} GB, peak memory <= {args.target_mem_gb} GB")
    out = write_json(
        args.json or OUT_DIR / f"synth_scale_{tag}.json",
        {
            "command": cmd,
            "args": {k: str(v) for k, v in vars(args).items()},
            "result": res,
            "store_file_bytes": size,
            "store_du_bytes": alloc,
            "full_int32_pairs_bytes": full,
            "stats": stats,
            "targets": {"store_bytes": args.target_store_gb * GB, "peak_rss_bytes": args.target_mem_gb * GB},
            "row": row,
        },
    )
    print(f"wrote {out}")
    return 0 if res["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
