"""The differentiable all-to-all between snapshot blocks and node blocks.

Rank r runs the GCN on its snapshots (``z_TrNF``). One all-to-all regroups the results
by node, so that rank r holds every snapshot of its nodes (``z_TNrF``) and the LSTM sees
the whole time axis. The backward pass is the inverse all-to-all. Bytes sent to other
ranks, forward and backward, summed over ranks:
``2 * itemsize * F * (T * N - sum_r T_r * N_r)`` (:func:`~dyngnn.distributed.blocks.all_to_all_bytes`).

Legend: T snapshots, N nodes, F features, T_r / N_r this rank's snapshots / nodes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from dyngnn.distributed.blocks import Layout


class CommStats:
    """Bytes this process's all-to-alls sent to other ranks (reset it per epoch)."""

    def __init__(self) -> None:
        self.sent_bytes = 0

    def reset(self) -> None:
        self.sent_bytes = 0


comm_stats = CommStats()


def _exchange(x: torch.Tensor, send_splits: list[int], recv_splits: list[int], group) -> torch.Tensor:
    out = x.new_empty((sum(recv_splits), *x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), recv_splits, send_splits, group=group)
    row_bytes = x[0].numel() * x.element_size() if len(x) else 0
    me = dist.get_rank(group)
    comm_stats.sent_bytes += (sum(send_splits) - send_splits[me]) * row_bytes
    return out


def _to_node_blocks(z_TrNF: torch.Tensor, layout: Layout, rank: int, group) -> torch.Tensor:
    t_r = z_TrNF.shape[0]
    n_sizes = [b - a for a, b in layout.n_ranges]
    t_sizes = [b - a for a, b in layout.t_ranges]
    n_r = n_sizes[rank]
    # send to rank q: my snapshots x q's nodes, laid out node-block by node-block
    send = z_TrNF.transpose(0, 1)  # [N, T_r, F]
    send_rows = [n * t_r for n in n_sizes]
    recv_rows = [n_r * t for t in t_sizes]
    flat = send.reshape(-1, send.shape[-1])  # rows (node, t) grouped by node block
    recv = _exchange(flat, send_rows, recv_rows, group)  # rows (source rank, my node, its t)
    pieces = []
    start = 0
    for t in t_sizes:
        block = recv[start : start + n_r * t].reshape(n_r, t, recv.shape[-1])
        pieces.append(block.transpose(0, 1))  # [t, N_r, F]
        start += n_r * t
    return torch.cat(pieces)  # [T, N_r, F]


def _to_snapshot_blocks(z_TNrF: torch.Tensor, layout: Layout, rank: int, group) -> torch.Tensor:
    n_sizes = [b - a for a, b in layout.n_ranges]
    t_sizes = [b - a for a, b in layout.t_ranges]
    t_r, n_r = t_sizes[rank], z_TNrF.shape[1]
    # send to rank q: q's snapshots x my nodes, as (my node, its t) rows
    rows = []
    for a, b in layout.t_ranges:
        rows.append(z_TNrF[a:b].transpose(0, 1).reshape(-1, z_TNrF.shape[-1]))
    send = torch.cat(rows)
    recv = _exchange(send, [n_r * t for t in t_sizes], [n * t_r for n in n_sizes], group)
    # rows grouped by source rank q: (q's node, my t) -> [N, T_r, F] -> [T_r, N, F]
    return recv.reshape(sum(n_sizes), t_r, recv.shape[-1]).transpose(0, 1)


class SnapshotsToNodes(torch.autograd.Function):
    """``z_TrNF`` (my snapshots, all nodes) -> ``z_TNrF`` (all snapshots, my nodes)."""

    @staticmethod
    def forward(ctx, z_TrNF: torch.Tensor, layout: Layout, rank: int, group) -> torch.Tensor:
        ctx.layout, ctx.rank, ctx.group = layout, rank, group
        return _to_node_blocks(z_TrNF, layout, rank, group)

    @staticmethod
    def backward(ctx, grad_TNrF: torch.Tensor):
        return _to_snapshot_blocks(grad_TNrF, ctx.layout, ctx.rank, ctx.group), None, None, None


class NodesToSnapshots(torch.autograd.Function):
    """``h_TNrH`` (all snapshots, my nodes) -> ``h_TrNH`` (my snapshots, all nodes)."""

    @staticmethod
    def forward(ctx, h_TNrH: torch.Tensor, layout: Layout, rank: int, group) -> torch.Tensor:
        ctx.layout, ctx.rank, ctx.group = layout, rank, group
        return _to_snapshot_blocks(h_TNrH, layout, rank, group)

    @staticmethod
    def backward(ctx, grad_TrNH: torch.Tensor):
        return _to_node_blocks(grad_TrNH, ctx.layout, ctx.rank, ctx.group), None, None, None
