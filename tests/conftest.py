from __future__ import annotations

import os
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
