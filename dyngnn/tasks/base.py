"""What every task shares: the split of transitions by time, and the Task protocol the
trainer drives without knowing which task it runs.

Both tasks predict snapshot t+1 from the state ``H[t]`` (the LSTM has seen snapshots
0..t only). Transitions ``t -> t+1`` are split by time: the first ones train, the next
validate, the last test. Losses are sums over a split divided by one global count, so
the loss of a split does not depend on how its transitions are grouped.

Legend: T snapshots, N nodes, H state width; a rank's block holds snapshots
``[t0, t1)`` and nodes ``[n0, n1)`` (:class:`~dyngnn.distributed.blocks.Block`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from dyngnn.distributed.blocks import Block
from dyngnn.errors import InputError

Gather = Callable[[np.ndarray], np.ndarray]


def local(x: np.ndarray) -> np.ndarray:
    """The gather of a single process: what this process has is everything."""
    return x


@dataclass(frozen=True)
class Split:
    """Source snapshots t (predicting t+1) of each split."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    @classmethod
    def by_time(cls, num_snapshots: int, val_fraction: float, test_fraction: float) -> Split:
        """Chronological split of the T-1 transitions.

        Raises:
            InputError: fewer transitions than one per split.
        """
        n = num_snapshots - 1
        n_test = max(1, round(test_fraction * n))
        n_val = max(1, round(val_fraction * n))
        if n - n_val - n_test < 1:
            raise InputError(
                f"{num_snapshots} snapshots give {n} transitions: too few for train/val/test "
                f"(need at least 3; use a smaller --data.window)"
            )
        t = tuple(range(n))
        return cls(t[: n - n_val - n_test], t[n - n_val - n_test : n - n_test], t[n - n_test :])

    @property
    def horizon(self) -> int:
        """The snapshot after the last train transition: training reads no state from here on."""
        return self.train[-1] + 1


class Task(Protocol):
    """A prediction task on the encoder's states.

    Attributes:
        by_snapshot: the states it reads: ``[T_r, N, H]`` (the rank's snapshots, every
            node; read as rows, so they may be held as
            :class:`~dyngnn.models.steps.GroupedSteps`) when true, ``[T, N_r, H]`` (every
            snapshot, the rank's nodes) when false.
        reads_edges: its targets are the edges of snapshot t+1 (``targets[t + 1]``: the
            sorted keys of the rank's snapshots and of the next block's first).
        in_features: node inputs it adds to every snapshot (:meth:`features`).
        reference_name: the non-learned reference of :meth:`reference`.
    """

    by_snapshot: bool
    reads_edges: bool
    in_features: int
    reference_name: str

    def features(self, t: int) -> torch.Tensor | None:
        """``[N, in_features]`` inputs of snapshot t, or None."""
        ...

    def head(self, hidden: int) -> nn.Module:
        """A new head on states of width ``hidden``."""
        ...

    def check_targets(self, edges_per_snapshot: np.ndarray) -> list[str]:
        """Warnings about splits with nothing to measure, given the edges of every
        snapshot; raises InputError where training would have nothing to learn."""
        ...

    def loss(
        self, h: Any, head: nn.Module, targets: dict[int, torch.Tensor], epoch: int, block: Block | None = None
    ) -> tuple[torch.Tensor, int]:
        """The training loss summed over the train transitions the block holds, and its
        number of terms (the caller divides by the global count)."""
        ...

    def evaluate(
        self,
        h: torch.Tensor,
        head: nn.Module,
        targets: dict[int, torch.Tensor],
        split: tuple[int, ...],
        block: Block | None = None,
        gather: Gather = local,
    ) -> dict[str, float]:
        """Metrics on ``split``, pooled over ranks by ``gather``."""
        ...

    def reference(
        self, targets: dict[int, torch.Tensor], split: tuple[int, ...], gather: Gather = local
    ) -> dict[str, float]:
        """The non-learned reference's metrics on ``split``."""
        ...


@dataclass
class Evaluation:
    """The states of an evaluation pass and the targets they are scored on: metrics of any
    split, pooled over ranks by ``gather``, and the reference's."""

    task: Task
    head: nn.Module
    states: torch.Tensor
    targets: dict[int, torch.Tensor]
    block: Block | None = None
    gather: Gather = local

    def metrics(self, split: tuple[int, ...]) -> dict[str, float]:
        return self.task.evaluate(self.states, self.head, self.targets, split, self.block, self.gather)

    def reference(self, split: tuple[int, ...]) -> dict[str, float]:
        return self.task.reference(self.targets, split, self.gather)
