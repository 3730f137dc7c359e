"""One rank of the all-to-all test; started by tests/test_distributed.py with torchrun's
environment variables. Prints one JSON line with what it checked."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from dyngnn.distributed import (
    Layout,
    NodesToSnapshots,
    SnapshotsToNodes,
    block_ranges,
    comm_stats,
    init_distributed,
)


def main(t: int, n: int, f: int, horizon: int) -> None:
    """Exchanges of the first ``horizon`` of ``t`` snapshots, over blocks cut there."""
    info = init_distributed("cpu")
    rank, world = info.rank, info.world_size
    layout = Layout(tuple(block_ranges(t, world)), tuple(block_ranges(n, world, "nodes"))).clipped(horizon)
    t = horizon
    (t0, t1), (n0, n1) = layout.t_ranges[rank], layout.n_ranges[rank]
    g = torch.Generator().manual_seed(0)
    z = torch.randn(t, n, f, generator=g, dtype=torch.float64)  # the same on every rank
    w = torch.randn(t, n, f, generator=g, dtype=torch.float64)

    mine = z[t0:t1].clone().requires_grad_()
    out = SnapshotsToNodes.apply(mine, layout, rank, None)
    forward_ok = torch.equal(out, z[:, n0:n1])
    (out * w[:, n0:n1]).sum().backward()
    backward_ok = torch.equal(mine.grad, w[t0:t1])

    nodes = z[:, n0:n1].clone().requires_grad_()
    back = NodesToSnapshots.apply(nodes, layout, rank, None)
    inverse_ok = torch.equal(back, z[t0:t1])
    (back * w[t0:t1]).sum().backward()
    inverse_grad_ok = torch.equal(nodes.grad, w[:, n0:n1])

    # measured: four exchanges ran (two forward, two backward)
    sent = torch.tensor(comm_stats.sent_bytes)
    dist.all_reduce(sent)
    print(
        json.dumps(
            {
                "rank": rank,
                "forward": forward_ok,
                "backward": backward_ok,
                "inverse": inverse_ok,
                "inverse_grad": inverse_grad_ok,
                "sent_bytes_all_ranks": int(sent),
            }
        )
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*map(int, sys.argv[1:5]))
