"""Open NASDAQ BinaryFILE ITCH captures, plain or gzip, by their magic bytes."""

from __future__ import annotations

import io
import os
import zlib
from typing import BinaryIO

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib: expect a gzip header and trailer
_READ_SIZE = 1 << 20  # compressed bytes per read: large enough to keep syscalls rare


def is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


class GzipStream(io.RawIOBase):
    """Streaming gzip decompression that keeps everything before a break.

    ``gzip.GzipFile`` raises on a stream that is cut short or corrupt and
    drops what it had decompressed in that call; a feed replay wants every
    message up to the damage and then a clear report.  This yields all the
    decompressed bytes first, then raises ``EOFError`` (cut short) or
    ``zlib.error`` (corrupt).  Concatenated gzip members are read in turn.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self._pending = b""  # decompressed, not yet returned
        self._error: BaseException | None = None
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        want = len(buffer)
        while len(self._pending) < want and not self._eof and self._error is None:
            self._fill()
        n = min(want, len(self._pending))
        if n == 0 and self._error is not None:
            error, self._error = self._error, None
            self._eof = True
            raise error
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _fill(self) -> None:
        data = self._raw.read(_READ_SIZE)
        try:
            if not data:
                if not self._inflate.eof:
                    self._error = EOFError("compressed file ended before the end-of-stream marker was reached")
                self._eof = True
                return
            self._pending += self._inflate.decompress(data)
            while self._inflate.eof and self._inflate.unused_data:  # next member
                rest = self._inflate.unused_data
                self._inflate = zlib.decompressobj(_GZIP_WBITS)
                self._pending += self._inflate.decompress(rest)
        except zlib.error as exc:
            self._error = exc

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """Open an ITCH file for reading, transparently decompressing gzip.

    Detection is by content (gzip magic), not by file name, so ``.itch``,
    ``.gz`` and NASDAQ's own ``*.NASDAQ_ITCH50.gz`` names all work.  A damaged
    gzip stream yields everything before the damage, then raises ``EOFError``
    or ``zlib.error`` (see :class:`GzipStream`).
    """
    if is_gzip(path):
        return GzipStream(open(path, "rb"))  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115 - returned to the caller
