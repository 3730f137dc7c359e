"""Memory-mappable ``.npy`` files written in a stream, with a running sha256.

Every file starts with a fixed 128-byte version-1.0 header, so an array of unknown length
can be streamed to disk and its shape filled in at the end without moving the data.
The checksum covers the data bytes only; dtype and shape are checked against the
manifest separately.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import struct
from pathlib import Path

import numpy as np

from dyngnn.data.format import FORMAT
from dyngnn.errors import InputError

HEADER_BYTES = 128
_MAGIC = b"\x93NUMPY\x01\x00"
_CHUNK = 1 << 24


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    body = text.encode("latin1")
    pad = HEADER_BYTES - len(_MAGIC) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError(f"npy header for shape {shape} does not fit {HEADER_BYTES} bytes")
    return _MAGIC + struct.pack("<H", HEADER_BYTES - 10) + body + b" " * pad + b"\n"


class NpyWriter:
    """Appends rows to a ``.npy`` file; :meth:`close` writes the final header.

    Args:
        path: the file to create.
        dtype: element type of the array.
        row_shape: shape of one row (``()`` for a 1-D array, ``(2,)`` for ``[M, 2]``).
    """

    def __init__(self, path: Path, dtype: np.dtype | str, row_shape: tuple[int, ...] = ()) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._sha = hashlib.sha256()
        self._file = open(self.path, "wb")  # noqa: SIM115 - held open across write() calls
        self._file.write(b"\0" * HEADER_BYTES)

    def write(self, rows: np.ndarray) -> None:
        arr = np.ascontiguousarray(rows, dtype=self.dtype)
        if arr.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {arr.shape[1:]}, expected {self.row_shape}")
        data = arr.reshape(-1).view(np.uint8)
        self._file.write(data)
        self._sha.update(data)
        self.rows += arr.shape[0]

    def close(self) -> dict:
        """Finish the file; return its manifest entry (file, dtype, shape, sha256)."""
        shape = (self.rows, *self.row_shape)
        self._file.seek(0)
        self._file.write(_header(self.dtype, shape))
        self._file.close()
        return {
            "file": self.path.name,
            "dtype": np.lib.format.dtype_to_descr(self.dtype),
            "shape": list(shape),
            "sha256": self._sha.hexdigest(),
        }

    def abort(self) -> None:
        """Close the file unfinished (the directory holding it is being dropped). Data
        that cannot be flushed (the disk is full) is dropped with it."""
        with contextlib.suppress(OSError):
            self._file.close()


def write_array(path: Path, array: np.ndarray) -> dict:
    """Write a whole array; return its manifest entry."""
    array = np.asarray(array)
    w = NpyWriter(path, array.dtype, array.shape[1:])
    w.write(array.reshape(-1, *array.shape[1:]) if array.ndim else array.reshape(1))
    return w.close()


def open_array(directory: Path, name: str, entry: dict) -> np.ndarray:
    """Memory-map one array of a store, checking it against its manifest entry.

    Raises:
        InputError: missing file, unreadable header, dtype or shape other than the
            manifest says, or a file shorter or longer than its header promises.
    """
    path = Path(directory) / entry["file"]
    if not path.is_file():
        raise InputError(f"{path}: array {name!r} is missing")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except Exception as e:
        raise InputError(f"{path}: not a readable .npy array ({type(e).__name__})") from None
    if fortran or list(shape) != list(entry["shape"]) or dtype != np.dtype(entry["dtype"]):
        raise InputError(
            f"{path}: array is {dtype}{list(shape)}, the manifest says {np.dtype(entry['dtype'])}{list(entry['shape'])}"
        )
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != offset + nbytes:
        what = "truncated" if size < offset + nbytes else "longer than its header says"
        raise InputError(f"{path}: array {name!r} is {what} ({size} bytes, expected {offset + nbytes})")
    if nbytes == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))


def data_sha256(array: np.ndarray) -> str:
    """sha256 of an array's data bytes in C order, read in chunks (works on memmaps)."""
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    sha = hashlib.sha256()
    for i in range(0, len(flat), _CHUNK):
        sha.update(flat[i : i + _CHUNK])
    return sha.hexdigest()


class AtomicDirectory:
    """A directory that appears at ``path`` only when :meth:`commit` succeeds.

    Work happens in a hidden sibling, ``.NAME.tmp-HOST-PID-XXXX``; an exception inside the
    ``with`` block removes it and leaves ``path`` as it was. With ``force`` an existing
    store (or empty directory) at ``path`` is replaced (:func:`check_output_path`).
    Siblings left by writers on this host that died (killed, out of power) are removed
    first. The directory gets the permissions the umask gives, as ``mkdir`` does.

    Raises:
        InputError: ``path`` may not be replaced (:func:`check_output_path`), or its parent
            cannot be written.
    """

    def __init__(self, path: Path | str, force: bool = False) -> None:
        self.path = Path(path)
        check_output_path(self.path, force)
        self.force = force
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_siblings(self.path)
            self.tmp = _new_sibling(self.path, "tmp")
        except OSError as e:
            raise InputError(f"{self.path}: cannot write there ({e.strerror})") from None

    def commit(self) -> None:
        old = None
        if self.path.exists():
            old = _new_sibling(self.path, "old")
            os.rename(self.path, old / "store")
        os.rename(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> AtomicDirectory:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        name_failed_write(exc, self.path)


def name_failed_write(exc: BaseException | None, path: Path) -> None:
    """Raise a write that failed without naming a file (a full disk: the OS names none)
    again as an ``OSError`` of ``path``, the output being written; otherwise nothing."""
    if isinstance(exc, OSError) and exc.filename is None:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _host() -> str:
    """This host's name as work directories carry it (no ``-``, which separates fields)."""
    return socket.gethostname().replace("-", "_")


def _new_sibling(path: Path, kind: str) -> Path:
    """A new hidden directory beside ``path`` that names its writer (host and pid), made
    with ``mkdir``'s permissions."""
    while True:
        sibling = path.parent / f".{path.name}.{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            sibling.mkdir(0o777)
            return sibling
        except FileExistsError:
            continue


def remove_stale_siblings(path: Path) -> list[Path]:
    """Remove the hidden work directories of writers of ``path`` on this host whose
    process is gone; the removed directories. Writers elsewhere, or alive, are left alone."""
    removed = []
    for kind in ("tmp", "old"):
        for sibling in path.parent.glob(f".{path.name}.{kind}-{_host()}-*-*"):
            pid = sibling.name.rsplit("-", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(sibling, ignore_errors=True)
                removed.append(sibling)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_store(path: Path) -> bool:
    """Whether ``path`` holds a dyngnn store (a manifest that says so)."""
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_output_path(path: Path | str, force: bool, source: Path | str | None = None) -> None:
    """Refuse to overwrite an existing output unless ``force``. Even with it, only a store
    or an empty directory is replaced: never a file, another directory, the working
    directory or one above it, or a directory that holds ``source``."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"{path}: output file already exists")
    if not force:
        raise InputError(f"{path}: output directory already exists (use --force to replace it)")
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise InputError(f"{path}: is the working directory or above it; --force never replaces that")
    if source is not None and target in Path(source).resolve().parents:
        raise InputError(f"{path}: holds the source {source}; --force never replaces that")
    if not is_store(path) and any(path.iterdir()):
        raise InputError(
            f"{path}: not a dyngnn store (no dyngnn manifest.json) and not empty; --force replaces only "
            "a store or an empty directory"
        )
