"""Node-step rows held sparsely: most rows equal a shared value, a few are their own.

Legend: T steps (snapshots), N nodes, F GCN width, H LSTM width. Row ``t * N + v`` of a
``[T, N, .]`` tensor flattened to ``[T * N, .]`` is node-step ``(t, v)``
(:func:`node_step_rows`, :func:`step_and_node`: the one place that arithmetic lives).

Two containers, one on each side of the LSTM, hold such rows without the dense tensor:

- :class:`ActiveSteps` (GCN outputs): the active node-steps' rows, and the one output
  every idle node-step has (an isolated node's);
- :class:`GroupedSteps` (LSTM outputs): the dormant trajectory (one state per step,
  shared by every dormant node) and each group's outputs (:class:`~dyngnn.models.lstm.DormantGroups`).

The autograd Functions move rows between them and the groups' LSTM inputs and outputs,
forward and backward, without building ``[T, N, .]`` where a pass does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dyngnn.models.lstm import DormantGroups


def node_step_rows(t: Any, v: Any, num_nodes: Any) -> Any:
    """Rows ``t * N + v`` of node-steps ``(t, v)`` (ints, numpy arrays or tensors; ``N``
    may be per element: a group's own ``[steps, members]`` layout, say)."""
    return t * num_nodes + v


def step_and_node(rows: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t, v)`` of rows ``t * N + v``."""
    return rows // num_nodes, rows % num_nodes


@dataclass
class ActiveSteps:
    """GCN outputs ``[T, N, F]`` held as the active node-steps' rows (:func:`~dyngnn.models.gcn.active_part`)
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


class _TakeActive(torch.autograd.Function):
    """:class:`_TakeGroups` from :class:`ActiveSteps`: each group's input, the idle
    output with the active rows put in (``maps``: :meth:`DormantGroups.input_maps`); backward:
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
    (:func:`~dyngnn.models.lstm.lstm_sharing_dormant`): :func:`take_rows` gathers rows from them, and its
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


def group_inputs(z_TNF: torch.Tensor | ActiveSteps, groups: DormantGroups) -> tuple[torch.Tensor, tuple]:
    """Each group's LSTM input ``z[start:, nodes]`` (``[T - start, members, F]``), taken
    from ``z_TNF`` (dense, or as :class:`ActiveSteps`), and the tensor their gradients
    flow back into (``z_TNF`` itself, or its active rows)."""
    if isinstance(z_TNF, ActiveSteps):
        maps = groups.input_maps(z_TNF.rows, z_TNF.z.dtype)
        pieces = _TakeActive.apply(z_TNF.z, z_TNF.idle, groups, maps) if groups.starts else ()
        return z_TNF.z, pieces
    return z_TNF, (_TakeGroups.apply(z_TNF, groups) if groups.starts else ())


def put_groups(
    h_ref: torch.Tensor, x: torch.Tensor, shape: tuple[int, int], groups: DormantGroups, outs: list[torch.Tensor]
) -> torch.Tensor:
    """``[T, N, H]`` (``shape`` is ``(T, N)``) from the dormant trajectory ``h_ref`` and the
    groups' outputs ``outs``; ``x`` is the LSTM input whose gradient comes through the
    groups (see :class:`_PutGroups`)."""
    return _PutGroups.apply(h_ref, x, shape, groups, *outs)
