"""The training loop: stream snapshots, GCN per snapshot, LSTM over time, task loss.

One :class:`Trainer` owns a run: its store, stream, model, optimizer, run directory
(resolved config, ``metrics.jsonl``, checkpoints) and the epoch loop. All randomness
after the initial weights is keyed by (seed, epoch, snapshot), so a resumed run ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import resource
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dyngnn import malloc
from dyngnn.config import Config, DataConfig, signal_number
from dyngnn.data.store import DeltaStore
from dyngnn.distributed import (
    Layout,
    NodesToSnapshots,
    SnapshotsToNodes,
    balanced_ranges,
    block_ranges,
    comm_stats,
    init_distributed,
)
from dyngnn.errors import InputError, SharedInputError
from dyngnn.models.gcn_lstm import (
    GCNLSTM,
    NEVER,
    GraphInput,
    LinkDecoder,
    NodeHead,
    first_activity,
    normalize,
    structural_features,
)
from dyngnn.tasks import LinkTask, NodeClassTask, NodeTask, Split
from dyngnn.transfer import SnapshotStream

log = logging.getLogger("dyngnn")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"run.device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"run.device {name!r}: CUDA is not available on this machine")
    return device


def open_store(cfg: DataConfig) -> DeltaStore:
    """The configured store: ``data.store``, or ``data.source`` converted once and cached.

    The cache key covers the source file's bytes and every conversion option, so a
    changed file or option makes a new store instead of reusing a stale one. A store's
    node ids are checked once here, so a damaged store stops before any training.
    """
    store = DeltaStore.open(cfg.store) if cfg.store else _converted(cfg)
    store.check_node_ids()
    return store


def _converted(cfg: DataConfig) -> DeltaStore:
    """``data.source`` as a store, converted on first use and cached under ``data.cache_dir``."""
    from dyngnn import datasets
    from dyngnn.data.readers import detect_format, load_snapshots

    path = datasets.resolve(cfg.source)
    event_list = detect_format(path) == "snap"
    options = {
        "window": cfg.window if event_list else None,
        "lifetime": (cfg.lifetime or None) if event_list else None,
        "weight": cfg.weight or None,
        "undirected": cfg.undirected,
        "keyframe_every": cfg.keyframe_every,
    }
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    cached = Path(cfg.cache_dir) / f"{path.name.split('.')[0]}-{digest.hexdigest()[:16]}"
    if (cached / "manifest.json").is_file():
        return DeltaStore.open(cached)
    snaps, meta = load_snapshots(
        path,
        window=options["window"],
        lifetime=options["lifetime"],
        weight=options["weight"],
        undirected=cfg.undirected,
    )
    log.info("converted %s into %s (%d snapshots, %d nodes)", cfg.source, cached, snaps.num_snapshots, snaps.num_nodes)
    return DeltaStore.from_snapshots(snaps, keyframe_every=cfg.keyframe_every, path=cached, force=True, source=meta)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak CUDA memory allocated, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinity (a metric with nothing to measure) as None,
    so that metrics.jsonl is strict JSON (``null``)."""
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _scalars(record: dict[str, Any]) -> list[tuple[str, float]]:
    """Flatten a metrics record into TensorBoard tags (``val/auc``, ``train_loss``...)."""
    out = []
    for key, value in record.items():
        if isinstance(value, dict):
            out += [(f"{key}/{k}", float(v)) for k, v in value.items()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            out.append((key, float(value)))
    return out


class _Net(nn.Module):
    """Encoder and head as one module, so that DDP keeps both in sync.

    ``forward`` returns the states in the layout the task needs: ``[T_r, N, H]`` (my
    snapshots, all nodes) for links, ``[T, N_r, H]`` (all snapshots, my nodes) for nodes.
    """

    def __init__(self, model: GCNLSTM, head: nn.Module, link: bool, layout: Layout, rank: int, group) -> None:
        super().__init__()
        self.model, self.head = model, head
        self.link, self.layout, self.rank, self.group = link, layout, rank, group
        self._arrival: torch.Tensor | None = None

    def arrival(self, graphs: list[GraphInput]) -> torch.Tensor:
        """Each of my nodes' :func:`first_activity` over the whole sequence (``[N_r]``).

        Worked out on the first call, from every rank's snapshots: each rank takes its
        own block's, and one all-reduce (``N`` int64, once per run) takes the minimum.
        """
        if self._arrival is None:
            first = first_activity(graphs)  # positions in my block: snapshots from t0 on
            t0 = self.layout.t_ranges[self.rank][0]
            first = torch.where(first == NEVER, first, first + t0)
            if self.layout.world_size > 1:
                dist.all_reduce(first, op=dist.ReduceOp.MIN, group=self.group)
            n0, n1 = self.layout.n_ranges[self.rank]
            self._arrival = first[n0:n1]
        return self._arrival

    def forward(self, graphs: list[GraphInput], key: tuple[int, ...] = (), horizon: int | None = None) -> torch.Tensor:
        """The states; with ``horizon``, only those of snapshots before it.

        The LSTM is causal, so states before the horizon are the same either way: the
        training pass stops after the last train transition instead of running, and
        back-propagating zeros through, the validation and test snapshots. Every rank's
        block is cut at the horizon, so the all-to-alls carry only snapshots before it. A
        rank left with none encodes one snapshot and keeps none of it: its GCN still takes
        part, with zero gradients, in DDP's gradient sync.
        """
        layout = self.layout if horizon is None else self.layout.clipped(horizon)
        t0, t1 = layout.t_ranges[self.rank]
        if layout.world_size > 1:
            z = self.model.encode_snapshots(graphs[: max(1, t1 - t0)], key)[: t1 - t0]  # [T_r, N, F]
            z = SnapshotsToNodes.apply(z, layout, self.rank, self.group)  # [T, N_r, F]
        else:  # kept as the active rows where that saves work, as the states are below
            z = self.model.encode_snapshots(graphs[:t1], key, dense=False)
        # the link loss takes rows of the states: in one process, where nodes are grouped,
        # from the groups' outputs, without building [T, N, H]
        dense = horizon is None or not self.link or layout.world_size > 1
        h = self.model.temporal(z, self.arrival(graphs) if self.model.shares_dormant else None, dense)
        if self.link and layout.world_size > 1:
            h = NodesToSnapshots.apply(h, layout, self.rank, self.group)  # [T_r, N, H]
        return h


class StopRequest:
    """Set by a signal (SLURM's ``--signal`` before a time limit or preemption); read once per epoch.

    The handler only records the signal, so the epoch in flight finishes untouched and
    the checkpoint lands on an epoch boundary, where a resumed run is exact.
    """

    def __init__(self, name: str) -> None:
        self._signum = signal_number(name)
        self.name = self._signum.name.removeprefix("SIG") if self._signum else ""
        self.raised = False
        self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        log.warning("SIG%s received: stopping after this epoch, with a checkpoint", self.name)

    def __enter__(self) -> StopRequest:
        if self._signum is not None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self._signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(self._signum, self._previous)


class Trainer:
    """Trains one run described by a :class:`Config`, on one process or on every rank
    of a torchrun/SLURM job (snapshot blocks per rank, all-to-all to node blocks, DDP).

    Raises:
        InputError: a missing store, a node task on a store without targets, a run
            directory that already holds another run, an incompatible checkpoint, or a
            loss that stops being finite.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        malloc.apply(cfg.run.malloc)
        info = init_distributed(cfg.run.device)
        self.rank, self.world = info.rank, info.world_size
        self.device = resolve_device(cfg.run.device) if self.world == 1 else info.device
        if self.world > 1:
            self._check_same_config()
        self.dtype = torch.float64 if cfg.training.dtype == "float64" else torch.float32
        self.run_dir = Path(cfg.run.dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        held = (self.ckpt_dir.exists() and any(self.ckpt_dir.iterdir())) or (self.run_dir / "metrics.jsonl").exists()
        # a job restarted by its launcher (torchrun --max-restarts, a requeued SLURM job)
        # continues from its own last checkpoint
        restarted = any(
            int(os.environ.get(v, "0") or 0) > 0 for v in ("TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT")
        )
        self.restarted = restarted
        self.resume = cfg.run.resume or (restarted and self.latest_checkpoint() is not None)
        if not self.resume and held and not restarted:
            if self.latest_checkpoint() is None:
                raise InputError(
                    f"{self.run_dir}: holds a run without checkpoints (delete it, or use another --run.dir)"
                )
            raise InputError(f"{self.run_dir}: already holds a run (use --resume, or another --run.dir)")
        self.store = self._open_store_once()
        n, t = self.store.num_nodes, self.store.num_snapshots
        t_ranges = (
            balanced_ranges(self.store.num_edges, self.world)
            if cfg.data.balance == "edges"
            else block_ranges(t, self.world)
        )
        self.layout = Layout(tuple(t_ranges), tuple(block_ranges(n, self.world, "nodes")))
        (self.t0, self.t1), (self.n0, self.n1) = self.layout.t_ranges[self.rank], self.layout.n_ranges[self.rank]
        self.split = Split.by_time(t, cfg.task.val_fraction, cfg.task.test_fraction)
        self.task = self._make_task()
        self.x = self._node_features()
        self.x_dim = 0 if self.x is None else self.x.shape[-1]
        in_dim = 2 * cfg.model.structural + self.x_dim + (0 if cfg.task.kind == "link" else self.task.out_dim)
        if in_dim + cfg.model.embedding_dim == 0:
            raise InputError("the model has no inputs: set model.structural = true or model.embedding_dim > 0")
        torch.manual_seed(cfg.training.seed)
        m = cfg.model
        self.model = GCNLSTM(
            n,
            in_dim,
            m.hidden,
            m.gcn_layers,
            m.lstm_layers,
            m.activation,
            m.dropout,
            m.embedding_dim,
            m.checkpoint_every,
            m.compile,
        )
        self.head = (
            LinkDecoder(m.hidden, cfg.task.decoder)
            if cfg.task.kind == "link"
            else NodeHead(m.hidden, self.task.out_dim)
        )
        self.model.to(self.device, self.dtype)
        self.head.to(self.device, self.dtype)
        params = [*self.model.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.training.lr, weight_decay=cfg.training.weight_decay)
        self.stream = SnapshotStream(self.store, self.device, cfg.transfer.mode, self.t0, self.t1)
        group = dist.new_group() if self.world > 1 else None  # the all-to-alls, apart from DDP's all-reduces
        self.net = _Net(self.model, self.head, cfg.task.kind == "link", self.layout, self.rank, group)
        self.ddp = DistributedDataParallel(self.net) if self.world > 1 else None
        self.param_bytes = sum(p.numel() * p.element_size() for p in self.net.parameters())
        self.epoch = 0
        self._tb = None  # a TensorBoard writer, opened with the run directory
        if self.world > 1:
            dist.barrier()  # every rank has checked the run directory before rank 0 writes to it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _check_same_config(self) -> None:
        """Refuse to start when ranks were given different settings, naming the first
        setting that differs."""
        settings: list[dict | None] = [None] * self.world
        dist.all_gather_object(settings, self.cfg.to_dict())
        odd = [r for r, d in enumerate(settings) if d != settings[0]]
        if odd:
            ours, theirs = settings[0], settings[odd[0]]
            key = next(f"{s}.{k}" for s in ours for k in ours[s] if ours[s][k] != theirs[s][k])
            section, name = key.split(".")
            raise SharedInputError(
                f"ranks {odd} were started with a different config than rank 0 (first difference: {key} "
                f"{theirs[section][name]!r} on rank {odd[0]}, {ours[section][name]!r} on rank 0); start every rank alike"
            )

    def _open_store_once(self) -> DeltaStore:
        """Rank 0 opens (or converts) the store first; the others then open it too.

        Rank 0's outcome is broadcast, so a bad store stops every rank with the same
        message instead of leaving the others waiting.
        """
        store = self._on_rank0(lambda: open_store(self.cfg.data))
        return store if self.is_main else open_store(self.cfg.data)

    def _sum(self, value: float | int) -> float | int:
        """``value`` summed over ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return type(value)(t.item())

    def _any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (ranks see a signal at different times)."""
        return bool(self._sum(int(flag))) if self.world > 1 else flag

    def _gather(self, x: np.ndarray) -> np.ndarray:
        """Every rank's ``x`` concatenated in rank order."""
        if self.world == 1:
            return x
        parts: list[np.ndarray | None] = [None] * self.world
        dist.all_gather_object(parts, x)
        return np.concatenate(parts)

    def _node_features(self) -> torch.Tensor | None:
        """Stored node features, moved to the device once: ``[N, F]`` or ``[T, N, F]``.

        Their bytes count as host-to-device traffic of the first epoch (in both
        ``h2d_bytes`` and ``full_h2d_bytes``: every mode moves them once).
        """
        kind = self.store.meta.get("node_data", {}).get("x")
        self._feature_bytes = 0
        if kind is None:
            return None
        x = np.array(self.store.node_array("x"), dtype=np.float32)
        x = x.reshape(*x.shape[: 2 if kind == "snapshot" else 1], -1)
        self._feature_bytes = x.nbytes
        self._x_per_snapshot = kind == "snapshot"
        return torch.from_numpy(x).to(self.device, self.dtype)

    def _make_task(self):
        cfg = self.cfg.task
        if cfg.kind == "link":
            return LinkTask(
                self.store.num_nodes,
                self.split,
                self.cfg.training.seed,
                cfg.negatives,
                cfg.eval_negatives,
                cfg.max_positives,
                cfg.eval_max_positives,
            )
        if self.store.meta.get("node_data", {}).get("y") != "snapshot":
            where = self.store.path or "the store"
            raise InputError(f"{where}: task.kind = 'node' needs per-snapshot node targets (y), and the store has none")
        y = np.array(self.store.node_array("y"))
        if cfg.targets == "classes":
            if y.dtype.kind not in "iu":
                raise InputError(
                    f"{self.store.path}: task.targets = 'classes' needs integer targets, the store has {y.dtype}"
                )
            return NodeClassTask(torch.as_tensor(y, device=self.device), self.split)
        y = y.reshape(y.shape[0], y.shape[1], -1)
        return NodeTask(torch.as_tensor(y, dtype=self.dtype, device=self.device), self.split)

    # -- one epoch ------------------------------------------------------------

    def _prepare(self, bar: Any = None) -> tuple[list[GraphInput], dict[int, torch.Tensor]]:
        """Stream every snapshot to the device and build the GCN inputs."""
        graphs, targets = [], {}
        norm = None
        for snap in self.stream:
            ei = snap.edge_index
            if snap.changed or norm is None:
                norm = normalize(ei, snap.weight, self.store.num_nodes, self.dtype)
            parts = []
            if self.cfg.model.structural:
                parts.append(structural_features(ei, self.store.num_nodes, self.dtype))
            if self.x is not None:
                parts.append(self.x[snap.t] if self._x_per_snapshot else self.x)
            if self.cfg.task.kind == "node":
                parts.append(self.task.features(snap.t).to(self.dtype))
            x = torch.cat(parts, dim=1) if parts else None
            graphs.append(GraphInput(snap.t, norm, x))
            targets[snap.t] = snap.keys
            if bar is not None:
                bar.update(1)
        if self.cfg.task.kind == "link" and self.t1 < self.store.num_snapshots:
            targets[self.t1] = self.stream.whole(self.t1)  # the next block's first snapshot
        return graphs, targets

    def train_epoch(self, bar: Any = None) -> dict[str, Any]:
        start = time.perf_counter()
        self._last = None  # last epoch's evaluation states: not needed beside this epoch's
        self.stream.reset_counters()
        graphs, targets = self._prepare(bar)
        first = self._feature_bytes if self.epoch == 0 else 0
        comm_stats.reset()
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        h = (self.ddp or self.net)(graphs, (self.cfg.training.seed, self.epoch), self.split.horizon)
        total, count = self._task_loss(h, targets)
        # every rank divides by the global count; DDP averages over ranks, so multiplying by
        # the world size makes the gradients those of single-process training
        global_count = self._sum(count)
        loss = self._sum(float(total.detach())) / global_count
        if not np.isfinite(loss):
            self._not_finite(f"training loss is {loss}")
        (total * (self.world / global_count)).backward()
        self.optimizer.step()
        if not bool(torch.stack([p.isfinite().all() for p in self.optimizer.param_groups[0]["params"]]).all()):
            self._not_finite("the optimizer step made weights that are not finite")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_seconds = time.perf_counter() - start
        comm = comm_stats.sent_bytes
        self._last = (self._states(graphs), targets)
        return {
            "epoch": self.epoch + 1,
            "train_loss": float(loss),
            "val": self._evaluate(self.split.val),
            "epoch_seconds": time.perf_counter() - start,
            "train_seconds": train_seconds,
            "h2d_bytes": self._sum(self.stream.h2d_bytes + first),
            "full_h2d_bytes": self._sum(self.stream.full_h2d_bytes + first),
            "comm_bytes": self._sum(comm),
            # a ring all-reduce of the gradients: 2 (P - 1) / P of them sent by each rank
            "grad_sync_bytes": 2 * (self.world - 1) * self.param_bytes,
            "peak_memory_bytes": self._sum(peak_memory_bytes(self.device)),
            "world_size": self.world,
        }

    def _not_finite(self, what: str) -> None:
        last = self.latest_checkpoint()
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
        raise InputError(
            f"epoch {self.epoch + 1}: {what} (not finite); stopped, {kept}. "
            "Start again with a smaller --training.lr in another --run.dir"
        )

    def _task_loss(self, h: torch.Tensor, targets: dict[int, torch.Tensor]) -> tuple[torch.Tensor, int]:
        if self.cfg.task.kind == "link":
            return self.task.loss(h, self.head, targets, self.epoch, t0=self.t0)
        return self.task.loss(h, self.head, targets, self.epoch, n0=self.n0)

    def _states(self, graphs: list[GraphInput]) -> torch.Tensor:
        """The model's states in evaluation mode (no dropout, no gradients)."""
        self.net.eval()
        with torch.no_grad():
            return self.net(graphs)

    def _evaluate(self, split: tuple[int, ...]) -> dict[str, float]:
        h, targets = self._last
        if self.cfg.task.kind == "link":
            return self.task.evaluate(h, self.head, targets, split, t0=self.t0, gather=self._gather)
        return self.task.evaluate(h, self.head, targets, split, n0=self.n0, gather=self._gather)

    # -- checkpoints ----------------------------------------------------------

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.ckpt_dir.glob("epoch-*.pt")) if self.ckpt_dir.is_dir() else []
        return found[-1] if found else None

    def _numbers_config(self) -> dict[str, Any]:
        """Settings a checkpoint must agree with (the run section, the epoch count and the
        transfer mode, which moves the same snapshots, may differ)."""
        d = self.cfg.to_dict()
        d.pop("run")
        d.pop("transfer")
        d["training"].pop("epochs")
        return d

    def save_checkpoint(self) -> Path:
        path = self.ckpt_dir / f"epoch-{self.epoch:05d}.pt"
        if not self.is_main:  # the weights are replicated: rank 0 writes them
            dist.barrier()
            return path
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": self._numbers_config(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        tmp = path.with_suffix(".tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        finally:  # interrupted (Ctrl-C, SIGTERM): no partial file left beside the checkpoints
            tmp.unlink(missing_ok=True)
        for old in sorted(self.ckpt_dir.glob("epoch-*.pt"))[: -self.cfg.run.keep_checkpoints]:
            old.unlink()
        if self.world > 1:
            dist.barrier()
        return path

    def load_checkpoint(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
            theirs = state["config"]
        except Exception as e:
            raise InputError(f"{path}: not a readable dyngnn checkpoint ({type(e).__name__})") from None
        ours = self._numbers_config()
        if theirs != ours:
            diffs = [
                f"{s}.{k} {theirs.get(s, {}).get(k)!r} (checkpoint) vs {v!r} (now)"
                for s, sec in ours.items()
                for k, v in sec.items()
                if theirs.get(s, {}).get(k) != v
            ]
            raise InputError(f"{path}: checkpoint is incompatible with this config: {'; '.join(diffs[:3])}")
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch = int(state["epoch"])

    # -- the run --------------------------------------------------------------

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(_strict_json(record), allow_nan=False) + "\n")
        if self._tb is not None:
            for name, value in _scalars(record):
                self._tb.add_scalar(name, value, record["epoch"])
            self._tb.flush()

    def _start_run_dir(self) -> None:
        """On resume the checkpoint's state, then the run directory: the resolved config,
        and metrics cut to match the checkpoint. Every check comes first, so a refused
        start writes nothing; a check that only rank 0 makes stops every rank."""
        writer = self._on_rank0(self._tensorboard_writer)
        if self.resume:
            last = self.latest_checkpoint()
            if last is None:
                raise InputError(
                    f"{self.run_dir}: --resume, but there is no checkpoint to resume from "
                    "(start over in another --run.dir)"
                )
            self.load_checkpoint(last)
            log.info("resuming from %s (epoch %d)", last, self.epoch)
        self._on_rank0(self._write_run_dir)
        self._tb = writer(str(self.run_dir / "tb")) if writer else None

    def _tensorboard_writer(self) -> type | None:
        """TensorBoard's ``SummaryWriter`` where ``run.tensorboard`` asks for it."""
        if not self.cfg.run.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError("run.tensorboard = true needs the tensorboard package (pip install tensorboard)") from None
        return SummaryWriter

    def _write_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"run.dir {self.run_dir}: cannot create it ({e.strerror})") from None
        (self.run_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1) + "\n")
        metrics = self.run_dir / "metrics.jsonl"
        if self.restarted and not self.resume:  # killed before its first checkpoint: start over
            metrics.unlink(missing_ok=True)
        if self.resume and metrics.exists():
            keep = [
                line
                for line in metrics.read_text().splitlines()
                if line and not json.loads(line).get("final") and json.loads(line)["epoch"] <= self.epoch
            ]
            metrics.write_text("".join(f"{line}\n" for line in keep))

    def _on_rank0(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0 alone (its result there, None elsewhere); an InputError it
        raises is broadcast, so every rank stops with the same message instead of the
        others failing or waiting at their next collective."""
        if self.world == 1:
            return fn()
        result, outcome = None, [None]
        if self.is_main:
            try:
                result = fn()
            except InputError as e:
                outcome = [str(e)]
        dist.broadcast_object_list(outcome, src=0)
        if outcome[0] is not None:
            raise SharedInputError(outcome[0])
        return result

    def fit(self) -> dict[str, Any]:
        """Train to ``training.epochs`` and evaluate on the test split.

        On ``run.stop_signal`` it stops early instead, after the epoch in flight and its
        checkpoint, on every rank alike.

        Returns:
            The final record: ``test`` and ``reference`` metrics (also in metrics.jsonl);
            ``{"stopped": True, "epoch": k}`` when a signal stopped the run.
        """
        from tqdm import tqdm

        self._start_run_dir()
        cfg = self.cfg
        show = None if cfg.run.progress and self.is_main else True
        epochs = tqdm(total=cfg.training.epochs, initial=self.epoch, desc="[dyngnn] epochs", disable=show)
        snaps = tqdm(total=len(self.stream), desc="[dyngnn] snapshots", leave=False, disable=show)
        record: dict[str, Any] = {}
        with StopRequest(cfg.run.stop_signal) as stop:
            while self.epoch < cfg.training.epochs:
                snaps.reset()
                record = self.train_epoch(snaps)
                self.epoch += 1
                stopping = self._any(stop.raised) and self.epoch < cfg.training.epochs
                if stopping or self.epoch % cfg.run.checkpoint_every == 0 or self.epoch == cfg.training.epochs:
                    self.save_checkpoint()
                self._write_metrics(record)
                postfix = {k: f"{v:.4f}" for k, v in record["val"].items()}
                epochs.set_postfix(loss=f"{record['train_loss']:.4f}", **postfix)
                epochs.update(1)
                if epochs.disable and self.is_main:  # no bar (a log file, say): one line per epoch
                    log.info(
                        "epoch %d/%d: loss %.4f, val %s, %.2f s",
                        self.epoch,
                        cfg.training.epochs,
                        record["train_loss"],
                        " ".join(f"{k} {v}" for k, v in postfix.items()),
                        record["epoch_seconds"],
                    )
                if stopping:
                    snaps.close()
                    epochs.close()
                    log.warning(
                        "stopped by SIG%s after epoch %d of %d; checkpoint %s. Resume with --resume "
                        "(a requeued SLURM job resumes by itself)",
                        stop.name,
                        self.epoch,
                        cfg.training.epochs,
                        self.latest_checkpoint(),
                    )
                    return {"stopped": True, "epoch": self.epoch}
        snaps.close()
        epochs.close()
        if not record:  # resumed a finished run: evaluate its weights
            record = self.train_epoch_free_eval()
        _, targets = self._last
        final = {
            "final": True,
            "epoch": self.epoch,
            "test": self._evaluate(self.split.test),
            "reference": self.task.reference(targets, self.split.test, gather=self._gather),
            "val": self._evaluate(self.split.val),
            "reference_name": {"link": "persistence", "node": "last value"}[cfg.task.kind],
            "world_size": self.world,
        }
        self._write_metrics(final)
        if self._tb is not None:
            self._tb.close()
        return final

    def train_epoch_free_eval(self) -> dict[str, Any]:
        """Evaluate the current weights without a training step (a run already at its end)."""
        self.stream.reset_counters()
        graphs, targets = self._prepare()
        self._last = (self._states(graphs), targets)
        return {"epoch": self.epoch}
