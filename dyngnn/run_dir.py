"""A run directory: whether it holds a run already, the resolved settings (``config.json``), one metrics
line per epoch (``metrics.jsonl``, strict JSON) and, on request, TensorBoard (``tb/``).

Only rank 0 writes here; checkpoints live in ``checkpoints/`` (:mod:`dyngnn.checkpoint`).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import resource
import socket
from pathlib import Path
from typing import Any

import torch

from dyngnn.checkpoint import Checkpoints
from dyngnn.errors import InputError


def peak_memory_bytes(device: torch.device) -> int:
    """Peak CUDA memory allocated, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinity (a metric with nothing to measure) as None,
    so that metrics.jsonl is strict JSON (``null``)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def scalars(record: dict[str, Any]) -> list[tuple[str, float]]:
    """Flatten a metrics record into TensorBoard tags (``val/auc``, ``train_loss``...)."""
    out = []
    for key, value in record.items():
        if isinstance(value, dict):
            out += [(f"{key}/{k}", float(v)) for k, v in value.items()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            out.append((key, float(value)))
    return out


def tensorboard_writer(enabled: bool) -> type | None:
    """TensorBoard's ``SummaryWriter`` class where ``enabled`` asks for it.

    Raises:
        InputError: asked for without the tensorboard package.
    """
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("run.tensorboard = true needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter


class RunDir:
    """The run directory at ``path``, its last ``keep_checkpoints`` checkpoints kept."""

    def __init__(self, path: Path | str, keep_checkpoints: int = 2) -> None:
        self.path = Path(path)
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoints = Checkpoints(self.path / "checkpoints", keep_checkpoints)
        self._tb = None
        self._lock = None

    def check_unused(self) -> None:
        """Refuse a directory that already holds a run (checkpoints or metrics).

        Raises:
            InputError: naming what to do instead (resume, delete, another directory).
        """
        if not (self.checkpoints.has_files() or self.metrics.exists()):
            return
        if self.checkpoints.latest() is None:
            raise InputError(f"{self.path}: holds a run without checkpoints (delete it, or use another --run.dir)")
        raise InputError(f"{self.path}: already holds a run (use --resume, or another --run.dir)")

    def start(self, config: dict[str, Any], epoch: int | None, writer: type | None = None, fresh: bool = False) -> None:
        """Create the directory and hold it (:meth:`hold`), write ``config.json``, and cut
        ``metrics.jsonl`` to the epochs up to ``epoch`` (a resumed checkpoint's; None: a run
        starting over, whose earlier lines are dropped); open TensorBoard with ``writer``.
        A ``fresh`` run checks again, holding the directory, that it holds no run.

        Raises:
            InputError: the directory cannot be created, another job holds it, or (fresh)
                a run was written there since the first check.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"run.dir {self.path}: cannot create it ({e.strerror})") from None
        self.hold()
        if fresh:
            self.check_unused()
        (self.path / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        if epoch is None:
            self.metrics.unlink(missing_ok=True)
        elif self.metrics.exists():
            keep = [
                line
                for line in self.metrics.read_text().splitlines()
                if line and not json.loads(line).get("final") and json.loads(line)["epoch"] <= epoch
            ]
            self.metrics.write_text("".join(f"{line}\n" for line in keep))
        self._tb = writer(str(self.path / "tb")) if writer else None

    def hold(self) -> None:
        """Take the directory for this process: a lock on ``.lock`` in it, which the
        kernel releases when the process ends, however it ends (so a killed job leaves
        nothing stuck). POSIX locks, which network file systems share across hosts.

        Raises:
            InputError: another process holds it; its host and pid are named.
        """
        if self._lock is not None:
            return
        f = open(self.path / ".lock", "a+")  # noqa: SIM115 -- held open for the process's life
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise InputError(
                f"{self.path}: in use by another dyngnn job ({holder}); wait for it to end, or use another --run.dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"host {socket.gethostname()} pid {os.getpid()}\n")
        f.flush()
        self._lock = f

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``metrics.jsonl`` (and TensorBoard, if open)."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps(strict_json(record), allow_nan=False) + "\n")
        if self._tb is not None:
            for name, value in scalars(record):
                self._tb.add_scalar(name, value, record["epoch"])
            self._tb.flush()

    def close(self) -> None:
        """Close TensorBoard and let the directory go."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None
