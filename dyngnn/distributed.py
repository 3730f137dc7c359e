"""Block distribution: contiguous snapshot blocks per rank, an all-to-all to node blocks.

Rank r owns snapshots ``[t0_r, t1_r)`` and runs the GCN on them (``z_TrNF``). One
differentiable all-to-all regroups the results by node, so that rank r holds every
snapshot of its nodes ``[n0_r, n1_r)`` (``z_TNrF``) and the LSTM sees the whole time axis.
The backward pass is the inverse all-to-all. Bytes sent to other ranks, forward and
backward, summed over ranks: ``2 * itemsize * F * (T * N - sum_r T_r * N_r)``.

Legend: T snapshots, N nodes, F features, T_r / N_r this rank's snapshots / nodes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from dyngnn.errors import InputError, SharedInputError


def block_ranges(total: int, parts: int, what: str = "snapshots") -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``0..total``, sizes differing by at most one.

    Raises:
        InputError: fewer items than parts (a rank would get nothing).
    """
    if parts < 1:
        raise InputError(f"world size {parts}: must be >= 1")
    if total < parts:
        raise SharedInputError(f"{total} {what} cannot be split over {parts} ranks: every rank needs at least one")
    base, extra = divmod(total, parts)
    bounds = np.cumsum([0] + [base + (r < extra) for r in range(parts)])
    return [(int(bounds[r]), int(bounds[r + 1])) for r in range(parts)]


def balanced_ranges(weights: Sequence[int] | np.ndarray, parts: int, what: str = "snapshots") -> list[tuple[int, int]]:
    """Contiguous ranges whose total weights (e.g. edges per snapshot) are close to equal.

    Each range ends where the running total first reaches its share, so no range is
    empty; for equal weights this is :func:`block_ranges`.

    Raises:
        InputError: fewer items than parts.
    """
    w = np.asarray(weights, dtype=np.float64) + 1.0  # an empty snapshot still costs a step
    total = len(w)
    block_ranges(total, parts, what)  # the same refusal
    cum = np.cumsum(w)
    bounds = [0]
    for r in range(1, parts):
        cut = int(np.searchsorted(cum, cum[-1] * r / parts)) + 1
        cut = max(cut, bounds[-1] + 1)  # at least one item per range...
        cut = min(cut, total - (parts - r))  # ...and enough left for the ranges after it
        bounds.append(cut)
    bounds.append(total)
    return [(bounds[r], bounds[r + 1]) for r in range(parts)]


def all_to_all_bytes(t_ranges, n_ranges, features: int, itemsize: int) -> int:
    """Bytes one all-to-all of ``z`` sends to other ranks, summed over ranks (one direction)."""
    t_sizes = [b - a for a, b in t_ranges]
    n_sizes = [b - a for a, b in n_ranges]
    total = sum(t_sizes) * sum(n_sizes)
    return itemsize * features * (total - sum(t * n for t, n in zip(t_sizes, n_sizes, strict=True)))


@dataclass(frozen=True)
class Layout:
    """Who owns what: snapshot ranges and node ranges of every rank."""

    t_ranges: tuple[tuple[int, int], ...]
    n_ranges: tuple[tuple[int, int], ...]

    @property
    def world_size(self) -> int:
        return len(self.t_ranges)

    def clipped(self, horizon: int) -> Layout:
        """The same ranks with their snapshot blocks cut at ``horizon`` (some may be empty)."""
        return Layout(tuple((min(a, horizon), min(b, horizon)) for a, b in self.t_ranges), self.n_ranges)


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


# -- process group ----------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _launch_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's or SLURM's variables, or None."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return None


def _slurm_master() -> str:
    nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodes:
        return "127.0.0.1"
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodes.split(",")[0]


def init_distributed(device: str = "auto") -> DistInfo:
    """The one place that starts the process group (or notes that there is none).

    Reads torchrun's ``RANK/WORLD_SIZE/LOCAL_RANK`` or SLURM's
    ``SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID``; without either it is a single process.
    NCCL when the device is CUDA, gloo otherwise. Under SLURM without torchrun,
    ``MASTER_ADDR`` defaults to the job's first host and ``MASTER_PORT`` to 29500.

    Raises:
        InputError: inconsistent variables (rank outside the world, CUDA asked for but
            missing, fewer GPUs on this host than local ranks).
    """
    launch = _launch_env()
    want_cuda = device == "cuda" or device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise InputError(f"run.device {device!r}: CUDA is not available on this machine")
    if launch is None:
        dev = torch.device(device if device not in ("auto",) else ("cuda" if want_cuda else "cpu"))
        return DistInfo(0, 1, 0, dev, "none")
    rank, world, local = launch
    if not 0 <= rank < world:
        raise InputError(f"launcher says rank {rank} of world size {world}: the rank must be in 0..{world - 1}")
    if want_cuda:
        if local >= torch.cuda.device_count():
            raise InputError(
                f"local rank {local} but this host has {torch.cuda.device_count()} GPUs: start one rank per GPU"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "cpu:gloo,cuda:nccl"  # NCCL for tensors on the GPU, gloo for the few small host ones
    else:
        dev, backend = torch.device("cpu"), "gloo"
    os.environ.setdefault("MASTER_ADDR", _slurm_master() if "SLURM_PROCID" in os.environ else "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            store=_store(rank, world),
            rank=rank,
            world_size=world,
            device_id=dev if dev.type == "cuda" else None,
        )
    return DistInfo(rank, world, local, dev, backend)


def _store(rank: int, world: int) -> dist.Store:
    """The rendezvous store, with a key prefix per restart attempt.

    Under torchrun the agent hosts the store and keeps it across restarts; without a
    prefix a restarted rank could read the addresses its dead predecessors published.
    """
    env = os.environ
    agent = env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(
        env["MASTER_ADDR"],
        int(env["MASTER_PORT"]),
        world,
        is_master=rank == 0 and not agent,
        timeout=timedelta(minutes=10),
    )
    attempt = env.get("TORCHELASTIC_RESTART_COUNT") or env.get("SLURM_RESTART_COUNT") or "0"
    return dist.PrefixStore(f"dyngnn/attempt-{attempt}", store)
