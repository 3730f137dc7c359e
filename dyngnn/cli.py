"""The ``dyngnn`` command.

Every error caused by input (files, flags, stores) ends as one line on stderr,
``dyngnn: error: <what> (<where>)``, and exit status 2, with nothing half-written.
Ctrl-C and SIGTERM (``kill``, ``timeout``, SLURM time limits) also leave nothing
half-written: they end as one line and exit status 130 or 143.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dyngnn import __version__
from dyngnn.errors import InputError

log = logging.getLogger("dyngnn")
_VERBOSE = ("-v", "--verbose")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="[dyngnn] %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    exp = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024**exp:,.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exp - 1]} ({n:,} B)"


def cmd_convert(args: argparse.Namespace) -> int:
    from dyngnn.data.npyfile import check_output_path
    from dyngnn.data.readers import load_snapshots
    from dyngnn.data.store import DeltaStore

    check_output_path(args.out, args.force, source=args.source)
    if args.keyframe_every < 0:
        raise InputError(f"--keyframe-every {args.keyframe_every}: must be >= 0")
    snaps, meta = load_snapshots(
        args.source,
        format=args.format,
        window=args.window,
        lifetime=args.lifetime,
        weight=args.weight,
        undirected=args.undirected,
        columns=args.columns,
    )
    log.info(
        "read %s: %s snapshots over %s nodes, %s edges in all",
        args.source,
        f"{snaps.num_snapshots:,}",
        f"{snaps.num_nodes:,}",
        f"{sum(len(k) for k in snaps.keys):,}",
    )
    store = DeltaStore.from_snapshots(
        snaps, keyframe_every=args.keyframe_every, path=args.out, force=args.force, source=meta
    )
    st = store.stats()
    log.info(
        "wrote %s: %s stored, %s as full snapshots",
        args.out,
        _fmt_bytes(st["stored_graph_bytes"]),
        _fmt_bytes(st["full_snapshot_bytes"]),
    )
    return 0


def _print_inspection(st: dict[str, Any], rows: int) -> None:
    import numpy as np

    edges = np.array([s["edges"] for s in st["snapshots"]])
    kf = st["keyframes"]
    ratio = st["full_snapshot_bytes"] / max(st["stored_graph_bytes"], 1)
    lines = [
        ("store", st["path"]),
        ("nodes", f"{st['num_nodes']:,}"),
        (
            "snapshots",
            f"{st['num_snapshots']:,} ({kf:,} keyframes, {st['num_snapshots'] - kf:,} deltas; "
            f"forced keyframe every {st['keyframe_every'] or 'never'})",
        ),
        (
            "edges",
            f"{st['total_edges']:,} in all; per snapshot min {edges.min():,}, "
            f"median {int(np.median(edges)):,}, max {edges.max():,}",
        ),
        ("weighted", "yes (float32)" if st["weighted"] else "no"),
        ("stored", f"{_fmt_bytes(st['stored_graph_bytes'])} graph, of which {st['index_bytes']:,} B index"),
        ("full", f"{_fmt_bytes(st['full_snapshot_bytes'])} if every snapshot were stored whole ({ratio:.1f}x)"),
        ("node table", _fmt_bytes(st["node_table_bytes"])),
    ]
    for name, d in st["node_data"].items():
        label = "features x" if name == "x" else "targets y"
        lines.append((label, f"{d['kind']} {d['shape']}, {_fmt_bytes(d['bytes'])}"))
    src = st["source"]
    if src:
        lines.append(("source", ", ".join(f"{k}={v}" for k, v in src.items())))
    for k, v in lines:
        print(f"{k:<11} {v}")
    if rows == 0:
        return
    print()
    print(f"{'t':>7} {'edges':>11} {'encoding':>9} {'+added':>10} {'-removed':>10} {'~reweighted':>12}")
    snaps = st["snapshots"]
    tail = rows // 3
    shown = snaps if len(snaps) <= rows else [*snaps[: rows - tail], None, *snaps[len(snaps) - tail :]]
    for s in shown:
        if s is None:
            print(f"{'...':>7}  ({len(snaps) - len(shown) + 1:,} more; --rows N or --json to see them)")
            continue
        print(
            f"{s['t']:>7} {s['edges']:>11,} {s['encoding']:>9} {s['added']:>10,} {s['removed']:>10,} "
            f"{s['reweighted']:>12,}"
        )


def cmd_inspect(args: argparse.Namespace) -> int:
    from dyngnn.data.store import DeltaStore

    if args.rows < 0:
        raise InputError(f"--rows {args.rows}: must be >= 0")
    st = DeltaStore.open(args.store).stats()
    if args.json:
        json.dump(st, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        _print_inspection(st, args.rows)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from dyngnn.data.store import DeltaStore

    store = DeltaStore.open(args.store)
    store.verify()
    print(f"{args.store}: ok ({store.num_snapshots:,} snapshots, {len(store.meta['arrays'])} arrays checked)")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from dyngnn.data.npyfile import check_output_path
    from dyngnn.data.synthetic import synthesize

    check_output_path(args.out, args.force)
    store = synthesize(
        args.out,
        num_nodes=args.nodes,
        num_edges=args.edges,
        num_snapshots=args.snapshots,
        churn=args.churn,
        seed=args.seed,
        beta=args.beta,
        keyframe_every=args.keyframe_every,
        force=args.force,
        progress=sys.stderr.isatty(),
    )
    st = store.stats()
    log.info(
        "wrote %s: %s snapshots, %s stored, %s as full snapshots",
        args.out,
        f"{store.num_snapshots:,}",
        _fmt_bytes(st["stored_graph_bytes"]),
        _fmt_bytes(st["full_snapshot_bytes"]),
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dyngnn.train import run

    return run(args.settings)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dyngnn", description="Train GNNs on dynamic graphs stored as keyframes plus edge deltas.")
    p.add_argument("--version", action="version", version=f"dyngnn {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser(
        "data",
        help="convert, inspect, generate and verify delta stores",
        description=(
            "A delta store is a directory holding a dynamic graph as keyframes plus per-snapshot "
            "edge changes. Typical flow:\n"
            "  dyngnn data convert bitcoinalpha --out btc --window 1d --lifetime 30d\n"
            "  dyngnn data inspect btc\n"
            "  dyngnn data verify btc\n"
            "Each command has its own --help."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)

    c = dsub.add_parser(
        "convert",
        help="turn a temporal edge list or PyG-Temporal JSON into a delta store",
        description=(
            "Convert SOURCE into a delta store directory. SOURCE is a file or the name of a "
            "bundled dataset (bitcoinalpha). Event lists (src dst [weight] time rows) need "
            "--window: they are cut into snapshots of that length, and an edge lives for "
            "--lifetime (default: one window). "
            "Example: dyngnn data convert bitcoinalpha --out store --window 7d"
        ),
    )
    c.add_argument("source", help="edge list (.csv/.txt/.tsv, optionally .gz), PyG-T .json, or a dataset name")
    c.add_argument("--out", required=True, type=Path, help="store directory to create")
    c.add_argument(
        "--format", default="auto", choices=["auto", "snap", "pygt-json"], help="input format (default: by extension)"
    )
    c.add_argument(
        "--window", help="snapshot length, required for event lists: seconds, or a number with s/m/h/d/w (e.g. 7d)"
    )
    c.add_argument("--lifetime", help="how long an event stays in snapshots (>= window; default: window)")
    c.add_argument(
        "--weight",
        choices=["none", "count", "sum", "last"],
        help="edge weight from repeated events: none (default for event lists), count, sum (default for "
        "weighted snapshot files) or last",
    )
    c.add_argument("--undirected", action="store_true", help="add the reverse of every edge")
    c.add_argument("--columns", help="roles of the file's columns, e.g. src,dst,-,time (default: detected)")
    c.add_argument(
        "--keyframe-every",
        type=int,
        default=64,
        metavar="K",
        help="force a keyframe every K snapshots (0: never; default 64)",
    )
    c.add_argument("--force", action="store_true", help="replace --out if it exists")
    c.set_defaults(func=cmd_convert)

    i = dsub.add_parser("inspect", help="sizes, edges per snapshot and encodings of a store")
    i.add_argument("store", type=Path, help="store directory")
    i.add_argument("--json", action="store_true", help="print everything as JSON")
    i.add_argument(
        "--rows", type=int, default=20, help="snapshot rows in the table (default 20; 0: no table, the summary only)"
    )
    i.set_defaults(func=cmd_inspect)

    s = dsub.add_parser(
        "synth",
        help="generate a large synthetic dynamic graph with controlled churn",
        description=(
            "Write a synthetic store: E edges per snapshot over N nodes with power-law degrees; "
            "each step replaces a fraction --churn of the edges. Streams to disk: memory stays "
            "bounded by one snapshot."
        ),
    )
    s.add_argument("--out", required=True, type=Path, help="store directory to create")
    s.add_argument("--nodes", required=True, type=int, help="N, number of nodes")
    s.add_argument("--edges", required=True, type=int, help="E, edges per snapshot")
    s.add_argument("--snapshots", required=True, type=int, help="T, number of snapshots")
    s.add_argument("--churn", required=True, type=float, help="fraction of edges replaced per step (0.01 = 1%%)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--beta", type=float, default=0.7, help="degree skew: power-law exponent 1 + 1/beta (default 0.7)")
    s.add_argument(
        "--keyframe-every", type=int, default=64, metavar="K", help="force a keyframe every K snapshots (0: never)"
    )
    s.add_argument("--force", action="store_true", help="replace --out if it exists")
    s.set_defaults(func=cmd_synth)

    tr = sub.add_parser(
        "train",
        help="train a temporal GCN-LSTM (link or node prediction); --help lists every setting",
        add_help=False,
    )
    tr.add_argument("settings", nargs=argparse.REMAINDER, help="[--config FILE] [--resume] [--section.key value ...]")
    tr.set_defaults(func=cmd_train)

    v = dsub.add_parser("verify", help="check a store's checksums and every snapshot; exit 2 on any problem")
    v.add_argument("store", type=Path, help="store directory")
    v.set_defaults(func=cmd_verify)
    return p


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread; a BaseException, so that no ``except Exception`` stops it."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`_Terminated`.

    It unwinds like Ctrl-C, so ``with`` blocks remove what they were writing (a store's
    hidden temporary directory) instead of the process dying with it on disk.
    """
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    lead = len(list(itertools.takewhile(lambda a: a in _VERBOSE, argv)))
    if argv[lead : lead + 1] == ["train"]:
        # The trainer's settings are parsed by dyngnn.config (tyro), not by argparse;
        # -v is dyngnn's own flag, before or after `train` (no setting's value is "-v").
        settings = argv[lead + 1 :]
        args = argparse.Namespace(
            func=cmd_train,
            settings=[a for a in settings if a not in _VERBOSE],
            verbose=lead > 0 or any(a in _VERBOSE for a in settings),
        )
    else:
        args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        with _sigterm_raises():
            code = args.func(args)
            sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
            return code
    except InputError as e:
        from dyngnn.train import report

        report(e)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("dyngnn: interrupted\n")
        return 130
    except _Terminated:
        sys.stderr.write("dyngnn: terminated (SIGTERM)\n")
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # stdout closed early (`dyngnn data inspect S --json | head -1`): stop quietly, as
        # cat does; output still buffered goes to devnull, not to a traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as e:  # a full disk, a read-only directory...: the path, in one line
        from dyngnn.train import os_error_line, report

        report(os_error_line(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
