"""Open NASDAQ BinaryFILE ITCH captures, plain or gzip, by their magic bytes."""

from __future__ import annotations

import gzip
import os
from typing import BinaryIO

_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """Open an ITCH file for reading, transparently decompressing gzip.

    Detection is by content (gzip magic), not by file name, so ``.itch``,
    ``.gz`` and NASDAQ's own ``*.NASDAQ_ITCH50.gz`` names all work.
    """
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115 - returned to the caller
