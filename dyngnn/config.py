"""The configuration tree: one dataclass per section, resolved as defaults < TOML < CLI.

``dyngnn train --config FILE --section.key value ...``: the TOML file sets any subset of
keys, the dotted flags override them (parsed by tyro). Unknown keys and values of the
wrong type are refused up front with one line that names the key and its source, and
lists close matches.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import re
import signal
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dyngnn import malloc
from dyngnn.errors import InputError


@dataclass
class DataConfig:
    store: str = ""
    """Path of a delta store. Empty: convert `source`, cached under `cache_dir`."""
    source: str = "bitcoinalpha"
    """Edge list, PyG-Temporal JSON or bundled dataset name, used when `store` is empty."""
    window: str = "7d"
    """Snapshot length for event lists: seconds or a number with s/m/h/d/w."""
    lifetime: str = ""
    """How long an event stays in snapshots (empty: one window)."""
    weight: Literal["", "none", "count", "sum", "last"] = ""
    """Edge weight from repeated events (empty: none for event lists, sum for snapshot files)."""
    undirected: bool = False
    """Add the reverse of every edge when converting."""
    keyframe_every: int = 64
    """Forced keyframe interval of converted stores."""
    cache_dir: str = "runs/cache"
    """Where converted sources are kept, keyed by source and conversion options."""
    balance: Literal["count", "edges"] = "count"
    """Snapshot blocks per rank: equal numbers of snapshots, or about equal numbers of edges."""
    checksums: bool = True
    """Check the sha256 of every array of the store before training, once per process (`--data.no-checksums`: skip)."""


@dataclass
class TaskConfig:
    kind: Literal["link", "node"] = "link"
    """`link`: predict the edges of snapshot t+1; `node`: predict node targets of t+1."""
    targets: Literal["regression", "classes"] = "regression"
    """For `node`: real-valued targets (MSE, MAE) or integer class ids (accuracy, macro-F1)."""
    decoder: Literal["dot", "mlp"] = "dot"
    """Link scorer: dot product of node states, or a small MLP on both."""
    negatives: int = 1
    """Training negatives per positive edge."""
    eval_negatives: int = 20
    """Evaluation negatives per positive edge (AUC, AP, MRR)."""
    max_positives: int = 0
    """Train on at most this many edges of each target snapshot, drawn anew every epoch (0: all)."""
    eval_max_positives: int = 100_000
    """Evaluate on at most this many edges of each target snapshot, the same sample every epoch (0: all)."""
    val_fraction: float = 0.15
    """Share of transitions t -> t+1 used for validation (after the training ones)."""
    test_fraction: float = 0.15
    """Share of transitions used for the test (the last ones)."""

    def validate(self) -> None:
        if not (
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise InputError("task.val_fraction and task.test_fraction must be in (0, 1) and sum below 1")
        _at_least(self, "task", negatives=1, eval_negatives=1, max_positives=0, eval_max_positives=0)


@dataclass
class ModelConfig:
    hidden: int = 32
    """Width of the GCN layers and of the LSTM state."""
    gcn_layers: int = 2
    """GCN layers applied to every snapshot."""
    lstm_layers: int = 1
    """Stacked LSTM layers over time."""
    activation: Literal["relu", "tanh", "gelu", "elu"] = "relu"
    """Activation between GCN layers."""
    dropout: float = 0.0
    """Dropout on GCN inputs (masks keyed by seed, epoch and snapshot)."""
    embedding_dim: int = 0
    """Size of a learnable per-node embedding added to the inputs (0: none)."""
    structural: bool = True
    """Use log in/out degree of every snapshot as node inputs."""
    checkpoint_every: int = 0
    """Recompute the GCN stage in chunks of this many snapshots to save memory (0: off)."""
    compile: Literal["auto", "on", "off"] = "auto"
    """CPU: run each LSTM step as fused kernels built by torch.compile (needs a C++ compiler; the first build takes seconds, then it is cached); `auto`: where a step holds at least 2**21 values (nodes x hidden)."""

    def validate(self) -> None:
        if self.hidden < 1 or self.gcn_layers < 1 or self.lstm_layers < 1:
            raise InputError("model.hidden, model.gcn_layers and model.lstm_layers must be >= 1")
        if not 0 <= self.dropout < 1:
            raise InputError(f"model.dropout {self.dropout}: must be in [0, 1)")
        _at_least(self, "model", embedding_dim=0, checkpoint_every=0)


@dataclass
class TrainingConfig:
    epochs: int = 20
    """Passes over the training snapshots."""
    lr: float = 0.01
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    seed: int = 0
    """Seeds initial weights, negatives and dropout masks."""
    dtype: Literal["float32", "float64"] = "float32"
    """Parameter and activation dtype."""

    def validate(self) -> None:
        if self.epochs < 1:
            raise InputError(f"training.epochs {self.epochs}: must be >= 1")
        if not 0 < self.lr < math.inf:
            raise InputError(f"training.lr {self.lr}: must be a finite number > 0")
        if not 0 <= self.weight_decay < math.inf:
            raise InputError(f"training.weight_decay {self.weight_decay}: must be a finite number >= 0")


@dataclass
class TransferConfig:
    mode: Literal["full", "delta", "resident"] = "delta"
    """How snapshots reach the device: whole, as deltas, or kept resident after epoch 1."""


@dataclass
class RunConfig:
    dir: str = "runs/default"
    """Run directory: resolved config, metrics.jsonl, checkpoints."""
    device: str = "auto"
    """`auto` (cuda when available), `cpu`, `cuda` or `cuda:N`."""
    resume: bool = False
    """Continue from the last checkpoint in `dir`."""
    checkpoint_every: int = 1
    """Save a checkpoint every this many epochs (the last epoch always)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    progress: bool = True
    """Show progress bars (rank 0, interactive terminals)."""
    tensorboard: bool = False
    """Also log metrics to TensorBoard under `dir/tb` (needs the tensorboard package)."""
    malloc: str = "reuse"
    """glibc only, process-wide: `reuse` keeps freed memory in the process for the next epoch's tensors (fastest; memory stays at its high-water mark), `glibc` leaves glibc's policy, `mmap:N` returns freed blocks of N MiB (1..32) and more to the OS (lowest memory per rank, slower). MALLOC_* variables in the environment win."""
    stop_signal: str = "USR1"
    """On this signal, finish the current epoch, checkpoint and exit with status 0, ready to resume (SLURM `--signal`); empty: off."""

    def validate(self) -> None:
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise InputError("run.checkpoint_every and run.keep_checkpoints must be >= 1")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise InputError(f"run.device {self.device!r}: expected auto, cpu, cuda or cuda:N")
        if Path(self.dir).exists() and not Path(self.dir).is_dir():
            raise InputError(f"run.dir {self.dir}: exists and is not a directory")
        malloc.parse(self.malloc)
        signal_number(self.stop_signal)


def _at_least(section: Any, name: str, **bounds: int) -> None:
    """Refuse the first key of ``section`` below its bound, naming it."""
    for key, low in bounds.items():
        if getattr(section, key) < low:
            raise InputError(f"{name}.{key} {getattr(section, key)}: must be >= {low}")


def signal_number(name: str) -> signal.Signals | None:
    """The signal ``run.stop_signal`` names (``USR1`` or ``SIGUSR1``, any case); None for ``""``.

    Raises:
        InputError: no such signal.
    """
    if not name:
        return None
    try:
        number = signal.Signals[f"SIG{name.upper().removeprefix('SIG')}"]
    except KeyError:
        raise InputError(f"run.stop_signal {name!r}: not a signal name (for example USR1, USR2, TERM)") from None
    if number in (signal.SIGKILL, signal.SIGSTOP):
        raise InputError(f"run.stop_signal {name!r}: this signal cannot be caught; use USR1, USR2 or TERM")
    return number


def ignored_settings(cfg: Config, json_source: bool = False) -> list[str]:
    """The settings changed from their defaults that this run would not use, one line
    each: conversion options beside ``data.store``, binning options for a source that
    comes in snapshots (PyG-Temporal JSON, ``json_source``), and one task's settings in
    the other task."""
    out = []

    def changed(section: object, keys: tuple[str, ...]) -> list[str]:
        default = type(section)()
        return [k for k in keys if getattr(section, k) != getattr(default, k)]

    d, t = cfg.data, cfg.task
    conversion = ("source", "window", "lifetime", "weight", "undirected", "keyframe_every", "cache_dir")
    if d.store and (keys := changed(d, conversion)):
        names = ", ".join(f"data.{k}" for k in keys)
        out.append(f"{names} ignored: data.store {d.store} is used as it is (they apply when converting data.source)")
    elif json_source and (keys := changed(d, ("window", "lifetime"))):
        names = ", ".join(f"data.{k}" for k in keys)
        out.append(f"{names} ignored: {d.source} is PyG-Temporal JSON, whose snapshots are given")
    link_only = ("decoder", "negatives", "eval_negatives", "max_positives", "eval_max_positives")
    other = changed(t, link_only) if t.kind == "node" else changed(t, ("targets",))
    if other:
        names = ", ".join(f"task.{k}" for k in other)
        out.append(
            f"{names} ignored: they apply to task.kind = '{'link' if t.kind == 'node' else 'node'}', not '{t.kind}'"
        )
    return out


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> Config:
        """Check every section's values together (after TOML and CLI are applied).

        Raises:
            InputError: a value out of its range, naming the key.
        """
        for section in (self.task, self.model, self.training, self.run):
            section.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def _fields(section: str) -> dict[str, Any]:
    return typing.get_type_hints(SECTIONS[section])


def known_keys() -> list[str]:
    return [f"{s}.{k}" for s in SECTIONS for k in _fields(s)]


def _unknown(key: str, where: str) -> InputError:
    candidates = known_keys() if "." in key else list(SECTIONS)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see dyngnn train --help"
    return InputError(f"{where}: unknown config key {key!r}{hint}")


def _check_type(key: str, value: Any, typ: Any, where: str) -> Any:
    """Check one value against a field type; convert strings from the command line."""
    from_cli = isinstance(value, str) and typ is not str
    origin = typing.get_origin(typ)
    if origin is Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices)
            raise InputError(f"{where}: {key} = {value!r}: expected one of {shown}")
        return value
    if origin in (typing.Union, types.UnionType):
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    try:
        if typ is bool:
            if from_cli:
                raise ValueError
            if not isinstance(value, bool):
                raise TypeError
            return value
        if typ is int:
            if isinstance(value, bool) or (not from_cli and not isinstance(value, int)):
                raise TypeError
            return int(value)
        if typ is float:
            if isinstance(value, bool) or (not from_cli and not isinstance(value, (int, float))):
                raise TypeError
            return float(value)
        if typ is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise InputError(f"{where}: {key} = {value!r}: expected {typ.__name__}") from None
    return value


def load_toml(path: Path | str) -> Config:
    """A Config from a TOML file (any subset of sections and keys; defaults elsewhere).

    Raises:
        InputError: missing file, invalid TOML, unknown keys (with close matches) or
            values of the wrong type.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; --config expects a TOML file (examples in configs/)")
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: invalid TOML ({e})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); a TOML file is UTF-8") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror})") from None
    return from_dict(doc, str(path))


def from_dict(doc: dict[str, Any], where: str = "config") -> Config:
    sections = {}
    for section, values in doc.items():
        if section not in SECTIONS:
            raise _unknown(section, where)
        if not isinstance(values, dict):
            raise InputError(f"{where}: [{section}] must be a table of keys")
        fields = _fields(section)
        kwargs = {}
        for key, value in values.items():
            if key not in fields:
                raise _unknown(f"{section}.{key}", where)
            kwargs[key] = _check_type(f"{section}.{key}", value, fields[key], where)
        sections[section] = SECTIONS[section](**kwargs)
    return Config(**sections).validate()


def parse_cli(argv: list[str]) -> Config:
    """Resolve ``[--config FILE] [--resume] [--section.key value ...]`` into a Config.

    Keys and values are checked here (one-line errors with close matches); tyro then
    parses the overrides on top of the TOML values. ``--resume`` without ``--config``
    starts from the run directory's ``config.json``, so only what changes (more
    epochs, say) needs to be given again.
    """
    import tyro

    argv = list(argv)
    base = Config()
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise InputError("--config: expects a TOML file")
        base = load_toml(argv[i + 1])
        del argv[i : i + 2]
    elif "--resume" in argv or "--run.resume" in argv:
        saved = Path(_flag_value(argv, "--run.dir") or base.run.dir) / "config.json"
        if saved.is_file():
            try:
                base = from_dict(json.loads(saved.read_text(encoding="utf-8")), str(saved))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise InputError(f"{saved}: not valid JSON ({e})") from None
    if "--resume" in argv:
        argv.remove("--resume")
        argv.append("--run.resume")
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            break
        if not arg.startswith("--") or "." not in arg:
            raise InputError(f"command line: unexpected argument {arg!r} (settings are --section.key value)")
        key, _, inline = arg[2:].partition("=")
        negated = False
        section, _, name = key.partition(".")
        if name.startswith("no-") or name.startswith("no_"):
            negated, name = True, name[3:]
        name = name.replace("-", "_")
        if section not in SECTIONS or name not in _fields(section):
            raise _unknown(key, "command line")
        typ = _fields(section)[name]
        if typ is bool:
            if inline:
                raise InputError(f"command line: --{key} is a switch (use --{section}.{name} or --{section}.no-{name})")
            i += 1
            continue
        if negated:
            raise _unknown(key, "command line")
        value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else None)
        if value is None:
            raise InputError(f"command line: --{key} expects a value")
        _check_type(f"{section}.{name}", value, typ, "command line")
        i += 1 if inline else 2
    return tyro.cli(Config, args=argv, default=base, prog="dyngnn train", description=TRAIN_HELP).validate()


TRAIN_HELP = """Train a temporal GCN-LSTM. Settings: defaults < --config FILE (TOML) < --section.key value.
--config FILE: a TOML file with any subset of the sections below (examples in configs/).
--resume: continue the run in --run.dir from its last checkpoint; without --config, the
run's config.json gives the settings, so only changes (more epochs, say) need repeating."""


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag value`` or ``--flag=value``), if given."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


README_BEGIN = "<!-- configuration reference: generated by `python -m dyngnn.config --write`; do not edit -->"
README_END = "<!-- end of the configuration reference -->"


def reference_markdown() -> str:
    """The configuration reference of the README, generated from the dataclasses."""
    import ast
    import inspect

    lines = [
        "Set keys in a TOML file (`--config FILE`, sections as tables) or on the command line",
        "as `--section.key value` (switches: `--section.key` / `--section.no-key`). This table",
        "is generated from `dyngnn/config.py`, and a test keeps it in step with the code.",
    ]
    for section, cls in SECTIONS.items():
        docs: dict[str, str] = {}
        body = ast.parse(inspect.getsource(cls)).body[0].body
        for node, nxt in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
        lines += ["", f"### [{section}]", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        defaults = cls()
        for name, typ in _fields(section).items():
            shown = (
                " \\| ".join(repr(a) for a in typing.get_args(typ))
                if typing.get_origin(typ) is Literal
                else typ.__name__
            )
            lines.append(f"| `{name}` | {shown} | `{getattr(defaults, name)!r}` | {docs.get(name, '')} |")
    return "\n".join(lines) + "\n"


def readme_with_reference(readme: str) -> str:
    """``readme`` with the text between its reference markers replaced by the current one."""
    try:
        head, rest = readme.split(README_BEGIN, 1)
        _, tail = rest.split(README_END, 1)
    except ValueError:
        raise InputError(f"README: the markers {README_BEGIN!r} and {README_END!r} are missing") from None
    return f"{head}{README_BEGIN}\n{reference_markdown()}{README_END}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        readme = Path(__file__).resolve().parent.parent / "README.md"
        readme.write_text(readme_with_reference(readme.read_text()))
    else:
        print(reference_markdown(), end="")
