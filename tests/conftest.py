from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from dyngnn.cli import main

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def error_lines(self) -> list[str]:
        """stderr lines that are not progress logging."""
        return [line for line in self.err.splitlines() if not line.startswith("[dyngnn]")]


@pytest.fixture
def cli(capsys):
    """Run ``dyngnn ARGS...`` in-process; return exit code, stdout and stderr."""

    def run(*args: str | Path) -> CliResult:
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            code = e.code
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def leftovers():
    """``leftovers(directory, name)``: temporary siblings a write of ``name`` left behind."""

    def find(directory: Path, name: str) -> list[Path]:
        return [p for p in directory.iterdir() if p.name.startswith(f".{name}.")]

    return find


@pytest.fixture(scope="session")
def train_args():
    """``train_args(store, run_dir, *extra, hidden=8, epochs=3)``: ``dyngnn train``
    arguments of a small, quiet run on ``store`` in ``run_dir``; ``extra`` settings come
    last, so they win over these."""

    def make(store, run_dir, *extra, hidden: int = 8, epochs: int = 3) -> list[str]:
        return [
            *("--data.store", str(store), "--run.dir", str(run_dir), "--run.no-progress"),
            *("--model.hidden", str(hidden), "--training.epochs", str(epochs)),
            *(str(e) for e in extra),
        ]

    return make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """``free_port()``: a TCP port on localhost that nothing listens on right now."""
    return _free_port


@pytest.fixture
def ranks():
    """``ranks(world, argv, extra=None)``: run ``python argv...`` as ``world`` local ranks.

    Each process gets torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT`` on a free port) and ``OMP_NUM_THREADS=1``;
    ``extra[rank]`` appends arguments for one rank. Returns the finished processes.
    ``ranks.start(...)`` takes the same arguments and returns the running ``Popen``s.
    """

    def start(world: int, argv: list[str], extra: dict[int, list[str]] | None = None) -> list[subprocess.Popen]:
        port = str(_free_port())
        procs = []
        for rank in range(world):
            env = os.environ | {
                "RANK": str(rank),
                "WORLD_SIZE": str(world),
                "LOCAL_RANK": str(rank),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "OMP_NUM_THREADS": "1",
            }
            cmd = [sys.executable, *argv, *(extra or {}).get(rank, [])]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return procs

    def run(world: int, argv: list[str], extra: dict[int, list[str]] | None = None):
        done = []
        for p in start(world, argv, extra):
            out, err = p.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
        return done

    run.start = start
    return run


class RunFiles:
    """What a training run leaves in its directory, read back for tests."""

    @staticmethod
    def metrics(run_dir: Path) -> list[dict]:
        """The records of ``metrics.jsonl``, in order."""
        return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]

    @staticmethod
    def final_weights(run_dir: Path) -> dict:
        """Model and head weights of the newest checkpoint, as ``{"model.x": tensor, "head.y": ...}``."""
        import torch

        state = torch.load(sorted((Path(run_dir) / "checkpoints").glob("epoch-*.pt"))[-1], weights_only=False)
        return {
            **{f"model.{k}": v for k, v in state["model"].items()},
            **{f"head.{k}": v for k, v in state["head"].items()},
        }

    def assert_same_weights(self, run_dir: Path, reference_dir: Path) -> None:
        """The final weights of two runs agree (rtol 1e-9: float64 runs on different rank counts)."""
        import numpy as np

        mine, theirs = self.final_weights(run_dir), self.final_weights(reference_dir)
        assert mine.keys() == theirs.keys()
        for name in theirs:
            np.testing.assert_allclose(mine[name].numpy(), theirs[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.fixture
def runs() -> RunFiles:
    """Reading run directories: ``runs.metrics``, ``runs.final_weights``, ``runs.assert_same_weights``."""
    return RunFiles()


class Slurm:
    """A one-node SLURM cluster of this machine, for the tests of ``slurm/*.sbatch``.

    ``env`` points the SLURM commands at its ``slurm.conf``; ``sbatch`` submits, ``job``
    reads ``scontrol show job``, ``wait`` polls until a job ends.
    """

    def __init__(self, root: Path, node: str) -> None:
        self.root, self.node = root, node
        self.env = os.environ | {"SLURM_CONF": str(root / "slurm.conf")}

    def run(self, *args: str | Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args], env=kw.pop("env", self.env), capture_output=True, text=True, check=check, **kw
        )

    def sbatch(self, *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        done = self.run("sbatch", "--parsable", *args, env=self.env | (env or {}), cwd=cwd, check=False)
        assert done.returncode == 0, f"sbatch {' '.join(map(str, args))}: {done.stderr}"
        return int(done.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, ExitCode, Restarts, Reason, ...)."""
        out = self.run("scontrol", "show", "job", "--oneliner", str(job_id)).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def node_state(self) -> str:
        """The node's state in ``sinfo``'s short form: idle, alloc, comp (cleaning up a job), ..."""
        return self.run("sinfo", "--noheader", "-n", self.node, "-o", "%t", check=False).stdout.strip()

    def wait(self, job_id: int, timeout: float = 240, until=None) -> dict[str, str]:
        """Poll until the job has ended (or ``until(job)`` holds); returns its last record."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if until(job) if until else job["JobState"] in self.ENDED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"SLURM job {job_id} still {job['JobState']} ({job.get('Reason')}) after {timeout} s"
                )
            time.sleep(0.2)

    ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def _slurm_conf(root: Path, node: str, ctld_port: int, slurmd_port: int) -> str:
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    return f"""\
ClusterName=dyngnntest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/linear
SchedulerType=sched/builtin
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
KillWait=5
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running one-node SLURM (munged, slurmctld, slurmd started here, stopped by pid).

    Installs slurm-wlm and munge with apt-get when they are missing and we are root;
    skips, saying why, where that cannot be done.
    """
    import shutil
    import time

    tools = ("sbatch", "scontrol", "sinfo", "slurmctld", "slurmd", "munged")
    sbin = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    if not all(shutil.which(t, path=sbin) for t in tools):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("SLURM is not installed, and installing it needs root and apt-get")
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            done = subprocess.run(install, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"apt-get install slurm-wlm munge failed:\n{done.stderr[-2000:]}"
    if os.geteuid() != 0:
        pytest.skip("a test SLURM runs its daemons as root (SlurmUser=root): run the tests as root")
    which = {t: shutil.which(t, path=sbin) for t in tools}
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o755)  # munged wants its socket's directory reachable by all
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(mode=0o755)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    node = socket.gethostname().split(".")[0]
    (root / "slurm.conf").write_text(_slurm_conf(root, node, _free_port(), _free_port()))
    cluster = Slurm(root, node)
    daemons: list[subprocess.Popen] = []
    logs = []

    def start(name: str, *args: str | Path) -> None:
        log = open(root / f"{name}.out", "w")  # noqa: SIM115 - closed at teardown
        logs.append(log)
        daemons.append(subprocess.Popen([which[name], *map(str, args)], env=cluster.env, stdout=log, stderr=log))

    try:
        start(
            "munged",
            "--foreground",
            "--force",
            f"--socket={root}/munge/munge.socket",
            f"--key-file={key}",
            f"--pid-file={root}/munged.pid",
            f"--log-file={root}/munged.log",
            f"--seed-file={root}/munged.seed",
        )
        deadline = time.monotonic() + 20
        while not (root / "munge" / "munge.socket").exists():
            assert time.monotonic() < deadline, (root / "munged.out").read_text()
            time.sleep(0.05)
        start("slurmctld", "-D", "-i", "-f", root / "slurm.conf")
        start("slurmd", "-D", "-N", node, "-f", root / "slurm.conf")
        deadline = time.monotonic() + 60
        while True:
            state = cluster.node_state()
            if state == "idle":
                break
            for d in daemons:
                assert d.poll() is None, (
                    f"{d.args[0]} exited: " + (root / f"{Path(d.args[0]).name}.out").read_text()[-2000:]
                )
            assert time.monotonic() < deadline, f"node {node} is {state!r} after 60 s, not idle"
            time.sleep(0.2)
        yield cluster
    finally:
        if len(daemons) == 3:  # jobs a failed test left behind: their processes belong to no daemon
            cluster.run("scancel", "--user", "root", check=False)
            deadline = time.monotonic() + 20
            while cluster.run("squeue", "--noheader", check=False).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.2)
        for d in reversed(daemons):
            d.terminate()
            try:
                d.wait(timeout=15)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
        for log in logs:
            log.close()
