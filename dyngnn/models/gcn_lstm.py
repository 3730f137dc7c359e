"""Temporal GCN-LSTM: a GCN on every snapshot, an LSTM over time for every node, a head.

Legend: T snapshots, N nodes, I input features, F GCN width, H LSTM width.
``x_NI`` node inputs of one snapshot, ``z_TNF`` GCN outputs, ``h_TNH`` LSTM outputs.

Randomness (dropout) comes from generators keyed by ``(seed, epoch, snapshot)``, never
from the global RNG, so the same masks are drawn however the snapshots are processed
(recomputation under activation checkpointing, or split over ranks).
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import GCNConv

log = logging.getLogger("dyngnn")

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": nn.functional.gelu,
    "elu": nn.functional.elu,
}


class Adjacency:
    """One snapshot's normalised adjacency ``D^-1/2 (A + I) D^-1/2``, as GCNConv uses it.

    Kept as its off-diagonal edges plus its diagonal (every node has exactly one
    self-loop), so that products apply the loops as an elementwise scale rather than as
    N more messages. The CSR matrices of the CPU products are built on first use and
    kept, so a snapshot shared by several passes (training and evaluation, or an
    unchanged next snapshot) builds them once.

    Attributes:
        edge_index: ``int64 [2, E]`` edges ``(source, target)`` without self-loops.
        edge_weight: ``[E]`` their normalised weights ``d_i^-1/2 w_ij d_j^-1/2``.
        loop_weight: ``[N]`` the diagonal: each node's normalised self-loop weight.
    """

    def __init__(self, edge_index: torch.Tensor, edge_weight: torch.Tensor, loop_weight: torch.Tensor) -> None:
        self.edge_index, self.edge_weight, self.loop_weight = edge_index, edge_weight, loop_weight
        self._csr: dict[str, torch.Tensor] = {}

    @property
    def num_nodes(self) -> int:
        return self.loop_weight.shape[0]

    def matrix(self, rows: str) -> torch.Tensor:
        """The off-diagonal part as an ``[N, N]`` CSR matrix, with rows indexed by the
        edges' ``"target"`` (the matrix that gathers messages in) or ``"source"`` (its
        transpose)."""
        if rows not in self._csr:
            r, c = self.edge_index if rows == "source" else self.edge_index.flip(0)
            self._csr[rows] = _csr(r, c, self.edge_weight, self.num_nodes)
        return self._csr[rows]


@dataclass
class GraphInput:
    """One snapshot prepared for the GCN: its normalised adjacency and node inputs.

    Attributes:
        t: snapshot index (keys the dropout generator).
        adj: the normalised adjacency.
        x: ``[N, I]`` node inputs, or None when the model only uses its embedding.
    """

    t: int
    adj: Adjacency
    x: torch.Tensor | None


def normalize(
    edge_index: torch.Tensor, edge_weight: torch.Tensor | None, num_nodes: int, dtype: torch.dtype
) -> Adjacency:
    """GCN normalisation with self-loops: the numbers of PyG's ``gcn_norm`` (``GCNConv``).

    Existing self-loops keep their weight; nodes without one get weight 1. Degrees count
    the weights of the edges into a node, its self-loop included.
    """
    src, dst = edge_index
    w = torch.ones(src.shape[0], dtype=dtype, device=src.device) if edge_weight is None else edge_weight.to(dtype)
    loops = torch.ones(num_nodes, dtype=dtype, device=src.device)
    is_loop = src == dst
    if bool(is_loop.any()):
        loops[src[is_loop]] = w[is_loop]
        keep = ~is_loop
        src, dst, w = src[keep], dst[keep], w[keep]
    deg = torch.zeros(num_nodes, dtype=dtype, device=src.device).index_add_(0, dst, w) + loops
    dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return Adjacency(torch.stack([src, dst]), dinv[src] * w * dinv[dst], dinv * loops * dinv)


def structural_features(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype) -> torch.Tensor:
    """``[N, 2]``: log(1 + in-degree), log(1 + out-degree), computed on the edges' device."""
    ones = torch.ones(edge_index.shape[1], dtype=dtype, device=edge_index.device)
    deg = torch.zeros(2, num_nodes, dtype=dtype, device=edge_index.device)
    deg[0].index_add_(0, edge_index[1], ones)
    deg[1].index_add_(0, edge_index[0], ones)
    return torch.log1p(deg).T


def keyed_generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator whose stream depends only on ``key`` (e.g. seed, epoch, snapshot)."""
    g = torch.Generator(device=device)
    seed = 0
    for k in key:  # a fixed, order-sensitive mix of the key into 63 bits
        seed = (seed * 0x9E3779B97F4A7C15 + int(k) + 0x632BE59BD9B4E019) % (2**63 - 1)
    g.manual_seed(seed)
    return g


def keyed_dropout(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    if p == 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p
    return x * keep / (1.0 - p)


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
            built by ``torch.compile`` (:func:`lstm_by_steps`); ``auto`` does where a
            step holds at least ``2**21`` values (nodes x width).

    Shapes:
        input: a sequence of T :class:`GraphInput`; output ``h_TNH`` ``[T, N, H]``.
    """

    def __init__(
        self,
        num_nodes: int,
        in_dim: int,
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
        self._plans: dict[tuple[int, int], tuple[torch.Tensor, DormantGroups | None]] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        self.lstm.reset_parameters()
        if self.embedding is not None:
            nn.init.normal_(self.embedding, std=0.1)

    def gcn(self, g: GraphInput, key: Sequence[int] = ()) -> torch.Tensor:
        """``z_NF`` for one snapshot through PyG's ``GCNConv`` (the reference path).

        ``key`` (seed, epoch) keys dropout when training.
        """
        parts = [p for p in (g.x, self.embedding) if p is not None]
        h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
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
        :func:`propagation`; results agree up to the order of floating-point sums.
        """
        n = self.num_nodes
        parts = [[p for p in (g.x, self.embedding) if p is not None] for g in graphs]
        h = torch.cat([p[0] if len(p) == 1 else torch.cat(p, dim=1) for p in parts])
        drop = None
        if self.training and self.dropout:
            gens = [keyed_generator(h.device, *key, g.t) for g in graphs]

            def drop(h: torch.Tensor) -> torch.Tensor:
                return torch.cat([keyed_dropout(h[i * n : (i + 1) * n], self.dropout, g) for i, g in enumerate(gens)])

        return self._layers(h, propagation([g.adj for g in graphs]), drop).reshape(len(graphs), n, -1)

    def _layers(self, h: torch.Tensor, propagate, drop=None) -> torch.Tensor:
        """The GCN layers over rows ``h`` with propagation ``propagate`` (and dropout
        ``drop`` on each layer's input, if given)."""
        for i, conv in enumerate(self.convs):
            if drop is not None:
                h = drop(h)
            # (A X) W = A (X W): propagate whichever side is narrower
            if conv.in_channels < conv.out_channels:
                h = _Affine.apply(propagate(h), conv.lin.weight, conv.bias)
            else:
                h = propagate(_Affine.apply(h, conv.lin.weight, None)) + conv.bias
            if i + 1 < len(self.convs):
                h = self.act(h)
        return h

    def encode_snapshots(
        self, graphs: Sequence[GraphInput], key: Sequence[int] = (), skip_idle: bool = True, dense: bool = True
    ) -> torch.Tensor | ActiveSteps:
        """``z_TNF``: the GCN stage over a sequence, batched in chunks of snapshots.

        Chunks hold ``checkpoint_every`` snapshots when activation checkpointing is on
        (recomputed in the backward pass). Otherwise the CSR path takes the whole sequence
        at once, and the message path as many snapshots as fit an edge budget.

        A node with no edge in a snapshot, self-loop weight 1 and zero inputs is idle
        there: where :attr:`shares_dormant` holds, its GCN output is :meth:`dormant_input`.
        With ``skip_idle``, where idle node-steps are at least half of all, the GCN runs
        over the other node-steps only (:func:`active_part`) and the idle ones take that
        output: the same numbers, and on a sparse sequence a small fraction of the work.
        Then, unless ``dense``, the result is kept that way, as :class:`ActiveSteps`.
        """
        chunk, n = self.checkpoint_every, self.num_nodes
        ckpt = bool(chunk) and torch.is_grad_enabled()
        if ckpt:
            spans = [(s, min(s + chunk, len(graphs))) for s in range(0, len(graphs), chunk)]
        elif uses_csr(graphs[0].adj.edge_index.device):
            spans = [(0, len(graphs))]
        else:
            spans, start, edges = [], 0, 0
            for i, g in enumerate(graphs):
                edges += g.adj.edge_index.shape[1] + n
                if edges > _EDGE_BUDGET and i > start:
                    spans.append((start, i))
                    start, edges = i, g.adj.edge_index.shape[1] + n
            spans.append((start, len(graphs)))
        masks = [active_mask(g) for g in graphs] if skip_idle and self.shares_dormant else None
        active = torch.cat(masks) if masks is not None else None  # one reduction, not one per snapshot
        if active is not None and int(active.sum()) > _IDLE_WORTH * n * len(graphs):
            masks = None

        def run(s: int, e: int) -> torch.Tensor:
            if masks is None:
                return self.gcn_batched(graphs[s:e], key)
            _, adj, x = active_part(graphs[s:e], masks[s:e])
            return self._layers(x, propagation([adj]))

        pieces = [checkpoint(run, s, e, use_reentrant=False) if ckpt else run(s, e) for s, e in spans]
        z = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        if masks is None:
            return z
        steps = ActiveSteps(z, self.dormant_input(), active.nonzero().squeeze(1), (len(graphs), n, z.shape[1]))
        return steps.dense() if dense else steps

    @property
    def shares_dormant(self) -> bool:
        """Whether nodes with no edge and zero inputs so far ("dormant") have the GCN
        output :meth:`dormant_input` in this mode: without an embedding, and without
        dropout masks (evaluation, or ``dropout`` 0)."""
        return self.embedding is None and not (self.training and self.dropout)

    def dormant_input(self) -> torch.Tensor:
        """``[1, F]``: the GCN output of a node with no edge (self-loop weight 1) and zero
        inputs, the same at every snapshot."""
        h = self.convs[0].lin.weight.new_zeros(1, self.convs[0].in_channels)
        for i, conv in enumerate(self.convs):
            h = _Affine.apply(h, conv.lin.weight, conv.bias)
            if i + 1 < len(self.convs):
                h = self.act(h)
        return h

    def dormant_states(self, steps: int, at: Sequence[int] = ()) -> tuple[torch.Tensor, dict]:
        """The LSTM over ``steps`` steps of :meth:`dormant_input` from zero states: its
        outputs ``[steps, H]``, and the states ``(h, c)`` (``[layers, 1, H]`` each) after
        ``s`` steps for each ``s`` in ``at`` (``0 < s <= steps``).

        One ``nn.LSTM`` call per stretch between those steps, each from the states the
        last one ended with: a few kernel calls, not a few small operations per step.
        """
        x = self.dormant_input().unsqueeze(1)  # [1, 1, F]
        outputs, kept, hx, done = [], {}, None, 0
        for stop in sorted({*at, steps}):
            if stop > done:
                out, hx = self.lstm(x.expand(stop - done, 1, x.shape[2]), hx)
                outputs.append(out[:, 0])
                done = stop
            if stop in at:
                kept[stop] = hx
        return torch.cat(outputs) if outputs else x.new_zeros(0, self.hidden), kept

    def temporal(
        self, z_TNF: torch.Tensor | ActiveSteps, arrival: torch.Tensor | None = None, dense: bool = True
    ) -> torch.Tensor | GroupedSteps:
        """``h_TNH``: the LSTM over the time axis for every node.

        ``z_TNF`` may be held as :class:`ActiveSteps`. Unless ``dense``, where nodes are
        grouped the result is kept as the groups' outputs, :class:`GroupedSteps`, which
        gives rows (:func:`take_rows`) without building ``[T, N, H]``.

        ``arrival`` (``[N]``, :func:`first_activity`), given where :attr:`shares_dormant`
        holds: the step before which each node is dormant. On CPU, where an LSTM's cost
        grows with nodes x steps, dormant nodes then share the dormant states, computed
        once, and the LSTM runs over each node's steps from its group's arrival only
        (:func:`lstm_sharing_dormant`), where that saves enough (:class:`DormantGroups`).

        On accelerators ``nn.LSTM`` (cuDNN). On CPU, by the size of one step (nodes x
        width): large steps one snapshot at a time (:func:`lstm_by_steps`, fused by
        ``torch.compile`` under ``compile``), whose backward pass is faster there than
        the whole-sequence kernel's; smaller float32 steps through ``nn.LSTM``
        (oneDNN's whole-sequence kernel), which saves the per-step overhead.
        """
        if arrival is not None and z_TNF.device.type == "cpu":
            groups = self._plan(arrival, z_TNF.shape[0])
            if groups is not None:
                return lstm_sharing_dormant(self, z_TNF, groups, dense)
        return self._lstm(z_TNF.dense() if isinstance(z_TNF, ActiveSteps) else z_TNF)

    def _plan(self, arrival: torch.Tensor, steps: int) -> DormantGroups | None:
        """:meth:`DormantGroups.plan`, kept for the last few ``(arrival, steps)``: a trainer
        passes the same ``arrival`` tensor every pass (the plan takes time quadratic in
        the number of distinct arrival steps)."""
        key = (id(arrival), steps)
        kept = self._plans.get(key)
        if kept is None or kept[0] is not arrival:
            kept = (arrival, DormantGroups.plan(arrival, steps))
            self._plans = dict(list(self._plans.items())[-3:]) | {key: kept}
        return kept[1]

    def _lstm(self, z_TNF: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The LSTM's outputs from initial states ``hx`` (``[layers, N, H]`` each; None: zeros)."""
        if z_TNF.device.type != "cpu":
            return self.lstm(z_TNF, hx)[0]
        large = z_TNF.shape[1] * self.hidden >= _LARGE_STEP
        fused = self.compile == "on" or (self.compile == "auto" and large)
        if not fused and not large and z_TNF.dtype == torch.float32:
            return self.lstm(z_TNF, hx)[0]
        return lstm_by_steps(self.lstm, z_TNF, fused, hx)

    def forward(self, graphs: Sequence[GraphInput], key: Sequence[int] = ()) -> torch.Tensor:
        arrival = first_activity(graphs) if self.shares_dormant else None
        return self.temporal(self.encode_snapshots(graphs, key), arrival)


NEVER = 2**62  # the arrival of a node dormant throughout


def active_mask(g: GraphInput) -> torch.Tensor:
    """``bool [N]``: the nodes of snapshot ``g`` with an edge (either end), a self-loop
    weight other than 1 or a non-zero input. The others are idle there: no neighbours
    and zero inputs, so every GCN layer gives them the output of an isolated node."""
    active = g.adj.loop_weight != 1
    active[g.adj.edge_index.reshape(-1)] = True
    if g.x is not None:
        active |= (g.x != 0).any(1)
    return active


def first_activity(graphs: Sequence[GraphInput]) -> torch.Tensor:
    """``int64 [N]``: each node's first position in ``graphs`` where it is active
    (:func:`active_mask`); :data:`NEVER` where there is none.

    Before it, the node is dormant: idle at every step so far, it has the GCN output of
    an isolated node, the same for all dormant nodes.
    """
    n, device = graphs[0].adj.num_nodes, graphs[0].adj.loop_weight.device
    first = torch.full((n,), NEVER, dtype=torch.long, device=device)
    for i in reversed(range(len(graphs))):
        first.masked_fill_(active_mask(graphs[i]), i)
    return first


def active_part(
    graphs: Sequence[GraphInput], masks: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, Adjacency, torch.Tensor]:
    """The active node-steps of ``graphs`` (``masks``: their :func:`active_mask`) as one
    graph: their rows ``i * N + v`` (position ``i``, node ``v``), ascending; the
    block-diagonal normalised adjacency among them (every edge joins two active nodes);
    their inputs ``[rows, I]``.

    Edges keep their order, so each row sums its messages in the order it does in its
    own snapshot.
    """
    n = graphs[0].adj.num_nodes
    flat = torch.cat(list(masks))
    rows = flat.nonzero().squeeze(1)
    ids = torch.cumsum(flat, 0) - 1  # the compact index of each active row
    edges = torch.cat([g.adj.edge_index + i * n for i, g in enumerate(graphs)], dim=1)
    loops = torch.cat([g.adj.loop_weight for g in graphs])[rows]
    adj = Adjacency(ids[edges], torch.cat([g.adj.edge_weight for g in graphs]), loops)
    return rows, adj, torch.cat([g.x for g in graphs])[rows]


class _Spread(torch.autograd.Function):
    """``[T, N, F]``: ``z`` (``[rows, F]``) at ``rows`` of the output flattened to
    ``[T * N, F]``, and ``idle`` (``[1, F]``) everywhere else; backward: the rows'
    gradients, and the sum of the others' for ``idle`` (as one product with a 0/1
    vector, which reads the gradient once and adds no rows the forward pass did not
    spread)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, idle: torch.Tensor, rows: torch.Tensor, shape: tuple[int, int]):
        ctx.rows = rows
        out = idle.repeat(shape[0] * shape[1], 1)  # a new tensor, even of one row
        out.index_copy_(0, rows, z)
        return out.view(*shape, idle.shape[1])

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        flat = g.reshape(-1, g.shape[2])
        weights = torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device).index_fill_(0, ctx.rows, 0)
        return flat.index_select(0, ctx.rows), (weights @ flat).unsqueeze(0), None, None


def lstm_by_steps(
    lstm: nn.LSTM,
    x_TNI: torch.Tensor,
    fused: bool = False,
    hx: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``nn.LSTM``'s output (time-major; initial states ``hx``, None: zeros), one step
    per snapshot.

    A step is ``torch.lstm_cell``, or with ``fused`` the same arithmetic as one kernel
    per pass built by ``torch.compile`` (:class:`_FusedStep`): the gates' elementwise
    work then reads and writes memory once instead of once per operation, forward and
    backward. Where no kernel can be built, the plain step runs instead.
    """
    step = _fused_step() if fused else None
    out = x_TNI
    for layer in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}")
        if hx is None:
            h = out.new_zeros(out.shape[1], lstm.hidden_size)
            c = torch.zeros_like(h)
        else:
            h, c = hx[0][layer], hx[1][layer]
        steps = []
        for x in out.unbind(0):  # unbind: one stack in the backward pass, not T full-size zero fills
            if step is not None:
                try:
                    h, c = step(x, h, c, w_ih, w_hh, b_ih, b_hh)
                except Exception as e:  # any failure to build the kernel
                    _fused_step.fail(e)
                    step = None
            if step is None:
                h, c = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
            steps.append(h)
        out = torch.stack(steps)
    return out


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step, the arithmetic of ``torch.lstm_cell`` (gates i, f, g, o)."""
    i, f, g, o = (torch.addmm(b_ih, x, w_ih.t()) + torch.addmm(b_hh, h, w_hh.t())).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class _FusedStep:
    """:func:`_lstm_step` through ``torch.compile``, built on first use; after a failure
    (no C++ compiler, say) None, with one warning."""

    def __init__(self) -> None:
        self._step, self._failed = None, False

    def __call__(self):
        if self._failed:
            return None
        if self._step is None:
            log.info("model.compile: building the fused LSTM step with torch.compile (first epoch; cached on disk)")
            # shapes are static until a second batch size shows (groups of dormant
            # nodes, say); then torch.compile builds one kernel for any size
            self._step = torch.compile(_lstm_step)
        return self._step

    def fail(self, error: Exception) -> None:
        self._failed = True
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("model.compile: no fused LSTM kernel (%s); using torch.lstm_cell", first[:200])


_fused_step = _FusedStep()


class DormantGroups:
    """A plan for :func:`lstm_sharing_dormant`: nodes grouped by arrival.

    Each group's LSTM runs from its first member's arrival to the end, from the dormant
    state there; members arriving later in the group run their last dormant steps inside
    it, and those rows of its output are replaced by the dormant states. :meth:`plan` picks the
    groups that minimise node-steps plus :attr:`OVERHEAD` per group and step (the cost of
    one more, smaller LSTM call), with starts among at most :attr:`CANDIDATES` of the
    distinct arrival steps.

    Attributes:
        starts: each group's first step, ascending.
        nodes: each group's node indices (``int64``, ascending).
        late: per group, the rows where a member is still dormant, as ``(t, rows of the
            group's output flattened to [steps * members], rows of the whole output
            flattened to [T * N])``.
        never: nodes in no group: dormant at every step.
        dormant_steps: steps of the dormant trajectory (to the last arrival).
        node_steps: the node-steps the groups compute.
    """

    OVERHEAD = 64
    WORTH = 0.7  # group only where the groups cost less than this fraction of every node's steps
    CANDIDATES = 512  # group starts considered at most: the plan takes time quadratic in them

    def __init__(self, a: np.ndarray, steps: int, starts: list[int], nodes: list[np.ndarray]) -> None:
        self.starts, self.dormant_steps = starts, int(a.max())
        self.steps, self.num_nodes, self._arrival = steps, len(a), a
        self.nodes = [torch.from_numpy(idx) for idx in nodes]
        rest = np.ones(len(a), dtype=bool)
        if nodes:
            rest[np.concatenate(nodes)] = False
        self.never = torch.from_numpy(np.flatnonzero(rest))
        self.node_steps = sum(len(idx) * (steps - s) for s, idx in zip(starts, nodes, strict=True))
        self._late: list | None = None
        self._members: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    @property
    def late(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per group, the rows where a member is still dormant (built on first use)."""
        if self._late is None:
            a, self._late = self._arrival, []
            for s, idx in self.groups():
                idx = idx.numpy()
                span = a[idx] - s  # rows [s, arrival) of each member are dormant
                member = np.repeat(np.arange(len(idx)), span)
                t = s + np.arange(len(member)) - np.repeat(np.cumsum(span) - span, span)
                rows = (t - s) * len(idx) + member, t * len(a) + idx[member]
                self._late.append(tuple(torch.from_numpy(v.astype(np.int64)) for v in (t, *rows)))
        return self._late

    def members(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """``(group [N], position in it [N], arrival [N])`` of each node (group -1: in
        none), and each group's ``(start, size, offset)`` (``[groups]`` each), the
        offset of its output among the dormant states and the groups' outputs laid end
        to end (each flattened to ``[steps * members, H]``). Built once per device."""
        if device not in self._members:
            group = torch.full((self.num_nodes,), -1, dtype=torch.long)
            position = torch.zeros(self.num_nodes, dtype=torch.long)
            for k, idx in enumerate(self.nodes):
                group[idx], position[idx] = k, torch.arange(len(idx))
            start = torch.tensor(self.starts, dtype=torch.long)
            size = torch.tensor([len(idx) for idx in self.nodes], dtype=torch.long)
            length = (self.steps - start) * size
            offset = self.dormant_steps + torch.cumsum(length, 0) - length
            arrival = torch.from_numpy(self._arrival.astype(np.int64))
            self._members[device] = tuple(x.to(device) for x in (group, position, arrival, start, size, offset))
        return self._members[device]

    def locate(self, rows: torch.Tensor) -> torch.Tensor:
        """Where rows ``t * N + v`` of the output come from: a row of the dormant states
        and the groups' outputs laid end to end."""
        group, position, arrival, start, size, offset = self.members(rows.device)
        t, v = rows // self.num_nodes, rows % self.num_nodes
        if not self.starts:
            return t
        k = group[v]
        kk = k.clamp(min=0)
        own = offset[kk] + (t - start[kk]) * size[kk] + position[v]  # its group's output
        return torch.where((k >= 0) & (t >= arrival[v]), own, t)  # before its arrival: the dormant state

    def groups(self) -> zip:
        """``(start, nodes)`` of each group."""
        return zip(self.starts, self.nodes, strict=True)

    @classmethod
    def plan(cls, arrival: torch.Tensor, steps: int) -> DormantGroups | None:
        """The groups for ``arrival`` (``[N]``) over ``steps`` steps; None where they would
        cost :attr:`WORTH` or more of running every node over every step."""
        a = arrival.cpu().numpy().clip(0, steps)
        n = len(a)
        vals, counts = np.unique(a[a < steps], return_counts=True)
        if n == 0 or a.max() == 0 or (len(vals) and vals[0] == 0 and counts[0] > cls.WORTH * n):
            return None
        if len(vals) > cls.CANDIDATES:  # groups may then start at every few arrival steps only
            firsts = np.unique(np.linspace(0, len(vals), cls.CANDIDATES, endpoint=False).astype(np.int64))
            vals, counts = vals[firsts], np.add.reduceat(counts, firsts)
        cum = np.concatenate([[0], np.cumsum(counts)])
        best, cut = np.zeros(len(vals) + 1), np.zeros(len(vals) + 1, dtype=np.int64)
        for q in range(1, len(vals) + 1):  # the last group holds arrivals vals[p:q]
            cost = best[:q] + (cum[q] - cum[:q] + cls.OVERHEAD) * (steps - vals[:q])
            cut[q] = np.argmin(cost)
            best[q] = cost[cut[q]]
        if best[-1] >= cls.WORTH * n * steps:
            return None
        bounds, q = [], len(vals)
        while q > 0:
            bounds.insert(0, (int(cut[q]), q))
            q = int(cut[q])
        order = np.argsort(a, kind="stable")
        return cls(a, steps, [int(vals[p]) for p, _ in bounds], [np.sort(order[cum[p] : cum[q]]) for p, q in bounds])


def lstm_sharing_dormant(
    model: GCNLSTM, z_TNF: torch.Tensor | ActiveSteps, groups: DormantGroups, dense: bool = True
) -> torch.Tensor | GroupedSteps:
    """``model``'s LSTM output over ``z_TNF``, every dormant node-step taking the dormant
    state (:meth:`GCNLSTM.dormant_states`), and each group of ``groups`` run over its own
    steps from the dormant state at its start; unless ``dense``, as :class:`GroupedSteps`.

    Dormant node-steps at one step therefore hold one value: their scores tie exactly.
    The rows of ``z_TNF`` a group does not take get no gradient; the dormant
    inputs' share reaches the parameters through :meth:`GCNLSTM.dormant_input`, which,
    being the same function of them, gives them the gradients of the LSTM over every
    node. Where every node is dormant, ``z_TNF`` still gets its (zero) gradient, so that
    a backward pass through it (the all-to-all of a multi-rank run) runs on every rank.
    """
    h_ref, states = model.dormant_states(groups.dormant_steps, sorted({s for s in groups.starts if s}))
    if isinstance(z_TNF, ActiveSteps):
        x = z_TNF.z
        pieces = _TakeActive.apply(x, z_TNF.idle, groups, z_TNF.maps(groups)) if groups.starts else ()
    else:
        x = z_TNF
        pieces = _TakeGroups.apply(x, groups) if groups.starts else ()
    outs = []
    for s, piece in zip(groups.starts, pieces, strict=True):
        hx = tuple(v.expand(-1, piece.shape[1], -1).contiguous() for v in states[s]) if s else None
        outs.append(model._lstm(piece, hx))
    if not dense:
        return GroupedSteps(h_ref, outs, groups)
    return _PutGroups.apply(h_ref, x, z_TNF.shape[:2], groups, *outs)


@dataclass
class ActiveSteps:
    """GCN outputs ``[T, N, F]`` held as the active node-steps' rows (:func:`active_part`)
    and the output every idle node-step has.

    Attributes:
        z: ``[R, F]`` the active node-steps' outputs.
        idle: ``[1, F]`` the output of every other node-step.
        rows: ``int64 [R]`` their rows ``t * N + v``, ascending.
        shape: ``(T, N, F)``.
    """

    z: torch.Tensor
    idle: torch.Tensor
    rows: torch.Tensor
    shape: tuple[int, int, int]

    @property
    def device(self) -> torch.device:
        return self.z.device

    def dense(self) -> torch.Tensor:
        """``[T, N, F]``, idle rows and all."""
        return _Spread.apply(self.z, self.idle, self.rows, self.shape[:2])

    def maps(self, groups: DormantGroups) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per group of ``groups``, where its input (``z[start:, nodes]`` flattened) takes
        the active rows: ``(positions in it, indices into z, 0/1 weights of its idle
        positions)``. Every active node-step lies in a group's steps: a node is active
        from its arrival on, and its group starts no later."""
        if not groups.starts:
            return []
        group, position, _, start, size, _ = groups.members(self.device)
        t, v = self.rows // self.shape[1], self.rows % self.shape[1]
        k = group[v]
        kk = k.clamp(min=0)
        at = (t - start[kk]) * size[kk] + position[v]
        out = []
        for g, (s, idx) in enumerate(groups.groups()):
            mine = (k == g).nonzero().squeeze(1)
            weights = torch.ones((self.shape[0] - s) * len(idx), dtype=self.z.dtype, device=self.device)
            out.append((at[mine], mine, weights.index_fill_(0, at[mine], 0)))
        return out


class _TakeActive(torch.autograd.Function):
    """:class:`_TakeGroups` from :class:`ActiveSteps`: each group's input, the idle
    output with the active rows put in (``maps``: :meth:`ActiveSteps.maps`); backward:
    the active rows' gradients, and the sum of every idle position's for ``idle``."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, idle: torch.Tensor, groups: DormantGroups, maps):
        ctx.maps, ctx.rows = maps, z.shape[0]
        pieces = []
        for idx, (at, src, weights) in zip(groups.nodes, maps, strict=True):
            piece = idle.repeat(len(weights), 1)  # a new tensor, even of one row
            piece.index_copy_(0, at, z.index_select(0, src))
            pieces.append(piece.view(len(weights) // len(idx), len(idx), idle.shape[1]))
        return tuple(pieces)

    @staticmethod
    def backward(ctx, *g_pieces: torch.Tensor):
        g0 = next(g for g in g_pieces if g is not None)
        width = g0.shape[2]
        g_z, g_idle = g0.new_zeros(ctx.rows, width), g0.new_zeros(1, width)
        for g, (at, src, weights) in zip(g_pieces, ctx.maps, strict=True):
            if g is not None:
                flat = g.reshape(-1, width)
                g_z.index_copy_(0, src, flat.index_select(0, at))
                g_idle += (weights @ flat).unsqueeze(0)
        return g_z, g_idle, None, None


class GroupedSteps:
    """LSTM outputs ``[T, N, H]`` held as the dormant states and each group's outputs
    (:func:`lstm_sharing_dormant`): :func:`take_rows` gathers rows from them, and its
    backward pass scatters into them, without a ``[T, N, H]`` tensor either way."""

    def __init__(self, h_ref: torch.Tensor, outs: list[torch.Tensor], groups: DormantGroups) -> None:
        self.h_ref, self.outs, self.groups = h_ref, outs, groups
        self.shape = (groups.steps, groups.num_nodes, h_ref.shape[1])
        self.device = h_ref.device

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        """``[len(rows), H]``: rows ``t * N + v`` of the output."""
        at = self.groups.locate(rows)
        return _TakeSources.apply(at, self.h_ref, *self.outs)


def take_rows(h: torch.Tensor | GroupedSteps, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``t * N + v`` of states ``[T, N, H]`` held as a tensor or as :class:`GroupedSteps`."""
    if isinstance(h, GroupedSteps):
        return h.take(rows)
    return h.reshape(-1, h.shape[2]).index_select(0, rows)


class _TakeSources(torch.autograd.Function):
    """Rows ``at`` of the sources (``[rows, H]`` or ``[.., .., H]`` each) laid end to end;
    backward: each source's gradient, zero where no row was taken."""

    @staticmethod
    def forward(ctx, at: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
        width = sources[0].shape[-1]
        out = sources[0].new_empty(len(at), width)
        ctx.picks, ctx.shapes = [], [x.shape for x in sources]
        lo = 0
        for x in sources:
            flat = x.reshape(-1, width)
            mine = ((at >= lo) & (at < lo + len(flat))).nonzero().squeeze(1)
            pos = at[mine] - lo
            out.index_copy_(0, mine, flat.index_select(0, pos))
            ctx.picks.append((mine, pos))
            lo += len(flat)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        grads = []
        for shape, (mine, pos) in zip(ctx.shapes, ctx.picks, strict=True):
            gx = g.new_zeros(shape)
            gx.view(-1, g.shape[1]).index_add_(0, pos, g.index_select(0, mine))
            grads.append(gx)
        return (None, *grads)


class _TakeGroups(torch.autograd.Function):
    """``x -> x[start:, nodes]`` for each group; backward: one gradient of ``x``, with
    zeros where no group took a row."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, groups: DormantGroups):
        ctx.shape, ctx.groups = x.shape, groups
        return tuple(x[s:].index_select(1, idx) for s, idx in groups.groups())

    @staticmethod
    def backward(ctx, *g_groups: torch.Tensor):
        dx = None
        for (s, idx), g in zip(ctx.groups.groups(), g_groups, strict=True):
            if g is not None:
                dx = g.new_zeros(ctx.shape) if dx is None else dx
                dx[s:].index_copy_(1, idx, g)
        return dx, None


class _PutGroups(torch.autograd.Function):
    """``[T, N, H]``: each group's output from its start, and the dormant states
    ``h_ref`` (``[dormant_steps, H]``) at every dormant node-step; backward: the group
    rows' gradients, and the dormant rows' summed by step for ``h_ref``.

    ``x`` is the LSTM's input (``[T, N, F]``, or the active rows of :class:`ActiveSteps`):
    its gradient comes through the groups (:class:`_TakeGroups`), or, with no group, is
    zero here. ``shape`` is ``(T, N)``.
    """

    @staticmethod
    def forward(ctx, h_ref: torch.Tensor, x: torch.Tensor, shape, groups: DormantGroups, *outs: torch.Tensor):
        ctx.groups, ctx.x_shape = groups, x.shape
        out = h_ref.new_empty(*shape, h_ref.shape[1])
        flat, width = out.view(-1, h_ref.shape[1]), h_ref.shape[1]
        for (s, idx), o, (t, _, rows) in zip(groups.groups(), outs, groups.late, strict=True):
            idx = idx.to(out.device)
            if s:
                out[:s].index_copy_(1, idx, h_ref[:s].unsqueeze(1).expand(s, len(idx), width))
            out[s:].index_copy_(1, idx, o)
            flat.index_copy_(0, rows.to(out.device), h_ref.index_select(0, t.to(out.device)))
        if len(groups.never):
            never = groups.never.to(out.device)
            out.index_copy_(1, never, h_ref.unsqueeze(1).expand(-1, len(never), width))
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        gr, width, g = ctx.groups, g.shape[2], g.contiguous()  # one copy, not one per group, if it is not
        g_ref = g.new_zeros(gr.dormant_steps, width)
        g_outs = []
        for (s, idx), (t, rows, _) in zip(gr.groups(), gr.late, strict=True):
            idx = idx.to(g.device)
            if s:
                g_ref[:s] += g[:s].index_select(1, idx).sum(1)
            piece = g[s:].index_select(1, idx)
            flat, rows = piece.view(-1, width), rows.to(g.device)
            g_ref.index_add_(0, t.to(g.device), flat.index_select(0, rows))
            flat.index_fill_(0, rows, 0)
            g_outs.append(piece)
        if len(gr.never):
            g_ref += g[: gr.dormant_steps].index_select(1, gr.never.to(g.device)).sum(1)
        # with no group, nothing else takes x: its (zero) gradient keeps a backward pass
        # through it, the all-to-all of a multi-rank run, running on every rank
        g_x = None if gr.starts else g.new_zeros(ctx.x_shape)
        return (g_ref, g_x, None, None, *g_outs)


_IDLE_WORTH = 0.5  # skip idle node-steps in the GCN where at most this fraction is active
_LARGE_STEP = 2**21  # values (nodes x width) from which CPU LSTM steps run one at a time
_EDGE_BUDGET = 1 << 24  # edges (self-loops included) per batched GCN chunk on the message path


def uses_csr(device: torch.device) -> bool:
    """Whether :func:`propagation` multiplies by CSR matrices on ``device`` (on CPU)."""
    return device.type == "cpu"


def propagation(adjs: Sequence[Adjacency], sparse: bool | None = None):
    """``h -> A h`` for the block-diagonal matrix of the normalised adjacencies ``adjs``.

    ``h`` is ``[len(adjs) * N, F]``, the snapshots' node rows one after another. ``sparse``
    (default: :func:`uses_csr`) multiplies each snapshot's rows by its CSR matrix, ``A``
    (rows: targets) forward and ``A^T`` (rows: sources) backward, each a plain row-major
    product; torch's product with a transposed CSR matrix is several times slower.
    Otherwise the self-loops scale ``h`` and a gather and scatter of per-edge messages
    adds the edges (the path for accelerators).
    """
    n = adjs[0].num_nodes
    if sparse if sparse is not None else uses_csr(adjs[0].edge_index.device):
        mats, mats_t = [adj.matrix("target") for adj in adjs], [adj.matrix("source") for adj in adjs]
        loops = [adj.loop_weight for adj in adjs]
        return lambda h: _BlockProduct.apply(h, mats, mats_t, loops)
    src, dst = torch.cat([adj.edge_index + i * n for i, adj in enumerate(adjs)], dim=1)
    w = torch.cat([adj.edge_weight for adj in adjs]).unsqueeze(1)
    loops = torch.cat([adj.loop_weight for adj in adjs]).unsqueeze(1)
    return lambda h: (h * loops).index_add_(0, dst, h[src] * w)


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """The ``[n, n]`` CSR matrix with entries ``(rows[i], cols[i]) = values[i]``.

    Entries are put in row order by a stable sort (on int32 keys where they fit, which
    torch sorts several times faster) when they are not in row order already, so
    columns keep their given order within a row. Indices are int32 where they fit:
    torch's CSR products run faster on them.
    """
    small = len(rows) < 2**31 and n < 2**31
    if small:
        rows, cols = rows.int(), cols.int()
    if len(rows) > 1 and not bool((rows[1:] >= rows[:-1]).all()):
        order = torch.sort(rows, stable=True).indices
        cols, values = cols[order], values[order]
    crow = torch.zeros(n + 1, dtype=cols.dtype, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=n), 0, out=crow[1:])
    with warnings.catch_warnings():  # torch flags its sparse CSR support as beta
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, (n, n))


def _blockwise(mats: Sequence[torch.Tensor], loops: Sequence[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """``[(L_0 + M_0) h_0; (L_1 + M_1) h_1; ...]`` for ``h`` cut into ``len(mats)`` row
    blocks, ``L_i`` the diagonal matrix of ``loops[i]``; block by block, so that each
    block's rows are still in cache for its sparse product."""
    n, h = mats[0].shape[0], h.contiguous()
    out = torch.empty_like(h)
    for i, (m, loop) in enumerate(zip(mats, loops, strict=True)):
        rows, block = h[i * n : (i + 1) * n], out[i * n : (i + 1) * n]
        torch.mul(rows, loop.unsqueeze(1), out=block)
        block.addmm_(m, rows)
    return out


class _BlockProduct(torch.autograd.Function):
    """``A @ h`` for a constant block-diagonal ``A``, given as its diagonals and its
    off-diagonal blocks as CSR matrices; the backward pass multiplies by the transposed
    blocks, given as CSR matrices too."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, mats, mats_t, loops) -> torch.Tensor:
        ctx.mats_t, ctx.loops = mats_t, loops
        return _blockwise(mats, loops, h)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _blockwise(ctx.mats_t, ctx.loops, grad), None, None, None


class _Affine(torch.autograd.Function):
    """``x @ w.T + b`` (``b`` may be None) with the weight gradient computed as
    ``(x.T @ g).T``: for a narrow ``x`` (a few input features over millions of rows) that
    product is several times faster than ``g.T @ x``, the one ``nn.Linear`` uses."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return x @ w.t() if b is None else torch.addmm(b, x, w.t())

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        gx = g @ w if ctx.needs_input_grad[0] else None
        gw = (x.t() @ g).t() if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


class LinkDecoder(nn.Module):
    """Scores node pairs from their states: ``dot`` product or a small ``mlp``.

    Shapes: ``h_u, h_v [P, H] -> [P]`` logits.
    """

    def __init__(self, hidden: int, kind: str = "dot") -> None:
        super().__init__()
        if kind not in ("dot", "mlp"):
            raise ValueError(f"LinkDecoder: kind must be 'dot' or 'mlp', got {kind!r}")
        self.kind = kind
        self.mlp = (
            nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)) if kind == "mlp" else None
        )

    def forward(self, h_u: torch.Tensor, h_v: torch.Tensor) -> torch.Tensor:
        if self.mlp is None:
            return (h_u * h_v).sum(-1)
        return self.mlp(torch.cat([h_u, h_v], dim=-1)).squeeze(-1)


class NodeHead(nn.Module):
    """Per-node prediction of the next snapshot's targets. Shapes: ``[.., H] -> [.., out_dim]``."""

    def __init__(self, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)
