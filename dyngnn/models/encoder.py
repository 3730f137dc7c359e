"""The temporal GCN-LSTM encoder: a GCN on every snapshot, an LSTM over time for every node.

Legend: T snapshots, N nodes, I input features, F GCN width, H LSTM width.
``x_NI`` node inputs of one snapshot, ``z_TNF`` GCN outputs, ``h_TNH`` LSTM outputs.
Active, idle, dormant, arrival: see :mod:`dyngnn.models.inputs`.

Randomness (dropout) comes from generators keyed by ``(seed, epoch, snapshot)``, never
from the global RNG, so the same masks are drawn however the snapshots are processed
(recomputation under activation checkpointing, or split over ranks).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import GCNConv

from dyngnn.keyed import keyed_dropout, keyed_generator
from dyngnn.models.gcn import (
    ACTIVATIONS,
    active_layers,
    gcn_layers,
    gcn_spans,
    isolated_output,
    propagation,
    sparse_active,
)
from dyngnn.models.inputs import GraphInput, first_activity
from dyngnn.models.lstm import DormantGroups, lstm_sharing_dormant, run_lstm
from dyngnn.models.steps import ActiveSteps, GroupedSteps


class GCNLSTM(nn.Module):
    """Stacked temporal GCN-LSTM encoder.

    Args:
        num_nodes: N.
        in_dim: I, node input features per snapshot (0: embedding only).
        hidden: F and H, the GCN and LSTM widths.
        gcn_layers, lstm_layers: depth of each stage (>= 1).
        activation: between GCN layers: ``relu``, ``tanh``, ``gelu`` or ``elu``.
        dropout: on GCN inputs of every layer, masks keyed by (seed, epoch, snapshot).
        embedding_dim: a learnable ``[N, embedding_dim]`` input beside ``x`` (0: none).
        checkpoint_every: recompute the GCN stage in chunks of this many snapshots in
            the backward pass instead of storing its activations (0: off).
        compile: ``on``, ``off`` or ``auto``: run the CPU LSTM steps as fused kernels
            built by ``torch.compile`` (:func:`~dyngnn.models.lstm.run_lstm`); ``auto``
            does where a step holds at least ``2**21`` values (nodes x width).

    Shapes:
        input: a sequence of T :class:`GraphInput`; output ``h_TNH`` ``[T, N, H]``.
    """

    def __init__(
        self,
        num_nodes: int,
        in_dim: int,
        *,
        hidden: int = 32,
        gcn_layers: int = 2,
        lstm_layers: int = 1,
        activation: str = "relu",
        dropout: float = 0.0,
        embedding_dim: int = 0,
        checkpoint_every: int = 0,
        compile: str = "auto",
    ) -> None:
        super().__init__()
        if in_dim + embedding_dim <= 0:
            raise ValueError("GCNLSTM: needs node inputs (in_dim > 0) or an embedding (embedding_dim > 0)")
        if gcn_layers < 1 or lstm_layers < 1 or hidden < 1:
            raise ValueError(
                f"GCNLSTM: gcn_layers, lstm_layers and hidden must be >= 1, got {gcn_layers}, {lstm_layers}, {hidden}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"GCNLSTM: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"GCNLSTM: dropout must be in [0, 1), got {dropout}")
        if compile not in ("auto", "on", "off"):
            raise ValueError(f"GCNLSTM: compile must be 'auto', 'on' or 'off', got {compile!r}")
        self.num_nodes, self.hidden, self.dropout = num_nodes, hidden, dropout
        self.act = ACTIVATIONS[activation]
        self.checkpoint_every, self.compile = checkpoint_every, compile
        self.embedding = nn.Parameter(torch.empty(num_nodes, embedding_dim)) if embedding_dim else None
        dims = [in_dim + embedding_dim] + [hidden] * gcn_layers
        self.convs = nn.ModuleList(
            GCNConv(a, b, normalize=False, add_self_loops=False) for a, b in itertools.pairwise(dims)
        )
        self.lstm = nn.LSTM(hidden, hidden, num_layers=lstm_layers)  # time-major: [T, N, F]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        self.lstm.reset_parameters()
        if self.embedding is not None:
            nn.init.normal_(self.embedding, std=0.1)

    # -- the GCN stage ----------------------------------------------------------

    def _inputs(self, g: GraphInput) -> torch.Tensor:
        """``[N, I + embedding_dim]``: a snapshot's inputs beside the embedding."""
        parts = [p for p in (g.x, self.embedding) if p is not None]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def gcn(self, g: GraphInput, key: Sequence[int] = ()) -> torch.Tensor:
        """``z_NF`` for one snapshot through PyG's ``GCNConv`` (the reference path).

        ``key`` (seed, epoch) keys dropout when training.
        """
        h = self._inputs(g)
        gen = keyed_generator(h.device, *key, g.t) if self.training and self.dropout else None
        loops = torch.arange(self.num_nodes, device=h.device)
        edge_index = torch.cat([g.adj.edge_index, torch.stack([loops, loops])], dim=1)
        edge_weight = torch.cat([g.adj.edge_weight, g.adj.loop_weight])
        for i, conv in enumerate(self.convs):
            if gen is not None:
                h = keyed_dropout(h, self.dropout, gen)
            h = conv(h, edge_index, edge_weight)
            if i + 1 < len(self.convs):
                h = self.act(h)
        return h

    def gcn_batched(self, graphs: Sequence[GraphInput], key: Sequence[int] = ()) -> torch.Tensor:
        """``z_TNF`` for several snapshots at once, as one block-diagonal graph.

        The parameters and arithmetic of :meth:`gcn` (a ``GCNConv`` per snapshot), with
        one dense product per layer for all snapshots and the propagation of
        :func:`~dyngnn.models.gcn.propagation`; results agree up to the order of
        floating-point sums.
        """
        n = self.num_nodes
        h = torch.cat([self._inputs(g) for g in graphs])
        drop = None
        if self.training and self.dropout:
            gens = [keyed_generator(h.device, *key, g.t) for g in graphs]

            def drop(h: torch.Tensor) -> torch.Tensor:
                return torch.cat([keyed_dropout(h[i * n : (i + 1) * n], self.dropout, g) for i, g in enumerate(gens)])

        z = gcn_layers(self.convs, self.act, h, propagation([g.adj for g in graphs]), drop)
        return z.reshape(len(graphs), n, -1)

    def encode_snapshots(
        self, graphs: Sequence[GraphInput], key: Sequence[int] = (), skip_idle: bool = True, dense: bool = True
    ) -> torch.Tensor | ActiveSteps:
        """``z_TNF``: the GCN stage over a sequence, in chunks of snapshots
        (:func:`~dyngnn.models.gcn.gcn_spans`), recomputed in the backward pass under
        ``checkpoint_every``.

        With ``skip_idle``, where :attr:`shares_dormant` holds and idle node-steps are
        at least half of all, the GCN runs over the active node-steps only and the idle
        ones take :meth:`dormant_input`: the same numbers, and on a sparse sequence a
        small fraction of the work. Then, unless ``dense``, the result is kept that way,
        as :class:`ActiveSteps`.
        """
        ckpt = bool(self.checkpoint_every) and torch.is_grad_enabled()
        spans = gcn_spans(graphs, self.checkpoint_every if ckpt else 0)
        active = sparse_active(graphs) if skip_idle and self.shares_dormant else None
        if active is None:
            return _by_chunks(spans, ckpt, lambda s, e: self.gcn_batched(graphs[s:e], key))
        masks, rows = active
        z = _by_chunks(spans, ckpt, lambda s, e: active_layers(self.convs, self.act, graphs[s:e], masks[s:e]))
        steps = ActiveSteps(z, self.dormant_input(), rows, (len(graphs), self.num_nodes, z.shape[1]))
        return steps.dense() if dense else steps

    @property
    def shares_dormant(self) -> bool:
        """Whether dormant nodes (no edge and zero inputs so far) have the GCN output
        :meth:`dormant_input` in this mode: without an embedding, and without dropout
        masks (evaluation, or ``dropout`` 0)."""
        return self.embedding is None and not (self.training and self.dropout)

    def dormant_input(self) -> torch.Tensor:
        """``[1, F]``: the GCN output of a node with no edge (self-loop weight 1) and zero
        inputs, the same at every snapshot."""
        return isolated_output(self.convs, self.act)

    # -- the LSTM stage -----------------------------------------------------------

    def temporal(
        self, z_TNF: torch.Tensor | ActiveSteps, groups: DormantGroups | None = None, dense: bool = True
    ) -> torch.Tensor | GroupedSteps:
        """``h_TNH``: the LSTM over the time axis for every node.

        ``z_TNF`` may be held as :class:`ActiveSteps`. ``groups`` (a
        :meth:`DormantGroups.plan` of the nodes' arrival over ``T`` steps), given where
        :attr:`shares_dormant` holds: on CPU, where an LSTM's cost grows with nodes x
        steps, dormant nodes then share the dormant trajectory, computed once, and each
        group's LSTM runs from its start only
        (:func:`~dyngnn.models.lstm.lstm_sharing_dormant`). Unless ``dense``, the result
        is then kept as :class:`GroupedSteps`, which gives rows without building
        ``[T, N, H]``.
        """
        if groups is not None and z_TNF.device.type == "cpu":
            return lstm_sharing_dormant(self.lstm, z_TNF, self.dormant_input(), groups, self.compile, dense)
        z = z_TNF.dense() if isinstance(z_TNF, ActiveSteps) else z_TNF
        return run_lstm(self.lstm, z, self.compile)

    def forward(self, graphs: Sequence[GraphInput], key: Sequence[int] = ()) -> torch.Tensor:
        cpu = graphs[0].adj.loop_weight.device.type == "cpu"
        groups = DormantGroups.plan(first_activity(graphs), len(graphs)) if cpu and self.shares_dormant else None
        return self.temporal(self.encode_snapshots(graphs, key), groups)


def _by_chunks(spans: list[tuple[int, int]], ckpt: bool, run) -> torch.Tensor:
    """``run(s, e)`` over each span, concatenated; recomputed in the backward pass if ``ckpt``."""
    pieces = [checkpoint(run, s, e, use_reentrant=False) if ckpt else run(s, e) for s, e in spans]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)
