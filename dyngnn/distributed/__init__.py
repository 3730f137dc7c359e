"""Ranks: launch, snapshot and node blocks, the all-to-all between them, and the host-side
collectives (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dyngnn.distributed.blocks import Block, Layout, all_to_all_bytes, balanced_ranges, block_ranges
from dyngnn.distributed.collectives import Ranks
from dyngnn.distributed.exchange import CommStats, NodesToSnapshots, SnapshotsToNodes, comm_stats
from dyngnn.distributed.launch import DistInfo, init_distributed, launch_env, resolve_device, restart_attempt

__all__ = [
    "Block",
    "CommStats",
    "DistInfo",
    "Layout",
    "NodesToSnapshots",
    "Ranks",
    "SnapshotsToNodes",
    "all_to_all_bytes",
    "balanced_ranges",
    "block_ranges",
    "comm_stats",
    "init_distributed",
    "launch_env",
    "resolve_device",
    "restart_attempt",
]
