"""Every kind of bad input: one clear line naming file (and line), exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dyngnn.data import read_edge_list
from dyngnn.data.store import DeltaStore

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture
def convert_fails(cli, tmp_path, leftovers):
    """``convert_fails(source, *flags, expect=[...])``: convert must fail cleanly."""

    def run(source, *flags, expect):
        out = tmp_path / "store"
        r = cli("data", "convert", source, "--out", out, *flags)
        assert r.code == 2, r.err
        assert len(r.error_lines) == 1, r.err
        for piece in expect:
            assert piece in r.error_lines[0], r.error_lines[0]
        assert not out.exists() and leftovers(tmp_path, "store") == []
        return r.error_lines[0]

    return run


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_file(convert_fails, tmp_path):
    convert_fails(tmp_path / "nope.csv", "--window", "1d", expect=["nope.csv", "no such file"])


def test_empty_file(convert_fails, tmp_path):
    p = write(tmp_path, "empty.csv", "")
    convert_fails(p, "--window", "1d", expect=[f"{p}", "empty"])
    p = write(tmp_path, "comments.csv", "# only a comment\n")
    convert_fails(p, "--window", "1d", expect=[f"{p}", "empty"])


def test_non_numeric_field(convert_fails, tmp_path):
    p = write(tmp_path, "e.csv", "1,2,10\n3,x4,11\n")
    convert_fails(p, "--window", "5", expect=[f"{p}:2:", "'x4'", "not an integer"])
    p = write(tmp_path, "t.csv", "1,2,10\n3,4,soon\n")
    convert_fails(p, "--window", "5", expect=[f"{p}:2:", "'soon'", "not a number"])


def test_wrong_number_of_columns(convert_fails, tmp_path):
    p = write(tmp_path, "e.csv", "1,2,10\n3,4,11\n5,6\n")
    convert_fails(p, "--window", "5", expect=[f"{p}:3:", "expected 3 columns, got 2"])
    p = write(tmp_path, "wide.csv", "1,2,10\n3,4,11,7\n")
    convert_fails(p, "--window", "5", expect=[f"{p}:2:", "expected 3 columns, got 4"])
    p = write(tmp_path, "two.csv", "1,2\n3,4\n")
    convert_fails(p, "--window", "5", expect=[f"{p}:1:", "expected 3 or 4 columns"])


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf", "-1e400", "-99999999999999999999999"])
def test_bad_timestamps(convert_fails, tmp_path, stamp):
    p = write(tmp_path, "e.csv", f"# header comment\n1,2,10\n3,4,{stamp}\n")
    convert_fails(p, "--window", "5", expect=[f"{p}:3:", "timestamp"])


def test_node_id_beyond_int64(convert_fails, tmp_path):
    p = write(tmp_path, "e.csv", "1,2,10\n9223372036854775808,4,11\n")
    convert_fails(p, "--window", "5", expect=[f"{p}:2:", "does not fit in int64"])


@pytest.mark.parametrize("window", ["0", "-3", "0d"])
def test_window_not_positive(convert_fails, tmp_path, window):
    convert_fails(FIX / "bitcoin_like.csv", f"--window={window}", expect=["window", window])


def test_lifetime_shorter_than_window(convert_fails, tmp_path):
    convert_fails(FIX / "bitcoin_like.csv", "--window", "10", "--lifetime", "5", expect=["lifetime 5", ">= window"])


def test_output_exists_unless_force(cli, tmp_path, leftovers):
    out = tmp_path / "store"
    out.mkdir()
    r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", out, "--window", "10")
    assert r.code == 2 and len(r.error_lines) == 1 and str(out) in r.err and "--force" in r.err
    r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", out, "--window", "10", "--force")
    assert r.code == 0 and (out / "manifest.json").is_file()  # an empty directory is replaced
    before = DeltaStore.open(out).num_snapshots
    r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", out, "--window", "20", "--force")
    assert r.code == 0 and DeltaStore.open(out).num_snapshots < before  # and a store
    assert leftovers(tmp_path, "store") == []


def test_force_never_replaces_what_is_not_a_store(cli, tmp_path, leftovers, monkeypatch):
    """--force replaces a store or an empty directory: never other files, the working
    directory or one above it, or the directory that holds the source."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", mine, "--window", "10", "--force")
    assert r.code == 2 and len(r.error_lines) == 1 and "not a dyngnn store" in r.err and str(mine) in r.err
    assert (mine / "thesis.tex").read_text() == "years of work" and leftovers(tmp_path, "mine") == []
    work = tmp_path / "work"
    (work / "inner").mkdir(parents=True)
    monkeypatch.chdir(work / "inner")
    for out in (".", ".."):
        r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", out, "--window", "10", "--force")
        assert r.code == 2 and len(r.error_lines) == 1 and "working directory" in r.err, r.err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    data = tmp_path / "data"
    data.mkdir()
    source = data / "edges.csv"
    source.write_text((FIX / "bitcoin_like.csv").read_text())
    r = cli("data", "convert", source, "--out", data, "--window", "10", "--force")
    assert r.code == 2 and len(r.error_lines) == 1 and "holds the source" in r.err
    assert source.exists()


def test_a_killed_writer_leaves_nothing_the_next_one_keeps(cli, tmp_path, leftovers):
    """Work directories of writers that died are removed by the next write of that
    output; a live writer's are left alone."""
    import os
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # exited and reaped: its pid names no process
    host = socket.gethostname().replace("-", "_")
    stale = tmp_path / f".store.tmp-{host}-{dead.pid}-0000"
    stale.mkdir()
    (stale / "half.npy").write_bytes(b"x" * 100)
    live = tmp_path / f".store.tmp-{host}-{os.getpid()}-1111"
    live.mkdir()
    r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", tmp_path / "store", "--window", "10")
    assert r.code == 0, r.err
    assert not stale.exists() and live.exists()


def test_stores_get_the_permissions_the_umask_gives(cli, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", tmp_path / "shared", "--window", "10")
    finally:
        os.umask(old)
    assert r.code == 0, r.err
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755


@pytest.mark.parametrize("first", ["1,2,1OO", "x1,2,100", "1,2,1e9e"])
def test_a_typo_in_the_first_row_is_an_error_not_a_header(convert_fails, tmp_path, first):
    """A header is recognised by its names: a first row with numbers and one mistyped
    field is data with a typo, reported on its line, never dropped."""
    p = write(tmp_path, "typo.csv", f"{first}\n3,4,200\n5,6,300\n")
    convert_fails(p, "--window", "10", expect=[f"{p}:1:"])
    p = write(tmp_path, "named.csv", "from,to,ts\n1,2,100\n3,4,200\n")
    assert len(read_edge_list(p).src) == 2  # names make a header


def test_json_targets_or_features_on_some_snapshots_only(convert_fails, tmp_path):
    doc = json.loads((FIX / "per_snapshot.json").read_text())
    del doc["1"]["y"]
    p = write(tmp_path, "some_y.json", json.dumps(doc))
    convert_fails(p, expect=[str(p), "snapshot 1 has no 'y'", "every snapshot"])
    doc = json.loads((FIX / "per_snapshot.json").read_text())
    del doc["0"]["X"]
    p = write(tmp_path, "some_x.json", json.dumps(doc))
    convert_fails(p, expect=[str(p), "snapshot 0 has no 'X'"])


def test_json_weights_that_are_not_finite(convert_fails, tmp_path):
    text = (FIX / "per_snapshot.json").read_text().replace('"weights": [3]', '"weights": [NaN]')
    p = write(tmp_path, "nan.json", text)
    convert_fails(p, expect=[str(p), "snapshot 1", "not a finite number"])


def test_verify_finds_a_weight_that_is_not_finite(cli, store):
    weights = store / "weights.npy"
    data = np.load(weights, mmap_mode="r+")
    data[0] = np.nan
    data.flush()
    del data
    manifest = store / "manifest.json"
    meta = json.loads(manifest.read_text())
    from dyngnn.data.npyfile import data_sha256

    meta["arrays"]["weights"]["sha256"] = data_sha256(np.load(weights))  # a store written with a NaN weight
    manifest.write_text(json.dumps(meta))
    r = cli("data", "verify", store)
    assert r.code == 2 and len(r.error_lines) == 1 and "not a finite number" in r.err, r.err


def test_json_matching_neither_schema(convert_fails, tmp_path):
    p = write(tmp_path, "other.json", json.dumps({"nodes": [1, 2], "links": []}))
    convert_fails(p, expect=[f"{p}", "neither PyTorch Geometric Temporal schema"])
    p = write(tmp_path, "broken.json", '{"time_periods": 3,\n "y": [}')
    convert_fails(p, expect=[f"{p}:2:", "not valid JSON"])


@pytest.fixture
def store(cli, tmp_path):
    out = tmp_path / "good"
    r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", out, "--window", "10", "--weight", "sum")
    assert r.code == 0, r.err
    return out


def check_store_fails(cli, path, *expect, commands=("inspect", "verify")):
    for command in commands:
        r = cli("data", command, path)
        assert r.code == 2, (command, r.err)
        assert len(r.error_lines) == 1, r.err
        for piece in expect:
            assert piece in r.error_lines[0], r.error_lines[0]


def test_store_with_a_truncated_array(cli, store):
    pairs = store / "pairs.npy"
    pairs.write_bytes(pairs.read_bytes()[:-3])
    check_store_fails(cli, store, f"{pairs}", "truncated")


def test_store_with_one_flipped_byte(cli, store):
    weights = store / "weights.npy"
    data = bytearray(weights.read_bytes())
    data[-2] ^= 0x10
    weights.write_bytes(bytes(data))
    check_store_fails(cli, store, f"{weights}", "checksum mismatch", commands=("verify",))


def test_training_checks_the_checksums_of_what_it_reads(cli, store, tmp_path):
    """A store that verify rejects does not train (unless asked not to check)."""
    weights = store / "weights.npy"
    data = bytearray(weights.read_bytes())
    data[-2] ^= 0x10  # a weight changed, still a valid float: only the checksum can tell
    weights.write_bytes(bytes(data))
    args = ["--data.store", store, "--training.epochs", "1", "--run.no-progress", "--model.hidden", "4"]
    r = cli("train", *args, "--run.dir", tmp_path / "run")
    assert r.code == 2 and len(r.error_lines) == 1 and f"{weights}: checksum mismatch" in r.err, r.err
    assert not (tmp_path / "run").exists()
    r = cli("train", *args, "--run.dir", tmp_path / "run2", "--data.no-checksums")
    assert "checksum" not in r.err and "too few for train/val/test" in r.err  # past the check (3 snapshots)


def test_training_on_a_store_with_a_node_id_out_of_range_stops_before_any_work(cli, store, tmp_path):
    pairs = np.load(store / "pairs.npy", mmap_mode="r+")
    pairs[3, 1] = DeltaStore.open(store).num_nodes  # one past the last node
    pairs.flush()
    r = cli("train", "--data.store", store, "--run.dir", tmp_path / "run", "--training.epochs", "1")
    assert r.code == 2 and r.error_lines == [
        f"dyngnn: error: {store / 'pairs.npy'}: checksum mismatch (the file is corrupted)"
    ]
    # without the checksums (or with a writer that got the ids wrong), the ids are still checked
    r = cli(
        "train", "--data.store", store, "--run.dir", tmp_path / "run", "--training.epochs", "1", "--data.no-checksums"
    )
    assert r.code == 2 and r.error_lines == [
        f"dyngnn: error: {store}: node ids outside 0..{DeltaStore.open(store).num_nodes - 1} (damaged store? "
        "dyngnn data verify checks it)"
    ], r.err
    assert not (tmp_path / "run").exists()
    check_store_fails(cli, store, "pairs.npy: checksum mismatch", commands=("verify",))


def test_store_from_a_newer_format(cli, store):
    manifest = store / "manifest.json"
    meta = json.loads(manifest.read_text())
    meta["format_version"] = 99
    manifest.write_text(json.dumps(meta))
    check_store_fails(cli, store, f"{store}", "format version 99", "upgrade dyngnn")


@pytest.mark.parametrize("value", ["many", 12.5, -3, None])
def test_a_manifest_whose_counts_are_not_integers(cli, store, value):
    manifest = store / "manifest.json"
    meta = json.loads(manifest.read_text())
    meta["num_nodes"] = value
    manifest.write_text(json.dumps(meta))
    check_store_fails(cli, store, "manifest.json", "num_nodes must be an integer", repr(value))


def test_a_directory_or_a_device_as_the_source(convert_fails, tmp_path):
    folder = tmp_path / "edges"
    folder.mkdir()
    convert_fails(folder, "--window", "10", expect=[str(folder), "is a directory"])
    convert_fails("/dev/null", "--window", "10", expect=["/dev/null", "not a regular file"])


def test_a_config_file_that_is_not_utf8(cli, tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes("[training]\nepochs = 3  # \u00e9poques\n".encode("latin-1"))
    r = cli("train", "--config", config, "--run.dir", tmp_path / "run")
    assert r.code == 2 and len(r.error_lines) == 1 and str(config) in r.err and "not UTF-8" in r.err, r.err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["KILL", "STOP", "sigkill"])
def test_a_stop_signal_that_cannot_be_caught(cli, tmp_path, name):
    r = cli("train", "--run.stop_signal", name, "--run.dir", tmp_path / "run")
    assert r.code == 2 and len(r.error_lines) == 1 and "cannot be caught" in r.err, r.err
    assert not (tmp_path / "run").exists()


def test_not_a_store(cli, tmp_path):
    check_store_fails(cli, tmp_path / "nothing", "no such store directory")
    (tmp_path / "plain").mkdir()
    check_store_fails(cli, tmp_path / "plain", "no manifest.json")


def test_every_flipped_byte_is_caught_by_verify(cli, store):
    """A flip anywhere in any array (header or data) fails open or verify, never passes."""
    rng = np.random.default_rng(0)
    for path in sorted(store.glob("*.npy")):
        original = path.read_bytes()
        for pos in rng.choice(len(original), size=min(6, len(original)), replace=False):
            data = bytearray(original)
            data[pos] ^= 1 << int(rng.integers(0, 8))
            path.write_bytes(bytes(data))
            r = cli("data", "verify", store)
            assert r.code == 2, (path.name, pos, r.out)
        path.write_bytes(original)
    assert cli("data", "verify", store).code == 0


def test_usage_errors_are_one_line(cli, tmp_path):
    r = cli("data", "convert", FIX / "bitcoin_like.csv")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "--out" in r.err
    r = cli(
        "data", "synth", "--out", tmp_path / "s", "--nodes", "10", "--edges", "5", "--snapshots", "2", "--churn", "2"
    )
    assert r.code == 2 and "--churn 2.0" in r.err and not (tmp_path / "s").exists()


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(kib, read_only=False)``: a directory on a tmpfs of that size (needs
    root), unmounted afterwards."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = []

    def make(kib: int, read_only: bool = False) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        options = f"size={kib}k" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        if subprocess.run(["umount", str(where)], check=False).returncode:
            subprocess.run(["umount", "-l", str(where)], check=False)  # detached once nothing holds it


def test_a_full_disk_during_convert_is_one_line_and_leaves_nothing(cli, small_disk, leftovers):
    disk = small_disk(64)
    out = disk / "store"
    r = cli("data", "synth", "--out", out, "--nodes", "3000", "--edges", "30000", "--snapshots", "8", "--churn", "0.1")
    assert r.code == 2 and len(r.error_lines) == 1, r.err
    assert "No space left" in r.err and str(disk) in r.err
    assert not out.exists() and leftovers(disk, "store") == []


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_run(cli, train_args, small_disk, tmp_path):
    from dyngnn.data.synthetic import synthesize

    store = tmp_path / "s"
    synthesize(store, num_nodes=60, num_edges=150, num_snapshots=12, churn=0.1, seed=1)
    run = small_disk(96) / "run"
    r = cli("train", *train_args(store, run, hidden=64))
    assert r.code == 2 and len(r.error_lines) == 1, r.err
    assert "cannot write the checkpoint" in r.err and "epoch-00001.pt" in r.err
    assert [p.name for p in (run / "checkpoints").iterdir()] == []  # no partial file


def test_a_read_only_output_or_cache_is_one_line(cli, small_disk, tmp_path):
    ro = small_disk(64, read_only=True)
    r = cli("data", "convert", FIX / "bitcoin_like.csv", "--out", ro / "store", "--window", "10")
    assert r.code == 2 and len(r.error_lines) == 1 and str(ro / "store") in r.err and "Read-only" in r.err, r.err
    r = cli("train", "--data.cache_dir", ro / "cache", "--run.dir", tmp_path / "run", "--training.epochs", "1")
    assert r.code == 2 and len(r.error_lines) == 1 and str(ro / "cache") in r.err and "Read-only" in r.err, r.err
