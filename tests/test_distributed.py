"""Block ranges, and the differentiable all-to-all on real gloo processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dyngnn.distributed import Layout, all_to_all_bytes, balanced_ranges, block_ranges
from dyngnn.errors import InputError

WORKERS = Path(__file__).parent / "workers"


def test_block_ranges():
    assert block_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert block_ranges(3, 3) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(InputError, match="2 snapshots cannot be split over 3 ranks"):
        block_ranges(2, 3)


def test_balanced_ranges_follow_the_weights():
    assert balanced_ranges([1] * 9, 3) == block_ranges(9, 3)
    weights = [100, 1, 1, 1, 1, 1, 1, 100]
    ranges = balanced_ranges(weights, 2)
    assert ranges == [(0, 4), (4, 8)] or ranges == [(0, 5), (5, 8)]
    heavy_first = balanced_ranges([1000, 1, 1, 1], 3)
    assert heavy_first[0] == (0, 1) and all(b > a for a, b in heavy_first)
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = rng.integers(0, 50, rng.integers(3, 30))
        parts = int(rng.integers(1, len(w) + 1))
        r = balanced_ranges(w, parts)
        assert r[0][0] == 0 and r[-1][1] == len(w)
        assert all(b > a for a, b in r) and all(r[i][1] == r[i + 1][0] for i in range(parts - 1))


def test_volume_formula_by_hand():
    # T=4, N=6 over 2 ranks: each rank keeps 2x3 of its 2x6 block and sends 2x3 of F=5 float32
    assert all_to_all_bytes([(0, 2), (2, 4)], [(0, 3), (3, 6)], 5, 4) == 2 * (2 * 3) * 5 * 4
    assert all_to_all_bytes([(0, 7)], [(0, 9)], 5, 4) == 0


def test_layout_cut_at_a_horizon():
    layout = Layout(((0, 4), (4, 7), (7, 10), (10, 13)), ((0, 6), (6, 12), (12, 18), (18, 23)))
    cut = layout.clipped(8)
    assert cut.t_ranges == ((0, 4), (4, 7), (7, 8), (8, 8)) and cut.n_ranges == layout.n_ranges
    assert layout.clipped(13) == layout
    # snapshots past the horizon no longer travel
    assert all_to_all_bytes(cut.t_ranges, cut.n_ranges, 2, 4) < all_to_all_bytes(layout.t_ranges, layout.n_ranges, 2, 4)


@pytest.mark.parametrize(("world", "horizon"), [(1, 7), (2, 7), (3, 7), (3, 4), (3, 2)])
def test_all_to_all_forward_backward_and_bytes(ranks, world, horizon):
    """Whole blocks, and blocks cut at a horizon (at 4 and 2 of 7, some ranks hold none)."""
    t, n, f = 7, 11, 3  # divisible by none of the world sizes above 1
    procs = ranks(world, [str(WORKERS / "all_to_all.py"), str(t), str(n), str(f), str(horizon)])
    assert all(p.returncode == 0 for p in procs), [p.stderr[-2000:] for p in procs]
    results = [json.loads(p.stdout.strip().splitlines()[-1]) for p in procs]
    assert sorted(r["rank"] for r in results) == list(range(world))
    for r in results:
        assert r["forward"] and r["backward"] and r["inverse"] and r["inverse_grad"], r
        cut = Layout(tuple(block_ranges(t, world)), tuple(block_ranges(n, world, "nodes"))).clipped(horizon)
        one_way = all_to_all_bytes(cut.t_ranges, cut.n_ranges, f, 8)
        assert r["sent_bytes_all_ranks"] == 4 * one_way  # 2 transforms x (forward + backward)
        assert (one_way > 0) == (world > 1)


def test_init_distributed_reads_the_launcher(monkeypatch):
    from dyngnn.distributed import init_distributed, launch_env

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(var, raising=False)
    single = init_distributed("cpu")
    assert (single.rank, single.world_size, single.backend, single.is_main) == (0, 1, "none", True)
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert launch_env() == (2, 4, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch_env() == (1, 2, 0)  # torchrun's variables win inside a SLURM job
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(InputError, match="rank 5 of world size 2"):
        init_distributed("cpu")
