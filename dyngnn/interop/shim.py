"""Import PyTorch Geometric Temporal without the compiled ``torch_sparse`` package.

Its top-level import reaches ``from torch_sparse import SparseTensor``; PyG ships a
pure-Python ``SparseTensor`` stand-in (``torch_geometric.typing.SparseTensor``) that
serves every use dyngnn makes of the library. This is the only place that knows.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from dyngnn.errors import InputError


def import_pygt() -> Any:
    """Return the ``torch_geometric_temporal`` module, registering the shim if needed.

    Raises:
        InputError: PyTorch Geometric Temporal is not installed.
    """
    try:
        importlib.import_module("torch_sparse")
    except ImportError:
        from torch_geometric.typing import SparseTensor

        shim = types.ModuleType("torch_sparse")
        shim.SparseTensor = SparseTensor
        sys.modules["torch_sparse"] = shim
    try:
        return importlib.import_module("torch_geometric_temporal")
    except ImportError as e:
        raise InputError(
            f"PyTorch Geometric Temporal is not installed ({e}); pip install --no-deps torch-geometric-temporal==0.56.2"
        ) from None
