"""Tasks on top of the encoder: link prediction and node regression, metrics, references.

Both tasks predict snapshot t+1 from the state ``H[t]`` (the LSTM has seen snapshots
0..t only). Transitions ``t -> t+1`` are split by time: the first ones train, the next
validate, the last test. Losses are sums over a split divided by one global count, so
the loss of a split does not depend on how its transitions are grouped.

Legend: N nodes, T snapshots, H state width, P positive pairs, K negatives per positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from dyngnn.errors import InputError
from dyngnn.models.gcn_lstm import keyed_generator, take_rows


def local(x: np.ndarray) -> np.ndarray:
    """The gather of a single process: what this process has is everything."""
    return x


EVAL_KEY = 2**31 - 1  # stands in for the epoch when drawing evaluation negatives
_SCORE_CHUNK = 1 << 14  # positives scored at once in evaluation


# -- metrics (pure) ------------------------------------------------------------


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


# -- splits --------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Source snapshots t (predicting t+1) of each split."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    @classmethod
    def by_time(cls, num_snapshots: int, val_fraction: float, test_fraction: float) -> Split:
        """Chronological split of the T-1 transitions.

        Raises:
            InputError: fewer transitions than one per split.
        """
        n = num_snapshots - 1
        n_test = max(1, round(test_fraction * n))
        n_val = max(1, round(val_fraction * n))
        if n - n_val - n_test < 1:
            raise InputError(
                f"{num_snapshots} snapshots give {n} transitions: too few for train/val/test "
                f"(need at least 3; use a smaller --data.window)"
            )
        t = tuple(range(n))
        return cls(t[: n - n_val - n_test], t[n - n_val - n_test : n - n_test], t[n - n_test :])

    @property
    def horizon(self) -> int:
        """The snapshot after the last train transition: training reads no state from here on."""
        return self.train[-1] + 1


# -- link prediction -------------------------------------------------------------


class LinkTask:
    """Score the edges of snapshot t+1 with ``H[t]`` against sampled non-edges.

    Training negatives: ``negatives`` per positive ``(u, v)``, as ``(u, v')`` with ``v'``
    uniform over nodes, drawn from a generator keyed by (seed, epoch, t). Evaluation
    negatives: ``eval_negatives`` per positive, keyed by (seed, EVAL_KEY, t), the same in
    every epoch; AUC and AP pool all pairs, MRR ranks each positive among its own.
    """

    kind = "link"

    def __init__(
        self,
        num_nodes: int,
        split: Split,
        seed: int,
        negatives: int = 1,
        eval_negatives: int = 20,
        max_positives: int = 0,
        eval_max_positives: int = 0,
    ) -> None:
        bounds = {"negatives": 1, "eval_negatives": 1, "max_positives": 0, "eval_max_positives": 0}
        for key, value in zip(bounds, (negatives, eval_negatives, max_positives, eval_max_positives), strict=True):
            if value < bounds[key]:
                raise InputError(f"task.{key} {value}: must be >= {bounds[key]}")
        self.num_nodes, self.split, self.seed = num_nodes, split, seed
        self.max_positives, self.eval_max_positives = max_positives, eval_max_positives
        self.negatives, self.eval_negatives = negatives, eval_negatives

    def _pairs(
        self, keys: torch.Tensor, k: int, *key: int, cap: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(src, dst) of the positives (at most ``cap`` of them, if set) and ``dst'``
        ``[P, k]`` of their negatives, all drawn from one generator keyed by ``key``."""
        g = keyed_generator(keys.device, *key)
        if cap and len(keys) > cap:
            keys = keys[torch.randperm(len(keys), generator=g, device=keys.device)[:cap]]
        src, dst = keys // self.num_nodes, keys % self.num_nodes
        neg = torch.randint(0, self.num_nodes, (len(keys), k), generator=g, device=keys.device)
        return src, dst, neg

    def _batch(self, split, targets, k: int, *key: int, cap: int = 0, t0: int = 0):
        """Pairs of every transition in ``split``, as row indices into ``h`` flattened,
        where ``h`` holds snapshots from ``t0`` on.

        One gather for the whole split keeps the backward pass to one scatter, instead
        of one full-size gradient per transition.
        """
        rows_u, rows_v, rows_n = [], [], []
        n = self.num_nodes
        for t in split:
            src, dst, neg = self._pairs(targets[t + 1], k, *key, t, cap=cap)
            rows_u.append((t - t0) * n + src)
            rows_v.append((t - t0) * n + dst)
            rows_n.append((t - t0) * n + neg)
        if not rows_u:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, torch.zeros(0, k, dtype=torch.long)
        return torch.cat(rows_u), torch.cat(rows_v), torch.cat(rows_n)

    def loss(
        self,
        h_TNH: torch.Tensor,
        decoder: torch.nn.Module,
        targets: dict[int, torch.Tensor],
        epoch: int,
        t0: int = 0,
    ) -> tuple[torch.Tensor, int]:
        """Sum of BCE-with-logits over the train split's pairs, and the number of pairs.

        ``h_TNH`` may hold a block of snapshots ``[t0, t0 + T_r)``: then only the train
        transitions from those snapshots count, and ``targets`` must hold their t+1. It
        may be held as the LSTM groups' outputs (:class:`~dyngnn.models.gcn_lstm.GroupedSteps`).
        """
        mine = tuple(t for t in self.split.train if t0 <= t < t0 + h_TNH.shape[0])
        u, v, n = self._batch(mine, targets, self.negatives, self.seed, epoch, cap=self.max_positives, t0=t0)
        u, v, n = u.to(h_TNH.device), v.to(h_TNH.device), n.to(h_TNH.device)
        # one gather, so the backward pass is one scatter into one full-size gradient
        width = h_TNH.shape[2]
        rows = take_rows(h_TNH, torch.cat([u, v, n.reshape(-1)]))
        hu, hv, hn = rows.split([len(u), len(v), n.numel()])
        pos_logit = decoder(hu, hv)
        neg_logit = decoder(hu.unsqueeze(1).expand(-1, n.shape[1], -1), hn.reshape(*n.shape, width))
        total = F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit), reduction="sum")
        total = total + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit), reduction="sum")
        return total, pos_logit.numel() + neg_logit.numel()

    def _scores(self, split, targets, score_fn, gather=local) -> dict[str, float]:
        """Metrics over the transitions of ``split`` this process holds, pooled by ``gather``
        (which concatenates every process's scores; metrics do not depend on their order)."""
        pos_all, neg_all = [np.zeros(0)], [np.zeros((0, self.eval_negatives))]
        for t in split:
            src, dst, neg = self._pairs(
                targets[t + 1], self.eval_negatives, self.seed, EVAL_KEY, t, cap=self.eval_max_positives
            )
            for s in range(0, len(src), _SCORE_CHUNK):  # bounded memory: [chunk, K, H] at a time
                u, v, w = src[s : s + _SCORE_CHUNK], dst[s : s + _SCORE_CHUNK], neg[s : s + _SCORE_CHUNK]
                pos_all.append(score_fn(t, u, v).cpu().double().numpy())
                neg_all.append(score_fn(t, u.unsqueeze(1).expand_as(w), w).cpu().double().numpy())
        pos, neg = gather(np.concatenate(pos_all)), gather(np.concatenate(neg_all))
        return {"auc": auc(pos, neg), "ap": average_precision(pos, neg), "mrr": mrr(pos, neg)}

    @torch.no_grad()
    def evaluate(self, h_TNH, decoder, targets, split: tuple[int, ...], t0: int = 0, gather=local) -> dict[str, float]:
        """Metrics of the model on ``split``; ``h_TNH`` holds snapshots from ``t0`` on."""
        mine = tuple(t for t in split if t0 <= t < t0 + h_TNH.shape[0])
        return self._scores(mine, targets, lambda t, u, v: decoder(h_TNH[t - t0][u], h_TNH[t - t0][v]), gather)

    @torch.no_grad()
    def reference(self, targets: dict[int, torch.Tensor], split: tuple[int, ...], gather=local) -> dict[str, float]:
        """Persistence: a pair scores 1 if it is an edge of snapshot t, else 0.

        Counts the transitions whose both snapshots are in ``targets``."""

        def persist(t, u, v):
            keys = targets[t]
            q = (u * self.num_nodes + v).reshape(-1)
            at = torch.searchsorted(keys, q).clamp(max=max(len(keys) - 1, 0))
            hit = (keys[at] == q) if len(keys) else torch.zeros_like(q, dtype=torch.bool)
            return hit.reshape(u.shape).double()

        mine = tuple(t for t in split if t in targets and t + 1 in targets)
        return self._scores(mine, targets, persist, gather)


# -- node regression -------------------------------------------------------------


class NodeTask:
    """Predict every node's target of snapshot t+1 from ``H[t]``; MSE and MAE.

    Targets come from the store (``y``, per snapshot). They are standardised with the
    train split's mean and deviation for training; metrics are in the store's units.
    The current target ``y[t]`` is also a node input of snapshot t.
    """

    kind = "node"

    def __init__(self, y_TNO: torch.Tensor, split: Split) -> None:
        self.split = split
        train_t = torch.tensor([*split.train, split.train[-1] + 1])
        ref = y_TNO[train_t]
        self.mean = ref.mean(dim=(0, 1))
        self.std = ref.std(dim=(0, 1)).clamp_min(1e-12)
        self.y = y_TNO
        self.z = (y_TNO - self.mean) / self.std

    @property
    def out_dim(self) -> int:
        return self.y.shape[2]

    def features(self, t: int) -> torch.Tensor:
        """``[N, O]``: the standardised current target, an input of snapshot t."""
        return self.z[t]

    def loss(self, h_TNH, head, targets, epoch, n0: int = 0) -> tuple[torch.Tensor, int]:
        """Squared error summed over train transitions and the nodes ``h_TNH`` holds
        (``[n0, n0 + N_r)``), and the number of terms."""
        t = torch.tensor(self.split.train, device=h_TNH.device)
        pred = head(h_TNH[t])  # [|train|, N_r, O]
        target = self.z[t + 1][:, n0 : n0 + h_TNH.shape[1]]
        return ((pred - target) ** 2).sum(), pred.numel()

    def _metrics(self, pred_TNO: torch.Tensor, split, n0: int, gather) -> dict[str, float]:
        truth = self.y[torch.tensor(split) + 1][:, n0 : n0 + pred_TNO.shape[1]]
        err = gather((pred_TNO - truth).double().cpu().numpy().reshape(-1))
        return {"mse": float((err**2).mean()), "mae": float(np.abs(err).mean())}

    @torch.no_grad()
    def evaluate(self, h_TNH, head, targets, split, n0: int = 0, gather=local) -> dict[str, float]:
        """Metrics on ``split``; ``h_TNH`` holds the nodes from ``n0`` on."""
        t = torch.tensor(split, device=h_TNH.device)
        pred = head(h_TNH[t]) * self.std + self.mean
        return self._metrics(pred, split, n0, gather)

    @torch.no_grad()
    def reference(self, targets, split, gather=local) -> dict[str, float]:
        """Same value as last step: predict ``y[t+1] = y[t]``. Every process holds every
        node's targets, so the reference is whole here and ``gather`` is not used."""
        return self._metrics(self.y[torch.tensor(split)], split, 0, local)


class NodeClassTask:
    """Predict every node's class in snapshot t+1 from ``H[t]``; accuracy and macro-F1.

    Targets are integer class ids from the store (``y``, per snapshot, ``[T, N]``). The
    current class, one-hot, is also a node input of snapshot t.
    """

    kind = "node"

    def __init__(self, y_TN: torch.Tensor, split: Split) -> None:
        if y_TN.dtype.is_floating_point or y_TN.dim() != 2 or bool((y_TN < 0).any()):
            raise InputError("task.targets = 'classes' needs integer class ids >= 0, one per node and snapshot")
        self.split = split
        self.y = y_TN.long()
        self.num_classes = int(self.y.max()) + 1
        self.onehot = F.one_hot(self.y, self.num_classes)

    @property
    def out_dim(self) -> int:
        return self.num_classes

    def features(self, t: int) -> torch.Tensor:
        return self.onehot[t]

    def loss(self, h_TNH, head, targets, epoch, n0: int = 0) -> tuple[torch.Tensor, int]:
        """Cross-entropy summed over train transitions and the nodes ``h_TNH`` holds."""
        t = torch.tensor(self.split.train, device=h_TNH.device)
        logits = head(h_TNH[t])  # [|train|, N_r, C]
        truth = self.y[t + 1][:, n0 : n0 + h_TNH.shape[1]]
        return F.cross_entropy(logits.reshape(-1, self.num_classes), truth.reshape(-1), reduction="sum"), truth.numel()

    def _metrics(self, pred_TN: torch.Tensor, split, n0: int, gather) -> dict[str, float]:
        truth = self.y[torch.tensor(split) + 1][:, n0 : n0 + pred_TN.shape[1]]
        pred = torch.from_numpy(gather(pred_TN.cpu().numpy().reshape(-1)))
        truth = torch.from_numpy(gather(truth.cpu().numpy().reshape(-1)))
        return {
            "accuracy": float((pred == truth).double().mean()),
            "macro_f1": macro_f1(pred, truth, self.num_classes),
        }

    @torch.no_grad()
    def evaluate(self, h_TNH, head, targets, split, n0: int = 0, gather=local) -> dict[str, float]:
        t = torch.tensor(split, device=h_TNH.device)
        return self._metrics(head(h_TNH[t]).argmax(-1), split, n0, gather)

    @torch.no_grad()
    def reference(self, targets, split, gather=local) -> dict[str, float]:
        """Same class as last step. Every process holds every node's targets, so the
        reference is whole here and ``gather`` is not used."""
        return self._metrics(self.y[torch.tensor(split)], split, 0, local)


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
