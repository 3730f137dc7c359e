"""One pass over a rank's snapshots, in the order data flows:
inputs -> GCN -> exchange -> LSTM -> exchange.

:class:`Inputs` streams the rank's block to the device and builds the GCN inputs;
:class:`Pipeline` runs the encoder over them and returns the states in the layout the
task reads, choosing the dense or the sparse form (:mod:`dyngnn.models.steps`) and the
dormant-node plan (:class:`~dyngnn.models.lstm.DormantGroups`), which it keeps for the run.

Legend: T snapshots, N nodes, F GCN width, H state width; T_r / N_r this rank's
snapshots / nodes. ``z_TrNF`` is the GCN output of the rank's snapshots, ``z_TNrF``
the same after the all-to-all, ``h_TNrH`` / ``h_TrNH`` the states before and after the
way back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dyngnn.data.store import DeltaStore
from dyngnn.distributed import Layout, NodesToSnapshots, SnapshotsToNodes
from dyngnn.models.encoder import GCNLSTM
from dyngnn.models.inputs import GraphInput, first_activity, normalize, structural_features
from dyngnn.models.lstm import DormantGroups
from dyngnn.models.steps import GroupedSteps
from dyngnn.tasks import Task
from dyngnn.transfer import SnapshotStream


class Inputs:
    """The rank's snapshots as GCN inputs: streamed to the device, normalised, with the
    structural features (log degrees), the store's node features and the task's own.

    Stored node features (``[N, I]`` or ``[T, N, I]``) move to the device once; their
    bytes (:attr:`feature_bytes`) count as host-to-device traffic of the first epoch.
    """

    def __init__(
        self, store: DeltaStore, stream: SnapshotStream, task: Task, structural: bool, dtype: torch.dtype
    ) -> None:
        self.store, self.stream, self.task = store, stream, task
        self.structural, self.dtype = structural, dtype
        kind = store.meta.get("node_data", {}).get("x")
        self.per_snapshot = kind == "snapshot"
        self.x, self.feature_bytes = None, 0
        if kind is not None:
            x = np.array(store.node_array("x"), dtype=np.float32)
            x = x.reshape(*x.shape[: 2 if self.per_snapshot else 1], -1)
            self.feature_bytes = x.nbytes
            self.x = torch.from_numpy(x).to(stream.device, dtype)

    @property
    def in_dim(self) -> int:
        """Node inputs per snapshot: structural, stored and the task's."""
        stored = 0 if self.x is None else self.x.shape[-1]
        return 2 * self.structural + stored + self.task.in_features

    def prepare(self, bar: Any = None) -> tuple[list[GraphInput], dict[int, torch.Tensor]]:
        """Every snapshot of the block as a :class:`GraphInput`, and the sorted edge keys
        of each (``targets``), with the next block's first snapshot where the task reads
        edges of t+1. ``bar`` (a progress bar) advances by one per snapshot."""
        graphs, targets = [], {}
        n, norm = self.store.num_nodes, None
        for snap in self.stream:
            ei = snap.edge_index
            if snap.changed or norm is None:
                norm = normalize(ei, snap.weight, n, self.dtype)
            parts = []
            if self.structural:
                parts.append(structural_features(ei, n, self.dtype))
            if self.x is not None:
                parts.append(self.x[snap.t] if self.per_snapshot else self.x)
            own = self.task.features(snap.t)
            if own is not None:
                parts.append(own.to(self.dtype))
            graphs.append(GraphInput(snap.t, norm, torch.cat(parts, dim=1) if parts else None))
            targets[snap.t] = snap.keys
            if bar is not None:
                bar.update(1)
        t1 = self.stream.t1
        if self.task.reads_edges and t1 < self.store.num_snapshots:
            targets[t1] = self.stream.whole(t1)  # the next block's first snapshot
        return graphs, targets


class Pipeline(nn.Module):
    """Encoder and head as one module, so that DDP keeps both in sync; ``forward`` is one
    pass over the rank's snapshots.

    Args:
        model: the encoder.
        head: the task's head (not called here: the task's loss and metrics call it).
        layout: every rank's snapshot and node blocks.
        rank: this rank.
        group: the process group of the all-to-alls (None in one process).
        by_snapshot: return ``[T_r, N, H]`` (the rank's snapshots, every node), as the link
            task reads; else ``[T, N_r, H]`` (every snapshot, the rank's nodes).
    """

    def __init__(
        self, model: GCNLSTM, head: nn.Module, layout: Layout, rank: int, group: Any, by_snapshot: bool
    ) -> None:
        super().__init__()
        self.model, self.head = model, head
        self.layout, self.rank, self.group, self.by_snapshot = layout, rank, group, by_snapshot
        self._arrival: torch.Tensor | None = None
        self._plans: dict[int, DormantGroups | None] = {}

    def arrival(self, graphs: list[GraphInput]) -> torch.Tensor:
        """The arrival of each of the rank's nodes (``[N_r]``) over the whole sequence.

        The graph is the same in every pass, so it is worked out once: each rank takes its
        own block's (:func:`first_activity`), and one all-reduce (``N`` int64) the minimum.
        """
        if self._arrival is None:
            first = first_activity(graphs, start=self.layout.t_ranges[self.rank][0])
            if self.layout.world_size > 1:
                dist.all_reduce(first, op=dist.ReduceOp.MIN, group=self.group)
            n0, n1 = self.layout.n_ranges[self.rank]
            self._arrival = first[n0:n1]
        return self._arrival

    def plan(self, graphs: list[GraphInput], steps: int) -> DormantGroups | None:
        """:meth:`DormantGroups.plan` of the rank's nodes over the first ``steps`` steps,
        where the LSTM runs on the CPU (elsewhere None: one LSTM kernel over every node);
        it depends on the arrival, fixed for the run, and ``steps`` only, so it is kept."""
        arrival = self.arrival(graphs)  # on every rank alike: it may be a collective
        if arrival.device.type != "cpu":
            return None
        if steps not in self._plans:
            self._plans[steps] = DormantGroups.plan(arrival, steps)
        return self._plans[steps]

    def forward(
        self, graphs: list[GraphInput], key: tuple[int, ...] = (), horizon: int | None = None
    ) -> torch.Tensor | GroupedSteps:
        """The states; with ``horizon``, only those of snapshots before it.

        The LSTM is causal, so states before the horizon are the same either way: the
        training pass stops after the last train transition instead of running, and
        back-propagating zeros through, the validation and test snapshots. Every rank's
        block is cut at the horizon, so the all-to-alls carry only snapshots before it.

        In one process the GCN outputs stay as the active rows where that saves work
        (:class:`~dyngnn.models.steps.ActiveSteps`); the training pass of the link task
        keeps the states as the groups' outputs too, from which the loss takes its rows
        without a ``[T, N, H]`` tensor. Every other pass returns dense states.
        """
        layout = self.layout if horizon is None else self.layout.clipped(horizon)
        t0, t1 = layout.t_ranges[self.rank]
        many = layout.world_size > 1
        sparse = horizon is not None and self.by_snapshot and not many
        if many:
            z_TNrF = SnapshotsToNodes.apply(self._encode_block(graphs, t1 - t0, key), layout, self.rank, self.group)
        else:  # all snapshots and all nodes are the rank's; dense, or ActiveSteps
            z_TNrF = self.model.encode_snapshots(graphs[:t1], key, dense=False)
        groups = self.plan(graphs, z_TNrF.shape[0]) if self.model.shares_dormant else None
        h = self.model.temporal(z_TNrF, groups, dense=not sparse)
        if self.by_snapshot and many:
            h = NodesToSnapshots.apply(h, layout, self.rank, self.group)  # h_TrNH
        return h

    def _encode_block(self, graphs: list[GraphInput], count: int, key: tuple[int, ...]) -> torch.Tensor:
        """``z_TrNF`` of the first ``count`` of the rank's snapshots.

        A rank with none (all its snapshots past the horizon) encodes its first one and
        keeps none of it: its GCN parameters still take part, with zero gradients, in
        DDP's gradient sync, which every rank must join alike.
        """
        return self.model.encode_snapshots(graphs[: max(1, count)], key)[:count]

    @torch.no_grad()
    def evaluation_states(self, graphs: list[GraphInput]) -> torch.Tensor:
        """The states of every snapshot in evaluation mode (no dropout, no gradients)."""
        self.eval()
        return self(graphs)
