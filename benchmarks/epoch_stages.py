"""Where a dyngnn training epoch goes, stage by stage (one process).

On the stores of ``train_compare.py`` (``--data synthetic``: N=100k, E=1M, T=32, churn 1%;
``--data bitcoin``: weekly Bitcoin-Alpha), with its settings (link prediction, hidden 32,
at most 10,000 positives per target snapshot), after one warm-up epoch, each stage of the
training pass is timed alone, ``--reps`` times, and the best is printed:

- streaming: deltas applied, normalisation, structural features (``Inputs.prepare``);
- GCN forward, up to the training horizon, over the active node-steps where idle ones
  are many (CSR matrices built here);
- LSTM forward (dormant nodes sharing one trajectory, as in training); link scoring forward;
- backward of the whole pass (scoring, LSTM, GCN); optimizer step.

Trainer settings after ``--`` are passed on, e.g. ``-- --model.compile off``.

Run: ``.venv/bin/python benchmarks/epoch_stages.py --data bitcoin``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _util import OUT_DIR, banner, training_args, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["synthetic", "bitcoin"], default="synthetic")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default=str(OUT_DIR / "epoch_stages.json"))
    p.add_argument("settings", nargs="*", help="trainer settings, after --")
    a = p.parse_args()
    print(banner())

    from dyngnn.config import parse_cli
    from dyngnn.data.readers import load_snapshots
    from dyngnn.data.store import DeltaStore
    from dyngnn.data.synthetic import synthesize
    from dyngnn.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        if a.data == "synthetic":
            synthesize(
                store, num_nodes=100_000, num_edges=1_000_000, num_snapshots=32, churn=0.01, seed=0, keyframe_every=0
            )
        else:
            DeltaStore.from_snapshots(load_snapshots("bitcoinalpha", window="7d")[0], path=store, keyframe_every=0)
        tr = Trainer(parse_cli(training_args(store, Path(tmp) / "run", "--task.max_positives", "10000", *a.settings)))
        tr.train_epoch()
        tr.epoch += 1
        pipeline, net = tr.pipeline, tr.model
        times: dict[str, list[float]] = {}

        def timed(name, fn, *args):
            start = time.perf_counter()
            out = fn(*args)
            times.setdefault(name, []).append(time.perf_counter() - start)
            return out

        for _ in range(a.reps):
            graphs, targets = timed("streaming, normalisation, features", tr.inputs.prepare)
            graphs = graphs[: tr.split.horizon]
            net.train()
            tr.optimizer.zero_grad(set_to_none=True)
            # as the trainer's training pass in one process: the GCN's active rows, the
            # LSTM's groups, and the loss taking its rows from them
            z = timed("GCN forward", net.encode_snapshots, graphs, (0, tr.epoch), True, False)
            groups = pipeline.plan(graphs, len(graphs)) if net.shares_dormant else None
            h = timed("LSTM forward", net.temporal, z, groups, False)
            total, _ = timed("link scoring forward", tr.task.loss, h, tr.head, targets, tr.epoch, tr.block)
            timed("backward (scoring, LSTM, GCN)", total.backward)
            del z, h, total
            timed("optimizer step", tr.optimizer.step)
        best = {name: min(v) for name, v in times.items()}
        print(f"{a.data}: {len(graphs)} snapshots up to the training horizon; best of {a.reps}, seconds")
        for name, v in best.items():
            print(f"  {name:<38} {v:7.3f}")
        print(f"  {'sum':<38} {sum(best.values()):7.3f}")
        write_json(a.out, {"args": vars(a), "best_seconds": best, "all_seconds": times})


if __name__ == "__main__":
    main()
