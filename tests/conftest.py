from __future__ import annotations

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
    """

    def run(world: int, argv: list[str], extra: dict[int, list[str]] | None = None):
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
        done = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
        return done

    return run
