"""The GCN's inputs: one snapshot's normalised adjacency and node inputs, and which
node-steps carry information.

Legend: N nodes, E edges, I input features. A node-step ``(t, v)`` is node ``v`` in
snapshot ``t``. It is *active* where the node has an edge (either end), a self-loop
weight other than 1 or a non-zero input, and *idle* otherwise; a node is *dormant*
before its *arrival*, its first active step (:func:`first_activity`; :data:`NEVER` for a
node idle throughout).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch


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
            self._csr[rows] = csr_matrix(r, c, self.edge_weight, self.num_nodes)
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
    """GCN normalisation with self-loops: the numbers of PyG's ``gcn_norm`` (``GCNConv``)
    for non-negative weights.

    Existing self-loops keep their weight; nodes without one get weight 1. Degrees count
    the absolute weights of the edges into a node, its self-loop included, so signed
    weights (trust ratings, say) keep their sign, every row of the normalised matrix is
    bounded as for unsigned ones, and no degree is negative (``gcn_norm`` would take the
    square root of one). A node of degree 0 (a self-loop of weight 0, no edge in) gets
    normalised weights 0.
    """
    src, dst = edge_index
    w = torch.ones(src.shape[0], dtype=dtype, device=src.device) if edge_weight is None else edge_weight.to(dtype)
    loops = torch.ones(num_nodes, dtype=dtype, device=src.device)
    is_loop = src == dst
    if bool(is_loop.any()):
        loops[src[is_loop]] = w[is_loop]
        keep = ~is_loop
        src, dst, w = src[keep], dst[keep], w[keep]
    deg = torch.zeros(num_nodes, dtype=dtype, device=src.device).index_add_(0, dst, w.abs()) + loops.abs()
    dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return Adjacency(torch.stack([src, dst]), dinv[src] * w * dinv[dst], dinv * loops * dinv)


def structural_features(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype) -> torch.Tensor:
    """``[N, 2]``: log(1 + in-degree), log(1 + out-degree), computed on the edges' device."""
    ones = torch.ones(edge_index.shape[1], dtype=dtype, device=edge_index.device)
    deg = torch.zeros(2, num_nodes, dtype=dtype, device=edge_index.device)
    deg[0].index_add_(0, edge_index[1], ones)
    deg[1].index_add_(0, edge_index[0], ones)
    return torch.log1p(deg).T


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


def first_activity(graphs: Sequence[GraphInput], start: int = 0) -> torch.Tensor:
    """``int64 [N]``: each node's arrival, the first step where it is active
    (:func:`active_mask`), counting ``graphs[0]`` as step ``start``; :data:`NEVER` where
    there is none.

    Before it, the node is dormant: idle at every step so far, it has the GCN output of
    an isolated node, the same for all dormant nodes.
    """
    n, device = graphs[0].adj.num_nodes, graphs[0].adj.loop_weight.device
    first = torch.full((n,), NEVER, dtype=torch.long, device=device)
    for i in reversed(range(len(graphs))):
        first.masked_fill_(active_mask(graphs[i]), start + i)
    return first


def csr_matrix(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
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
