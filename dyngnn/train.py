"""Entry point: ``dyngnn train ...`` and ``python -m dyngnn.train ...`` (also under torchrun).

Builds the config and the trainer, runs it, prints the test metrics beside the
non-learned reference. Input errors end as one line and exit status 2.
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import TYPE_CHECKING

from dyngnn.errors import InputError, SharedInputError

if TYPE_CHECKING:
    from dyngnn.config import Config

log = logging.getLogger("dyngnn")


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def run(argv: list[str]) -> int:
    """Train as configured by ``argv``; the process group, if any, is closed on the way out.

    The settings are checked before torch is imported, so that help and mistakes in
    them answer at once.
    """
    from dyngnn.config import parse_cli

    cfg = parse_cli(argv)
    import torch.distributed as dist

    try:
        return _train(cfg)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: Config) -> int:
    from dyngnn.trainer import Trainer

    trainer = Trainer(cfg)
    if not trainer.is_main:  # other ranks report warnings and errors only
        logging.getLogger("dyngnn").setLevel(logging.WARNING)
    log.info(
        "training %s prediction on %s: %d snapshots, %d nodes, device %s, transfer %s",
        cfg.task.kind,
        trainer.store.path,
        trainer.store.num_snapshots,
        trainer.store.num_nodes,
        trainer.device,
        cfg.transfer.mode,
    )
    final = trainer.fit()
    if not trainer.is_main or final.get("stopped"):
        return 0
    test = trainer.split.test
    log.info("test (transitions %d..%d -> next):  %s", test[0], test[-1], _fmt(final["test"]))
    log.info("%s reference:          %s", final["reference_name"], _fmt(final["reference"]))
    log.info("run directory: %s (metrics.jsonl, config.json, checkpoints/)", cfg.run.dir)
    return 0


def report(error: InputError) -> None:
    """The error as one line on stderr; one that every rank raises alike
    (:class:`SharedInputError`) from rank 0 only, so that a job reports it once."""
    if isinstance(error, SharedInputError):
        from dyngnn.distributed.launch import launch_env

        if (launch_env() or (0,))[0] != 0:
            return
    sys.stderr.write(f"dyngnn: error: {error}\n")


def os_error_line(error: OSError) -> InputError:
    """An operating system's refusal on a path (a full disk, a read-only or missing
    directory, no permission) as the one line that names the path."""
    where = error.filename if error.filename is not None else "dyngnn"
    hint = {errno.ENOSPC: "; free some space or write elsewhere", errno.EROFS: "; write elsewhere"}
    return InputError(f"{where}: {error.strerror or error}{hint.get(error.errno, '')}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[dyngnn] %(message)s", stream=sys.stderr)
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except InputError as e:
        report(e)
        return 2
    except OSError as e:
        report(os_error_line(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
