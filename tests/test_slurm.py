"""slurm/train-*.sbatch on a real one-node SLURM (the ``slurm`` fixture): ranks started by
srun or torchrun give the numbers of single-process training, and a USR1 before the
time limit stops the job at an epoch boundary, requeues it, and it ends exact."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dyngnn.config import parse_cli
from dyngnn.data.snapshots import Snapshots
from dyngnn.data.store import DeltaStore
from dyngnn.trainer import Trainer

REPO = Path(__file__).parent.parent
SCRIPTS = REPO / "slurm"


def settings(store: Path, run_dir: Path, epochs: int, hidden: int) -> list[str]:
    return [
        "--data.store",
        str(store),
        "--run.dir",
        str(run_dir),
        "--run.no-progress",
        "--task.kind",
        "link",
        "--model.hidden",
        str(hidden),
        "--model.dropout",
        "0.2",
        "--training.epochs",
        str(epochs),
        "--training.dtype",
        "float64",
        "--task.negatives",
        "2",
    ]


def assert_same_run(runs, run_dir: Path, reference_dir: Path, world: int | None = None) -> None:
    ours, ref = runs.metrics(run_dir), runs.metrics(reference_dir)
    assert [m["epoch"] for m in ours] == [m["epoch"] for m in ref]
    assert ours[-1].get("final") and not any(m.get("final") for m in ours[:-1])
    if world is not None:
        assert {m["world_size"] for m in ours} == {world}
    np.testing.assert_allclose([m["train_loss"] for m in ours[:-1]], [m["train_loss"] for m in ref[:-1]], rtol=1e-9)
    for key, value in ref[-1]["test"].items():
        np.testing.assert_allclose(ours[-1]["test"][key], value, rtol=1e-9, err_msg=f"test.{key}")
    runs.assert_same_weights(run_dir, reference_dir)


def make_store(path: Path, n: int, t: int, edges: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    keys = [np.unique(rng.integers(0, n * n, edges)) for _ in range(t)]
    DeltaStore.from_snapshots(Snapshots(n, np.arange(n), keys), path=path, keyframe_every=4)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 13-snapshot store and its single-process run (3 epochs)."""
    tmp = tmp_path_factory.mktemp("tiny")
    store = make_store(tmp / "store", 23, 13, 60, seed=5)
    Trainer(parse_cli(settings(store, tmp / "single", 3, 6))).fit()
    return store, tmp / "single"


@pytest.fixture(scope="module")
def long(tmp_path_factory):
    """A store on which an epoch takes long enough to interrupt (a second or more), and its
    single-process run of five epochs."""
    tmp = tmp_path_factory.mktemp("long")
    store = make_store(tmp / "store", 2000, 60, 6000, seed=7)
    Trainer(parse_cli(settings(store, tmp / "single", 5, 16))).fit()
    return store, tmp / "single"


@pytest.fixture
def submit(slurm, free_port):
    """``submit(script, log, world, args, env=None, options=())``: sbatch ``script`` from the
    repository root, sized for this machine (``world`` tasks overcommitted onto its cores,
    one thread each), on a free port: job ids, and so the scripts' default ports, start
    over in every test cluster."""

    def run(script: str, log: Path, world: int, args: list[str], env=None, options=()) -> int:
        env = {"OMP_NUM_THREADS": "1", "DYNGNN_PYTHON": sys.executable, "MASTER_PORT": str(free_port())} | (env or {})
        return slurm.sbatch(
            f"--output={log}",
            "--nodes=1",
            f"--ntasks={world}",
            f"--ntasks-per-node={world}",
            "--cpus-per-task=1",
            "--overcommit",
            "--mem=2G",
            *options,
            SCRIPTS / script,
            *args,
            env=env,
            cwd=REPO,
        )

    return run


def assert_completed(job: dict[str, str], log: Path) -> str:
    text = log.read_text() if log.exists() else "(no log)"
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
    return text


@pytest.mark.parametrize("world", [2, 3])
def test_cpu_script_ranks_reproduce_single_process_training(slurm, submit, runs, tiny, tmp_path, world):
    store, single = tiny
    log = tmp_path / "job.log"
    job_id = submit("train-cpu.sbatch", log, world, settings(store, tmp_path / "run", 3, 6))
    text = assert_completed(slurm.wait(job_id), log)
    assert f"[dyngnn] job {job_id} (restart 0)" in text
    assert_same_run(runs, tmp_path / "run", single, world)


def test_gpu_script_starts_torchrun_ranks(slurm, submit, runs, tiny, tmp_path):
    """The torchrun path of train-gpu.sbatch, run on CPU processes (this machine has no GPU)."""
    store, single = tiny
    log = tmp_path / "job.log"
    args = [*settings(store, tmp_path / "run", 3, 6), "--run.device", "cpu"]
    job_id = submit("train-gpu.sbatch", log, 1, args, env={"NPROC_PER_NODE": "2"}, options=["--gpus-per-node=0"])
    assert_completed(slurm.wait(job_id), log)
    assert_same_run(runs, tmp_path / "run", single, 2)


@pytest.mark.parametrize("script", ["train-cpu.sbatch", "train-gpu.sbatch"])
def test_usr1_before_the_time_limit_requeues_the_job_and_it_ends_exact(slurm, submit, runs, long, tmp_path, script):
    """What ``--signal=B:USR1@...`` does before the time limit, sent by hand mid-run."""
    store, single = long
    log, run = tmp_path / "job.log", tmp_path / "run"
    args = settings(store, run, 5, 16)
    if script == "train-cpu.sbatch":
        job_id = submit(script, log, 2, args)
    else:  # torchrun's two ranks, on CPU processes
        args += ["--run.device", "cpu"]
        job_id = submit(script, log, 1, args, env={"NPROC_PER_NODE": "2"}, options=["--gpus-per-node=0"])
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().count("\n"):
        assert slurm.job(job_id)["JobState"] in ("PENDING", "RUNNING"), log.read_text()[-4000:]
        assert time.monotonic() < deadline, "no epoch ended within 120 s"
        time.sleep(0.05)
    slurm.run("scancel", "--batch", "--signal=USR1", str(job_id))
    job = slurm.wait(job_id, until=lambda j: j["JobState"] in slurm.ENDED or j["Restarts"] != "0")
    assert job["Restarts"] == "1", log.read_text()[-4000:]
    stopped = [m["epoch"] for m in runs.metrics(run)]
    assert stopped == list(range(1, len(stopped) + 1)) and stopped[-1] < 5, stopped
    # SLURM holds a requeued job back for two minutes (its BeginTime); the test waits only
    # until the node has cleaned up after the first run, and one second more: slurmd refuses
    # credentials made in the same second as the revocation of the first run's
    slurm.wait(job_id, until=lambda j: j["JobState"] == "PENDING" and j["Reason"] == "BeginTime")
    deadline = time.monotonic() + 60
    while slurm.node_state() != "idle":
        assert time.monotonic() < deadline, f"node {slurm.node} still {slurm.node_state()} 60 s after the requeue"
        time.sleep(0.1)
    time.sleep(1.1)
    slurm.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    text = assert_completed(slurm.wait(job_id), log)
    assert f"stopped by SIGUSR1 after epoch {stopped[-1]} of 5" in text
    assert f"requeueing job {job_id}" in text and f"[dyngnn] job {job_id} (restart 1)" in text
    assert f"resuming from {run / 'checkpoints' / f'epoch-{stopped[-1]:05d}.pt'}" in text
    assert_same_run(runs, run, single)


def test_scripts_are_valid_bash_and_refuse_to_run_outside_slurm(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for script in ("train-cpu.sbatch", "train-gpu.sbatch", "train-multinode.sbatch"):
        assert subprocess.run(["bash", "-n", SCRIPTS / script]).returncode == 0, script
        done = subprocess.run(["bash", SCRIPTS / script], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 2
        assert (
            done.stderr == f"dyngnn: error: {script} is a SLURM batch script: submit it with sbatch (slurm/README.md)\n"
        )
    assert subprocess.run(["bash", "-n", SCRIPTS / "_common.sh"]).returncode == 0
