"""Reader for the IDX format of the MNIST files.

Layout: two zero bytes, a type code, the number of dimensions ``ndim``, then
``ndim`` big-endian uint32 sizes, then the values in C order, big-endian.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..common.errors import UserError

DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


class IdxError(UserError):
    """A file is not a well-formed IDX file."""


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Return the array stored in the IDX file at ``path`` (read-only, native order).

    ``ndim``, if given, is the number of dimensions the caller expects.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise IdxError(f"{path}: cannot read: {err.strerror}") from None
    dtype, dims, offset = _parse_header(path, data)
    if ndim is not None and len(dims) != ndim:
        raise IdxError(f"{path}: expected {ndim} dimensions, found shape {dims}")
    expected = offset + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxError(
            f"{path}: {state}: shape {dims} of {dtype} needs {expected} bytes, "
            f"file has {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    if data[:2] == GZIP_MAGIC:
        raise IdxError(f"{path}: gzip-compressed; decompress it first (gunzip)")
    if len(data) < 4:
        raise IdxError(f"{path}: {len(data)} bytes, too short for an IDX header")
    if data[:2] != b"\x00\x00":
        raise IdxError(
            f"{path}: bad magic number 0x{data[:4].hex()}: an IDX file starts with "
            "two zero bytes"
        )
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise IdxError(f"{path}: unknown type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise IdxError(f"{path}: header declares zero dimensions")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise IdxError(f"{path}: truncated inside the header of {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    return DTYPES[code], dims, offset
