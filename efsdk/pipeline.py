"""The feed handler: ITCH bytes -> native book ops -> pure-Python books.

One object joins the stages for every source.  A replayed file, a MoldUDP64
packet payload and (later) a live ring all end in :meth:`FeedHandler.process`
on a buffer of length-prefixed ITCH messages:

1. ``native/`` frames, validates and filters by stock locate, emitting book
   ops (:mod:`efsdk.itch.ops`);
2. :class:`book.BookBuilder` applies them in one hot loop;
3. the few messages that do not change resting orders (directory, trading
   state, trades, system events) are decoded by :mod:`efsdk.itch.codec` here,
   off the hot path;
4. malformed input is counted by kind, logged once per kind, and kept (with
   its offset) in a bounded list.

With ``on_book`` set, ops are applied one record at a time and the callback
sees every change to a book as it happens: that is the strategy path, meant
for the few instruments a strategy subscribes to.  Without it, whole batches
go through the bulk loop: the full-feed path.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

from book import BookBuilder, OrderBook
from book.ops import ADD_BASE, OP_ANOMALY, OP_EXECUTE, OP_EXECUTE_PRICE, OP_MESSAGE, OP_REPLACE_IN, RECORD_WORDS
from efsdk.itch.codec import DECODER_BY_TYPE
from efsdk.itch.ops import ANOMALY_BAD_SIDE, OpDecoder, anomaly_from_op, iter_op_batches
from efsdk.itch.records import ANOMALY_BAD_COMPRESSION, ANOMALY_KINDS, DEFAULT_CAPACITY, DEFAULT_CHUNK_SIZE, Anomaly

__all__ = ["HANDLED_MESSAGE_TYPES", "BookEvent", "FeedHandler", "FeedStats", "OnBook", "OnTrade", "Trade", "anomaly_name"]

log = logging.getLogger(__name__)

MAX_ANOMALIES_KEPT = 1000  # with offsets; the counters stay exact beyond this

_R, _H, _S, _P, _Q, _B = (ord(c) for c in "RHSPQB")
#: Non-book messages this handler acts on; the native decoder drops the others
#: (NOII, RPII, ...: ~2% of a day) before Python pays for them.
HANDLED_MESSAGE_TYPES = frozenset("RHSPQB")
_ANOMALY_NAMES = {**ANOMALY_KINDS, ANOMALY_BAD_SIDE: "bad_side"}


def anomaly_name(kind: int) -> str:
    """Name of a decoder anomaly kind (unknown_type, bad_length, ...)."""
    return _ANOMALY_NAMES.get(kind, f"kind_{kind}")


@dataclass(frozen=True, slots=True)
class BookEvent:
    """What just changed a book (strategy path only)."""

    op: int  # book.ops code (adds are >= ADD_BASE)
    ref: int  # order reference it concerned


#: ``on_book(book, event)``: called after every change to a subscribed book.
OnBook = Callable[[OrderBook, BookEvent], None]


class Trade(NamedTuple):
    """A print in a subscribed instrument (strategy path only)."""

    price: int  # 1/10000 dollars
    shares: int
    resting_side: str  # side of the displayed order that was hit ("B"/"S"); " " for a cross
    timestamp: int  # ns since midnight
    kind: str  # ITCH type: "E"/"C" (displayed order executed), "P" (hidden), "Q" (cross)
    match_number: int


#: ``on_trade(book, trade)``: called for every execution and trade print of a subscribed book.
OnTrade = Callable[[OrderBook, Trade], None]


@dataclass
class FeedStats:
    """Feed-level counters; book anomalies live in ``BookBuilder.stats``."""

    messages: int = 0
    bytes: int = 0
    filtered: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    anomalies_by_kind: dict[str, int] = field(default_factory=dict)
    system_events: list[tuple[int, str]] = field(default_factory=list)  # (timestamp ns, event code)
    trades: int = 0  # P and Q prints (non-displayed and cross)
    broken_trades: int = 0
    last_timestamp: int = 0  # of the last message decoded in Python (rare types)
    seconds: float = 0.0

    @property
    def anomalies(self) -> int:
        return sum(self.anomalies_by_kind.values())

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class FeedHandler:
    """Books for one ITCH feed, optionally restricted to some symbols/locates."""

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        locates: Iterable[int] | None = None,
        on_book: OnBook | None = None,
        on_trade: OnTrade | None = None,
        builder: BookBuilder | None = None,
        capacity: int = DEFAULT_CAPACITY,
        message_types: Iterable[str] = HANDLED_MESSAGE_TYPES,
    ) -> None:
        self.symbols = tuple(symbols) if symbols is not None else ()
        # The filters as given, so a copy of this handler can be made elsewhere (a publisher sidecar).
        self.locates = tuple(locates) if locates is not None else None
        self.message_types = tuple(message_types)
        self.decoder = OpDecoder(capacity, self.locates, self.symbols or None, message_types=self.message_types)
        self.builder = builder if builder is not None else BookBuilder()
        self.on_book = on_book
        self.on_trade = on_trade
        self.stats = FeedStats()
        self.anomalies: list[Anomaly] = []
        self._chunk: Any = b""  # buffer the current ops' offsets index
        self._base = 0  # absolute offset of _chunk[0]
        self._decode_base = self.decoder.stats
        #: Feed time (ns since midnight): on the full-feed path that of the
        #: batch's last message; on the strategy path that of the message
        #: being applied (adds, which carry no offset, keep the previous one).
        self.clock = 0
        #: Timestamp (ns, wall clock) of the frame whose messages are being
        #: applied, set by the live driver per frame; 0 on a file replay.
        self.frame_ts = 0
        #: Called after each applied batch with ``(ops, chunk)`` (e.g. the
        #: ZeroMQ publisher); once per batch, never per message.
        self.batch_listeners: list[Callable[[memoryview, Any], None]] = []
        #: Called with every span of ITCH bytes the handler consumes, in feed
        #: order: whole length-prefixed messages, filtered ones and ones that
        #: made no record included (a replay's truncated tail last).  The span
        #: is valid only during the call.  This is how a publisher sidecar
        #: (:class:`~efsdk.publish.sidecar.PublisherSidecar`) sees the feed.
        self.input_listeners: list[Callable[[memoryview], None]] = []
        #: Called with the stock locate of each P/Q print (trades that leave
        #: resting orders alone, so no op record shows them).
        self.print_listeners: list[Callable[[int], None]] = []

    # ------------------------------------------------------------------ input
    def process(self, buf: Any, base_offset: int = 0) -> int:
        """Apply every whole message in ``buf``; return the bytes consumed.

        ``buf`` holds length-prefixed ITCH messages (BinaryFILE framing, or the
        message blocks of a MoldUDP64 packet).  An incomplete message at the
        end is left for the caller to complete.
        """
        decode = self.decoder.decode
        inputs = self.input_listeners
        view = memoryview(buf)
        pos = 0
        while pos < len(view):
            ops, used = decode(view[pos:])
            if inputs and used:
                self._input(view[pos : pos + used])
            if ops:
                self._apply(ops, view[pos:], base_offset + pos)
            pos += used
            if not used:
                break
        if self.on_book is None and self.decoder.last_timestamp:
            self.clock = self.decoder.last_timestamp  # also when every message was filtered out
        return pos

    def replay(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Callable[[int], None] | None = None,
    ) -> FeedStats:
        """Build books from a BinaryFILE ITCH capture (plain or gzip).

        ``progress(bytes_read)`` is called once per batch.  Truncated tails and
        malformed frames are counted (see :attr:`anomalies`), never raised.
        """
        started = time.perf_counter()
        on_input = self._input if self.input_listeners else None
        with iter_op_batches(source, self.decoder, chunk_size, on_input) as batches:
            for ops, chunk, file_offset in batches:
                self._apply(ops, chunk, file_offset)
                if progress is not None:
                    progress(batches.stats.bytes_read)
            file_stats = batches.stats
        if file_stats.bad_compression:  # not an op record: the reader saw it
            counts = self.stats.anomalies_by_kind
            counts["bad_compression"] = counts.get("bad_compression", 0) + file_stats.bad_compression
            self.anomalies.extend(a for a in file_stats.anomalies if a.kind == ANOMALY_BAD_COMPRESSION)
        self.stats.seconds += time.perf_counter() - started
        return self.refresh_stats()

    def refresh_stats(self) -> FeedStats:
        """Fold the native decoder's counters into :attr:`stats` and return it."""
        now = self.decoder.stats
        base = self._decode_base
        s = self.stats
        s.messages = now.messages - base.messages
        s.bytes = now.bytes - base.bytes
        s.filtered = now.filtered - base.filtered
        s.by_type = {k: v - base.by_type.get(k, 0) for k, v in now.by_type.items() if v != base.by_type.get(k, 0)}
        self.builder.check_crossed()
        return s

    # ------------------------------------------------------------------ internals
    def _input(self, span: memoryview) -> None:
        for listener in self.input_listeners:
            listener(span)

    def _apply(self, ops: memoryview, chunk: Any, base: int) -> None:
        self._chunk = chunk
        self._base = base
        # Iterate the native buffer itself: each int is made as the loop reaches
        # it, so transient ones are recycled at once (LIFO) instead of a whole
        # batch being allocated then freed; measured ~35% faster than tolist().
        words = ops.cast("Q")
        if self.on_book is None:
            self.builder.apply_ops(words, self._on_message, self._on_anomaly)
            self.clock = self.decoder.last_timestamp  # the batch's feed time, read in C for every message
        else:
            self._apply_each(words)
        for listener in self.batch_listeners:
            listener(ops, chunk)

    def _apply_each(self, words: Sequence[int]) -> None:
        """Strategy path: one record at a time, telling ``on_book`` what changed."""
        builder = self.builder
        apply_one = builder._apply  # the bulk loop on a 4-word list; GC paused once below
        record = [0, 0, 0, 0]
        locate_order = builder.index.locate
        on_book = self.on_book
        on_trade = self.on_trade
        on_message, on_anomaly = self._on_message, self._on_anomaly
        chunk = self._chunk
        stats = builder.stats
        book: OrderBook | None = None
        trade: Trade | None = None
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for i in range(0, len(words), RECORD_WORDS):
                op, ref = words[i], words[i + 1]
                if op >= ADD_BASE:
                    book = builder.book_for((op - ADD_BASE) >> 1)
                elif op == OP_MESSAGE or op == OP_ANOMALY:
                    book = None
                elif op != OP_REPLACE_IN:  # REPLACE_IN stays on the book of its REPLACE_OUT
                    hit = locate_order(ref)
                    book = hit[0].book if hit is not None else None
                    offset = words[i + 3]  # these ops carry their message's offset
                    self.clock = int.from_bytes(chunk[offset + 5 : offset + 11], "big")
                    if book is not None and on_trade is not None and (op == OP_EXECUTE or op == OP_EXECUTE_PRICE):
                        trade = _execution(chunk, offset, op, hit, words[i + 2], self.clock)  # type: ignore[arg-type]
                record[:] = words[i : i + RECORD_WORDS]
                refused = stats.duplicate_ref + stats.bad_shares
                apply_one(record, on_message, on_anomaly)
                # A duplicate or zero-share add changes nothing: no event for it.
                if book is not None and stats.duplicate_ref + stats.bad_shares == refused:
                    on_book(book, BookEvent(op, ref))  # type: ignore[misc]
                    if trade is not None:
                        on_trade(book, trade)  # type: ignore[misc]
                trade = None
        finally:
            if gc_was_enabled:
                gc.enable()

    def _on_message(self, offset: int, locate: int, type_byte: int) -> None:
        msg = DECODER_BY_TYPE[type_byte](self._chunk, offset)
        stats = self.stats
        stats.last_timestamp = self.clock = msg.timestamp
        if type_byte == _R:
            self.builder.set_symbol(locate, msg.stock)
        elif type_byte == _H:
            self.builder.book_for(locate).trading_state = msg.trading_state
        elif type_byte == _P or type_byte == _Q:
            stats.trades += 1
            book = self.builder.book_for(locate)
            book.volume += msg.shares
            book.last_price = msg.price if type_byte == _P else msg.cross_price
            for listener in self.print_listeners:
                listener(locate)
            if self.on_trade is not None:
                if type_byte == _P:
                    trade = Trade(msg.price, msg.shares, msg.side, msg.timestamp, "P", msg.match_number)
                else:
                    trade = Trade(msg.cross_price, msg.shares, " ", msg.timestamp, "Q", msg.match_number)
                self.on_trade(book, trade)
        elif type_byte == _B:
            stats.broken_trades += 1
        elif type_byte == _S:
            stats.system_events.append((msg.timestamp, msg.event_code))

    def _on_anomaly(self, offset: int, kind: int, detail: int) -> None:
        name = anomaly_name(kind)
        counts = self.stats.anomalies_by_kind
        first = name not in counts
        counts[name] = counts.get(name, 0) + 1
        anomaly = anomaly_from_op(self._base, offset, kind, detail)
        if len(self.anomalies) < MAX_ANOMALIES_KEPT:
            self.anomalies.append(anomaly)
        if first:  # once per kind: never per message on the hot path
            log.warning("ITCH feed: %s at offset %d; further ones are counted", name, anomaly.offset)


def _execution(chunk: Any, offset: int, op: int, hit: tuple, shares: int, timestamp: int) -> Trade:
    """The print of an E/C message, read before the book forgets the order's side and price."""
    side, price, _level = hit
    # E: ref 8 | shares 4 | match 8 after the 11-byte header; C adds printable 1 | price 4.
    match = int.from_bytes(chunk[offset + 23 : offset + 31], "big")
    kind = "E"
    if op == OP_EXECUTE_PRICE:
        price = int.from_bytes(chunk[offset + 32 : offset + 36], "big")
        kind = "C"
    return Trade(price, shares, "B" if side.is_bid else "S", timestamp, kind, match)
