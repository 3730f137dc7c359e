"""Tasks on top of the encoder: link prediction, node regression and classification,
behind one :class:`Task` protocol; their metrics and non-learned references."""

from __future__ import annotations

import numpy as np
import torch

from dyngnn.config import TaskConfig
from dyngnn.data.store import DeltaStore
from dyngnn.errors import InputError
from dyngnn.tasks.base import Evaluation, Split, Task, local
from dyngnn.tasks.link import EVAL_KEY, LinkTask
from dyngnn.tasks.metrics import auc, average_precision, macro_f1, mrr
from dyngnn.tasks.node import NodeClassTask, NodeTask

__all__ = [
    "EVAL_KEY",
    "Evaluation",
    "LinkTask",
    "NodeClassTask",
    "NodeTask",
    "Split",
    "Task",
    "auc",
    "average_precision",
    "build_task",
    "local",
    "macro_f1",
    "mrr",
]


def build_task(
    cfg: TaskConfig, store: DeltaStore, split: Split, seed: int, device: torch.device, dtype: torch.dtype
) -> Task:
    """The task ``cfg`` describes on ``store``; node targets are read from the store and
    moved to ``device`` once.

    Raises:
        InputError: a node task on a store without per-snapshot targets, or classes
            asked of targets that are not integers.
    """
    if cfg.kind == "link":
        return LinkTask(
            store.num_nodes,
            split,
            seed=seed,
            negatives=cfg.negatives,
            eval_negatives=cfg.eval_negatives,
            max_positives=cfg.max_positives,
            eval_max_positives=cfg.eval_max_positives,
            decoder=cfg.decoder,
        )
    if store.meta.get("node_data", {}).get("y") != "snapshot":
        where = store.path or "the store"
        raise InputError(f"{where}: task.kind = 'node' needs per-snapshot node targets (y), and the store has none")
    y = np.array(store.node_array("y"))
    if cfg.targets == "classes":
        if y.dtype.kind not in "iu":
            raise InputError(f"{store.path}: task.targets = 'classes' needs integer targets, the store has {y.dtype}")
        return NodeClassTask(torch.as_tensor(y, device=device), split)
    y = y.reshape(y.shape[0], y.shape[1], -1)
    return NodeTask(torch.as_tensor(y, dtype=dtype, device=device), split)
