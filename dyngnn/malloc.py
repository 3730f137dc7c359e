"""What the C allocator does with freed memory: the ``run.malloc`` setting (glibc only).

An epoch allocates the same large tensors every time (every snapshot's sparse matrices,
activations and their gradients). glibc serves blocks of 32 MiB and more from fresh
``mmap`` pages and unmaps them when they are freed, so each epoch pays again for the
kernel to fault in and zero every page; on CPU that is about a third of an epoch on a
large graph (``benchmarks/RESULTS.md``). The settings:

- ``reuse`` (default): no block comes from ``mmap`` and the heap is not trimmed, so freed
  blocks stay in the process and later tensors reuse their pages. The process keeps its
  high-water mark of memory.
- ``glibc``: glibc's own policy, left as it is.
- ``mmap:N``: blocks of N MiB (1..32) and more come from ``mmap`` and go back to the
  operating system when freed: the lowest memory per process, and the slowest epochs.

The setting is process-wide. ``MALLOC_*`` variables or ``glibc.malloc`` tunables in the
environment win: then nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys

from dyngnn.errors import InputError

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MMAP_MAX_DEFAULT = 65536  # glibc's default number of blocks served from mmap at once
_MMAP_THRESHOLD_MAX_MIB = 32  # glibc refuses larger thresholds on 64-bit systems
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def parse(value: str) -> tuple[str, int]:
    """``(kind, MiB)`` of a ``run.malloc`` value: ``("reuse", 0)``, ``("glibc", 0)`` or ``("mmap", N)``.

    Raises:
        InputError: any other value.
    """
    if value in ("reuse", "glibc"):
        return value, 0
    kind, _, mib = value.partition(":")
    if kind == "mmap" and mib.isdigit() and 1 <= int(mib) <= _MMAP_THRESHOLD_MAX_MIB:
        return kind, int(mib)
    raise InputError(
        f"run.malloc {value!r}: expected 'reuse', 'glibc' or 'mmap:N' with N MiB in 1..{_MMAP_THRESHOLD_MAX_MIB}"
    )


def environment_decides() -> bool:
    """Whether the environment already tunes glibc's allocator (then it wins)."""
    return any(name in os.environ for name in _ENVIRONMENT) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def apply(value: str) -> bool:
    """Set the policy ``value`` (see the module doc) for this process; whether anything was set.

    Nothing is set for ``glibc``, off Linux or glibc, or when :func:`environment_decides`.
    """
    kind, mib = parse(value)
    if kind == "glibc" or not sys.platform.startswith("linux") or environment_decides():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    if kind == "mmap":
        return bool(mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)) and bool(mallopt(_M_MMAP_THRESHOLD, mib << 20))
    # a trim threshold of -1 turns trimming off: a freed top of the heap stays too
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
