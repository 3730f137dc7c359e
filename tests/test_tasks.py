"""Metrics against their definitions, splits, and the persistence reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dyngnn.errors import InputError
from dyngnn.tasks import LinkTask, Split, auc, average_precision, mrr

scores = st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.7, 1.0]), min_size=1, max_size=12)


@given(pos=scores, neg=scores)
def test_auc_is_the_pairwise_probability(pos, neg):
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg]
    assert auc(np.array(pos), np.array(neg)) == pytest.approx(np.mean(pairs))


@given(pos=st.lists(st.floats(0, 1), min_size=1, max_size=10, unique=True), neg=st.lists(st.floats(0, 1), max_size=10))
def test_ap_without_ties_is_mean_precision_at_each_positive(pos, neg):
    neg = [n for n in neg if n not in pos]
    ranked = sorted([(p, 1) for p in pos] + [(n, 0) for n in set(neg)], reverse=True)
    hits, precisions = 0, []
    for i, (_, label) in enumerate(ranked, 1):
        if label:
            hits += 1
            precisions.append(hits / i)
    assert average_precision(np.array(pos), np.array(sorted(set(neg)))) == pytest.approx(np.mean(precisions))


def test_hand_computed_values():
    # ranked: 0.9(+) 0.8(-) 0.7(+) 0.2(-) -> AP = (1/1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.7]), np.array([0.8, 0.2])) == pytest.approx((1 + 2 / 3) / 2)
    # a tie between the only positive and the only negative: one threshold, precision 1/2
    assert average_precision(np.array([0.5]), np.array([0.5])) == pytest.approx(0.5)
    assert auc(np.array([0.9, 0.7]), np.array([0.8, 0.2])) == pytest.approx(0.75)
    # ranks 1, 3 and a tie (1.5) -> (1 + 1/3 + 1/1.5) / 3
    pos = np.array([0.9, 0.1, 0.5])
    neg = np.array([[0.1, 0.2], [0.5, 0.3], [0.5, 0.0]])
    assert mrr(pos, neg) == pytest.approx((1 + 1 / 3 + 1 / 1.5) / 3)


def test_split_by_time():
    s = Split.by_time(11, 0.2, 0.2)
    assert (s.train, s.val, s.test) == ((0, 1, 2, 3, 4, 5), (6, 7), (8, 9))
    with pytest.raises(InputError, match="too few"):
        Split.by_time(3, 0.15, 0.15)


def test_persistence_reference_and_keyed_negatives():
    n = 5
    targets = {t: torch.tensor(k) for t, k in enumerate([[1, 7], [1, 7], [1, 8], [3, 8], [3, 8]])}
    task = LinkTask(n, Split((0, 1), (2,), (3,)), seed=0, eval_negatives=3)
    # every positive of t=4 is an edge of t=3: persistence scores them all 1
    ref = task.reference(targets, (3,))
    assert ref["auc"] > 0.5 and ref["mrr"] > 0.5
    _, _, a = task.pairs(targets[4], 3, 0, 1, 3)
    _, _, b = task.pairs(targets[4], 3, 0, 1, 3)
    _, _, c = task.pairs(targets[4], 3, 0, 2, 3)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eval_cap_samples_a_fixed_subset():
    n = 50
    keys = {t: torch.arange(0, 2000, 3) for t in range(4)}
    task = LinkTask(n, Split((0,), (1,), (2,)), seed=0, eval_negatives=2, eval_max_positives=100)
    seen = []

    def score(t, u, v):
        seen.append(u.shape)
        return torch.zeros(u.shape, dtype=torch.float64)

    task.scores((1,), keys, score)
    assert seen == [torch.Size([100]), torch.Size([100, 2])]
    a = task.pairs(keys[2], 2, 0, 7, 1, cap=100)
    b = task.pairs(keys[2], 2, 0, 7, 1, cap=100)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_macro_f1_by_hand():
    from dyngnn.tasks import macro_f1

    truth = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 0 -> 0.8; class 2: tp 0 fn 1 -> 0
    assert macro_f1(pred, truth, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
