"""The delta rule: apply and diff are inverse, the numpy and torch twins agree, bitmasks round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dyngnn.data.delta import (
    Delta,
    apply_change,
    apply_change_torch,
    apply_delta,
    diff_snapshots,
    mask_to_positions,
    mask_to_positions_torch,
    positions_to_mask,
    sorted_positions,
)


def test_apply_and_diff_are_inverse():
    rng = np.random.default_rng(0)
    prev = np.unique(rng.integers(0, 10_000, 3000))
    cur = np.unique(np.concatenate([rng.choice(prev, 2500, replace=False), rng.integers(0, 10_000, 400)]))
    pw = rng.random(len(prev)).astype(np.float32)
    cw = rng.random(len(cur)).astype(np.float32)
    removed, added, aw, rew, rv = diff_snapshots(prev, pw, cur, cw)
    pairs = np.stack(np.divmod(added, 100), axis=1)
    got_k, got_w = apply_delta(prev, pw, Delta(False, pairs, aw, removed, rew, rv, 0), 100)
    np.testing.assert_array_equal(got_k, cur)
    np.testing.assert_array_equal(got_w, cw)
    assert set(prev[removed]) == set(prev) - set(cur)


def _as_torch(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.from_numpy(a) for a in arrays]


@pytest.mark.parametrize("rule", ["numpy", "torch"])
def test_both_rules_match_a_hand_built_change(rule):
    rng = np.random.default_rng(3)
    prev = np.unique(rng.integers(0, 10_000, 2000))
    w = rng.random(len(prev)).astype(np.float32)
    removed = np.sort(rng.choice(len(prev), 300, replace=False))
    kept = np.delete(prev, removed)
    added = np.setdiff1d(np.unique(rng.integers(0, 10_000, 200)), prev)
    aw = rng.random(len(added)).astype(np.float32)
    rew = np.setdiff1d(np.arange(len(prev)), removed)[::7]
    rv = rng.random(len(rew)).astype(np.float32)
    expect_w = w.copy()
    expect_w[rew] = rv
    expect_keys = np.union1d(kept, added)
    expect = dict(zip(kept, np.delete(expect_w, removed), strict=True)) | dict(zip(added, aw, strict=True))
    args = (prev, w, removed, added, aw, rew, rv)
    if rule == "numpy":
        keys, weight = apply_change(*args)
    else:
        keys, weight = (t.numpy() for t in apply_change_torch(*_as_torch(*args)))
    np.testing.assert_array_equal(keys, expect_keys)
    np.testing.assert_array_equal(weight, np.array([expect[k] for k in expect_keys], np.float32))
    np.testing.assert_array_equal(w, args[1])  # pure: the input is untouched


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 1000])
def test_bitmask_round_trip(count):
    rng = np.random.default_rng(count)
    positions = np.flatnonzero(rng.random(count) < 0.3)
    mask = positions_to_mask(positions, count)
    assert mask.dtype == np.uint8 and len(mask) == -(-count // 8)
    got = mask_to_positions(mask, count)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, positions)
    np.testing.assert_array_equal(mask_to_positions_torch(torch.from_numpy(mask), count).numpy(), positions)


def test_parallel_search_matches_numpy():
    rng = np.random.default_rng(0)
    hay = np.unique(rng.integers(0, 1 << 40, 1 << 21))
    needles = np.sort(rng.integers(0, 1 << 40, 1000))
    np.testing.assert_array_equal(sorted_positions(hay, needles), np.searchsorted(hay, needles))
