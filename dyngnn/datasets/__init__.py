"""Datasets bundled with dyngnn, loadable by name wherever a source path is accepted.

``bitcoinalpha``: the SNAP Bitcoin Alpha trust network (24,186 rated edges between
3,783 users, 2010-11-08 to 2016-01-22; ``SOURCE,TARGET,RATING,TIME``). Cite:
S. Kumar, F. Spezzano, V.S. Subrahmanian, C. Faloutsos. Edge Weight Prediction in
Weighted Signed Networks. ICDM 2016. See README.md beside this file.
"""

from __future__ import annotations

from pathlib import Path

from dyngnn.errors import InputError

_HERE = Path(__file__).parent
DATASETS: dict[str, str] = {
    "bitcoinalpha": "soc-sign-bitcoinalpha.csv",
}


def path(name: str) -> Path:
    """The file of a bundled dataset.

    Raises:
        InputError: no bundled dataset has that name.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: bundled datasets are {', '.join(DATASETS)}")
    return _HERE / DATASETS[name]


def resolve(source: str | Path) -> Path:
    """A source argument -> a file: an existing path, else a bundled dataset name."""
    p = Path(source)
    if p.exists() or str(source) not in DATASETS:
        if not p.exists():
            hint = f" (and not a bundled dataset: {', '.join(DATASETS)})" if p.suffix == "" else ""
            raise InputError(f"{source}: no such file{hint}")
        return p
    return path(str(source))
