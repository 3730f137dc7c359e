"""Node tasks: predict every node's target of snapshot t+1 from ``H[t]``, as real values
(regression) or as classes.

Legend: T snapshots, N nodes, H state width, O targets per node, C classes. States are
``[T, N_r, H]``: every snapshot of the rank's nodes ``[n0, n1)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dyngnn.distributed.blocks import Block
from dyngnn.errors import InputError
from dyngnn.models.heads import NodeHead
from dyngnn.tasks.base import Gather, Split, local
from dyngnn.tasks.metrics import macro_f1


class _NodeTargets:
    """What both node tasks share: states by node block, the current target as an input
    of every snapshot, a linear head, and "same as last step" as the reference."""

    by_snapshot = False
    reads_edges = False
    reference_name = "last value"

    out_dim: int  # targets per node (classes, for classification)

    @property
    def in_features(self) -> int:
        return self.out_dim

    def head(self, hidden: int) -> nn.Module:
        return NodeHead(hidden, self.out_dim)

    def check_targets(self, edges_per_snapshot: np.ndarray) -> list[str]:
        return []  # every node has a target in every snapshot


class NodeTask(_NodeTargets):
    """Predict every node's target of snapshot t+1 from ``H[t]``; MSE and MAE.

    Targets come from the store (``y``, per snapshot). They are standardised with the
    train split's mean and deviation for training; metrics are in the store's units.
    The current target ``y[t]`` is also a node input of snapshot t.
    """

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

    def loss(self, h_TNH, head, targets, epoch, block: Block | None = None) -> tuple[torch.Tensor, int]:
        """Squared error summed over train transitions and the nodes ``h_TNH`` holds
        (``[n0, n0 + N_r)``), and the number of terms."""
        n0 = block.n0 if block else 0
        t = torch.tensor(self.split.train, device=h_TNH.device)
        pred = head(h_TNH[t])  # [|train|, N_r, O]
        target = self.z[t + 1][:, n0 : n0 + h_TNH.shape[1]]
        return ((pred - target) ** 2).sum(), pred.numel()

    def _metrics(self, pred_TNO: torch.Tensor, split, n0: int, gather) -> dict[str, float]:
        truth = self.y[torch.tensor(split) + 1][:, n0 : n0 + pred_TNO.shape[1]]
        err = gather((pred_TNO - truth).double().cpu().numpy().reshape(-1))
        return {"mse": float((err**2).mean()), "mae": float(np.abs(err).mean())}

    @torch.no_grad()
    def evaluate(self, h_TNH, head, targets, split, block: Block | None = None, gather: Gather = local):
        """Metrics on ``split``; ``h_TNH`` holds the block's nodes."""
        n0 = block.n0 if block else 0
        t = torch.tensor(split, device=h_TNH.device)
        pred = head(h_TNH[t]) * self.std + self.mean
        return self._metrics(pred, split, n0, gather)

    @torch.no_grad()
    def reference(self, targets, split, gather: Gather = local) -> dict[str, float]:
        """Same value as last step: predict ``y[t+1] = y[t]``. Every process holds every
        node's targets, so the reference is whole here and ``gather`` is not used."""
        return self._metrics(self.y[torch.tensor(split)], split, 0, local)


MAX_CLASSES = 1024  # more distinct targets than this are counts or amounts, not classes


class NodeClassTask(_NodeTargets):
    """Predict every node's class in snapshot t+1 from ``H[t]``; accuracy and macro-F1.

    Targets are integer class ids from the store (``y``, per snapshot, ``[T, N]``), any
    ids: the classes are the distinct ones, so memory goes with their number, not with
    the largest id (:attr:`classes` maps back). The current class, one-hot, is also a
    node input of snapshot t, built one snapshot at a time.

    Raises:
        InputError: targets that are not integers >= 0, or more than :data:`MAX_CLASSES`
            distinct ones.
    """

    def __init__(self, y_TN: torch.Tensor, split: Split) -> None:
        if y_TN.dtype.is_floating_point or y_TN.dim() != 2 or bool((y_TN < 0).any()):
            raise InputError("task.targets = 'classes' needs integer class ids >= 0, one per node and snapshot")
        self.split = split
        self.classes, self.y = torch.unique(y_TN.long(), return_inverse=True)  # y: indices into classes
        self.num_classes = len(self.classes)
        if self.num_classes > MAX_CLASSES:
            raise InputError(
                f"task.targets = 'classes': {self.num_classes:,} distinct targets (up to {int(self.classes[-1]):,}) "
                f"are too many for classes (at most {MAX_CLASSES:,}); counts or amounts are task.targets = 'regression'"
            )

    @property
    def out_dim(self) -> int:
        return self.num_classes

    def features(self, t: int) -> torch.Tensor:
        return F.one_hot(self.y[t], self.num_classes)

    def loss(self, h_TNH, head, targets, epoch, block: Block | None = None) -> tuple[torch.Tensor, int]:
        """Cross-entropy summed over train transitions and the nodes ``h_TNH`` holds."""
        n0 = block.n0 if block else 0
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
    def evaluate(self, h_TNH, head, targets, split, block: Block | None = None, gather: Gather = local):
        n0 = block.n0 if block else 0
        t = torch.tensor(split, device=h_TNH.device)
        return self._metrics(head(h_TNH[t]).argmax(-1), split, n0, gather)

    @torch.no_grad()
    def reference(self, targets, split, gather: Gather = local) -> dict[str, float]:
        """Same class as last step. Every process holds every node's targets, so the
        reference is whole here and ``gather`` is not used."""
        return self._metrics(self.y[torch.tensor(split)], split, 0, local)
