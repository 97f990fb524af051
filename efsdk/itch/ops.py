"""ITCH 5.0 into the book-op stream (:mod:`book.ops`), decoded in C.

This is the feed side of the hot path: ``native/itch_ops.c`` frames,
validates, filters by stock locate and re-shapes every message into 4-word
records that :meth:`book.BookBuilder.apply_ops` consumes as a flat list::

    decoder = OpDecoder()
    with iter_op_batches("day.itch.gz", decoder) as batches:
        for ops, chunk, file_offset in batches:
            builder.apply_ops(ops.cast("Q"), on_message, on_anomaly)

``OP_MESSAGE``/``OP_ANOMALY`` offsets index ``chunk``.  Filtering, symbol
subscriptions, counters and the file reader are those of
:class:`~efsdk.itch.records.RecordDecoder`.
"""

from __future__ import annotations

import array
import errno
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import book.ops as book_ops
from efsdk.errors import NativeError
from efsdk.itch import records as _records
from efsdk.itch.records import (
    ANOMALY_TRUNCATED_TAIL,
    DEFAULT_CAPACITY,
    DEFAULT_CHUNK_SIZE,
    MAX_DECODE_BYTES,
    Anomaly,
    RecordBatchReader,
    RecordDecoder,
    _tail_fields,
)

__all__ = ["ANOMALY_BAD_SIDE", "OP_WORDS", "OpDecoder", "anomaly_from_op", "iter_op_batches"]

OP_WORDS = book_ops.RECORD_WORDS
_OP_BYTES = 8 * OP_WORDS
ANOMALY_BAD_SIDE = 5  # an add whose side byte is neither B nor S


def _check_ops_contract() -> None:
    """The C op codes must be book.ops's; a stale build says so instead of corrupting books."""
    lib = _records._lib
    if lib is None:
        return
    native = {
        "OPS_VERSION": lib.efsdk_book_ops_version(),
        "OP_ANOMALY": lib.EFSDK_OP_ANOMALY,
        "OP_DELETE": lib.EFSDK_OP_DELETE,
        "OP_EXECUTE": lib.EFSDK_OP_EXECUTE,
        "OP_EXECUTE_PRICE": lib.EFSDK_OP_EXECUTE_PRICE,
        "OP_CANCEL": lib.EFSDK_OP_CANCEL,
        "OP_REPLACE_OUT": lib.EFSDK_OP_REPLACE_OUT,
        "OP_REPLACE_IN": lib.EFSDK_OP_REPLACE_IN,
        "OP_MESSAGE": lib.EFSDK_OP_MESSAGE,
        "ADD_BASE": lib.EFSDK_OP_ADD_BASE,
    }
    wrong = {k: v for k, v in native.items() if getattr(book_ops, k) != v}
    if wrong or lib.EFSDK_ITCH_ANOMALY_BAD_SIDE != ANOMALY_BAD_SIDE:
        raise NativeError(
            f"efsdk._native_itch op codes {wrong} differ from book.ops; {_records._REINSTALL}"
        )


_check_ops_contract()


def anomaly_from_op(base: int, offset: int, kind: int, detail: int) -> Anomaly:
    """The :class:`Anomaly` an ``OP_ANOMALY`` record reports, offsets made absolute by ``base``.

    ``offset`` is the frame's length prefix and ``detail`` its declared
    length; a bad side also carries the offending side byte above bit 16
    (reported as ``type_byte``).
    """
    return Anomaly(kind, base + offset, detail & 0xFFFF, detail >> 16)


class OpDecoder(RecordDecoder):
    """Native ITCH decoder producing book-op records.

    ``capacity`` counts 4-word op records per call (a U message takes two).
    ``message_types`` limits which non-book messages (R, H, S, P, ...)
    become ``OP_MESSAGE`` records; the rest are dropped in C and counted as
    ``filtered`` (and in ``by_type``).  ``None`` emits them all.
    ``seq`` is the feed sequence number of the next message: every framed
    message advances it, filtered ones included, and each resting order
    stores its message's number as its arrival sequence, so books are
    identical whatever the subscription.
    """

    __slots__ = ("_ops", "_seq", "_decode_ops", "_types", "_touched")

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        locates: Iterable[int] | None = None,
        symbols: Iterable[str | bytes] | None = None,
        first_seq: int = 1,
        message_types: Iterable[str] | None = None,
    ) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 op records (a replace takes two), got {capacity}")
        # The parent's record buffer is unused; keep it minimal.
        super().__init__(1, locates, symbols)
        ffi = _records._ffi
        self._capacity = capacity
        self._ops = ffi.new("uint64_t[]", OP_WORDS * capacity)
        self._seq = ffi.new("uint64_t *", first_seq)
        self._decode_ops = _records._lib.efsdk_itch_decode_ops
        self._types = ffi.NULL
        if message_types is not None:
            wanted = bytearray(256)
            for t in message_types:
                if len(t) != 1:
                    raise ValueError(f"message types are single ITCH type characters, got {t!r}")
                wanted[ord(t)] = 1
            self._types = ffi.new("uint8_t[]", bytes(wanted))
        self._touched = ffi.NULL

    def track_touched(self, enabled: bool = True) -> None:
        """Opt in (or out) to listing the books each decode touches; see :meth:`take_touched`.

        Costs the decoder ~1 ns a message; off (the default) it costs nothing.
        """
        if not enabled:
            self._touched = _records._ffi.NULL
        elif self._touched == _records._ffi.NULL:
            self._touched = _records._ffi.new("efsdk_touched *")

    @property
    def tracking_touched(self) -> bool:
        return self._touched != _records._ffi.NULL

    def take_touched(self) -> list[int]:
        """Stock locates of the books whose resting orders changed since the last call
        (adds, deletes, executions, cancels, replaces), each once, in first-touch order.

        Filtered-out messages touch nothing.  P/Q prints and R/H messages are
        not book changes and are not listed.  ``[]`` when not tracking.
        """
        touched = self._touched
        if touched == _records._ffi.NULL or not touched.n:
            return []
        locates = _records._ffi.unpack(touched.list, touched.n)
        _records._lib.efsdk_touched_reset(touched)
        return locates

    @property
    def seq(self) -> int:
        """Feed sequence number the next framed message will get."""
        return int(self._seq[0])

    def decode(self, buf: Any) -> tuple[memoryview, int]:
        """Decode whole messages; return ``(ops, consumed)``.

        ``ops`` is a zero-copy memoryview over the decoder's buffer (32 bytes
        a record), valid until the next call; pass ``ops.cast("Q")`` to
        :meth:`book.BookBuilder.apply_ops` before decoding again.
        """
        ffi = _records._ffi
        with ffi.from_buffer("uint8_t[]", buf) as p:
            n = len(p)
            rc = self._decode_ops(
                p,
                n if n <= MAX_DECODE_BYTES else MAX_DECODE_BYTES,
                self._consumed,
                self._ops,
                self._capacity,
                self._filter,
                self._sym_buf,
                self._n_symbols,
                self._seq,
                self._types,
                self._stats,
                self._touched,
            )
        if rc < 0:
            raise NativeError(f"efsdk_itch_decode_ops failed: {errno.errorcode.get(-rc, rc)}")
        return memoryview(ffi.buffer(self._ops, rc * _OP_BYTES)), self._consumed[0]

    def anomalies_in(self, records: memoryview, base: int) -> Iterator[Anomaly]:
        words = records.cast("Q")
        for i in range(0, len(words), OP_WORDS):
            if words[i] == book_ops.OP_ANOMALY:
                yield anomaly_from_op(base, words[i + 1], words[i + 2], words[i + 3])

    @staticmethod
    def tail_record(tail: memoryview) -> bytes:
        length, _ = _tail_fields(tail)
        return array.array("Q", (book_ops.OP_ANOMALY, 0, ANOMALY_TRUNCATED_TAIL, length)).tobytes()


def iter_op_batches(
    source: str | os.PathLike[str] | BinaryIO,
    decoder: OpDecoder | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_input: Callable[[memoryview], None] | None = None,
) -> RecordBatchReader:
    """Read an ITCH BinaryFILE (plain or gzip) as ``(ops, chunk, chunk_file_offset)`` batches.

    Truncated tails, bad frames and unknown types are counted in the reader's
    ``stats`` (with absolute offsets) and appear as ``OP_ANOMALY`` records.
    ``on_input`` sees every consumed byte (see :class:`RecordBatchReader`).
    """
    return RecordBatchReader(source, decoder if decoder is not None else OpDecoder(), chunk_size, on_input)
