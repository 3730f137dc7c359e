"""Metrics (pure): ranking metrics for link scores, macro-F1 for classes.

Legend: P positives, K negatives per positive.
"""

from __future__ import annotations

import numpy as np
import torch


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve: P(score(pos) > score(neg)), ties counting one half."""
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct value
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = avg_rank[inv[: len(pos)]].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision: sum over score thresholds of (recall gain) x precision.

    Tied scores form one threshold, so the value does not depend on the order of ties.
    """
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
    if not len(pos):
        return float("nan")
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.append(scores[1:] != scores[:-1], True)
    tp = np.cumsum(labels)[last_of_tie]
    seen = (np.arange(len(scores)) + 1)[last_of_tie]
    recall_gain = np.diff(np.concatenate([[0.0], tp])) / len(pos)
    return float((recall_gain * tp / seen).sum())


def mrr(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mean reciprocal rank of each positive among its own K negatives (``neg [P, K]``).

    A tie sits halfway between its optimistic and pessimistic rank.
    """
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64)
    if not len(pos):
        return float("nan")
    rank = 1.0 + (neg > pos[:, None]).sum(1) + 0.5 * (neg == pos[:, None]).sum(1)
    return float((1.0 / rank).mean())


def macro_f1(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
    """Mean over the classes that occur (in truth or prediction) of their F1 score."""
    f1 = []
    for c in range(num_classes):
        tp = int(((pred == c) & (truth == c)).sum())
        fp = int(((pred == c) & (truth != c)).sum())
        fn = int(((pred != c) & (truth == c)).sum())
        if tp + fp + fn:
            f1.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1)) if f1 else float("nan")
