"""The dyngnn command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from dyngnn.data import DeltaStore, load_snapshots

FIX = Path(__file__).parent / "fixtures"


def test_convert_inspect_verify(cli, tmp_path):
    out = tmp_path / "s"
    r = cli(
        "data",
        "convert",
        FIX / "bitcoin_like.csv",
        "--out",
        out,
        "--window",
        "10",
        "--lifetime",
        "20",
        "--weight",
        "sum",
        "--undirected",
        "--keyframe-every",
        "0",
    )
    assert r.code == 0, r.err
    expected, _ = load_snapshots(FIX / "bitcoin_like.csv", window=10, lifetime=20, weight="sum", undirected=True)
    store = DeltaStore.open(out)
    for t in range(expected.num_snapshots):
        keys, w = store.snapshot_keys(t)
        np.testing.assert_array_equal(keys, expected.keys[t])
        np.testing.assert_array_equal(w, expected.weights[t])
    r = cli("data", "inspect", out, "--json")
    info = json.loads(r.out)
    assert r.code == 0 and info["num_nodes"] == 3 and info["num_snapshots"] == 3
    assert [s["edges"] for s in info["snapshots"]] == [len(k) for k in expected.keys]
    assert info["source"]["window"] == 10 and info["source"]["lifetime"] == 20
    r = cli("data", "inspect", out)
    assert r.code == 0 and "snapshots   3" in r.out and "keyframe" in r.out
    r = cli("data", "verify", out)
    assert r.code == 0 and "ok" in r.out


def test_convert_pygt_json_keeps_targets(cli, tmp_path):
    r = cli("data", "convert", FIX / "edge_mapping.json", "--out", tmp_path / "s")
    assert r.code == 0, r.err
    store = DeltaStore.open(tmp_path / "s")
    assert store.weighted and store.node_data("y", 2).tolist() == [7.0, 8.0, 9.0]


def test_synth_then_verify(cli, tmp_path):
    r = cli(
        "data",
        "synth",
        "--out",
        tmp_path / "s",
        "--nodes",
        "500",
        "--edges",
        "2000",
        "--snapshots",
        "5",
        "--churn",
        "0.05",
        "--seed",
        "1",
    )
    assert r.code == 0, r.err
    assert cli("data", "verify", tmp_path / "s").code == 0
    info = json.loads(cli("data", "inspect", tmp_path / "s", "--json").out)
    assert info["source"]["seed"] == 1 and [s["edges"] for s in info["snapshots"]] == [2000] * 5
    assert [s["added"] for s in info["snapshots"][1:]] == [100] * 4


def test_console_script_on_the_bundled_dataset(tmp_path):
    exe = Path(sys.executable).with_name("dyngnn")
    env = os.environ | {"PYTHONWARNINGS": "ignore"}
    out = tmp_path / "btc"
    run = subprocess.run(
        [exe, "data", "convert", "bitcoinalpha", "--out", out, "--window", "1d", "--lifetime", "30d"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run([exe, "data", "inspect", out, "--json"], capture_output=True, text=True, env=env, check=False)
    info = json.loads(run.stdout)
    assert info["num_nodes"] == 3783 and info["num_snapshots"] == 1902
    assert info["stored_graph_bytes"] < info["full_snapshot_bytes"] / 10
    run = subprocess.run(
        [exe, "data", "convert", "nothing.csv", "--out", tmp_path / "x", "--window", "1d"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 2 and run.stderr.strip() == "dyngnn: error: nothing.csv: no such file"


def test_slurm_synth_script_runs_as_plain_bash(tmp_path):
    exe = Path(sys.executable).with_name("dyngnn")
    env = os.environ | {
        "NODES": "300",
        "EDGES": "900",
        "SNAPSHOTS": "4",
        "CHURN": "0.1",
        "OUT": str(tmp_path / "s"),
        "DYNGNN": str(exe),
        "PYTHONWARNINGS": "ignore",
    }
    script = Path(__file__).parent.parent / "slurm" / "synth.sbatch"
    run = subprocess.run(
        ["bash", script, "--keyframe-every", "2"], capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "ok (4 snapshots" in run.stdout
    store = DeltaStore.open(tmp_path / "s")
    assert store.keyframe_every == 2 and store.is_keyframe(2) and len(store.snapshot_keys(3)[0]) == 900
