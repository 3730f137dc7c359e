"""Readers: temporal edge lists and PyTorch Geometric Temporal JSON -> events or snapshots.

Edge lists (SNAP and friends): comma, tab or space separated, optional header, optional
``#``/``%`` comments, plain or gzipped, integer or fractional timestamps, rows in any
order. Columns default to ``src dst time`` (3 columns) or ``src dst weight time``
(4 columns), or come from a header that names them, or from ``columns=``.

Parsing runs in numpy; when it fails, a line-by-line scan finds the first bad line and
reports it as ``file:line: what is wrong``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dyngnn.data.snapshots import Snapshots, bin_events, from_edge_lists
from dyngnn.errors import InputError

ROLES = ("src", "dst", "weight", "time")
_ALIASES = {
    "src": {"src", "source", "from", "u", "sender", "node1", "source_id", "src_id", "i"},
    "dst": {"dst", "target", "to", "v", "receiver", "node2", "target_id", "dst_id", "j"},
    "weight": {"weight", "w", "rating", "sign", "value", "amount"},
    "time": {"time", "timestamp", "ts", "t", "unixts", "date", "datetime", "unix_time"},
}
_TIME_LIMIT = 2**62  # keeps time differences inside int64
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class Events:
    """Timestamped edge events as read from a file.

    Attributes:
        src, dst: ``int64 [M]`` original node ids.
        time: ``int64 [M]`` or ``float64 [M]`` timestamps.
        weight: ``float64 [M]`` or None.
        source: where they came from (for messages).
    """

    src: np.ndarray
    dst: np.ndarray
    time: np.ndarray
    weight: np.ndarray | None
    source: str


def parse_duration(text: str | int | float, what: str = "duration") -> int | float:
    """``"86400"``, ``"1.5h"``, ``"7d"``, ``"2w"`` -> seconds (an int when whole).

    Raises:
        InputError: not a number with an optional s/m/h/d/w unit, or not > 0.
    """
    if isinstance(text, (int, float)):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([smhdw]?)\s*", str(text))
        if not m:
            raise InputError(f"{what} {text!r}: expected seconds or a number with s/m/h/d/w (e.g. 7d)")
        value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{what} {text!r}: must be > 0")
    return int(value) if float(value).is_integer() else float(value)


def check_input_file(path: Path) -> None:
    """Refuse what cannot be read as an input file, naming what it is instead.

    Raises:
        InputError: missing, a directory, not a regular file (a device, a pipe), or
            not readable by this user.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an edge list or JSON file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (a device or a pipe?); give an edge list or JSON file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable (permission denied)")


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


@contextmanager
def _gzip_errors(path: Path) -> Iterator[None]:
    """Turn a truncated or corrupt gzip stream, found wherever reading gets to it, into an InputError."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"{path}: truncated or corrupt gzip file ({e})") from None


def _data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line that is not blank or a comment."""
    with _gzip_errors(path), _open_text(path) as f:
        for no, line in enumerate(f, 1):
            text = line.strip()
            if text and text[0] not in "#%":
                yield no, text


def _split(text: str, sep: str | None) -> list[str]:
    return [p.strip() for p in text.split(sep)] if sep else text.split()


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .()/-]*")


def _is_name(field: str) -> bool:
    """Whether a field reads as a column name: a word, not a number or a mistyped one
    (``1OO``, ``x1`` beside numbers are data with a typo, not a header)."""
    text = field.strip("\"' ")
    return not _is_number(text) and _NAME.fullmatch(text) is not None


def _layout(path: Path, columns: str | None) -> tuple[str | None, bool, int, dict[str, int], int]:
    """Detect separator, header and column roles from the first data line. It is a
    header when every field is a name (:func:`_is_name`); otherwise it is data, and a
    field that is not a number is an error on that line.

    Returns ``(sep, has_header, ncols, role -> column index, first data line number)``.
    """
    first = next(_data_lines(path), None)
    if first is None:
        raise InputError(f"{path}: the file is empty (no edges)")
    no, text = first
    sep = "," if "," in text else "\t" if "\t" in text else None
    fields = _split(text, sep)
    ncols = len(fields)
    has_header = all(_is_name(f) for f in fields)
    roles: dict[str, int] = {}
    if columns:
        names = [c.strip().lower() for c in columns.split(",")]
        for i, name in enumerate(names):
            if name in ROLES:
                roles[name] = i
            elif name not in ("", "-", "_", "skip"):
                raise InputError(f"--columns {columns!r}: unknown column {name!r} (use src, dst, weight, time or -)")
        if len(names) != ncols:
            raise InputError(f"{path}:{no}: --columns names {len(names)} columns, the file has {ncols}")
    elif has_header:
        for i, name in enumerate(f.lower().strip("\"' ") for f in fields):
            for role, aliases in _ALIASES.items():
                if name in aliases and role not in roles:
                    roles[role] = i
    if not roles or (not columns and not {"src", "dst", "time"} <= roles.keys()):
        if ncols == 3:
            roles = {"src": 0, "dst": 1, "time": 2}
        elif ncols == 4:
            roles = {"src": 0, "dst": 1, "weight": 2, "time": 3}
        else:
            raise InputError(
                f"{path}:{no}: expected 3 or 4 columns (src dst [weight] time), got {ncols}; name them with --columns"
            )
    for role in ("src", "dst", "time"):
        if role not in roles:
            raise InputError(f"{path}: no {role} column (name it with --columns)")
    return sep, has_header, ncols, roles, no


def read_edge_list(path: Path | str, *, columns: str | None = None) -> Events:
    """Read a temporal edge list.

    Args:
        path: text file, optionally gzipped.
        columns: comma-separated roles of the file's columns, e.g. ``"src,dst,-,time"``.

    Raises:
        InputError: missing or empty file, a truncated or corrupt gzip file, a
            non-numeric field, a wrong number of columns, a NaN/infinite/out-of-range
            timestamp, or a node id beyond int64; the message names the file and line.
    """
    path = Path(path)
    check_input_file(path)
    sep, has_header, ncols, roles, first_no = _layout(path, columns)
    kind = {i: r for r, i in roles.items()}
    table = None
    with _gzip_errors(path):  # outside the try: an InputError is a ValueError
        for time_type in ("i8", "f8"):
            types = {"src": "i8", "dst": "i8", "weight": "f8", "time": time_type}
            # Unused columns are read as 1-char strings: parsed cheaply, and a ragged row
            # still fails (numpy checks the width of every row only without usecols).
            dtype = np.dtype([(kind.get(i, f"_{i}"), types[kind[i]] if i in kind else "U1") for i in range(ncols)])
            try:
                # a header with no rows after it is reported below, as an empty file
                with _open_text(path) as f, warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
                    table = np.loadtxt(
                        f,
                        dtype=dtype,
                        delimiter=sep,
                        comments=["#", "%"],
                        skiprows=first_no if has_header else first_no - 1,
                        ndmin=1,
                    )
                break
            except (ValueError, OverflowError, IndexError):
                continue
    if table is None:
        _scan(path, sep, has_header, ncols, roles)
    if len(table) == 0:
        raise InputError(f"{path}: the file is empty (no edges)")
    time = table["time"]
    bad = ~np.isfinite(time) if time.dtype.kind == "f" else np.zeros(len(time), bool)
    bad |= np.abs(time.astype(np.float64)) >= _TIME_LIMIT
    if bad.any():
        line = _line_of_row(path, has_header, int(np.flatnonzero(bad)[0]))
        raise InputError(f"{path}:{line}: timestamp {time[bad][0].item()} is not finite or beyond +-2^62")
    weight = table["weight"].astype(np.float64) if "weight" in roles else None
    if weight is not None and not np.isfinite(weight).all():
        line = _line_of_row(path, has_header, int(np.flatnonzero(~np.isfinite(weight))[0]))
        raise InputError(f"{path}:{line}: weight is not finite")
    return Events(table["src"].copy(), table["dst"].copy(), np.ascontiguousarray(time), weight, str(path))


def _line_of_row(path: Path, has_header: bool, row: int) -> int:
    for i, (no, _) in enumerate(_data_lines(path)):
        if i == row + has_header:
            return no
    return -1


def _scan(path: Path, sep: str | None, has_header: bool, ncols: int, roles: dict[str, int]) -> None:
    """Find the first line numpy could not parse and raise an error that names it."""
    lines = _data_lines(path)
    if has_header:
        next(lines)
    for no, text in lines:
        fields = _split(text, sep)
        if len(fields) != ncols:
            raise InputError(f"{path}:{no}: expected {ncols} columns, got {len(fields)}")
        for role, i in roles.items():
            value = fields[i]
            if role in ("src", "dst"):
                try:
                    as_int = int(value)
                except ValueError:
                    raise InputError(f"{path}:{no}: {role} {value!r} is not an integer node id") from None
                if not -(2**63) <= as_int < 2**63:
                    raise InputError(f"{path}:{no}: node id {value} does not fit in int64")
            elif not _is_number(value):
                raise InputError(f"{path}:{no}: {role} {value!r} is not a number")
    raise InputError(f"{path}: could not parse the file as numbers")


def read_pygt_json(path: Path | str, *, weight_mode: str | None = None, undirected: bool = False) -> Snapshots:
    """Read a PyTorch Geometric Temporal dynamic-graph JSON file.

    Two schemas: ``edge_mapping`` (e.g. England COVID: ``y`` per snapshot becomes the
    node targets) and per-snapshot objects ``"0": {"edges", "weights", "X", "y"}`` with
    ``node_ids`` (e.g. Twitter tennis: ``X`` and ``y`` become per-snapshot node data).

    Raises:
        InputError: missing file, a truncated or corrupt gzip file, invalid JSON, or
            JSON that matches neither schema.
    """
    path = Path(path)
    check_input_file(path)
    try:
        with _gzip_errors(path), _open_text(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    try:
        if isinstance(doc, dict) and isinstance(doc.get("edge_mapping"), dict):
            return _edge_mapping(doc, path, weight_mode, undirected)
        if isinstance(doc, dict) and isinstance(doc.get("0"), dict) and "edges" in doc["0"]:
            return _per_snapshot(doc, path, weight_mode, undirected)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: malformed PyTorch Geometric Temporal JSON ({type(e).__name__}: {e})") from None
    raise InputError(
        f"{path}: JSON matches neither PyTorch Geometric Temporal schema "
        "(expected an 'edge_mapping' object, or per-snapshot objects '0', '1', ... with 'edges')"
    )


def _edges(pairs: Any, where: str) -> np.ndarray:
    arr = np.asarray(pairs, dtype=np.int64)
    if arr.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"{where}: edges must be a list of [u, v] pairs")
    return arr.T


def _edge_mapping(doc: dict, path: Path, weight_mode: str | None, undirected: bool) -> Snapshots:
    mapping = doc["edge_mapping"]
    index, weights = mapping["edge_index"], mapping.get("edge_weight")
    num = int(doc.get("time_periods", len(index)))
    ei = [_edges(index[str(t)], f"{path}: snapshot {t}") for t in range(num)]
    ew = None if weights is None else [np.asarray(weights[str(t)], dtype=np.float64) for t in range(num)]
    y = None if doc.get("y") is None else np.asarray(doc["y"], dtype=np.float64)
    if y is not None and (y.ndim < 2 or y.shape[0] != num):
        raise InputError(f"{path}: 'y' has shape {y.shape}, expected [time_periods, N]")
    n = y.shape[1] if y is not None else int(max((int(e.max()) for e in ei if e.size), default=-1)) + 1
    snaps = from_edge_lists(ei, ew, n, weight_mode=weight_mode, undirected=undirected, where=str(path))
    snaps.y, snaps.y_per_snapshot = y, True
    return snaps


def _per_snapshot(doc: dict, path: Path, weight_mode: str | None, undirected: bool) -> Snapshots:
    num = int(doc.get("time_periods", sum(1 for k in doc if k.isdigit())))
    if "node_ids" in doc:
        n = len(doc["node_ids"])
    else:
        n = int(max((int(np.max(doc[str(t)]["edges"])) for t in range(num) if doc[str(t)]["edges"]), default=-1)) + 1
    ei, ew, xs, ys = [], [], [], []
    for t in range(num):
        snap = doc[str(t)]
        ei.append(_edges(snap["edges"], f"{path}: snapshot {t}"))
        ew.append(None if snap.get("weights") is None else np.asarray(snap["weights"], dtype=np.float64))
        xs.append(snap.get("X"))
        ys.append(snap.get("y"))
    for key, values in (("X", xs), ("y", ys), ("weights", ew)):
        given = [v is not None for v in values]
        if any(given) and not all(given):
            t = given.index(False)
            raise InputError(
                f"{path}: snapshot {t} has no {key!r} while snapshot {given.index(True)} has one; "
                f"give every snapshot {key!r} or none"
            )
    snaps = from_edge_lists(
        ei,
        ew if any(w is not None for w in ew) else None,
        n,
        weight_mode=weight_mode,
        undirected=undirected,
        where=str(path),
    )
    if all(x is not None for x in xs):
        snaps.x, snaps.x_per_snapshot = np.asarray(xs, dtype=np.float32), True
    if all(y is not None for y in ys):
        y = np.asarray(ys)
        snaps.y, snaps.y_per_snapshot = (y if y.dtype.kind in "iu" else y.astype(np.float32)), True
    snaps.__post_init__()
    return snaps


def detect_format(path: Path) -> str:
    """``pygt-json`` for ``.json``/``.json.gz`` files, else ``snap``."""
    name = path.name.lower()
    return "pygt-json" if name.endswith((".json", ".json.gz")) else "snap"


def load_snapshots(
    source: str | Path,
    *,
    format: str = "auto",
    window: str | int | float | None = None,
    lifetime: str | int | float | None = None,
    weight: str | None = None,
    undirected: bool = False,
    columns: str | None = None,
) -> tuple[Snapshots, dict[str, Any]]:
    """Read any supported source into snapshots; also return its provenance.

    Args:
        source: a file path or the name of a bundled dataset (``dyngnn.datasets``).
        format: ``auto``, ``snap`` or ``pygt-json``.
        window, lifetime: durations for event lists (required / optional).
        weight: ``none|count|sum|last``; default ``none`` for event lists and ``sum``
            for weighted snapshot sources.

    Raises:
        InputError: anything wrong with the source or the options.
    """
    from dyngnn import datasets

    path = datasets.resolve(source)
    fmt = detect_format(path) if format == "auto" else format
    meta: dict[str, Any] = {"source": str(source), "format": fmt, "undirected": undirected}
    if fmt == "pygt-json":
        if window is not None or lifetime is not None:
            raise InputError(f"{source}: --window/--lifetime apply to event lists, not to given snapshots")
        meta["weight"] = weight
        return read_pygt_json(path, weight_mode=weight, undirected=undirected), meta
    if fmt != "snap":
        raise InputError(f"--format {format!r}: expected auto, snap or pygt-json")
    if window is None:
        raise InputError(f"{source}: --window is required to bin an event list into snapshots")
    w = parse_duration(window, "window")
    life = None if lifetime is None else parse_duration(lifetime, "lifetime")
    events = read_edge_list(path, columns=columns)
    mode = weight or "none"
    meta |= {"window": w, "lifetime": life if life is not None else w, "weight": mode, "events": len(events.time)}
    snaps = bin_events(
        events.src,
        events.dst,
        events.time,
        events.weight,
        window=w,
        lifetime=life,
        weight_mode=mode,
        undirected=undirected,
        where=str(source),
    )
    meta["t_start"] = events.time.min().item()
    return snaps, meta
