"""The GCN stage: normalised propagation over many snapshots at once, and which rows it
runs over.

Legend: T snapshots, N nodes, E edges, I inputs, F width. Rows of ``h`` are node-steps,
snapshot after snapshot (``[T * N, F]``, row ``t * N + v``), or only the active ones
(:func:`active_part`; active and idle: see :mod:`dyngnn.models.inputs`). The parameters
(``GCNConv`` layers) live in :class:`~dyngnn.models.encoder.GCNLSTM`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from dyngnn.models.inputs import Adjacency, GraphInput, active_mask
from dyngnn.models.steps import node_step_rows

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": nn.functional.gelu,
    "elu": nn.functional.elu,
}

IDLE_WORTH = 0.5  # skip idle node-steps where at most this fraction of all is active
EDGE_BUDGET = 1 << 24  # edges (self-loops included) per batched chunk on the message path


def gcn_layers(convs: Sequence, act: Callable, h: torch.Tensor, propagate: Callable, drop=None) -> torch.Tensor:
    """The layers ``convs`` (``GCNConv``, ``act`` between them) over rows ``h`` with
    propagation ``propagate`` (and dropout ``drop`` on each layer's input, if given)."""
    for i, conv in enumerate(convs):
        if drop is not None:
            h = drop(h)
        # (A X) W = A (X W): propagate whichever side is narrower
        if conv.in_channels < conv.out_channels:
            h = Affine.apply(propagate(h), conv.lin.weight, conv.bias)
        else:
            h = propagate(Affine.apply(h, conv.lin.weight, None)) + conv.bias
        if i + 1 < len(convs):
            h = act(h)
    return h


def isolated_output(convs: Sequence, act: Callable) -> torch.Tensor:
    """``[1, F]``: the layers' output for a node with no edge (self-loop weight 1) and
    zero inputs: the dormant input of the LSTM, the same at every snapshot."""
    h = convs[0].lin.weight.new_zeros(1, convs[0].in_channels)
    for i, conv in enumerate(convs):
        h = Affine.apply(h, conv.lin.weight, conv.bias)
        if i + 1 < len(convs):
            h = act(h)
    return h


def gcn_spans(graphs: Sequence[GraphInput], checkpoint_every: int = 0) -> list[tuple[int, int]]:
    """How the GCN stage cuts ``graphs`` into chunks ``[s, e)`` computed at once.

    ``checkpoint_every`` snapshots per chunk under activation checkpointing; otherwise
    the whole sequence on the CSR path, and as many snapshots as fit
    :data:`EDGE_BUDGET` on the message path.
    """
    if checkpoint_every:
        return [(s, min(s + checkpoint_every, len(graphs))) for s in range(0, len(graphs), checkpoint_every)]
    if uses_csr(graphs[0].adj.edge_index.device):
        return [(0, len(graphs))]
    n = graphs[0].adj.num_nodes
    spans, start, edges = [], 0, 0
    for i, g in enumerate(graphs):
        edges += g.adj.edge_index.shape[1] + n
        if edges > EDGE_BUDGET and i > start:
            spans.append((start, i))
            start, edges = i, g.adj.edge_index.shape[1] + n
    spans.append((start, len(graphs)))
    return spans


def sparse_active(graphs: Sequence[GraphInput]) -> tuple[list[torch.Tensor], torch.Tensor] | None:
    """Each snapshot's :func:`active_mask` and the active rows ``t * N + v`` of all,
    where at most :data:`IDLE_WORTH` of the node-steps are active; None where more are
    (running over every row is then cheaper than picking them)."""
    masks = [active_mask(g) for g in graphs]
    active = torch.cat(masks)  # one reduction, not one per snapshot
    if int(active.sum()) > IDLE_WORTH * active.numel():
        return None
    return masks, active.nonzero().squeeze(1)


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
    edges = torch.cat([node_step_rows(i, g.adj.edge_index, n) for i, g in enumerate(graphs)], dim=1)
    loops = torch.cat([g.adj.loop_weight for g in graphs])[rows]
    adj = Adjacency(ids[edges], torch.cat([g.adj.edge_weight for g in graphs]), loops)
    return rows, adj, torch.cat([g.x for g in graphs])[rows]


def active_layers(convs: Sequence, act: Callable, graphs: Sequence[GraphInput], masks: Sequence[torch.Tensor]):
    """``[rows, F]``: the layers over the active node-steps of ``graphs`` only (``masks``:
    their :func:`active_mask`), as one graph (:func:`active_part`)."""
    _, adj, x = active_part(graphs, masks)
    return gcn_layers(convs, act, x, propagation([adj]))


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
    src, dst = torch.cat([node_step_rows(i, adj.edge_index, n) for i, adj in enumerate(adjs)], dim=1)
    w = torch.cat([adj.edge_weight for adj in adjs]).unsqueeze(1)
    loops = torch.cat([adj.loop_weight for adj in adjs]).unsqueeze(1)
    return lambda h: (h * loops).index_add_(0, dst, h[src] * w)


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


class Affine(torch.autograd.Function):
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
