"""Multi-rank training gives the numbers of single-process training (gloo, CPU processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dyngnn.config import parse_cli
from dyngnn.data.snapshots import Snapshots
from dyngnn.data.store import DeltaStore
from dyngnn.distributed import Layout, all_to_all_bytes, block_ranges
from dyngnn.models.inputs import NEVER
from dyngnn.models.lstm import DormantGroups
from dyngnn.trainer import Trainer

T, N = 13, 23  # divisible by none of the world sizes


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(5)
    keys, weights = [], []
    cur = np.unique(rng.integers(0, N * N, 60))
    for _ in range(T):
        cur = np.union1d(cur[rng.random(len(cur)) > 0.2], rng.integers(0, N * N, 12))
        keys.append(cur)
        weights.append(rng.random(len(cur)).astype(np.float32) + 0.5)
    y = np.cumsum(rng.random((T, N)), axis=0)
    path = tmp_path_factory.mktemp("store") / "s"
    DeltaStore.from_snapshots(
        Snapshots(N, np.arange(N), keys, weights, y=y, y_per_snapshot=True), path=path, keyframe_every=4
    )
    return path


@pytest.fixture(scope="module")
def settings(train_args):
    """``settings(store, run_dir, kind)``: the runs every rank count is compared on, in float64."""

    def make(store, run_dir, kind):
        extra = ["--task.kind", kind, "--model.dropout", "0.2", "--training.dtype", "float64"]
        return train_args(store, run_dir, *extra, "--transfer.mode", "delta", "--task.negatives", "2", hidden=6)

    return make


@pytest.fixture(scope="module")
def single(settings, store, tmp_path_factory):
    runs = {}
    for kind in ("link", "node"):
        run_dir = tmp_path_factory.mktemp(f"single-{kind}")
        Trainer(parse_cli(settings(store, run_dir, kind))).fit()
        runs[kind] = run_dir
    return runs


@pytest.mark.parametrize("kind", ["link", "node"])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_reproduce_single_process_training(settings, ranks, runs, store, single, tmp_path, kind, world):
    procs = ranks(world, ["-m", "dyngnn.train", *settings(store, tmp_path / "run", kind)])
    for p in procs:
        assert p.returncode == 0, "\n".join(q.stderr[-3000:] for q in procs)
    ours, ref = runs.metrics(tmp_path / "run"), runs.metrics(single[kind])
    assert [m["world_size"] for m in ours] == [world] * 4
    np.testing.assert_allclose([m["train_loss"] for m in ours[:-1]], [m["train_loss"] for m in ref[:-1]], rtol=1e-9)
    for split in ("val", "test"):
        for key, value in ref[-1][split].items():
            np.testing.assert_allclose(ours[-1][split][key], value, rtol=1e-9, err_msg=f"{split}.{key}")
    for key, value in ref[-1]["reference"].items():
        np.testing.assert_allclose(ours[-1]["reference"][key], value, rtol=1e-12)
    runs.assert_same_weights(tmp_path / "run", single[kind])
    # measured all-to-all bytes equal the formula: Z forward and backward (hidden 6, float64),
    # and for links the states' trip back to snapshot blocks, forward and backward again.
    # Training carries snapshots before the horizon only: of 12 transitions, 2 are for
    # validation and 2 for test, so snapshots 0..7
    layout = Layout(tuple(block_ranges(T, world)), tuple(block_ranges(N, world, "nodes"))).clipped(8)
    one_way = all_to_all_bytes(layout.t_ranges, layout.n_ranges, 6, 8)
    trips = 4 if kind == "link" else 2
    assert [m["comm_bytes"] for m in ours[:-1]] == [trips * one_way] * 3
    assert (one_way > 0) == (world > 1)


@pytest.mark.parametrize("kind", ["link", "node"])
def test_edge_balanced_blocks_and_checkpointed_gcn_reproduce_single_process_training(
    settings, ranks, runs, store, single, tmp_path, kind
):
    """Other layouts and the recomputed GCN stage change no number: 3 ranks with blocks
    balanced by edges (the last one past the horizon) and activation checkpointing."""
    extra = ["--data.balance", "edges", "--model.checkpoint_every", "2"]
    procs = ranks(3, ["-m", "dyngnn.train", *settings(store, tmp_path / "run", kind), *extra])
    for p in procs:
        assert p.returncode == 0, "\n".join(q.stderr[-3000:] for q in procs)
    ours, ref = runs.metrics(tmp_path / "run"), runs.metrics(single[kind])
    np.testing.assert_allclose([m["train_loss"] for m in ours[:-1]], [m["train_loss"] for m in ref[:-1]], rtol=1e-9)
    for key, value in ref[-1]["test"].items():
        np.testing.assert_allclose(ours[-1]["test"][key], value, rtol=1e-9, err_msg=key)
    runs.assert_same_weights(tmp_path / "run", single[kind])


def test_more_ranks_than_snapshots_is_refused_before_any_work(settings, ranks, tmp_path):
    short = Snapshots(5, np.arange(5), [np.array([1, 2]), np.array([2, 3])])
    DeltaStore.from_snapshots(short, path=tmp_path / "s")
    procs = ranks(3, ["-m", "dyngnn.train", *settings(tmp_path / "s", tmp_path / "run", "link")])
    assert_once_per_job(procs, "2 snapshots cannot be split over 3 ranks")
    assert not (tmp_path / "run").exists()


def assert_once_per_job(procs, message):
    """Every rank exits with status 2; rank 0 alone prints the one error line."""
    for rank, p in enumerate(procs):
        assert p.returncode == 2, p.stderr[-2000:]
        errors = [line for line in p.stderr.splitlines() if line.startswith("dyngnn: error:")]
        assert "Traceback" not in p.stderr, p.stderr[-2000:]
        if rank == 0:
            assert len(errors) == 1 and message in errors[0], p.stderr[-2000:]
        else:
            assert errors == [], p.stderr[-2000:]


def test_ranks_with_different_configs_are_refused(settings, ranks, store, tmp_path):
    procs = ranks(
        2, ["-m", "dyngnn.train", *settings(store, tmp_path / "run", "link")], extra={1: ["--model.hidden", "7"]}
    )
    assert_once_per_job(
        procs,
        "ranks [1] were started with a different config than rank 0 "
        "(first difference: model.hidden 7 on rank 1, 6 on rank 0)",
    )
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_resume_on_another_number_of_ranks(settings, ranks, runs, store, single, tmp_path):
    run = tmp_path / "run"
    first = settings(store, run, "link")
    first[first.index("--training.epochs") + 1] = "2"
    assert all(p.returncode == 0 for p in ranks(2, ["-m", "dyngnn.train", *first]))
    for p in ranks(3, ["-m", "dyngnn.train", *settings(store, run, "link"), "--resume"]):
        assert p.returncode == 0, p.stderr[-3000:]
    ours, ref = runs.metrics(run), runs.metrics(single["link"])
    assert [m["world_size"] for m in ours] == [2, 2, 3, 3]
    np.testing.assert_allclose([m["train_loss"] for m in ours[:-1]], [m["train_loss"] for m in ref[:-1]], rtol=1e-9)
    runs.assert_same_weights(run, single["link"])


@pytest.fixture(scope="module")
def long_run(settings, tmp_path_factory):
    """A store on which ten epochs take long enough to interrupt, and its single-process run."""
    tmp = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(7)
    n, t = 2000, 60
    keys = [np.unique(rng.integers(0, n * n, 6000)) for _ in range(t)]
    DeltaStore.from_snapshots(Snapshots(n, np.arange(n), keys), path=tmp / "s")
    args = settings(tmp / "s", tmp / "single", "link")
    args[args.index("--training.epochs") + 1] = "10"
    args[args.index("--model.hidden") + 1] = "16"
    Trainer(parse_cli(args)).fit()
    return args, tmp / "single"


def with_run_dir(args, run_dir):
    args = list(args)
    args[args.index("--run.dir") + 1] = str(run_dir)
    return args


def test_a_rank_killed_mid_run_restarts_from_its_checkpoint(free_port, runs, long_run, tmp_path):
    """torchrun --max-restarts=1; SIGKILL one rank after two epochs; same final weights."""
    import signal
    import time

    args, single_dir = long_run
    args = with_run_dir(args, tmp_path / "run")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            "--max-restarts",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{free_port()}",
            "-m",
            "dyngnn.train",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    metrics_file = tmp_path / "run" / "metrics.jsonl"
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        done = len(metrics_file.read_text().splitlines()) if metrics_file.exists() else 0
        if done >= 2:
            ps = subprocess.run(["pgrep", "-f", "-P", str(job.pid), "dyngnn.train"], capture_output=True, text=True)
            workers = [int(p) for p in ps.stdout.split()]
            if workers:
                killed = max(workers)
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    _, err = job.communicate(timeout=300)
    assert killed is not None, "the run ended before a rank could be killed"
    assert job.returncode == 0, err[-3000:]
    lines = runs.metrics(tmp_path / "run")
    assert [m.get("epoch") for m in lines] == [*range(1, 11), 10]
    runs.assert_same_weights(tmp_path / "run", single_dir)


def test_a_stop_signal_to_one_rank_stops_every_rank_at_an_epoch_boundary(ranks, runs, long_run, tmp_path):
    """SIGUSR1 to rank 1 only: both ranks checkpoint the same epoch and exit 0; --resume ends exact."""
    import signal
    import time

    args, single_dir = long_run
    args = with_run_dir(args, tmp_path / "run")
    procs = ranks.start(2, ["-m", "dyngnn.train", *args])
    metrics_file = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and procs[1].poll() is None:
        if metrics_file.exists() and metrics_file.read_text().count("\n") >= 1:
            procs[1].send_signal(signal.SIGUSR1)
            break
        time.sleep(0.02)
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    stopped = [m["epoch"] for m in runs.metrics(tmp_path / "run")]
    assert stopped and stopped[-1] < 10 and stopped == list(range(1, len(stopped) + 1)), stopped
    assert "SIGUSR1 received" in errs[1] and f"stopped by SIGUSR1 after epoch {stopped[-1]} of 10" in errs[0]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())[-1] == f"epoch-{stopped[-1]:05d}.pt"

    resumed = subprocess.run([sys.executable, "-m", "dyngnn.train", *args, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [m.get("epoch") for m in runs.metrics(tmp_path / "run")] == [*range(1, 11), 10]
    runs.assert_same_weights(tmp_path / "run", single_dir)


def test_a_bad_store_stops_every_rank(settings, ranks, tmp_path):
    procs = ranks(2, ["-m", "dyngnn.train", *settings(tmp_path / "missing", tmp_path / "run", "link")])
    assert_once_per_job(procs, f"{tmp_path / 'missing'}: no such store directory")


@pytest.fixture(scope="module")
def arriving(tmp_path_factory):
    """1,100 of 2,000 nodes (in random order) get their first edges over 12 snapshots, 100
    a step from t = 1; 900 never do. With no dropout, dormant nodes share one LSTM
    trajectory."""
    rng = np.random.default_rng(11)
    n, t = 2000, 12
    order, keys = rng.permutation(n), []
    for step in range(t):
        live = order[: max(2, 100 * step)]
        src, dst = rng.choice(live, 2 * len(live)), rng.choice(live, 2 * len(live))
        keys.append(np.unique(src * n + dst))
    path = tmp_path_factory.mktemp("arriving") / "s"
    DeltaStore.from_snapshots(Snapshots(n, np.arange(n), keys), path=path)
    return path


@pytest.fixture(scope="module")
def no_dropout(settings):
    def make(store, run_dir):
        args = settings(store, run_dir, "link")
        args[args.index("--model.dropout") + 1] = "0"
        return args

    return make


def test_shared_dormant_trajectories_give_the_numbers_of_every_node_run_on_any_ranks(
    no_dropout, ranks, runs, arriving, tmp_path, monkeypatch
):
    # every rank's nodes take the shared path, in the training pass (to the horizon) and in evaluation
    store = DeltaStore.open(arriving)
    first = np.full(store.num_nodes, NEVER)
    for t in reversed(range(store.num_snapshots)):
        first[np.unique(store.snapshot(t)[0].numpy())] = t
    for world in (1, 3):
        for n0, n1 in block_ranges(store.num_nodes, world, "nodes"):
            for steps in (8, 12):
                assert DormantGroups.plan(torch.as_tensor(first[n0:n1]), steps) is not None
    shared = Trainer(parse_cli(no_dropout(arriving, tmp_path / "shared")))
    shared.fit()
    graphs, targets = shared.inputs.prepare()
    h_shared = shared.evaluate(graphs, targets).states
    assert shared.pipeline.plan(graphs, 12) is not None  # the plan the passes above took
    monkeypatch.setattr(DormantGroups, "WORTH", 0.0)  # no plan is worth it: every node runs
    every = Trainer(parse_cli(no_dropout(arriving, tmp_path / "every")))
    every.fit()
    graphs, targets = every.inputs.prepare()
    assert every.pipeline.plan(graphs, 12) is None
    torch.testing.assert_close(h_shared, every.evaluate(graphs, targets).states, rtol=1e-9, atol=1e-12)
    procs = ranks(3, ["-m", "dyngnn.train", *no_dropout(arriving, tmp_path / "ranks")])
    assert all(p.returncode == 0 for p in procs), "\n".join(p.stderr[-3000:] for p in procs)
    ref = runs.metrics(tmp_path / "every")
    for run in ("shared", "ranks"):
        ours = runs.metrics(tmp_path / run)
        np.testing.assert_allclose([m["train_loss"] for m in ours[:-1]], [m["train_loss"] for m in ref[:-1]], rtol=1e-9)
        runs.assert_same_weights(tmp_path / run, tmp_path / "every")
        # rank metrics to 1e-6: nodes with equal neighbourhoods (one out-edge, say) have
        # equal states up to rounding, which may order such a tie differently
        for key, value in ref[-1]["test"].items():
            np.testing.assert_allclose(ours[-1]["test"][key], value, rtol=1e-6, err_msg=f"{run}: {key}")


def test_a_rank_whose_nodes_all_stay_dormant_trains_with_the_others(no_dropout, ranks, runs, tmp_path):
    """Nodes 20-39 (rank 1's block of 2) get their first edges in the test period: that
    rank's LSTM takes no input, yet its all-to-all backward runs with the others'."""
    rng = np.random.default_rng(3)
    n, t = 40, 10
    keys = []
    for step in range(t):
        live = np.arange(40 if step >= 8 else 20)
        keys.append(np.unique(rng.choice(live, 30) * n + rng.choice(live, 30)))
    DeltaStore.from_snapshots(Snapshots(n, np.arange(n), keys), path=tmp_path / "s")
    Trainer(parse_cli(no_dropout(tmp_path / "s", tmp_path / "single"))).fit()
    procs = ranks(2, ["-m", "dyngnn.train", *no_dropout(tmp_path / "s", tmp_path / "run")])
    assert all(p.returncode == 0 for p in procs), "\n".join(p.stderr[-3000:] for p in procs)
    ours, ref = runs.metrics(tmp_path / "run"), runs.metrics(tmp_path / "single")
    np.testing.assert_allclose([m["train_loss"] for m in ours[:-1]], [m["train_loss"] for m in ref[:-1]], rtol=1e-9)
    runs.assert_same_weights(tmp_path / "run", tmp_path / "single")


@pytest.mark.parametrize("entry", [["dyngnn.train"], ["dyngnn.cli", "train"]])
def test_a_check_only_rank_0_makes_stops_every_rank_with_one_line(settings, ranks, store, tmp_path, entry):
    (tmp_path / "file").write_text("x")
    procs = ranks(2, ["-m", *entry, *settings(store, tmp_path / "file" / "run", "link")])
    assert_once_per_job(procs, f"run.dir {tmp_path / 'file' / 'run'}: cannot create it")
