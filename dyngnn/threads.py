"""How many threads a process computes with: CPU cores shared with other jobs (a SLURM
node, a laptop) must not slow an epoch several times over.

Torch's CPU kernels run on OpenMP threads, which spin at the end of every parallel
region waiting for each other. When another job holds a core, the thread they wait for
is descheduled, and every region waits a time slice for it. Sleeping instead of
spinning (``OMP_WAIT_POLICY=PASSIVE``) costs the idle case twice its epoch here, so
dyngnn keeps OpenMP's waits and sets the number of threads instead, unless the user
set ``OMP_NUM_THREADS``:

- never more than the CPUs this process may run on: its affinity mask, its cgroup's
  CPU quota, SLURM's ``SLURM_CPUS_PER_TASK`` (:func:`usable_cpus`), where torch's own
  default counts every core of the machine;
- at the start of every epoch, no more than the CPUs that other processes leave free
  right now (:func:`fit_to_load`), so no thread waits on a core another job holds; a
  process pinned to its own CPUs (``srun``'s binding, ``taskset``) keeps them all.

``benchmarks/under_load.py`` measures it (``benchmarks/RESULTS.md``, section 10).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path


def _affinity() -> int:
    """CPUs in this process's affinity mask (every CPU where there is no such mask)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def usable_cpus() -> int:
    """CPUs this process may really use: the smallest of its affinity mask, its cgroup's
    CPU quota (rounded up) and ``SLURM_CPUS_PER_TASK``; at least 1."""
    counts = [_affinity()]
    quota = _cgroup_quota()
    if quota is not None:
        counts.append(math.ceil(quota))
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        counts.append(int(slurm))
    return max(1, min(counts))


def _cgroup_quota() -> float | None:
    """CPUs of this process's cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_*``), or None."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def others_running(samples: int = 3) -> int | None:
    """Threads of other processes that are running or ready to run, on this machine
    (``/proc/loadavg``, less this process's own running threads): the fewest of
    ``samples`` looks 1 ms apart, so that a command that runs for an instant does not
    count. None where there is no ``/proc``."""
    counts = []
    for i in range(samples):
        if i:
            time.sleep(0.001)
        counts.append(_others_now())
    return None if None in counts else min(counts)


def _others_now() -> int | None:
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        mine = 0
        for task in Path("/proc/self/task").iterdir():
            try:
                mine += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                continue
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - mine)


def shares_machine() -> bool:
    """Whether this process may run on every CPU of the machine, so that any other
    process's load competes with it."""
    return _affinity() >= (os.cpu_count() or 1)


def fit_to_load() -> int:
    """Set torch's threads to the usable CPUs that other processes leave free now (at
    least 1), unless ``OMP_NUM_THREADS`` is set; the number of threads torch will use."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):  # set, and not empty
        return torch.get_num_threads()
    # the load is counted machine-wide, so it is only this process's to share where it
    # may run on every CPU; a process pinned to its own CPUs (srun, taskset) keeps them
    others = (others_running() or 0) if shares_machine() else 0
    wanted = max(1, usable_cpus() - others)
    if wanted != torch.get_num_threads():
        torch.set_num_threads(wanted)
    return wanted
