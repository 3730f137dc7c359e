"""Starting the process group: torchrun's or SLURM's variables, the backend, the device.

This module is the one place that calls ``init_process_group`` and reads the
launcher's variables (ranks and restart counts).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from dyngnn.errors import InputError


def resolve_device(name: str) -> torch.device:
    """``run.device`` as a device: ``auto`` is cuda where available, else cpu.

    Raises:
        InputError: a name torch does not know, or CUDA asked for and missing.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"run.device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"run.device {name!r}: CUDA is not available on this machine")
    return device


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


def launch_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's or SLURM's variables, or None."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return None


_RESTART_COUNTS = ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")  # outer launcher first


def restart_attempt() -> tuple[int, ...]:
    """How many times each launcher has restarted this job (a requeued SLURM job, then
    torchrun ``--max-restarts`` inside it); all 0 for a first start."""
    return tuple(int(os.environ.get(v) or 0) for v in _RESTART_COUNTS)


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
    launch = launch_env()
    want_cuda = device == "cuda" or device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise InputError(f"run.device {device!r}: CUDA is not available on this machine")
    if launch is None:
        return DistInfo(0, 1, 0, resolve_device(device), "none")
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
    attempt = "-".join(map(str, restart_attempt()))  # a new prefix for every restart, by either launcher
    return dist.PrefixStore(f"dyngnn/attempt-{attempt}", store)
