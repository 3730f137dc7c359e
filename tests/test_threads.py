"""Threads fitted to the CPUs a process may use and to the load others put on them."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from dyngnn import threads


def test_usable_cpus_follow_affinity_and_slurm(monkeypatch):
    import os

    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    mask = len(os.sched_getaffinity(0))
    assert 1 <= threads.usable_cpus() <= mask
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert threads.usable_cpus() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "")  # unset in practice: no cap
    assert threads.usable_cpus() == min(mask, threads.usable_cpus())


def test_busy_processes_are_seen_and_leave_their_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    before = torch.get_num_threads()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        assert threads.others_running() >= 2  # always runnable, so every look counts them
        assert threads.fit_to_load() == torch.get_num_threads() == max(1, threads.usable_cpus() - 2)
    finally:
        for b in busy:
            b.kill()
            b.wait()
        torch.set_num_threads(before)


def test_the_free_cpus_set_the_threads_unless_the_user_did(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    monkeypatch.setattr(threads, "shares_machine", lambda: True)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        for others, expected in ((0, 8), (3, 5), (20, 1)):
            monkeypatch.setattr(threads, "others_running", lambda others=others: others)
            assert threads.fit_to_load() == expected == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(3)
        monkeypatch.setattr(threads, "others_running", lambda: 7)
        assert threads.fit_to_load() == 3 == torch.get_num_threads()  # the user's setting stays
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(threads, "shares_machine", lambda: False)  # pinned to its own CPUs
        assert threads.fit_to_load() == 8 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
