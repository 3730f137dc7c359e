"""Inputs and situations a user audit found: each ends as one line, the right exit status, nothing left."""

from __future__ import annotations

import gzip
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dyngnn.data import load_snapshots
from dyngnn.errors import InputError

DYNGNN = [sys.executable, "-m", "dyngnn.cli"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def convert_fails(cli, tmp_path, leftovers):
    """``convert_fails(source, *flags)``: convert fails with one error line and writes nothing."""

    def run(source, *flags) -> str:
        out = tmp_path / "store"
        r = cli("data", "convert", source, "--out", out, *flags)
        assert r.code == 2, r.err
        assert len(r.error_lines) == 1, r.err
        assert not out.exists() and leftovers(tmp_path, "store") == []
        return r.error_lines[0]

    return run


@pytest.fixture
def store(cli, tmp_path):
    """A store of 30 snapshots, one edge each."""
    events = write(tmp_path / "events.csv", "".join(f"{t},{t + 1},{t}\n" for t in range(30)))
    out = tmp_path / "s30"
    assert cli("data", "convert", events, "--out", out, "--window", "1").code == 0
    return out


def gzipped_edge_list() -> bytes:
    data = gzip.compress("".join(f"{i % 97},{i % 89},{i * 1000}\n" for i in range(2000)).encode())
    assert len(data) > 300
    return data


@pytest.mark.parametrize("damage", ["truncated", "bad crc"])
def test_damaged_gzip_is_one_line(convert_fails, tmp_path, damage):
    data = gzipped_edge_list()
    path = tmp_path / "events.csv.gz"
    path.write_bytes(data[:300] if damage == "truncated" else data[:-8] + bytes(8))
    line = convert_fails(path, "--window", "7d")
    assert f"{path}: truncated or corrupt gzip file" in line
    # the reader itself raises it, so `dyngnn train --data.source FILE` reports it the same way
    with pytest.raises(InputError, match="truncated or corrupt gzip file"):
        load_snapshots(path, window="7d")


def test_window_making_too_many_snapshots_is_refused(convert_fails, tmp_path):
    path = write(tmp_path / "t.csv", "1,2,0\n2,3,100000000000\n")
    line = convert_fails(path, "--window", "10")
    for piece in (f"{path}:", "window 10", "time span of 100000000000", "10,000,000,001 snapshots", "milliseconds"):
        assert piece in line, line


def test_sigterm_removes_the_partial_store(tmp_path):
    out = tmp_path / "big"
    synth = ["data", "synth", "--out", out, "--nodes", "200000", "--edges", "2000000", "--snapshots", "1000"]
    proc = subprocess.Popen([*DYNGNN, *synth, "--churn", "0.01"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".big.tmp-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "synth never started writing"
            time.sleep(0.02)
        time.sleep(0.5)  # well inside the writing, past the builder's setup
        assert proc.poll() is None, "synth finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "dyngnn: terminated (SIGTERM)", err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("error")
def test_header_only_file_warns_nothing(convert_fails, tmp_path):
    path = write(tmp_path / "h.csv", "src,dst,time\n")
    assert convert_fails(path, "--window", "10") == f"dyngnn: error: {path}: the file is empty (no edges)"


@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_closed_stdout_is_quiet(store, json_flag):
    read, write_end = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as after `| head -1`
    try:
        done = subprocess.run(
            [*DYNGNN, "data", "inspect", store, *json_flag], stdout=write_end, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write_end)
    assert done.returncode == 128 + signal.SIGPIPE and done.stderr == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "train", "--training.epochs", "1"],
        ["--verbose", "train", "--training.epochs", "1"],
        ["train", "-v", "--training.epochs", "1"],
        ["train", "--training.epochs", "1", "--verbose"],
    ],
)
def test_verbose_with_train(cli, monkeypatch, argv):
    seen = []

    def fake_run(settings: list[str]) -> int:
        seen.append((settings, logging.getLogger().level))
        return 0

    monkeypatch.setattr("dyngnn.train.run", fake_run)
    r = cli(*argv)
    assert r.code == 0, r.err
    assert seen == [(["--training.epochs", "1"], logging.DEBUG)]


@pytest.mark.parametrize("rows", ["-1", "-20"])
def test_negative_rows_are_refused(cli, store, rows):
    r = cli("data", "inspect", store, "--rows", rows)
    assert r.code == 2 and r.error_lines == [f"dyngnn: error: --rows {rows}: must be >= 0"], r.err


@pytest.mark.parametrize("rows", [0, 1, 2, 5, 29, 30, 40])
def test_rows_bounds_the_table(cli, store, rows):
    r = cli("data", "inspect", store, "--rows", rows)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    table = lines[lines.index("") + 2 :] if "" in lines else []
    shown = [line for line in table if line.split()[0].isdigit()]
    assert len(shown) == min(rows, 30)
    more = [line for line in table if line.split()[0] == "..."]
    assert more == ([f"    ...  ({30 - rows:,} more; --rows N or --json to see them)"] if 0 < rows < 30 else [])
    assert ("encoding" in r.out) == (rows > 0)


def test_rows_zero_is_documented(cli):
    r = cli("data", "inspect", "--help")
    assert "0: no table" in " ".join(r.out.split())


def test_convert_help_says_window_is_required_for_event_lists(cli):
    r = cli("data", "convert", "--help")
    assert r.code == 0
    assert "--window WINDOW snapshot length, required for event lists" in " ".join(r.out.split())


def test_bad_timestamp_is_printed_plainly(convert_fails, tmp_path):
    path = write(tmp_path / "n.csv", "1,2,0\n2,3,nan\n")
    assert convert_fails(path, "--window", "10").endswith(f"{path}:2: timestamp nan is not finite or beyond +-2^62")
