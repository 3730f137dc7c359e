"""The few host-side collectives a run needs beside DDP's: sums, flags, gathers, and
checks that only rank 0 makes but every rank must obey."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dyngnn.errors import InputError, SharedInputError


class Ranks:
    """This process's rank among ``world_size``, with collectives that are no-ops in a
    single process."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float | int) -> float | int:
        """``value`` summed over ranks."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return type(value)(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (ranks see a signal at different times)."""
        return bool(self.sum(int(flag))) if self.world_size > 1 else flag

    def gather(self, x: np.ndarray) -> np.ndarray:
        """Every rank's ``x`` concatenated in rank order."""
        if self.world_size == 1:
            return x
        parts: list[np.ndarray | None] = [None] * self.world_size
        dist.all_gather_object(parts, x)
        return np.concatenate(parts)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def on_rank0(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0 alone (its result there, None elsewhere); an InputError it
        raises is broadcast, so every rank stops with the same message instead of the
        others failing or waiting at their next collective."""
        if self.world_size == 1:
            return fn()
        result, outcome = None, [None]
        if self.is_main:
            try:
                result = fn()
            except InputError as e:
                outcome = [str(e)]
        dist.broadcast_object_list(outcome, src=0)
        if outcome[0] is not None:
            raise SharedInputError(outcome[0])
        return result

    def check_same(self, settings: dict[str, dict[str, Any]]) -> None:
        """Refuse to start when ranks were given different ``settings`` (sections of
        keys), naming the first setting that differs.

        Raises:
            SharedInputError: on every rank, when any rank's settings differ from rank 0's.
        """
        if self.world_size == 1:
            return
        every: list[dict | None] = [None] * self.world_size
        dist.all_gather_object(every, settings)
        odd = [r for r, d in enumerate(every) if d != every[0]]
        if odd:
            ours, theirs = every[0], every[odd[0]]
            key = next(f"{s}.{k}" for s in ours for k in ours[s] if ours[s][k] != theirs[s][k])
            section, name = key.split(".")
            raise SharedInputError(
                f"ranks {odd} were started with a different config than rank 0 (first difference: {key} "
                f"{theirs[section][name]!r} on rank {odd[0]}, {ours[section][name]!r} on rank 0); start every rank alike"
            )
