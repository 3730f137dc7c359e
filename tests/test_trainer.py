"""The trainer end to end on tiny stores: metrics, transfer modes, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dyngnn.config import parse_cli
from dyngnn.data.snapshots import Snapshots
from dyngnn.data.store import DeltaStore
from dyngnn.data.synthetic import synthesize
from dyngnn.errors import InputError
from dyngnn.trainer import Trainer

EPOCH_KEYS = {
    "epoch",
    "train_loss",
    "val",
    "epoch_seconds",
    "h2d_bytes",
    "full_h2d_bytes",
    "comm_bytes",
    "grad_sync_bytes",
    "peak_memory_bytes",
    "world_size",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "store"
    synthesize(path, num_nodes=60, num_edges=150, num_snapshots=12, churn=0.1, seed=1, keyframe_every=5)
    return path


def read_metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_cli_defaults_run_end_to_end(cli, tiny, tmp_path):
    r = cli("train", "--data.store", tiny, "--run.dir", tmp_path / "run", "--training.epochs", "2")
    assert r.code == 0, r.err
    lines = read_metrics(tmp_path / "run")
    assert [line.get("epoch") for line in lines] == [1, 2, 2]
    for line in lines[:2]:
        assert line.keys() >= EPOCH_KEYS and set(line["val"]) == {"auc", "ap", "mrr"}
        assert line["world_size"] == 1 and line["h2d_bytes"] <= line["full_h2d_bytes"]
    assert lines[2]["final"] is True and set(lines[2]["test"]) == {"auc", "ap", "mrr"}
    assert set(lines[2]["reference"]) == {"auc", "ap", "mrr"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["hidden"] == 32
    assert len(list((tmp_path / "run" / "checkpoints").glob("epoch-*.pt"))) == 2
    assert "persistence reference" in r.err and "test" in r.err
    assert "epoch 1/2: loss" in r.err and "epoch 2/2: loss" in r.err  # no bar on a pipe: a line per epoch


def test_transfer_modes_give_identical_losses(train_args, tiny, tmp_path):
    runs = {}
    for mode in ("full", "delta", "resident"):
        Trainer(parse_cli(train_args(tiny, tmp_path / mode, "--transfer.mode", mode))).fit()
        runs[mode] = read_metrics(tmp_path / mode)
    losses = {m: [r["train_loss"] for r in lines[:-1]] for m, lines in runs.items()}
    assert losses["full"] == losses["delta"] == losses["resident"]
    assert runs["full"][-1]["test"] == runs["resident"][-1]["test"]
    full = runs["full"][0]["full_h2d_bytes"]
    assert [r["h2d_bytes"] for r in runs["full"][:-1]] == [full] * 3
    assert 0 < runs["delta"][0]["h2d_bytes"] < full / 2
    assert runs["resident"][0]["h2d_bytes"] > 0 and [r["h2d_bytes"] for r in runs["resident"][1:-1]] == [0, 0]


def test_resume_reaches_the_same_weights(train_args, tiny, tmp_path):
    straight = Trainer(parse_cli(train_args(tiny, tmp_path / "a", "--training.epochs", "4", "--model.dropout", "0.3")))
    straight.fit()
    Trainer(parse_cli(train_args(tiny, tmp_path / "b", "--training.epochs", "2", "--model.dropout", "0.3"))).fit()
    resumed = Trainer(
        parse_cli(train_args(tiny, tmp_path / "b", "--training.epochs", "4", "--model.dropout", "0.3", "--resume"))
    )
    resumed.fit()
    for p, q in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["train_loss"] for r in a[:-1]] == [r["train_loss"] for r in b[:-1]]
    assert a[-1]["test"] == b[-1]["test"]


def test_node_regression_on_targets(train_args, tmp_path):
    rng = np.random.default_rng(0)
    keys = [np.unique(rng.integers(0, 25, 8)) for _ in range(10)]
    y = np.cumsum(rng.random((10, 5)), axis=0)
    DeltaStore.from_snapshots(Snapshots(5, np.arange(5), keys, y=y, y_per_snapshot=True), path=tmp_path / "y")
    final = Trainer(parse_cli(train_args(tmp_path / "y", tmp_path / "run", "--task.kind", "node"))).fit()
    assert set(final["test"]) == {"mse", "mae"} and set(final["reference"]) == {"mse", "mae"}
    truth, last = y[8:], y[7:9]  # test transitions: the last one (t=8 -> 9)
    assert final["reference"]["mse"] == pytest.approx(float(((truth[1:] - last[1:]) ** 2).mean()))


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--model.hiden", "8"], "unknown config key 'model.hiden'; did you mean model.hidden"),
        (["--training.epochs", "three"], "training.epochs = 'three': expected int"),
        (["--transfer.mode", "fast"], "expected one of 'full', 'delta', 'resident'"),
        (["--data.store", "/nonexistent/store"], "/nonexistent/store: no such store directory"),
        (["--run.stop_signal", "USR9"], "run.stop_signal 'USR9': not a signal name"),
        (
            ["--run.malloc", "mmap:64"],
            "run.malloc 'mmap:64': expected 'reuse', 'glibc' or 'mmap:N' with N MiB in 1..32",
        ),
        (["--run.malloc", "jemalloc"], "run.malloc 'jemalloc': expected 'reuse', 'glibc' or 'mmap:N'"),
        (["--run.keep_checkpoints", "0"], "run.checkpoint_every and run.keep_checkpoints must be >= 1"),
        (["--run.device", "gpu"], "run.device 'gpu': expected auto, cpu, cuda or cuda:N"),
        (["--model.embedding_dim", "-1"], "model.embedding_dim -1: must be >= 0"),
        (["--model.checkpoint_every", "-3"], "model.checkpoint_every -3: must be >= 0"),
        (["--training.weight_decay", "-1"], "training.weight_decay -1.0: must be a finite number >= 0"),
        (["--training.lr", "inf"], "training.lr inf: must be a finite number > 0"),
        (["--task.eval_max_positives", "-1"], "task.eval_max_positives -1: must be >= 0"),
        (["--task.negatives", "0"], "task.negatives 0: must be >= 1"),
        (["--resume"], "--resume, but there is no checkpoint to resume from"),
    ],
)
def test_bad_settings_are_one_line(cli, tmp_path, args, expect):
    r = cli("train", "--run.dir", tmp_path / "run", *args)
    assert r.code == 2 and len(r.error_lines) == 1 and expect in r.error_lines[0], r.err
    assert not (tmp_path / "run").exists()


def test_a_run_dir_that_cannot_be_a_directory_is_one_line(train_args, cli, tiny, tmp_path):
    (tmp_path / "file").write_text("x")
    r = cli("train", *train_args(tiny, tmp_path / "file"))
    assert r.code == 2 and r.error_lines == [
        f"dyngnn: error: run.dir {tmp_path / 'file'}: exists and is not a directory"
    ]
    r = cli("train", *train_args(tiny, tmp_path / "file" / "run"))
    assert r.code == 2 and len(r.error_lines) == 1 and "cannot create it" in r.err, r.err
    assert (tmp_path / "file").read_text() == "x"


def test_resume_takes_the_runs_own_settings_and_a_refused_resume_writes_nothing(train_args, cli, runs, tiny, tmp_path):
    run = tmp_path / "run"
    straight = tmp_path / "straight"
    settings = ["--task.max_positives", "20", "--model.gcn_layers", "1"]
    assert cli("train", *train_args(tiny, straight, *settings)).code == 0
    assert cli("train", *train_args(tiny, run, *settings, "--training.epochs", "2")).code == 0
    before = {f: (run / f).read_bytes() for f in ("config.json", "metrics.jsonl")}
    r = cli("train", "--run.dir", run, "--resume", "--model.hidden", "9", "--training.epochs", "3")
    assert r.code == 2 and "model.hidden 8 (checkpoint) vs 9 (now)" in r.err, r.err
    assert {f: (run / f).read_bytes() for f in before} == before
    # only what changes; the transfer mode moves the same snapshots, so it may change too
    r = cli("train", "--run.dir", run, "--resume", "--training.epochs", "3", "--transfer.mode", "resident")
    assert r.code == 0, r.err
    assert json.loads((run / "config.json").read_text())["task"]["max_positives"] == 20
    final = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["epoch"] == 3
    runs.assert_same_weights(run, straight)


def test_weights_that_stop_being_finite_stop_the_run_before_a_checkpoint(train_args, tiny, tmp_path, monkeypatch):
    trainer = Trainer(parse_cli(train_args(tiny, tmp_path / "run", "--training.epochs", "4")))
    step, calls = trainer.optimizer.step, []

    def poisoned(*args, **kwargs):
        step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                trainer.model.convs[0].bias.fill_(float("inf"))

    monkeypatch.setattr(trainer.optimizer, "step", poisoned)
    with pytest.raises(InputError, match=r"epoch 3: the optimizer step made weights that are not finite"):
        trainer.fit()
    assert [p.name for p in sorted((tmp_path / "run" / "checkpoints").glob("*.pt"))] == [
        "epoch-00001.pt",
        "epoch-00002.pt",
    ]


def test_malloc_settings_keep_the_numbers(train_args, tiny, tmp_path):
    """The allocator setting changes where memory comes from, never the results."""
    import subprocess
    import sys

    settings = ("reuse", "glibc", "mmap:4")
    for i, setting in enumerate(settings):
        args = train_args(tiny, tmp_path / str(i), "--run.malloc", setting)
        done = subprocess.run([sys.executable, "-m", "dyngnn.train", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    losses = [[r["train_loss"] for r in read_metrics(tmp_path / str(i)) if "train_loss" in r] for i in range(3)]
    assert losses[0] == losses[1] == losses[2] and len(losses[0]) == 3


MAPPED_WHILE_HELD = """
import ctypes, sys
from dyngnn import malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = malloc.apply(sys.argv[1])
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
during = libc.mallinfo2().hblkhd
libc.free(block)
print(applied, during - before)
"""


def test_malloc_policy_is_applied_unless_the_environment_decides():
    """Where a 64 MiB block comes from, in a fresh process: mmap'ed memory (mallinfo2's
    hblkhd) under glibc's policy and mmap:N, the heap under reuse; the environment wins."""
    import os
    import platform
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("run.malloc applies to glibc on Linux only")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}

    def mapped(policy: str, **env: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", MAPPED_WHILE_HELD, policy], env=clean | env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        applied, size = out.stdout.split()
        return applied, int(size)

    applied, size = mapped("glibc")
    assert applied == "False" and size >= 64 << 20
    applied, size = mapped("mmap:32")
    assert applied == "True" and size >= 64 << 20
    assert mapped("reuse") == ("True", 0)
    # the environment wins: glibc's mmap stays on
    assert mapped("reuse", MALLOC_MMAP_THRESHOLD_="1048576")[0] == "False"
    assert mapped("reuse", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1048576")[1] >= 64 << 20


def test_bad_toml_config(cli, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nhidden = "big"\n')
    r = cli("train", "--config", cfg)
    assert r.code == 2 and f"{cfg}: model.hidden = 'big': expected int" in r.err
    cfg.write_text("[trainig]\nepochs = 3\n")
    r = cli("train", "--config", cfg)
    assert r.code == 2 and "unknown config key 'trainig'; did you mean training?" in r.err
    r = cli("train", "--config", tmp_path)
    assert r.code == 2 and f"{tmp_path}: is a directory; --config expects a TOML file" in r.err


def test_node_task_needs_targets(train_args, cli, tiny, tmp_path):
    r = cli("train", *train_args(tiny, tmp_path / "run", "--task.kind", "node"))
    assert r.code == 2 and "needs per-snapshot node targets" in r.err and str(tiny) in r.err


def test_resume_refuses_an_incompatible_checkpoint(train_args, cli, tiny, tmp_path):
    assert cli("train", *train_args(tiny, tmp_path / "run", "--training.epochs", "1")).code == 0
    r = cli("train", *train_args(tiny, tmp_path / "run", "--model.hidden", "16", "--resume"))
    assert r.code == 2 and "incompatible" in r.err and "model.hidden 8 (checkpoint) vs 16 (now)" in r.err
    r = cli("train", *train_args(tiny, tmp_path / "run"))
    assert r.code == 2 and "already holds a run" in r.err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(train_args, cli, tiny, tmp_path):
    r = cli("train", *train_args(tiny, tmp_path / "run", "--training.lr", "1e30", "--training.epochs", "6"))
    assert r.code == 2 and "not finite" in r.err and "last good checkpoint is" in r.err, r.err
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("epoch-*.pt"))
    assert ckpts and all(torch.isfinite(v).all() for v in torch.load(ckpts[-1], weights_only=False)["model"].values())


def test_shipped_configs_parse_and_the_defaults_file_matches(tmp_path):
    from dyngnn.config import Config, load_toml

    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))
    assert len(configs) >= 3
    loaded = {c.name: load_toml(c) for c in configs}
    written_out = loaded["bitcoinalpha_link.toml"]
    assert written_out.to_dict() | {"run": None} == Config().to_dict() | {"run": None}


def test_max_positives_caps_the_training_pairs(train_args, tiny, tmp_path):
    trainer = Trainer(parse_cli(train_args(tiny, tmp_path / "run", "--task.max_positives", "5")))
    graphs, targets = trainer.inputs.prepare()
    h = trainer.model(graphs)
    _, count = trainer.task.loss(h, trainer.head, targets, epoch=0)
    assert count == 2 * 5 * len(trainer.split.train)


def test_tensorboard_logging_writes_every_metric(train_args, tiny, tmp_path, monkeypatch):
    import sys
    import types

    written = []

    class Writer:
        def __init__(self, logdir):
            written.append(("dir", logdir))

        def add_scalar(self, tag, value, step):
            written.append((tag, step))

        def flush(self):
            pass

        def close(self):
            written.append(("closed", None))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    Trainer(parse_cli(train_args(tiny, tmp_path / "run", "--run.tensorboard", "--training.epochs", "2"))).fit()
    assert written[0] == ("dir", str(tmp_path / "run" / "tb")) and written[-1] == ("closed", None)
    assert {("train_loss", 1), ("val/auc", 2), ("h2d_bytes", 2), ("test/mrr", 2), ("reference/auc", 2)} <= set(written)


def test_tensorboard_without_the_package_is_a_clear_error(train_args, cli, tiny, tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the tensorboard package is installed here, so its absence cannot be tested")
    r = cli("train", *train_args(tiny, tmp_path / "run", "--run.tensorboard"))
    assert r.code == 2 and "needs the tensorboard package" in r.err


def test_configuration_reference_is_current():
    from dyngnn.config import readme_with_reference, reference_markdown

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert readme == readme_with_reference(readme), "regenerate: python -m dyngnn.config --write"
    assert "| `stop_signal` |" in reference_markdown()  # the table lists every key


def test_float64_with_stored_features_counts_their_bytes_once(train_args, tmp_path):
    rng = np.random.default_rng(0)
    keys = [np.unique(rng.integers(0, 36, 10)) for _ in range(8)]
    x = rng.random((8, 6, 3)).astype(np.float32)
    DeltaStore.from_snapshots(Snapshots(6, np.arange(6), keys, x=x, x_per_snapshot=True), path=tmp_path / "s")
    trainer = Trainer(parse_cli(train_args(tmp_path / "s", tmp_path / "run", "--training.dtype", "float64")))
    trainer.fit()
    assert all(p.dtype == torch.float64 for p in trainer.model.parameters())
    assert trainer.model.convs[0].in_channels == 2 + 3
    lines = read_metrics(tmp_path / "run")
    graph_bytes = lines[1]["full_h2d_bytes"]
    assert lines[0]["full_h2d_bytes"] == graph_bytes + x.nbytes
    assert lines[0]["h2d_bytes"] - lines[1]["h2d_bytes"] >= x.nbytes


def test_node_classification_on_class_targets(train_args, tmp_path, cli):
    rng = np.random.default_rng(1)
    keys = [np.unique(rng.integers(0, 36, 10)) for _ in range(12)]
    y = rng.integers(0, 3, (12, 6))
    DeltaStore.from_snapshots(Snapshots(6, np.arange(6), keys, y=y, y_per_snapshot=True), path=tmp_path / "s")
    trainer = Trainer(
        parse_cli(train_args(tmp_path / "s", tmp_path / "run", "--task.kind", "node", "--task.targets", "classes"))
    )
    final = trainer.fit()
    assert set(final["test"]) == {"accuracy", "macro_f1"} and 0 <= final["test"]["accuracy"] <= 1
    last = trainer.split.test
    expected = float(np.mean([np.mean(y[t] == y[t + 1]) for t in last]))
    assert final["reference"]["accuracy"] == pytest.approx(expected)
    floats = Snapshots(6, np.arange(6), keys, y=y + 0.5, y_per_snapshot=True)
    DeltaStore.from_snapshots(floats, path=tmp_path / "f")
    r = cli("train", *train_args(tmp_path / "f", tmp_path / "run2", "--task.kind", "node", "--task.targets", "classes"))
    assert r.code == 2 and "needs integer targets" in r.err and str(tmp_path / "f") in r.err


@pytest.mark.parametrize("kind", ["link", "node"])
def test_training_pass_stops_at_the_horizon_with_the_same_loss_and_gradients(train_args, tiny, tmp_path, kind):
    """The training pass computes states up to the last train transition only; the loss
    and every gradient equal those of the pass over the whole sequence."""
    store = tiny
    if kind == "node":
        rng = np.random.default_rng(2)
        keys = [np.unique(rng.integers(0, 49, 12)) for _ in range(12)]
        y = np.cumsum(rng.random((12, 7)), axis=0)
        store = tmp_path / "y"
        DeltaStore.from_snapshots(Snapshots(7, np.arange(7), keys, y=y, y_per_snapshot=True), path=store)
    args = train_args(
        store, tmp_path / "run", "--task.kind", kind, "--training.dtype", "float64", "--model.dropout", "0.3"
    )
    trainer = Trainer(parse_cli(args))
    graphs, targets = trainer.inputs.prepare()
    horizon = trainer.split.horizon
    assert horizon < len(graphs) - 2  # validation and test snapshots lie past it
    pipeline = trainer.pipeline.train()
    results = []
    for h_end in (None, horizon):
        pipeline.zero_grad(set_to_none=True)
        h = pipeline(graphs, (0, 1), h_end)
        assert h.shape[0] == (len(graphs) if h_end is None else horizon)
        total, count = trainer.task.loss(h, trainer.head, targets, 0, trainer.block)
        total.backward()
        results.append((float(total), count, [p.grad.clone() for p in pipeline.parameters()]))
    (full, n_full, g_full), (cut, n_cut, g_cut) = results
    assert n_full == n_cut and cut == pytest.approx(full, rel=1e-13)
    for a, b in zip(g_full, g_cut, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-13)


def test_metrics_lines_are_strict_json_with_null_for_metrics_without_a_value(train_args, tiny, tmp_path):
    trainer = Trainer(parse_cli(train_args(tiny, tmp_path / "run")))
    trainer.run_dir.start(trainer.cfg.to_dict(), epoch=None)
    trainer.run_dir.write({"epoch": 1, "train_loss": 0.5, "val": {"auc": float("nan"), "mrr": 0.25}})

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    line = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert json.loads(line, parse_constant=refuse) == {"epoch": 1, "train_loss": 0.5, "val": {"auc": None, "mrr": 0.25}}


def test_an_interrupted_checkpoint_write_leaves_no_partial_file(train_args, tiny, tmp_path, monkeypatch):
    trainer = Trainer(parse_cli(train_args(tiny, tmp_path / "run", "--training.epochs", "2")))
    save = torch.save

    def interrupted(state, path):
        if str(path).endswith("epoch-00002.tmp"):
            Path(path).write_bytes(b"half")
            raise KeyboardInterrupt
        save(state, path)

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["epoch-00001.pt"]


def test_a_run_dir_is_held_by_one_job_at_a_time_and_a_killed_job_lets_it_go(train_args, cli, tiny, tmp_path):
    """A second job on a run directory in use is refused with one line and writes
    nothing; the holder's lock goes with its process, however it ends."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dyngnn.run_dir import RunDir; "
            "d = RunDir(sys.argv[1]); d.start({'held': True}, None, fresh=True); print('held', flush=True); time.sleep(600)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (run / "config.json").read_bytes()
        r = cli("train", *train_args(tiny, run))
        assert r.code == 2 and len(r.error_lines) == 1, r.err
        assert "in use by another dyngnn job" in r.err and f"pid {holder.pid}" in r.err
        assert (run / "config.json").read_bytes() == before and not (run / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.1)
    r = cli("train", *train_args(tiny, run, "--training.epochs", "1"))
    assert r.code == 0, r.err
    assert read_metrics(run)[-1]["final"]


def test_resume_passes_over_a_checkpoint_cut_short_with_one_line(train_args, cli, runs, tiny, tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert cli("train", *train_args(tiny, straight, "--training.epochs", "4")).code == 0
    assert cli("train", *train_args(tiny, run, "--training.epochs", "3")).code == 0
    newest = run / "checkpoints" / "epoch-00003.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a kill or a full disk mid-write
    r = cli("train", "--run.dir", run, "--resume", "--training.epochs", "4")
    assert r.code == 0, r.err
    warnings = [line for line in r.err.splitlines() if "epoch-00003.pt" in line]
    assert len(warnings) == 1 and "resuming from an earlier checkpoint" in warnings[0], r.err
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2, 3, 4, 4]
    runs.assert_same_weights(run, straight)


def test_resume_with_fewer_epochs_than_the_checkpoint_is_refused(train_args, cli, tiny, tmp_path):
    run = tmp_path / "run"
    assert cli("train", *train_args(tiny, run, "--training.epochs", "3")).code == 0
    before = {f: (run / f).read_bytes() for f in ("config.json", "metrics.jsonl")}
    r = cli("train", "--run.dir", run, "--resume", "--training.epochs", "2")
    assert r.code == 2 and len(r.error_lines) == 1, r.err
    assert "at epoch 3, past --training.epochs 2" in r.err and "--training.epochs 3 or more" in r.err
    assert {f: (run / f).read_bytes() for f in before} == before


def test_signed_weights_train_to_finite_numbers(cli, tmp_path):
    """Bitcoin-Alpha's ratings summed per pair (-10..10 each): the GCN normalises by
    absolute degrees, so the first epoch is as finite as with unsigned weights."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = ["--data.weight", "sum", "--data.cache_dir", cache, "--run.dir", run, "--run.no-progress"]
    r = cli("train", *args, "--training.epochs", "2", "--model.hidden", "8")
    assert r.code == 0, r.err
    (store,) = cache.iterdir()
    weights = np.concatenate([DeltaStore.open(store).snapshot_keys(t)[1] for t in range(40)])
    assert weights.min() < 0 < weights.max()
    lines = read_metrics(run)
    assert all(np.isfinite(m["train_loss"]) for m in lines[:-1]) and np.isfinite(lines[-1]["test"]["auc"])


def test_a_split_with_no_edge_to_predict_is_named(cli, train_args, tmp_path):
    """Empty target snapshots: validation and test say so in one warning each (their
    metrics are null); a training split with nothing to learn is refused."""
    keys = [np.array([1, 7, 12])] * 8 + [np.zeros(0, np.int64)] * 4
    store = tmp_path / "s"
    DeltaStore.from_snapshots(Snapshots(5, np.arange(5), keys), path=store)
    r = cli("train", *train_args(store, tmp_path / "run", "--task.val_fraction", "0.2", "--task.test_fraction", "0.2"))
    assert r.code == 0, r.err
    warnings = [line for line in r.err.splitlines() if "no edge to predict" in line]
    assert len(warnings) == 2 and "validation split" in warnings[0] and "test split" in warnings[1], r.err
    assert "--task.val_fraction" in warnings[0] and "--task.test_fraction" in warnings[1]
    final = read_metrics(tmp_path / "run")[-1]
    assert final["test"]["auc"] is None and final["val"]["mrr"] is None
    empty = tmp_path / "e"
    DeltaStore.from_snapshots(Snapshots(5, np.arange(5), [np.array([1])] + [np.zeros(0, np.int64)] * 11), path=empty)
    r = cli("train", *train_args(empty, tmp_path / "run2"))
    assert r.code == 2 and len(r.error_lines) == 1 and "training split" in r.err and "nothing to learn" in r.err
    assert not (tmp_path / "run2").exists()


def test_classes_cost_memory_by_their_number_and_counts_are_not_classes(cli, capsys, train_args, tmp_path):
    """Class ids up to 13,196 (as in Twitter tennis) but 3 distinct: 3 classes, one-hot
    inputs of width 3; metrics equal those of the same labels numbered 0, 1, 2. Ten
    thousand distinct values are counts: one line."""
    rng = np.random.default_rng(4)
    keys = [np.unique(rng.integers(0, 36, 10)) for _ in range(12)]
    small = rng.integers(0, 3, (12, 6))
    finals = []
    for name, ids in (("small", small), ("large", np.array([7, 5000, 13196])[small])):
        DeltaStore.from_snapshots(Snapshots(6, np.arange(6), keys, y=ids, y_per_snapshot=True), path=tmp_path / name)
        args = train_args(tmp_path / name, tmp_path / f"run-{name}", "--task.kind", "node", "--task.targets", "classes")
        trainer = Trainer(parse_cli(args))
        assert trainer.task.num_classes == 3 and trainer.inputs.in_dim == 2 + 3
        finals.append(trainer.fit())
    assert finals[0]["test"] == finals[1]["test"] and finals[0]["reference"] == finals[1]["reference"]
    capsys.readouterr()  # what the runs above logged
    counts = np.arange(12 * 1000).reshape(12, 1000)
    DeltaStore.from_snapshots(
        Snapshots(1000, np.arange(1000), keys, y=counts, y_per_snapshot=True), path=tmp_path / "c"
    )
    r = cli(
        "train", *train_args(tmp_path / "c", tmp_path / "run-c", "--task.kind", "node", "--task.targets", "classes")
    )
    assert r.code == 2 and len(r.error_lines) == 1 and "12,000 distinct targets" in r.err and "regression" in r.err
    assert not (tmp_path / "run-c").exists()


def test_settings_a_run_would_not_use_are_named(cli, train_args, tiny, tmp_path):
    r = cli("train", *train_args(tiny, tmp_path / "a", "--data.lifetime", "30d", "--data.window", "1d"))
    assert r.code == 0, r.err
    lines = [line for line in r.err.splitlines() if "ignored" in line]
    assert len(lines) == 1 and "data.window, data.lifetime ignored: data.store" in lines[0], r.err
    r = cli("train", *train_args(tiny, tmp_path / "b", "--task.targets", "classes"))
    lines = [line for line in r.err.splitlines() if "ignored" in line]
    assert r.code == 0 and len(lines) == 1 and "task.targets ignored" in lines[0], r.err
    r = cli("train", *train_args(tiny, tmp_path / "c"))
    assert r.code == 0 and "ignored" not in r.err
    fixtures = Path(__file__).parent / "fixtures"
    args = [
        "--data.source",
        fixtures / "edge_mapping.json",
        "--data.window",
        "1d",
        "--data.cache_dir",
        tmp_path / "cache",
    ]
    r = cli("train", *args, "--run.dir", tmp_path / "d", "--training.epochs", "1", "--run.no-progress")
    lines = [line for line in r.err.splitlines() if "ignored" in line]
    assert len(lines) == 1 and "data.window ignored" in lines[0] and "PyG-Temporal JSON" in lines[0], r.err
