"""Checkpoints of a run (``checkpoints/epoch-NNNNN.pt``), and the stop signal that asks
for one at the next epoch boundary.

A checkpoint holds the weights, the optimizer, the epoch, the random states and the
settings that decide the numbers; a resumed run ends with the weights of an
uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dyngnn.config import signal_number
from dyngnn.errors import InputError

log = logging.getLogger("dyngnn")


def rng_state() -> dict[str, Any]:
    """Every global random state: torch's, numpy's, Python's, and each CUDA device's."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Set the random states of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def numbers_settings(settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The settings (``Config.to_dict()``) a checkpoint must agree with: all but the run
    section, the epoch count and the transfer mode (which moves the same snapshots)."""
    d = {section: dict(keys) for section, keys in settings.items() if section not in ("run", "transfer")}
    d["training"].pop("epochs")
    return d


def capture(epoch: int, modules: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's content: ``epoch``, the state of each of ``modules`` (model, head,
    optimizer, by name), the settings that decide the numbers and every random state."""
    return {"epoch": epoch, **{k: m.state_dict() for k, m in modules.items()}, "config": settings, "rng": rng_state()}


def restore(state: dict[str, Any], modules: dict[str, Any]) -> int:
    """Load a :func:`capture` into ``modules`` and the random states; its epoch."""
    for name, module in modules.items():
        module.load_state_dict(state[name])
    restore_rng(state["rng"])
    return int(state["epoch"])


class Checkpoints:
    """The checkpoints in ``directory``, the last ``keep`` of them kept."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory, self.keep = directory, keep

    def has_files(self) -> bool:
        """Whether the directory holds anything at all."""
        return self.directory.exists() and any(self.directory.iterdir())

    def files(self) -> list[Path]:
        """The checkpoints, oldest first."""
        return sorted(self.directory.glob("epoch-*.pt")) if self.directory.is_dir() else []

    def latest(self) -> Path | None:
        found = self.files()
        return found[-1] if found else None

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:05d}.pt"

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        """Write ``state`` as the checkpoint of ``epoch``, atomically; drop the oldest
        beyond ``keep``."""
        path = self.path(epoch)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:  # torch's writer reports a full disk as a RuntimeError
            free = shutil.disk_usage(self.directory).free
            raise InputError(
                f"{path}: cannot write the checkpoint ({str(e).strip().splitlines()[-1][:120]}; {free:,} bytes free "
                f"there); the earlier checkpoints are kept: free some space and resume with --resume"
            ) from None
        finally:  # interrupted (Ctrl-C, SIGTERM), or failed: no partial file left beside the checkpoints
            tmp.unlink(missing_ok=True)
        for old in self.files()[: -self.keep]:
            old.unlink()
        return path

    def load_newest(
        self, settings: dict[str, Any], device: torch.device
    ) -> tuple[Path, dict[str, Any], list[InputError]]:
        """The newest checkpoint that can be read (:meth:`load`), and why each newer one
        could not be (a file cut short by a full disk or a kill, say).

        Raises:
            InputError: no checkpoint at all, none readable (the newest one's reason), or
                one written under other settings.
        """
        found = self.files()[::-1]
        if not found:
            raise InputError(
                f"{self.directory.parent}: --resume, but there is no checkpoint to resume from "
                "(start over in another --run.dir)"
            )
        skipped: list[InputError] = []
        for path in found:
            try:
                return path, self.load(path, settings, device), skipped
            except _Unreadable as e:
                skipped.append(e)
        raise skipped[0]

    def load(self, path: Path, settings: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """The checkpoint at ``path``, refused unless it was written under ``settings``.

        Raises:
            InputError: an unreadable file, or a checkpoint of other settings (the first
                three that differ are named).
        """
        try:
            state = torch.load(path, map_location=device, weights_only=False)
            theirs = state["config"]
        except Exception as e:
            raise _Unreadable(f"{path}: not a readable dyngnn checkpoint ({type(e).__name__})") from None
        if theirs != settings:
            diffs = [
                f"{s}.{k} {theirs.get(s, {}).get(k)!r} (checkpoint) vs {v!r} (now)"
                for s, sec in settings.items()
                for k, v in sec.items()
                if theirs.get(s, {}).get(k) != v
            ]
            raise InputError(f"{path}: checkpoint is incompatible with this config: {'; '.join(diffs[:3])}")
        return state


class _Unreadable(InputError):
    """A checkpoint file that cannot be read at all (not one of other settings)."""


class StopRequest:
    """Set by a signal (SLURM's ``--signal`` before a time limit or preemption); read once per epoch.

    The handler only records the signal, so the epoch in flight finishes untouched and
    the checkpoint lands on an epoch boundary, where a resumed run is exact.
    """

    def __init__(self, name: str) -> None:
        self._signum = signal_number(name)
        self.name = self._signum.name.removeprefix("SIG") if self._signum else ""
        self.raised = False
        self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        log.warning("SIG%s received: stopping after this epoch, with a checkpoint", self.name)

    def __enter__(self) -> StopRequest:
        if self._signum is not None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self._signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(self._signum, self._previous)
