"""Read NASDAQ BinaryFILE ITCH 5.0 captures: u16 big-endian length + message, repeated.

Plain or gzip (by magic, via :func:`efsdk.itch.files.open_binary`), read in large
chunks.  Malformed input never raises and is never silent: every bad frame is
counted in :class:`ReaderStats`, the first ones are kept as :class:`Anomaly`
records, each kind is logged once per reader, and the frame is skipped using
its length prefix (the framing itself stays valid).  Kinds:

``bad_length``      the length prefix disagrees with the size of the message's type
``unknown_type``    the type byte is not one of the 23 ITCH 5.0 types
``empty``           a zero length prefix
``truncated_tail``  the stream ends inside a frame (or inside a length prefix)

A length prefix that is itself corrupt cannot be told from a long frame of an
unknown type; the reader skips what the prefix says, as any BinaryFILE reader
must.  All offsets are absolute in the (decompressed) stream and point at the
frame's 2-byte length prefix; the message starts 2 bytes later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import IO, NamedTuple, TypeAlias

from efsdk.itch.codec import DECODER_BY_TYPE, Message
from efsdk.itch.files import open_binary
from efsdk.itch.layouts import SIZE_BY_TYPE

__all__ = [
    "ANOMALY_KINDS",
    "CHUNK_SIZE",
    "MAX_ANOMALIES",
    "Anomaly",
    "BinaryFileReader",
    "ReaderStats",
    "iter_frames",
    "iter_messages",
]

log = logging.getLogger(__name__)

#: Read size.  1 MiB amortises the per-read cost (and gzip's per-call overhead)
#: to nothing next to ~25k messages of Python work per chunk, while the only
#: copy per chunk is of the partial frame carried over (at most 65,537 bytes).
CHUNK_SIZE = 1 << 20
#: Anomalies kept with their offset; beyond this they are only counted, so a
#: file of garbage cannot exhaust memory.
MAX_ANOMALIES = 100
ANOMALY_KINDS = ("bad_length", "unknown_type", "empty", "truncated_tail")

Source: TypeAlias = "str | os.PathLike[str] | IO[bytes]"


class Anomaly(NamedTuple):
    """One malformed frame: stream offset of its length prefix, kind, human detail."""

    offset: int
    kind: str
    detail: str


class ReaderStats:
    """Counters of one read: messages and bytes, per-type counts, anomalies by kind.

    Updated as frames are yielded, so it is current while iterating and final
    once the iterator is exhausted.  ``bytes`` counts stream bytes consumed,
    length prefixes and skipped frames included (at the end it is the size of
    the decompressed stream).
    """

    __slots__ = (
        "source",
        "bytes",
        "bad_length",
        "unknown_type",
        "empty",
        "truncated_tail",
        "anomalies",
        "max_anomalies",
        "_counts",
        "_logged",
    )

    def __init__(self, max_anomalies: int = MAX_ANOMALIES, source: str = "<stream>") -> None:
        self.source = source
        self.bytes = 0
        self.bad_length = 0
        self.unknown_type = 0
        self.empty = 0
        self.truncated_tail = 0
        self.anomalies: list[Anomaly] = []
        self.max_anomalies = max_anomalies
        # Indexed by type byte: one list increment per message is the cheapest
        # counter; the dict view is built only when asked for.
        self._counts = [0] * 256
        self._logged: set[str] = set()

    @property
    def messages(self) -> int:
        """Well-formed messages yielded so far."""
        return sum(self._counts)

    @property
    def by_type(self) -> dict[str, int]:
        """Well-formed messages per type character, e.g. ``{"A": 10, "E": 3}``."""
        return {chr(t): n for t, n in enumerate(self._counts) if n}

    @property
    def anomaly_count(self) -> int:
        """All malformed frames seen, including those beyond ``max_anomalies``."""
        return self.bad_length + self.unknown_type + self.empty + self.truncated_tail

    def record(self, offset: int, kind: str, detail: str) -> None:
        """Count one anomaly of ``kind`` (one of :data:`ANOMALY_KINDS`); log the first of each kind."""
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.anomalies) < self.max_anomalies:
            self.anomalies.append(Anomaly(offset, kind, detail))
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(
                "%s: %s at offset %d: %s (skipped; further %s frames are counted in "
                "ReaderStats, not logged)",
                self.source, kind, offset, detail, kind,
            )

    def as_dict(self) -> dict[str, object]:
        """Plain-data summary, e.g. for JSON output."""
        return {
            "source": self.source,
            "messages": self.messages,
            "bytes": self.bytes,
            "by_type": self.by_type,
            **{kind: getattr(self, kind) for kind in ANOMALY_KINDS},
            "anomalies": [a._asdict() for a in self.anomalies],
        }

    def __repr__(self) -> str:
        bad = ", ".join(f"{k}={getattr(self, k)}" for k in ANOMALY_KINDS if getattr(self, k))
        return (
            f"ReaderStats(source={self.source!r}, messages={self.messages}, bytes={self.bytes}"
            + (f", {bad}" if bad else "")
            + ")"
        )


class BinaryFileReader:
    """Single-pass reader of one BinaryFILE ITCH stream (a path, or a binary file object).

    A path is opened (gzip detected by magic) on first iteration and closed
    when iteration ends or on :meth:`close`; a file object is read from its
    current position and left open for its owner.  ``.stats`` is live while
    iterating.  Use as a context manager to close early.
    """

    def __init__(
        self,
        source: Source,
        *,
        chunk_size: int = CHUNK_SIZE,
        stats: ReaderStats | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self._source = source
        self._is_path = isinstance(source, str | os.PathLike)
        self._file: IO[bytes] | None = None
        self._started = False
        self.chunk_size = chunk_size
        name = os.fspath(source) if self._is_path else getattr(source, "name", None)
        self.stats = stats if stats is not None else ReaderStats()
        self.stats.source = str(name) if name is not None else f"<{type(source).__name__}>"

    def iter_frames(self) -> Iterator[tuple[int, memoryview]]:
        """Yield ``(offset, message)`` for each well-formed frame, skipping and counting bad ones.

        ``offset`` is the stream offset of the frame's length prefix; ``message``
        is a read-only view of exactly the message bytes (type byte first), so
        it decodes without copying.  The view stays valid after iteration moves
        on, but it pins its whole chunk in memory: ``bytes(view)`` to keep one.
        Raises ``RuntimeError`` on a second iteration, ``TypeError`` for a
        text-mode file, and whatever opening or reading the source raises.
        """
        if self._started:
            raise RuntimeError("BinaryFileReader is single-pass; create a new one to read again")
        self._started = True
        f = self._open()
        stats = self.stats
        record = stats.record
        counts = stats._counts
        size_of = SIZE_BY_TYPE.get
        read = f.read
        chunk = self.chunk_size
        want = chunk
        buf = b""
        view = memoryview(buf)
        base = 0  # stream offset of buf[0]
        pos = 0  # next frame in buf
        end = 0
        try:
            while True:
                data = read(want)
                if not data:
                    break
                if not isinstance(data, bytes):
                    if isinstance(data, str):
                        raise TypeError(f"{stats.source}: open the file in binary mode ('rb')")
                    data = bytes(data)
                # Carry over only the partial frame at the end of the old chunk.
                buf = buf[pos:] + data if pos < end else data
                base += pos
                pos = 0
                end = len(buf)
                view = memoryview(buf)
                want = chunk
                while end - pos >= 2:
                    length = (buf[pos] << 8) | buf[pos + 1]
                    stop = pos + 2 + length
                    if stop > end:
                        # Read at least the rest of this frame next time, so a
                        # tiny chunk size can't make a long frame cost O(n^2).
                        want = max(chunk, stop - end)
                        break
                    stats.bytes = base + stop
                    if length == 0:
                        record(base + pos, "empty", "zero-length frame")
                    else:
                        t = buf[pos + 2]
                        size = size_of(t)
                        if size == length:
                            counts[t] += 1
                            yield base + pos, view[pos + 2 : stop]
                        elif size is None:
                            record(
                                base + pos,
                                "unknown_type",
                                f"type byte 0x{t:02x} ({chr(t)!r}), {length}-byte frame",
                            )
                        else:
                            record(
                                base + pos,
                                "bad_length",
                                f"type {chr(t)!r} is {size} bytes, length prefix says {length}",
                            )
                    pos = stop
            if pos < end:
                left = end - pos
                if left == 1:
                    detail = "1 byte at end of stream, half a length prefix"
                else:
                    need = 2 + ((buf[pos] << 8) | buf[pos + 1])
                    detail = f"frame needs {need} bytes, stream ends after {left}"
                record(base + pos, "truncated_tail", detail)
            stats.bytes = base + end
            if stats.anomaly_count:
                # One summary per file; the first of each kind was already a warning.
                log.info("%s: finished with anomalies: %r", stats.source, stats)
        finally:
            self.close()

    def iter_messages(self) -> Iterator[Message]:
        """Yield each well-formed message decoded (see :mod:`efsdk.itch.codec`); same rules as :meth:`iter_frames`."""
        decoders = DECODER_BY_TYPE
        for _, msg in self.iter_frames():
            # iter_frames checked type and length, so skip decode()'s checks.
            yield decoders[msg[0]](msg, 0)

    __iter__ = iter_messages

    def _open(self) -> IO[bytes]:
        if self._is_path:
            self._file = open_binary(self._source)  # type: ignore[arg-type]
            return self._file
        if not hasattr(self._source, "read"):
            raise TypeError(
                f"source must be a path or a binary file object, got {type(self._source).__name__}"
            )
        return self._source  # type: ignore[return-value]

    def close(self) -> None:
        """Close the file if this reader opened it (safe to call twice)."""
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def __enter__(self) -> BinaryFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._file is not None else ("done" if self._started else "new")
        return f"<BinaryFileReader {self.stats.source!r} {state} chunk_size={self.chunk_size} {self.stats!r}>"


def iter_frames(
    source: Source, *, chunk_size: int = CHUNK_SIZE, stats: ReaderStats | None = None
) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(offset, message view)`` per well-formed frame; see :meth:`BinaryFileReader.iter_frames`.

    Pass a :class:`ReaderStats` to see the counts; raises as the method does.
    """
    return BinaryFileReader(source, chunk_size=chunk_size, stats=stats).iter_frames()


def iter_messages(
    source: Source, *, chunk_size: int = CHUNK_SIZE, stats: ReaderStats | None = None
) -> Iterator[Message]:
    """Yield each well-formed message decoded; see :meth:`BinaryFileReader.iter_messages`.

    Pass a :class:`ReaderStats` to see the counts; raises as the method does.
    """
    return BinaryFileReader(source, chunk_size=chunk_size, stats=stats).iter_messages()
