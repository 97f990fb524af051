"""ITCH 5.0 framing + decode into fixed-width 32-byte records (native fast path).

The C decoder (``native/itch_records.c``, built as ``efsdk._native_itch``) turns a
run of length-prefixed ITCH messages (NASDAQ BinaryFILE captures and MoldUDP64
message blocks share this framing) into one 32-byte record per message, in host
byte order, with one FFI call per batch.  Python reads the records with
:data:`RECORD`; rare message types carry only type/locate/offset and are decoded
from the input at ``offset`` when their fields are needed.

Record fields (``RECORD = struct.Struct("=BBHIIIQQ")``, no padding):

=========  ====  ==============================================================
field      type  meaning
=========  ====  ==============================================================
type       u8    ITCH type byte (``ord('A')`` ...) or 0 = anomaly
side       u8    A F P: ``'B'``/``'S'``; C: printable ``'Y'``/``'N'``; Q: cross
                 type; anomaly: its kind (:data:`ANOMALY_KINDS`)
locate     u16   stock locate (0 for anomalies)
shares     u32   A F U P: shares; E C: executed; X: cancelled;
                 anomaly: the declared frame length
price      u32   A F U P: price; C: execution price; Q: cross price (1e-4 units);
                 anomaly: the actual type byte (0 if none)
offset     u32   offset of the message's type byte in the buffer passed to the
                 decoder; anomaly: offset of the frame's 2-byte length prefix
ref        u64   A F E C X D P: order ref; U: original ref; Q: shares (8 bytes)
ref2       u64   U: new ref; E C P Q B: match number
=========  ====  ==============================================================

Fields a type does not use are 0.  Three entry points:

* :class:`RecordDecoder` - the native decoder with its output buffer, locate
  filter and counters; ``decode(buf)`` is one FFI call.
* :func:`iter_record_batches` - read a BinaryFILE capture (plain or gzip) in
  chunks and yield record batches with the chunk they index into.
* :func:`decode_records_py` - the pure-Python reference of the same contract,
  derived from :mod:`efsdk.itch.layouts`: byte-identical output, about 300x
  slower; the tests cross-check the C against it and it is the fallback where
  the extension cannot be built.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import zlib
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO

from efsdk.errors import NativeError
from efsdk.itch.files import open_binary
from efsdk.itch.layouts import LAYOUTS, SIZE_BY_TYPE

__all__ = [
    "ANOMALY",
    "ANOMALY_BAD_LENGTH",
    "ANOMALY_EMPTY",
    "ANOMALY_KINDS",
    "ANOMALY_TRUNCATED_TAIL",
    "ANOMALY_UNKNOWN_TYPE",
    "Anomaly",
    "DecodeStats",
    "FileDecodeStats",
    "MAX_DECODE_BYTES",
    "NATIVE_AVAILABLE",
    "RECORD",
    "RecordBatchReader",
    "RecordDecoder",
    "decode_records_py",
    "iter_record_batches",
]

#: One decoded record: type, side, locate, shares, price, offset, ref, ref2.
RECORD = struct.Struct("=BBHIIIQQ")

#: The native layout/semantics version this module was written for; must equal
#: ``EFSDK_ITCH_RECORDS_VERSION`` compiled into the extension.
EXPECTED_NATIVE_VERSION = 5

# Record type 0 and its kinds (in ``side``); 1-3 come from the C decoder.
ANOMALY = 0
ANOMALY_UNKNOWN_TYPE = 1  # type byte is not one of the 23 ITCH 5.0 types
ANOMALY_BAD_LENGTH = 2  # length prefix != size of its type
ANOMALY_EMPTY = 3  # length prefix 0
#: Python-only: the input ended inside a frame (reported by iter_record_batches).
ANOMALY_TRUNCATED_TAIL = 4
# Python-only too: a gzip file whose stream is corrupt or cut short.
ANOMALY_BAD_COMPRESSION = 6
ANOMALY_KINDS = {
    ANOMALY_UNKNOWN_TYPE: "unknown_type",
    ANOMALY_BAD_LENGTH: "bad_length",
    ANOMALY_EMPTY: "empty",
    ANOMALY_TRUNCATED_TAIL: "truncated_tail",
    ANOMALY_BAD_COMPRESSION: "bad_compression",
}

#: Record offsets are u32, so one decode call sees at most this many bytes;
#: a longer buffer is decoded up to here and ``consumed`` says where to resume.
MAX_DECODE_BYTES = 0xFFFFFFFF

_LOCATES = 1 << 16  # stock locate is a u16: the filter has one byte per locate
_MAX_FRAME = 2 + 0xFFFF  # length prefix + the longest length it can declare
# Default batch: 65536 records x 32 B = 2 MiB of output per FFI call, enough
# to amortise the ~1 us call overhead to nothing and small enough to stay in L2/L3.
DEFAULT_CAPACITY = 65536
# Default file read size: large enough that read syscalls/gzip calls are rare,
# small enough that the chunk (plus the records it yields) stays cache-friendly.
DEFAULT_CHUNK_SIZE = 4 << 20
# Anomalies kept with their offsets per file: enough to diagnose a bad capture,
# bounded so a garbage file cannot eat memory (the counters stay exact).
MAX_ANOMALIES_KEPT = 1000

log = logging.getLogger(__name__)

_REINSTALL = "reinstall efsdk with `pip install -e .` (or `pip install .`) to rebuild it"


def _check_native(version: int, record_size: int, kinds: tuple[int, int, int]) -> None:
    """Raise :class:`NativeError` unless the compiled extension matches this module."""
    if version != EXPECTED_NATIVE_VERSION:
        raise NativeError(
            f"efsdk._native_itch is stale: it was built from itch_records.h version {version}, "
            f"efsdk.itch.records expects version {EXPECTED_NATIVE_VERSION}; {_REINSTALL}"
        )
    if record_size != RECORD.size:
        raise NativeError(
            f"efsdk._native_itch is stale: its efsdk_itch_record is {record_size} bytes, "
            f"efsdk.itch.records reads {RECORD.size}; {_REINSTALL}"
        )
    if kinds != (ANOMALY_UNKNOWN_TYPE, ANOMALY_BAD_LENGTH, ANOMALY_EMPTY):
        raise NativeError(
            f"efsdk._native_itch is stale: its anomaly kinds {kinds} differ from "
            f"efsdk.itch.records; {_REINSTALL}"
        )


try:
    from efsdk._native_itch import ffi as _ffi
    from efsdk._native_itch import lib as _lib
except ImportError as _exc:  # the pure-Python reference stays usable
    _ffi = _lib = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None
    _check_native(
        _lib.efsdk_itch_records_version(),
        _ffi.sizeof("efsdk_itch_record"),
        (
            _lib.EFSDK_ITCH_ANOMALY_UNKNOWN_TYPE,
            _lib.EFSDK_ITCH_ANOMALY_BAD_LENGTH,
            _lib.EFSDK_ITCH_ANOMALY_EMPTY,
        ),
    )

#: True when the C extension imported (and matched this module).
NATIVE_AVAILABLE = _lib is not None


def _require_native() -> Any:
    if _lib is None:
        raise NativeError(
            f"efsdk._native_itch is not built ({_IMPORT_ERROR}); {_REINSTALL}. "
            "decode_records_py() is the slow pure-Python fallback."
        )
    return _lib


# --------------------------------------------------------------------------- stats


@dataclass(slots=True)
class DecodeStats:
    """Decoder counters (a snapshot; mutating it does not touch the decoder).

    ``by_type`` maps the type character to the number of framed messages with
    that type byte, filtered or not, anomalies included; empty frames count
    under ``"\\x00"``, so ``sum(by_type.values()) == messages``.
    """

    messages: int = 0  # framed messages seen (anomalies and filtered included)
    bytes: int = 0  # bytes consumed
    emitted: int = 0  # records written
    filtered: int = 0  # dropped by the locate filter
    unknown_type: int = 0
    bad_length: int = 0
    empty: int = 0
    bad_side: int = 0  # book-op decoder only: add whose side byte is not B/S
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def anomalies_total(self) -> int:
        return self.unknown_type + self.bad_length + self.empty + self.bad_side


_COUNTERS = ("messages", "bytes", "emitted", "filtered", "unknown_type", "bad_length", "empty", "bad_side")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly with its absolute offset in the file (of its length prefix)."""

    kind: int  # ANOMALY_UNKNOWN_TYPE / _BAD_LENGTH / _EMPTY / _TRUNCATED_TAIL
    offset: int  # absolute file offset of the frame's length prefix
    length: int  # declared frame length (0 if not even the prefix was there)
    type_byte: int  # actual type byte, 0 if none

    @property
    def kind_name(self) -> str:
        return ANOMALY_KINDS.get(self.kind, f"kind_{self.kind}")


@dataclass(slots=True)
class FileDecodeStats(DecodeStats):
    """Counters for one file read by :func:`iter_record_batches`.

    The native counters cover this file only.  ``truncated_tail`` is 1 when
    the file ended inside a frame (``truncated_tail_offset``/``_bytes`` say
    where and how much); ``anomalies`` keeps the first
    :data:`MAX_ANOMALIES_KEPT` anomalies (truncated tail included) with
    absolute offsets, ``anomalies_dropped`` counts the rest.
    """

    bytes_read: int = 0
    batches: int = 0
    truncated_tail: int = 0
    truncated_tail_offset: int | None = None
    truncated_tail_bytes: int = 0
    bad_compression: int = 0  # the gzip stream broke off (corrupt or cut short); reading stopped there
    anomalies: list[Anomaly] = field(default_factory=list)
    anomalies_dropped: int = 0


# ------------------------------------------------------------------- native decoder


def _tail_fields(tail: memoryview) -> tuple[int, int]:
    """``(declared length, type byte)`` of a truncated frame, 0 where absent."""
    length = (tail[0] << 8 | tail[1]) if len(tail) >= 2 else 0
    return length, (tail[2] if len(tail) >= 3 else 0)


def _symbol_bytes(symbol: str | bytes) -> bytes:
    raw = symbol.encode("ascii") if isinstance(symbol, str) else bytes(symbol)
    if not raw or len(raw) > 8:
        raise ValueError(f"ITCH symbols are 1-8 ASCII characters, got {symbol!r}")
    return raw.ljust(8, b" ")


def _symbol_list(symbols: Iterable[str | bytes] | str | bytes) -> list[bytes]:
    if isinstance(symbols, str | bytes):
        symbols = [symbols]
    return [_symbol_bytes(s) for s in symbols]


class RecordDecoder:
    """Native ITCH decoder: output buffer, locate filter and counters.

    ``capacity`` records (32 bytes each) are decoded per call.  With no
    ``locates`` and no ``symbols`` every message is emitted; a subscription
    (here or later via :meth:`subscribe` / :meth:`subscribe_locates`) turns
    the locate filter on, after which only subscribed locates, locate 0
    (system-wide messages) and anomalies are emitted.  A symbol subscription
    takes effect when that symbol's R (stock directory) message is decoded,
    including later messages in the same call; subscribe before the R messages
    go past (or use :meth:`subscribe_locates`), since they are sent once a day.

    Not thread-safe: one decoder per thread.  Raises :class:`NativeError` if
    the extension is not built.
    """

    __slots__ = (
        "_capacity",
        "_consumed",
        "_decode",
        "_filter",
        "_n_symbols",
        "_out",
        "_out_buffer",
        "_stats",
        "_sym_buf",
        "_symbols",
    )

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        locates: Iterable[int] | None = None,
        symbols: Iterable[str | bytes] | None = None,
    ) -> None:
        lib = _require_native()
        if not 1 <= capacity <= 0x7FFFFFFF:
            raise ValueError(f"capacity must be 1..2**31-1 records, got {capacity}")
        self._capacity = capacity
        self._out = _ffi.new("efsdk_itch_record[]", capacity)
        self._stats = _ffi.new("efsdk_itch_stats *")
        self._consumed = _ffi.new("size_t *")
        self._filter = _ffi.NULL
        self._symbols: dict[bytes, None] = {}  # ordered set
        self._sym_buf = _ffi.NULL
        self._n_symbols = 0
        self._decode = lib.efsdk_itch_decode
        self._out_buffer = _ffi.buffer
        if locates is not None:
            self.subscribe_locates(locates)
        if symbols is not None:
            self.subscribe(symbols)

    # -- decoding

    def decode(self, buf: Any) -> tuple[memoryview, int]:
        """Decode whole messages from ``buf``; return ``(records, consumed)``.

        ``buf`` is any C-contiguous buffer (bytes, bytearray, memoryview, mmap).
        ``records`` is a zero-copy ``memoryview`` of ``n * 32`` bytes over the
        decoder's own output buffer: read it with :data:`RECORD`
        (``RECORD.iter_unpack(records)``) before the next ``decode`` call, which
        overwrites it.  Record offsets are relative to ``buf``.

        Decoding stops at the first incomplete message or when ``capacity``
        records are written; ``consumed`` is the number of bytes of whole
        messages processed, so the caller resumes at ``buf[consumed:]`` (with
        more data appended if the stop was an incomplete message).  At most
        :data:`MAX_DECODE_BYTES` are looked at per call.
        """
        with _ffi.from_buffer("uint8_t[]", buf) as p:
            n = len(p)
            rc = self._decode(
                p,
                n if n <= MAX_DECODE_BYTES else MAX_DECODE_BYTES,
                self._consumed,
                self._out,
                self._capacity,
                self._filter,
                self._sym_buf,
                self._n_symbols,
                self._stats,
            )
        if rc < 0:  # only reachable through a bug in this wrapper
            raise NativeError(f"efsdk_itch_decode failed: {errno.errorcode.get(-rc, rc)}")
        return memoryview(self._out_buffer(self._out, rc * 32)), self._consumed[0]

    # -- hooks for RecordBatchReader (an OpDecoder overrides them)

    def anomalies_in(self, records: memoryview, base: int) -> Iterator[Anomaly]:
        """Anomalies among decoded ``records``, with offsets made absolute by ``base``."""
        types = bytes(records[::32])  # the type byte of every record
        i = types.find(0)
        while i >= 0:
            _, kind, _, length, type_byte, off, _, _ = RECORD.unpack_from(records, i * 32)
            yield Anomaly(kind, base + off, length, type_byte)
            i = types.find(0, i + 1)

    @staticmethod
    def tail_record(tail: memoryview) -> bytes:
        """A record reporting a truncated tail, so record-only consumers see it.

        Like the C anomalies (declared length in shares, type byte in price,
        offset of the length prefix), plus ref = the bytes actually present.
        """
        length, type_byte = _tail_fields(tail)
        return RECORD.pack(ANOMALY, ANOMALY_TRUNCATED_TAIL, 0, length, type_byte, 0, len(tail), 0)

    # -- subscriptions

    def _ensure_filter(self) -> None:
        if self._filter == _ffi.NULL:
            self._filter = _ffi.new("uint8_t[]", _LOCATES)

    def subscribe(self, symbols: Iterable[str | bytes] | str | bytes) -> None:
        """Also emit these symbols (1-8 ASCII chars) once their R message is seen."""
        new = _symbol_list(symbols)
        self._ensure_filter()
        for s in new:
            self._symbols[s] = None
        joined = b"".join(self._symbols)
        self._sym_buf = _ffi.new("uint8_t[]", joined) if joined else _ffi.NULL
        self._n_symbols = len(self._symbols)

    def subscribe_locates(self, locates: Iterable[int]) -> None:
        """Also emit messages with these stock locates (0..65535)."""
        locs = list(map(int, [locates] if isinstance(locates, int) else locates))
        if locs and (min(locs) < 0 or max(locs) >= _LOCATES):
            bad = next(loc for loc in locs if not 0 <= loc < _LOCATES)
            raise ValueError(f"stock locate must be 0..65535, got {bad}")
        self._ensure_filter()
        # Through a bytearray: a cffi item store costs ~4x a bytearray's (a shard's filter holds ~65k locates).
        mask = bytearray(_ffi.buffer(self._filter))
        for loc in locs:
            mask[loc] = 1
        _ffi.memmove(self._filter, mask, _LOCATES)

    def unsubscribe_all(self) -> None:
        """Drop every subscription and go back to emitting all messages."""
        self._filter = _ffi.NULL
        self._symbols.clear()
        self._sym_buf = _ffi.NULL
        self._n_symbols = 0

    @property
    def filtering(self) -> bool:
        """True once any subscription has turned the locate filter on."""
        return self._filter != _ffi.NULL

    @property
    def locates(self) -> list[int]:
        """Locates that currently pass the filter (explicit or learned from R), sorted."""
        if self._filter == _ffi.NULL:
            return []
        raw = _ffi.buffer(self._filter)[:]
        return [i for i, b in enumerate(raw) if b]

    @property
    def locate_filter(self) -> bytes | None:
        """A copy of the 65536-byte locate filter, or None when not filtering."""
        return None if self._filter == _ffi.NULL else _ffi.buffer(self._filter)[:]

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s.decode("ascii").rstrip(" ") for s in self._symbols)

    @property
    def capacity(self) -> int:
        return self._capacity

    # -- counters

    @property
    def stats(self) -> DecodeStats:
        """Snapshot of the cumulative counters (see :class:`DecodeStats`)."""
        s = self._stats
        by_type = _ffi.unpack(s.by_type, 256)
        return DecodeStats(
            *(getattr(s, name) for name in _COUNTERS),
            by_type={chr(t): c for t, c in enumerate(by_type) if c},
        )

    @property
    def last_timestamp(self) -> int:
        """Feed time (ns since midnight) of the last well-formed message decoded, filtered or not; 0 before any."""
        return int(self._stats.last_timestamp)

    def reset_stats(self) -> None:
        _ffi.memmove(self._stats, bytes(_ffi.sizeof("efsdk_itch_stats")), _ffi.sizeof("efsdk_itch_stats"))

    def _anomaly_count(self) -> int:
        s = self._stats
        return s.unknown_type + s.bad_length + s.empty + s.bad_side

    def __repr__(self) -> str:
        s = self._stats
        filt = f"symbols={list(self.symbols)}, locates={len(self.locates)}" if self.filtering else "unfiltered"
        return (
            f"<RecordDecoder capacity={self._capacity} {filt} messages={s.messages} "
            f"emitted={s.emitted} filtered={s.filtered} anomalies={self._anomaly_count()}>"
        )


# -------------------------------------------------------------------- file reader


class RecordBatchReader:
    """Iterator over ``(records, chunk, chunk_file_offset)`` for one ITCH file.

    Made by :func:`iter_record_batches`.  ``records`` indexes into ``chunk``
    (``chunk[offset:]`` is a message, ``chunk_file_offset + offset`` its
    absolute file offset).  Both memoryviews are reused buffers, valid until
    the next iteration.  Use as a context manager or call :meth:`close`
    (idempotent) if you stop early; a file opened from a path is closed at EOF.

    ``on_input(span)``, if given, sees every byte the reader consumes, in
    order, as it is decoded: whole frames (filtered ones and ones that made no
    record included), then a truncated tail's bytes (valid during the call).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        decoder: RecordDecoder | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_input: Callable[[memoryview], None] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 byte, got {chunk_size}")
        self.decoder = decoder if decoder is not None else RecordDecoder()
        self.chunk_size = chunk_size
        self._on_input = on_input
        if isinstance(source, str | bytes | os.PathLike):
            self._file: Any = open_binary(source)  # type: ignore[arg-type]
            self._owns_file = True
        else:
            self._file = source
            self._owns_file = False
        self._name = getattr(self._file, "name", repr(source))
        self._start = self.decoder.stats
        self._file_stats = FileDecodeStats()
        self._gen: Iterator[tuple[memoryview, memoryview, int]] | None = self._run()
        self._closed = False

    def __iter__(self) -> RecordBatchReader:
        return self

    def __next__(self) -> tuple[memoryview, memoryview, int]:
        if self._gen is None:
            raise StopIteration
        try:
            return next(self._gen)
        except StopIteration:
            self.close()
            raise

    def __enter__(self) -> RecordBatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and close the file if this reader opened it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._gen is not None:
            self._gen.close()
            self._gen = None
        if self._owns_file:
            self._file.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and getattr(self, "_owns_file", False):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()

    @property
    def stats(self) -> FileDecodeStats:
        """Counters for this file so far (native counters as a delta since the start)."""
        now = self.decoder.stats
        fs = self._file_stats
        out = FileDecodeStats(
            *(getattr(now, n) - getattr(self._start, n) for n in _COUNTERS),
            by_type={
                k: v - self._start.by_type.get(k, 0)
                for k, v in now.by_type.items()
                if v != self._start.by_type.get(k, 0)
            },
        )
        for f in fields(FileDecodeStats):
            if f.name not in _COUNTERS and f.name != "by_type":
                setattr(out, f.name, getattr(fs, f.name))
        out.anomalies = list(fs.anomalies)
        return out

    def __repr__(self) -> str:
        fs = self._file_stats
        state = "closed" if self._closed else "open"
        return f"<RecordBatchReader {self._name!r} {state} bytes_read={fs.bytes_read} batches={fs.batches}>"

    def _note_anomalies(self, records: memoryview, base: int) -> None:
        fs = self._file_stats
        for anomaly in self.decoder.anomalies_in(records, base):
            if len(fs.anomalies) < MAX_ANOMALIES_KEPT:
                fs.anomalies.append(anomaly)
            else:
                fs.anomalies_dropped += 1

    def _run(self) -> Iterator[tuple[memoryview, memoryview, int]]:
        dec = self.decoder
        decode = dec.decode
        fs = self._file_stats
        chunk_size = self.chunk_size
        f = self._file
        readinto = getattr(f, "readinto", None)
        read = f.read
        on_input = self._on_input
        # Room for one chunk after the largest possible carried partial frame,
        # so a frame always completes no matter how small the chunks are.
        buf = bytearray(chunk_size + _MAX_FRAME)
        view = memoryview(buf)
        carry = 0  # bytes of an incomplete frame at buf[0:carry]
        base = 0  # absolute file offset of buf[0]
        seen_anomalies = dec._anomaly_count()
        while True:
            try:
                if readinto is not None:
                    got = readinto(view[carry : carry + chunk_size])
                else:
                    data = read(chunk_size)
                    got = len(data)
                    view[carry : carry + got] = data
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                # A corrupt or cut-short gzip stream: keep what decoded, say where it broke.
                self._bad_compression(exc, base + carry)
                break
            if not got:
                break
            fs.bytes_read += got
            end = carry + got
            pos = 0
            while True:
                chunk = view[pos:end]
                records, used = decode(chunk)
                if on_input is not None and used:
                    on_input(chunk[:used])
                if records:
                    now = dec._anomaly_count()
                    if now != seen_anomalies:
                        seen_anomalies = now
                        self._note_anomalies(records, base + pos)
                    fs.batches += 1
                    yield records, chunk, base + pos
                pos += used
                # A decode that consumed nothing stopped at an incomplete frame;
                # otherwise the output filled up and there may be more whole frames.
                if not used or pos == end:
                    break
            carry = end - pos
            if carry and pos:
                # Move the partial frame to the front: at most one frame per
                # chunk, and each byte moves at most once, so reading is linear.
                buf[0:carry] = buf[pos:end]
            base += pos
        if carry:
            if on_input is not None:
                on_input(view[:carry])
            self._truncated_tail(view[:carry], base)
            fs.batches += 1
            yield memoryview(dec.tail_record(view[:carry])), view[:carry], base

    def _bad_compression(self, exc: BaseException, offset: int) -> None:
        fs = self._file_stats
        fs.bad_compression += 1
        log.warning("%s: compressed stream broke off after %d bytes (%s); stopped reading there", self._name, offset, exc)
        if len(fs.anomalies) < MAX_ANOMALIES_KEPT:
            fs.anomalies.append(Anomaly(ANOMALY_BAD_COMPRESSION, offset, 0, 0))
        else:
            fs.anomalies_dropped += 1

    def _truncated_tail(self, tail: memoryview, base: int) -> None:
        fs = self._file_stats
        length, type_byte = _tail_fields(tail)
        fs.truncated_tail += 1
        fs.truncated_tail_offset = base
        fs.truncated_tail_bytes = len(tail)
        if len(fs.anomalies) < MAX_ANOMALIES_KEPT:
            fs.anomalies.append(Anomaly(ANOMALY_TRUNCATED_TAIL, base, length, type_byte))
        else:
            fs.anomalies_dropped += 1


def iter_record_batches(
    source: str | os.PathLike[str] | BinaryIO,
    decoder: RecordDecoder | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> RecordBatchReader:
    """Read a BinaryFILE ITCH capture and yield ``(records, chunk, chunk_file_offset)``.

    ``source`` is a path (plain or gzip, detected by content) or a blocking
    binary file object.  The file is read ``chunk_size`` bytes at a time into
    one reused buffer; an incomplete frame at the end of a chunk is carried to
    the next one.  ``records`` (see :data:`RECORD`) index into ``chunk``: the
    message of a record starts at ``chunk[offset:]`` and at file offset
    ``chunk_file_offset + offset``.  Both views are valid until the next
    iteration.  A chunk with more than ``decoder.capacity`` messages yields
    several batches; a chunk whose messages were all filtered yields none.

    If the file ends inside a frame, the last batch is one synthesised
    :data:`ANOMALY_TRUNCATED_TAIL` record over the leftover bytes, and the
    returned reader's ``stats`` (:class:`FileDecodeStats`) count it with its
    absolute offset.  ``decoder`` (default: a new unfiltered
    :class:`RecordDecoder`) carries the filter; its counters keep accumulating.
    """
    return RecordBatchReader(source, decoder, chunk_size)


# ----------------------------------------------------------- pure-Python reference

# Which layout field feeds each record field, per type, in the order
# (side, shares, price, ref, ref2); None = 0.  Names are looked up in
# efsdk.itch.layouts at import, so a drift between the tables fails loudly.
_FIELD_MAP: dict[bytes, tuple[str | None, ...]] = {
    b"A": ("side", "shares", "price", "order_reference_number", None),
    b"F": ("side", "shares", "price", "order_reference_number", None),
    b"E": (None, "executed_shares", None, "order_reference_number", "match_number"),
    b"C": ("printable", "executed_shares", "execution_price", "order_reference_number", "match_number"),
    b"X": (None, "cancelled_shares", None, "order_reference_number", None),
    b"D": (None, None, None, "order_reference_number", None),
    b"U": (None, "shares", "price", "original_order_reference_number", "new_order_reference_number"),
    b"P": ("side", "shares", "price", "order_reference_number", "match_number"),
    b"Q": ("cross_type", None, "cross_price", "shares", "match_number"),
    b"B": (None, None, None, None, "match_number"),
}  # fmt: skip


def _build_extractors() -> dict[int, tuple[struct.Struct, tuple[int | None, ...], int | None]]:
    table = {}
    for t, layout in LAYOUTS.items():
        names = layout.field_names
        idx = tuple(None if n is None else names.index(n) for n in _FIELD_MAP.get(t, (None,) * 5))
        stock = names.index("stock") if t == b"R" else None
        table[t[0]] = (layout.struct, idx, stock)
    return table


_EXTRACT = _build_extractors()
_LOCATE_IDX = LAYOUTS[b"A"].field_names.index("stock_locate")  # same for every type
_R = ord("R")


def decode_records_py(
    buf: Any,
    locate_filter: bytearray | None = None,
    symbols: Iterable[str | bytes] | None = None,
    *,
    out_cap: int | None = None,
    stats: DecodeStats | None = None,
) -> tuple[bytes, int]:
    """Pure-Python reference decoder: same records, same bytes as the C one.

    Returns ``(records, consumed)`` like :meth:`RecordDecoder.decode`, with
    ``records`` as ``bytes``.  ``locate_filter`` is None (emit everything) or a
    65536-byte ``bytearray`` updated in place exactly as the C filter is;
    ``symbols`` without a filter use a fresh empty one, as ``RecordDecoder``
    does.  ``out_cap`` limits the records per call (None = no limit);
    ``stats`` accumulates counters like the native ones.  Slow (3-5 us per
    message against ~12 ns native): for tests and for platforms without the
    extension.
    """
    mv = memoryview(buf).cast("B")
    n = min(len(mv), MAX_DECODE_BYTES)
    syms = set(_symbol_list(symbols)) if symbols is not None else set()
    filt = locate_filter
    if filt is None and symbols is not None:
        filt = bytearray(_LOCATES)
    if filt is not None and len(filt) != _LOCATES:
        raise ValueError(f"locate_filter must be {_LOCATES} bytes, got {len(filt)}")
    if out_cap is not None and out_cap < 1:
        raise ValueError(f"out_cap must be >= 1, got {out_cap}")
    cap = out_cap if out_cap is not None else n + 1  # n + 1 > any possible record count
    pack = RECORD.pack
    extract = _EXTRACT
    size_by_type = SIZE_BY_TYPE
    out: list[bytes] = []
    by_type = [0] * 256
    messages = filtered = unknown = bad = empty = 0
    pos = 0
    while len(out) < cap and n - pos >= 2:
        mlen = mv[pos] << 8 | mv[pos + 1]
        if mlen > n - pos - 2:
            break
        messages += 1
        if mlen == 0:
            by_type[0] += 1
            empty += 1
            out.append(pack(ANOMALY, ANOMALY_EMPTY, 0, 0, 0, pos, 0, 0))
            pos += 2
            continue
        t = mv[pos + 2]
        by_type[t] += 1
        size = size_by_type.get(t, 0)
        if size != mlen:
            if size == 0:
                unknown += 1
                kind = ANOMALY_UNKNOWN_TYPE
            else:
                bad += 1
                kind = ANOMALY_BAD_LENGTH
            out.append(pack(ANOMALY, kind, 0, mlen, t, pos, 0, 0))
            pos += 2 + mlen
            continue
        st, idx, stock_idx = extract[t]
        values = st.unpack_from(mv, pos + 2)
        loc = values[_LOCATE_IDX]
        if filt is not None and loc != 0 and not filt[loc]:
            if t != _R or values[stock_idx] not in syms:  # type: ignore[index]
                filtered += 1
                pos += 2 + mlen
                continue
            filt[loc] = 1
        side, shares, price, ref, ref2 = (0 if i is None else values[i] for i in idx)
        if side:
            side = side[0]  # a one-byte ``c`` field
        out.append(pack(t, side, loc, shares, price, pos + 2, ref, ref2))
        pos += 2 + mlen
    if stats is not None:
        stats.messages += messages
        stats.bytes += pos
        stats.emitted += len(out)
        stats.filtered += filtered
        stats.unknown_type += unknown
        stats.bad_length += bad
        stats.empty += empty
        for t, c in enumerate(by_type):
            if c:
                stats.by_type[chr(t)] = stats.by_type.get(chr(t), 0) + c
    return b"".join(out), pos
