"""The training loop: it builds a run's components and runs its epochs.

One :class:`Trainer` owns a run. Its components each own one job: the store
(:mod:`dyngnn.data.source`), the rank's snapshot stream and GCN inputs and the pass over
them (:mod:`dyngnn.pipeline`), the task (:mod:`dyngnn.tasks`), the run directory
(:mod:`dyngnn.run_dir`), checkpoints (:mod:`dyngnn.checkpoint`) and the host-side
collectives (:class:`~dyngnn.distributed.Ranks`). All randomness after the initial
weights is keyed by (seed, epoch, snapshot), so a resumed run ends with the same weights
as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from dyngnn import malloc, threads
from dyngnn.checkpoint import StopRequest, capture, numbers_settings, restore
from dyngnn.config import Config, ignored_settings
from dyngnn.data.readers import detect_format
from dyngnn.data.source import open_store
from dyngnn.distributed import Layout, Ranks, comm_stats, init_distributed, restart_attempt
from dyngnn.errors import InputError
from dyngnn.models.encoder import GCNLSTM
from dyngnn.models.inputs import GraphInput
from dyngnn.pipeline import Inputs, Pipeline
from dyngnn.run_dir import RunDir, peak_memory_bytes, tensorboard_writer
from dyngnn.tasks import Evaluation, Split, build_task
from dyngnn.transfer import SnapshotStream

log = logging.getLogger("dyngnn")


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
        self.rank, self.world, self.device = info.rank, info.world_size, info.device
        self.ranks = Ranks(self.rank, self.world)
        self.ranks.check_same(cfg.to_dict())
        self.dtype = torch.float64 if cfg.training.dtype == "float64" else torch.float32
        self.run_dir = RunDir(cfg.run.dir, cfg.run.keep_checkpoints)
        self.checkpoints = self.run_dir.checkpoints
        # a job restarted by its launcher (torchrun --max-restarts, a requeued SLURM job)
        # continues from its own last checkpoint, or starts over without one
        self.restarted = any(restart_attempt())
        self.resume = cfg.run.resume or (self.restarted and self.checkpoints.latest() is not None)
        if not self.resume and not self.restarted:
            self.run_dir.check_unused()
        json_source = not cfg.data.store and detect_format(Path(cfg.data.source)) == "pygt-json"
        for warning in ignored_settings(cfg, json_source) if self.is_main else ():
            log.warning("%s", warning)
        # rank 0 opens (or converts) the store first, and a bad store stops every rank alike
        store = self.ranks.on_rank0(lambda: open_store(cfg.data))
        self.store = store if self.ranks.is_main else open_store(cfg.data)
        self.layout = Layout.split(self.store.num_nodes, self.store.num_edges, self.world, cfg.data.balance)
        self.block = self.layout.block(self.rank)
        self.split = Split.by_time(self.store.num_snapshots, cfg.task.val_fraction, cfg.task.test_fraction)
        self.task = build_task(cfg.task, self.store, self.split, cfg.training.seed, self.device, self.dtype)
        for warning in self.task.check_targets(self.store.num_edges) if self.is_main else ():
            log.warning("%s", warning)
        self.stream = SnapshotStream(self.store, self.device, cfg.transfer.mode, self.block.t0, self.block.t1)
        self.inputs = Inputs(self.store, self.stream, self.task, cfg.model.structural, self.dtype)
        m = cfg.model
        if self.inputs.in_dim + m.embedding_dim == 0:
            raise InputError("the model has no inputs: set model.structural = true or model.embedding_dim > 0")
        torch.manual_seed(cfg.training.seed)
        self.model = GCNLSTM(
            self.store.num_nodes,
            self.inputs.in_dim,
            hidden=m.hidden,
            gcn_layers=m.gcn_layers,
            lstm_layers=m.lstm_layers,
            activation=m.activation,
            dropout=m.dropout,
            embedding_dim=m.embedding_dim,
            checkpoint_every=m.checkpoint_every,
            compile=m.compile,
        )
        self.head = self.task.head(m.hidden)
        self.model.to(self.device, self.dtype)
        self.head.to(self.device, self.dtype)
        params = [*self.model.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.training.lr, weight_decay=cfg.training.weight_decay)
        group = dist.new_group() if self.world > 1 else None  # the all-to-alls, apart from DDP's all-reduces
        self.pipeline = Pipeline(self.model, self.head, self.layout, self.rank, group, self.task.by_snapshot)
        self.ddp = DistributedDataParallel(self.pipeline) if self.world > 1 else None
        self.param_bytes = sum(p.numel() * p.element_size() for p in self.pipeline.parameters())
        self.epoch = 0
        self.ranks.barrier()  # every rank has checked the run directory before rank 0 writes to it

    @property
    def is_main(self) -> bool:
        return self.ranks.is_main

    # -- one epoch ------------------------------------------------------------

    def train_step(self, graphs: list[GraphInput], targets: dict[int, torch.Tensor]) -> float:
        """One optimizer step on the training pass; the loss over every rank.

        Every rank divides its loss by the global count, and DDP averages over ranks, so
        the loss is scaled by the world size: the gradients are those of single-process
        training.
        """
        self.pipeline.train()
        self.optimizer.zero_grad(set_to_none=True)
        h = (self.ddp or self.pipeline)(graphs, (self.cfg.training.seed, self.epoch), self.split.horizon)
        total, count = self.task.loss(h, self.head, targets, self.epoch, self.block)
        global_count = self.ranks.sum(count)
        loss = self.ranks.sum(float(total.detach())) / global_count
        if not math.isfinite(loss):
            self._not_finite(f"training loss is {loss}")
        (total * (self.world / global_count)).backward()
        self.optimizer.step()
        if not bool(torch.stack([p.isfinite().all() for p in self.optimizer.param_groups[0]["params"]]).all()):
            self._not_finite("the optimizer step made weights that are not finite")
        return loss

    def evaluate(self, graphs: list[GraphInput], targets: dict[int, torch.Tensor]) -> Evaluation:
        """The current weights' states on every snapshot, ready to score."""
        states = self.pipeline.evaluation_states(graphs)
        return Evaluation(self.task, self.head, states, targets, self.block, self.ranks.gather)

    def train_epoch(self, bar: Any = None) -> tuple[dict[str, Any], Evaluation]:
        """Stream, train one step, evaluate. Returns the epoch's metrics record (its
        ``val`` included) and the evaluation it was scored on."""
        start = time.perf_counter()
        threads.fit_to_load()
        self.stream.reset_counters()
        graphs, targets = self.inputs.prepare(bar)
        first = self.inputs.feature_bytes if self.epoch == 0 else 0
        comm_stats.reset()
        loss = self.train_step(graphs, targets)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_seconds = time.perf_counter() - start
        comm = comm_stats.sent_bytes
        evaluation = self.evaluate(graphs, targets)
        record = {
            "epoch": self.epoch + 1,
            "train_loss": float(loss),
            "val": evaluation.metrics(self.split.val),
            "epoch_seconds": time.perf_counter() - start,
            "train_seconds": train_seconds,
            "h2d_bytes": self.ranks.sum(self.stream.h2d_bytes + first),
            "full_h2d_bytes": self.ranks.sum(self.stream.full_h2d_bytes + first),
            "comm_bytes": self.ranks.sum(comm),
            # a ring all-reduce of the gradients: 2 (P - 1) / P of them sent by each rank
            "grad_sync_bytes": 2 * (self.world - 1) * self.param_bytes,
            "peak_memory_bytes": self.ranks.sum(peak_memory_bytes(self.device)),
            "world_size": self.world,
        }
        return record, evaluation

    def _not_finite(self, what: str) -> None:
        last = self.checkpoints.latest()
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
        raise InputError(
            f"epoch {self.epoch + 1}: {what} (not finite); stopped, {kept}. "
            "Start again with a smaller --training.lr in another --run.dir"
        )

    # -- checkpoints ----------------------------------------------------------

    def _modules(self) -> dict[str, Any]:
        return {"model": self.model, "head": self.head, "optimizer": self.optimizer}

    def save_checkpoint(self) -> None:
        """The weights are replicated: rank 0 writes them while the others wait, and a
        write that fails (a full disk) stops every rank alike."""
        settings = numbers_settings(self.cfg.to_dict())
        self.ranks.on_rank0(lambda: self.checkpoints.save(self.epoch, capture(self.epoch, self._modules(), settings)))

    def load_checkpoint(self) -> Path:
        """Restore the newest readable checkpoint; its path. One that cannot be read (cut
        short by a kill or a full disk) is passed over for the one before, with a warning.

        Raises:
            InputError: no readable checkpoint, one of other settings, or one past
                ``training.epochs``.
        """
        path, state, skipped = self.checkpoints.load_newest(numbers_settings(self.cfg.to_dict()), self.device)
        for error in skipped if self.is_main else ():
            log.warning("%s; resuming from an earlier checkpoint", error)
        epoch, wanted = int(state["epoch"]), self.cfg.training.epochs
        if epoch > wanted:
            raise InputError(
                f"{path}: the run is at epoch {epoch}, past --training.epochs {wanted}; "
                f"resume with --training.epochs {epoch} or more (or start over in another --run.dir)"
            )
        self.epoch = restore(state, self._modules())
        return path

    # -- the run --------------------------------------------------------------

    def _start(self) -> None:
        """On resume the checkpoint's state, then the run directory. Every check comes
        first, so a refused start writes nothing; a check that only rank 0 makes stops
        every rank."""
        writer = self.ranks.on_rank0(lambda: tensorboard_writer(self.cfg.run.tensorboard))
        if self.resume:
            last = self.load_checkpoint()
            log.info("resuming from %s (epoch %d)", last, self.epoch)
        kept = self.epoch if self.resume else None  # a restarted run without a checkpoint starts over
        fresh = not self.resume and not self.restarted
        self.ranks.on_rank0(lambda: self.run_dir.start(self.cfg.to_dict(), kept, writer, fresh))

    def _write(self, record: dict[str, Any]) -> None:
        if self.is_main:
            self.run_dir.write(record)

    def fit(self) -> dict[str, Any]:
        """Train to ``training.epochs`` and evaluate on the test split.

        On ``run.stop_signal`` it stops early instead, after the epoch in flight and its
        checkpoint, on every rank alike.

        Returns:
            The final record: ``test`` and ``reference`` metrics (also in metrics.jsonl);
            ``{"stopped": True, "epoch": k}`` when a signal stopped the run.
        """
        try:
            return self._fit()
        finally:  # however the run ends, TensorBoard is closed and the run directory let go
            if self.is_main:
                self.run_dir.close()

    def _fit(self) -> dict[str, Any]:
        from tqdm import tqdm

        self._start()
        cfg, epochs_total = self.cfg, self.cfg.training.epochs
        hide = None if cfg.run.progress and self.is_main else True
        epochs = tqdm(total=epochs_total, initial=self.epoch, desc="[dyngnn] epochs", disable=hide)
        snaps = tqdm(total=len(self.stream), desc="[dyngnn] snapshots", leave=False, disable=hide)
        evaluation = None
        with StopRequest(cfg.run.stop_signal) as stop:
            while self.epoch < epochs_total:
                snaps.reset()
                evaluation = None  # the last epoch's states: not needed beside this epoch's
                record, evaluation = self.train_epoch(snaps)
                self.epoch += 1
                stopping = self.ranks.any(stop.raised) and self.epoch < epochs_total
                if stopping or self.epoch % cfg.run.checkpoint_every == 0 or self.epoch == epochs_total:
                    self.save_checkpoint()
                self._write(record)
                postfix = {k: f"{v:.4f}" for k, v in record["val"].items()}
                epochs.set_postfix(loss=f"{record['train_loss']:.4f}", **postfix)
                epochs.update(1)
                if epochs.disable and self.is_main:  # no bar (a log file, say): one line per epoch
                    val = " ".join(f"{k} {v}" for k, v in postfix.items())
                    loss, seconds = record["train_loss"], record["epoch_seconds"]
                    log.info("epoch %d/%d: loss %.4f, val %s, %.2f s", self.epoch, epochs_total, loss, val, seconds)
                if stopping:
                    snaps.close()
                    epochs.close()
                    log.warning(
                        "stopped by SIG%s after epoch %d of %d; checkpoint %s. Resume with --resume "
                        "(a requeued SLURM job resumes by itself)",
                        stop.name,
                        self.epoch,
                        epochs_total,
                        self.checkpoints.latest(),
                    )
                    return {"stopped": True, "epoch": self.epoch}
        snaps.close()
        epochs.close()
        if evaluation is None:  # resumed a finished run: evaluate its weights
            self.stream.reset_counters()
            evaluation = self.evaluate(*self.inputs.prepare())
        final = {
            "final": True,
            "epoch": self.epoch,
            "test": evaluation.metrics(self.split.test),
            "reference": evaluation.reference(self.split.test),
            "val": evaluation.metrics(self.split.val),
            "reference_name": self.task.reference_name,
            "world_size": self.world,
        }
        self._write(final)
        return final
