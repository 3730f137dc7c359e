"""Node-step rows held sparsely: most rows equal a shared value, a few are their own.

Legend: T steps (snapshots), N nodes, F GCN width, H LSTM width. Row ``t * N + v`` of a
``[T, N, .]`` tensor flattened to ``[T * N, .]`` is node-step ``(t, v)``
(:func:`node_step_rows`, :func:`step_and_node`: the one place that arithmetic lives).

Two containers, one on each side of the LSTM, hold such rows without the dense tensor:

- :class:`ActiveSteps` (GCN outputs): the active node-steps' rows, and the one output
  every idle node-step has (an isolated node's);
- :class:`GroupedSteps` (LSTM outputs): the dormant trajectory (one state per step,
  shared by every dormant node) and each group's outputs (:class:`~dyngnn.models.lstm.DormantGroups`).

One operation, :func:`fill_rows`, builds "the shared row, with rows of its own put in":
the dense GCN outputs (:meth:`ActiveSteps.dense`) and each group's LSTM input taken from
the active rows. The other autograd Functions take the groups' inputs from dense
outputs, put the groups' outputs and the dormant trajectory together, and take rows of
:class:`GroupedSteps`, forward and backward, without building ``[T, N, .]`` where a pass
does not need it.
"""

from __future__ import annotations

import math
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
        return fill_rows(self.z, self.idle, [(self.rows, None, self.shape[:2])])[0]


def fill_rows(
    z: torch.Tensor, idle: torch.Tensor, pieces: list[tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]]
) -> tuple[torch.Tensor, ...]:
    """Tensors of rows that all hold the shared row ``idle`` (``[1, F]``) but at their own
    positions, which take rows of ``z`` (``[R, F]``): for each ``(at, src, shape)`` of
    ``pieces``, ``[*shape, F]`` whose rows ``at`` (flattened) are ``z[src]`` (``src`` None:
    all of ``z``, in order). Differentiable in ``z`` and ``idle`` (:class:`_FillRows`)."""
    return _FillRows.apply(z, idle, pieces)


class _FillRows(torch.autograd.Function):
    """:func:`fill_rows`. Backward: each row of ``z`` gets the gradient at its position,
    and ``idle`` the sum of every other position's, as one product with a 0/1 vector,
    which reads the gradient once and adds no rows the forward pass did not fill."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, idle: torch.Tensor, pieces) -> tuple[torch.Tensor, ...]:
        ctx.pieces, ctx.rows = pieces, z.shape[0]
        out = []
        for at, src, shape in pieces:
            piece = idle.repeat(math.prod(shape), 1)  # a new tensor, even of one row
            piece.index_copy_(0, at, z if src is None else z.index_select(0, src))
            out.append(piece.view(*shape, idle.shape[1]))
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        g_z = g_idle = None
        for g, (at, src, _) in zip(grads, ctx.pieces, strict=True):
            if g is None:
                continue
            flat = g.reshape(-1, g.shape[-1])
            weights = torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device).index_fill_(0, at, 0)
            part = (weights @ flat).unsqueeze(0)
            g_idle = part if g_idle is None else g_idle + part
            if src is None:  # the piece holds every row of z
                g_z = flat.index_select(0, at)
            else:
                g_z = flat.new_zeros(ctx.rows, flat.shape[1]) if g_z is None else g_z
                g_z.index_copy_(0, src, flat.index_select(0, at))
        return g_z, g_idle, None


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
        pieces = fill_rows(z_TNF.z, z_TNF.idle, groups.input_maps(z_TNF.rows)) if groups.starts else ()
        return z_TNF.z, pieces
    return z_TNF, (_TakeGroups.apply(z_TNF, groups) if groups.starts else ())


def put_groups(
    h_ref: torch.Tensor, x: torch.Tensor, shape: tuple[int, int], groups: DormantGroups, outs: list[torch.Tensor]
) -> torch.Tensor:
    """``[T, N, H]`` (``shape`` is ``(T, N)``) from the dormant trajectory ``h_ref`` and the
    groups' outputs ``outs``; ``x`` is the LSTM input whose gradient comes through the
    groups (see :class:`_PutGroups`)."""
    return _PutGroups.apply(h_ref, x, shape, groups, *outs)
