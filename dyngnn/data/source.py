"""Where a run's graph comes from: a store directory, or a source file converted once and cached.

Legend: ``cfg`` the run's ``data`` section (:class:`dyngnn.config.DataConfig`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from dyngnn.config import DataConfig
from dyngnn.data.store import DeltaStore

log = logging.getLogger("dyngnn")


def open_store(cfg: DataConfig) -> DeltaStore:
    """The configured store: ``data.store``, or ``data.source`` converted once and cached.

    The cache key covers the source file's bytes and every conversion option, so a
    changed file or option makes a new store instead of reusing a stale one. A store's
    node ids are checked once here, and its checksums (``data.checksums``), so a damaged
    store stops before any training.
    """
    store, written_here = (DeltaStore.open(cfg.store), False) if cfg.store else _converted(cfg)
    if cfg.checksums and not written_here:  # a store this process just wrote is as it wrote it
        store.check_checksums()
    store.check_node_ids()
    return store


def _converted(cfg: DataConfig) -> tuple[DeltaStore, bool]:
    """``data.source`` as a store, converted on first use and cached under
    ``data.cache_dir``; whether it was converted now."""
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
        return DeltaStore.open(cached), False
    snaps, meta = load_snapshots(
        path,
        window=options["window"],
        lifetime=options["lifetime"],
        weight=options["weight"],
        undirected=cfg.undirected,
    )
    log.info("converted %s into %s (%d snapshots, %d nodes)", cfg.source, cached, snaps.num_snapshots, snaps.num_nodes)
    store = DeltaStore.from_snapshots(snaps, keyframe_every=cfg.keyframe_every, path=cached, force=True, source=meta)
    return store, True
