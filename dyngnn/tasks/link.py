"""Link prediction: score the edges of snapshot t+1 with the states of snapshot t.

Legend: N nodes, H state width, P positive pairs, K negatives per positive. Edge keys
are ``src * N + dst``; state rows are ``t * N + v``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dyngnn.data.snapshots import edge_keys, key_ends
from dyngnn.distributed.blocks import Block
from dyngnn.errors import InputError
from dyngnn.keyed import keyed_generator
from dyngnn.models.heads import LinkDecoder
from dyngnn.models.steps import GroupedSteps, node_step_rows, take_rows
from dyngnn.tasks.base import Gather, Split, local
from dyngnn.tasks.metrics import auc, average_precision, mrr

EVAL_KEY = 2**31 - 1  # stands in for the epoch when drawing evaluation negatives
_SCORE_CHUNK = 1 << 14  # positives scored at once in evaluation


class LinkTask:
    """Score the edges of snapshot t+1 with ``H[t]`` against sampled non-edges.

    Training negatives: ``negatives`` per positive ``(u, v)``, as ``(u, v')`` with ``v'``
    uniform over nodes, drawn from a generator keyed by (seed, epoch, t). Evaluation
    negatives: ``eval_negatives`` per positive, keyed by (seed, EVAL_KEY, t), the same in
    every epoch; AUC and AP pool all pairs, MRR ranks each positive among its own.
    ``max_positives`` / ``eval_max_positives`` cap the positives of a target snapshot
    (0: all); ``decoder`` is the head's kind (:class:`~dyngnn.models.heads.LinkDecoder`).
    """

    by_snapshot = True
    reads_edges = True
    in_features = 0
    reference_name = "persistence"

    def __init__(
        self,
        num_nodes: int,
        split: Split,
        *,
        seed: int,
        negatives: int = 1,
        eval_negatives: int = 20,
        max_positives: int = 0,
        eval_max_positives: int = 0,
        decoder: str = "dot",
    ) -> None:
        # checked here too, as the Python API bypasses the config's checks
        bounds = {"negatives": 1, "eval_negatives": 1, "max_positives": 0, "eval_max_positives": 0}
        for key, value in zip(bounds, (negatives, eval_negatives, max_positives, eval_max_positives), strict=True):
            if value < bounds[key]:
                raise InputError(f"task.{key} {value}: must be >= {bounds[key]}")
        self.num_nodes, self.split, self.seed = num_nodes, split, seed
        self.max_positives, self.eval_max_positives = max_positives, eval_max_positives
        self.negatives, self.eval_negatives = negatives, eval_negatives
        self.decoder = decoder

    def features(self, t: int) -> None:
        return None

    def check_targets(self, edges_per_snapshot: np.ndarray) -> list[str]:
        """Warnings for the evaluation splits whose target snapshots hold no edge at all:
        their metrics have nothing to measure (``null``).

        Raises:
            InputError: the training split has no edge to predict.
        """
        out = []
        names = {"training": self.split.train, "validation": self.split.val, "test": self.split.test}
        for name, split in names.items():
            if int(np.asarray(edges_per_snapshot)[[t + 1 for t in split]].sum()) == 0:
                what = f"the {name} split (transitions {split[0]}..{split[-1]} -> next) has no edge to predict"
                if name == "training":
                    raise InputError(f"{what}: nothing to learn; use a longer --data.window")
                fraction = "val_fraction" if name == "validation" else "test_fraction"
                out.append(f"{what}: its metrics are null; use a longer --data.window or another --task.{fraction}")
        return out

    def head(self, hidden: int) -> nn.Module:
        return LinkDecoder(hidden, self.decoder)

    def pairs(self, keys: torch.Tensor, k: int, *key: int, cap: int = 0) -> tuple[torch.Tensor, ...]:
        """(src, dst) of the positives ``keys`` (at most ``cap`` of them, if set) and
        ``dst'`` ``[P, k]`` of their negatives, all drawn from one generator keyed by ``key``."""
        g = keyed_generator(keys.device, *key)
        if cap and len(keys) > cap:
            keys = keys[torch.randperm(len(keys), generator=g, device=keys.device)[:cap]]
        src, dst = key_ends(keys, self.num_nodes)
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
            src, dst, neg = self.pairs(targets[t + 1], k, *key, t, cap=cap)
            rows_u.append(node_step_rows(t - t0, src, n))
            rows_v.append(node_step_rows(t - t0, dst, n))
            rows_n.append(node_step_rows(t - t0, neg, n))
        if not rows_u:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, torch.zeros(0, k, dtype=torch.long)
        return torch.cat(rows_u), torch.cat(rows_v), torch.cat(rows_n)

    def loss(
        self,
        h_TNH: torch.Tensor | GroupedSteps,
        decoder: nn.Module,
        targets: dict[int, torch.Tensor],
        epoch: int,
        block: Block | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Sum of BCE-with-logits over the train split's pairs, and the number of pairs.

        ``h_TNH`` holds the block's snapshots ``[t0, t0 + T_r)``: only the train
        transitions from those snapshots count, and ``targets`` must hold their t+1. It
        may be held as the LSTM groups' outputs (:class:`~dyngnn.models.steps.GroupedSteps`).
        """
        t0 = block.t0 if block else 0
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

    def scores(self, split, targets, score_fn, gather: Gather = local) -> dict[str, float]:
        """Metrics of ``score_fn(t, u, v)`` over the transitions of ``split`` this process
        holds, with the evaluation pairs; pooled by ``gather`` (which concatenates every
        process's scores; metrics do not depend on their order)."""
        pos_all, neg_all = [np.zeros(0)], [np.zeros((0, self.eval_negatives))]
        for t in split:
            src, dst, neg = self.pairs(
                targets[t + 1], self.eval_negatives, self.seed, EVAL_KEY, t, cap=self.eval_max_positives
            )
            for s in range(0, len(src), _SCORE_CHUNK):  # bounded memory: [chunk, K, H] at a time
                u, v, w = src[s : s + _SCORE_CHUNK], dst[s : s + _SCORE_CHUNK], neg[s : s + _SCORE_CHUNK]
                pos_all.append(score_fn(t, u, v).cpu().double().numpy())
                neg_all.append(score_fn(t, u.unsqueeze(1).expand_as(w), w).cpu().double().numpy())
        pos, neg = gather(np.concatenate(pos_all)), gather(np.concatenate(neg_all))
        return {"auc": auc(pos, neg), "ap": average_precision(pos, neg), "mrr": mrr(pos, neg)}

    @torch.no_grad()
    def evaluate(
        self, h_TNH, decoder, targets, split: tuple[int, ...], block: Block | None = None, gather: Gather = local
    ) -> dict[str, float]:
        """Metrics of the model on ``split``; ``h_TNH`` holds the block's snapshots."""
        t0 = block.t0 if block else 0
        mine = tuple(t for t in split if t0 <= t < t0 + h_TNH.shape[0])
        return self.scores(mine, targets, lambda t, u, v: decoder(h_TNH[t - t0][u], h_TNH[t - t0][v]), gather)

    @torch.no_grad()
    def reference(self, targets: dict[int, torch.Tensor], split: tuple[int, ...], gather: Gather = local):
        """Persistence: a pair scores 1 if it is an edge of snapshot t, else 0.

        Counts the transitions whose both snapshots are in ``targets``."""

        def persist(t, u, v):
            keys = targets[t]
            q = edge_keys(u, v, self.num_nodes).reshape(-1)
            at = torch.searchsorted(keys, q).clamp(max=max(len(keys) - 1, 0))
            hit = (keys[at] == q) if len(keys) else torch.zeros_like(q, dtype=torch.bool)
            return hit.reshape(u.shape).double()

        mine = tuple(t for t in split if t in targets and t + 1 in targets)
        return self.scores(mine, targets, persist, gather)
