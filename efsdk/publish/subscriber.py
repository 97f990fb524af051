"""The fan-out client: rebuild each subscribed book's L2 from the stream and snapshots.

:class:`BookSubscriber` subscribes a SUB socket to ``symbol + b"\\x00"`` for
each symbol (ZeroMQ filters at the socket, so other symbols never reach
Python) and keeps one :class:`L2Book` per symbol.  Synchronisation, per topic:

1. until synchronised, stream messages are buffered (bounded) while a
   snapshot is requested over a DEALER -> the publisher's ROUTER;
2. a snapshot with seq ``S`` (the reply, or a periodic one on the stream,
   whichever comes first) replaces the book; buffered messages with seq > ``S``
   are applied in order; the book is live when they run without a hole;
3. live, each message must carry the next seq.  A jump is a gap: counted
   (``gaps``, ``lost_messages``), the book goes back to 1 (``resyncs``);
   an older seq is a duplicate and is skipped (``duplicates``);
4. a periodic snapshot whose seq equals the live book's is *checked* against
   the book built from deltas (``snapshot_checks``; a difference is counted
   in ``snapshot_mismatches``, logged once, and the snapshot adopted); one
   ahead of the live book means stream messages were lost (a gap).  A
   *reply* ahead of a live book may not be: it comes over its own connection
   and can overtake the stream, so it is held (``replies_ahead``).  If the
   stream reaches its seq within ``request_timeout_s`` of being read to its
   end (a backlog restarts the timer) it is dropped; otherwise the messages
   before it were lost: a gap, and it is adopted.

A snapshot with ``FLAG_FINAL`` marks the end of the publisher's stream
(:attr:`L2Book.final`).  Malformed messages are counted (``decode_errors``),
logged once, and skipped; they never raise out of :meth:`BookSubscriber.poll`.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from itertools import compress
from typing import Any

import zmq
from pydantic import Field, field_validator

from book.orderbook import BBO, Depth, LevelView
from efsdk.errors import ConfigError, ProtocolError
from efsdk.publish.encoding import (
    FLAG_FINAL,
    HEADER,
    KIND_BBO,
    KIND_DELTA,
    KIND_ERROR,
    KIND_REPLY,
    KIND_SNAPSHOT,
    KIND_TRADE,
    WIRE_VERSION,
    Snapshot,
    decode_bbo,
    decode_header,
    decode_levels,
    decode_snapshot,
    decode_trade,
    depth_window,
    encode_request,
    symbol_of_topic,
    topic_for,
)
from efsdk.publish.publisher import StreamEndpoints, default_snapshot_endpoint
from efsdk.resource import Resource

__all__ = ["DEFAULT_RCVHWM", "BookSubscriber", "L2Book", "SubscriberConfig", "SubscriberStats"]

log = logging.getLogger(__name__)

#: Stream messages queued in the subscriber before ZeroMQ drops (then the
#: publisher's SNDHWM, then loss, seen as a gap).  Matches the publisher's.
DEFAULT_RCVHWM = 100_000
#: Messages buffered per topic while waiting for a snapshot; beyond, the
#: oldest are dropped (``buffer_overflows``) and the sync simply retries.
MAX_BUFFERED = 200_000
#: A snapshot request unanswered this long is sent again (``request_timeouts``).
DEFAULT_REQUEST_TIMEOUT_S = 1.0
#: Stream messages handled per :meth:`BookSubscriber.poll` before it returns,
#: so a flood cannot starve the caller (or the snapshot replies).
POLL_BATCH = 10_000

_is_zero = operator.not_


class SubscriberConfig(StreamEndpoints):
    """Where a :class:`BookSubscriber` connects and what it asks for; validated once."""

    symbols: tuple[str, ...] = Field(min_length=1)
    rcvhwm: int = Field(DEFAULT_RCVHWM, ge=1)
    rcvbuf: int = Field(0, ge=0)  # kernel receive buffer, bytes; 0: the OS default
    request_timeout_s: float = Field(DEFAULT_REQUEST_TIMEOUT_S, gt=0)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for s in v:
            topic_for(s)
        if len(set(v)) != len(v):
            raise ValueError("symbols must be distinct")
        return v


@dataclass
class SubscriberStats:
    """Counters of one subscriber; every gap, drop and recovery has one."""

    messages: int = 0  # stream messages received
    deltas: int = 0
    bbos: int = 0
    trades: int = 0
    snapshots: int = 0  # stream snapshots received
    buffered: int = 0  # stream messages held while synchronising
    gaps: int = 0  # sequence jumps on a live topic
    lost_messages: int = 0  # messages those jumps skipped
    duplicates: int = 0  # stream messages at or below the book's seq
    syncs: int = 0  # times a topic became live (first sync included)
    resyncs: int = 0  # syncs after a gap
    snapshot_checks: int = 0  # periodic snapshots compared with the delta-built book
    snapshot_mismatches: int = 0
    stale_snapshots: int = 0  # snapshots older than the live book
    buffer_overflows: int = 0
    requests: int = 0
    request_timeouts: int = 0
    replies: int = 0
    stale_replies: int = 0
    replies_ahead: int = 0  # reply snapshots newer than a live book: held until the stream catches up (or a gap)
    reply_errors: int = 0
    decode_errors: int = 0
    foreign_topics: int = 0  # messages for a topic not subscribed (the socket filter should make this 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class L2Book:
    """One symbol's aggregated book, rebuilt from the stream: price -> (shares, orders) per side."""

    __slots__ = (
        "symbol", "topic", "bids", "asks", "seq", "synced", "final", "ts_ns",
        "volume", "last_price", "trading_state", "last_bbo", "buffer", "syncs", "depth_window",
    )  # fmt: skip

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.topic = topic_for(symbol)
        self.bids: dict[int, tuple[int, int]] = {}
        self.asks: dict[int, tuple[int, int]] = {}
        self.seq = 0  # topic seq this state reflects
        self.synced = False
        self.final = False  # the publisher's stream ended and this book reflects its end state
        self.ts_ns = 0  # feed time of the last message applied
        self.volume = 0
        self.last_price: int | None = None
        self.trading_state: str | None = None
        self.last_bbo: tuple | None = None  # the last BBO message (the book's own bbo() is always current)
        self.buffer: list[tuple[int, bytes]] = []
        self.syncs = 0  # times this book became live
        self.depth_window = 0  # N: the publisher streams only the top N levels per side (0: every level)

    def __repr__(self) -> str:
        bbo = self.bbo()
        state = "final" if self.final else ("live" if self.synced else "syncing")
        return (
            f"L2Book({self.symbol!r}, {state}, seq={self.seq}, levels={len(self.bids)}x{len(self.asks)}, "
            f"bbo={bbo.bid_price}x{bbo.ask_price})"
        )

    def levels(self, side: str) -> list[LevelView]:
        """Every level of a side ("B" or "S"), best first."""
        rows = self.bids if side == "B" else self.asks
        prices = sorted(rows, reverse=side == "B")
        return [LevelView(p, *rows[p]) for p in prices]

    def depth(self, n: int = 5) -> Depth:
        """Top ``n`` levels per side, best first: equal to the publisher's ``OrderBook.depth(n)``
        (for ``n`` up to :attr:`depth_window` when the publisher streams a window)."""
        bids = sorted(self.bids, reverse=True)[:n]
        asks = sorted(self.asks)[:n]
        return Depth([LevelView(p, *self.bids[p]) for p in bids], [LevelView(p, *self.asks[p]) for p in asks])

    def bbo(self) -> BBO:
        """Best bid and offer from the rebuilt levels."""
        bid = max(self.bids) if self.bids else None
        ask = min(self.asks) if self.asks else None
        bs, bo = self.bids[bid] if bid is not None else (0, 0)
        as_, ao = self.asks[ask] if ask is not None else (0, 0)
        return BBO(bid, bs, bo, ask, as_, ao)

    def _apply_snapshot(self, snap: Snapshot) -> None:
        self.bids = dict(snap.bids)
        self.asks = dict(snap.asks)
        self.seq = snap.seq
        self.ts_ns = snap.ts_ns
        self.volume = snap.volume
        self.last_price = snap.last_price or None
        self.trading_state = snap.trading_state
        self.depth_window = depth_window(snap.flags)

    def _matches(self, snap: Snapshot) -> bool:
        return self.bids == snap.bids and self.asks == snap.asks


OnUpdate = Callable[[L2Book, int], None]  # (book, message kind) after each applied stream message


class BookSubscriber(Resource):
    """L2 books of some symbols, rebuilt from a :class:`~efsdk.publish.BookPublisher` stream.

    Call :meth:`poll` (or :meth:`run`) from one thread; read :meth:`book`.
    """

    def __init__(self, config: SubscriberConfig, context: zmq.Context | None = None, on_update: OnUpdate | None = None) -> None:
        self.config = config
        self.stats = SubscriberStats()
        self.on_update = on_update
        self.books: dict[str, L2Book] = {s: L2Book(s) for s in config.symbols}
        self._by_topic: dict[bytes, L2Book] = {b.topic: b for b in self.books.values()}
        self._own_context = context is None
        self._ctx = context if context is not None else zmq.Context()
        self._sub: zmq.Socket | None = None
        self._req: zmq.Socket | None = None
        snapshot_endpoint = config.snapshot_endpoint or default_snapshot_endpoint(config.endpoint)
        if snapshot_endpoint.endswith(":*"):
            raise ConfigError("the publisher bound its snapshot server to any port: pass snapshot_endpoint explicitly")
        try:
            sub = self._sub = self._ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, config.rcvhwm)
            if config.rcvbuf:
                sub.setsockopt(zmq.RCVBUF, config.rcvbuf)
            sub.setsockopt(zmq.LINGER, 0)
            for topic in self._by_topic:
                sub.setsockopt(zmq.SUBSCRIBE, topic)
            sub.connect(config.endpoint)
            req = self._req = self._ctx.socket(zmq.DEALER)
            req.setsockopt(zmq.LINGER, 0)
            req.connect(snapshot_endpoint)
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ConfigError(f"cannot connect to {config.endpoint} / {snapshot_endpoint}: {exc}") from exc
        self.snapshot_endpoint = snapshot_endpoint
        self._poller = zmq.Poller()
        self._poller.register(sub, zmq.POLLIN)
        self._poller.register(req, zmq.POLLIN)
        self._want: set[str] = set(config.symbols)  # topics that need a snapshot
        # Replies ahead of a live book, per symbol: (snapshot, when it arrived), until the stream catches up.
        self._ahead: dict[str, tuple[Snapshot, float]] = {}
        self._outstanding: tuple[int, tuple[str, ...], float] | None = None
        self._next_request_id = 1
        self._logged: set[str] = set()
        self._opened()
        self._maybe_request(time.monotonic())

    def __repr__(self) -> str:
        live = sum(1 for b in self.books.values() if b.synced)
        return f"<BookSubscriber {self.config.endpoint} symbols={len(self.books)} live={live} gaps={self.stats.gaps}>"

    def book(self, symbol: str) -> L2Book:
        """The rebuilt book of a subscribed ``symbol`` (KeyError otherwise)."""
        return self.books[symbol]

    @property
    def synced(self) -> bool:
        """Every subscribed book is live."""
        return all(b.synced for b in self.books.values())

    @property
    def all_final(self) -> bool:
        """Every subscribed book is live and has seen the publisher's final snapshot."""
        return all(b.synced and b.final for b in self.books.values())

    # ------------------------------------------------------------------ loop
    def poll(self, timeout: float = 0.1) -> int:
        """Wait up to ``timeout`` s for traffic, handle what arrived; returns stream messages handled."""
        sub, req = self._sub, self._req
        if sub is None or req is None:
            raise ConfigError("subscriber is closed")
        events = dict(self._poller.poll(int(timeout * 1000)))
        handled = 0
        if req in events:
            self._drain_replies()
        if sub in events:
            recv = sub.recv_multipart
            handle = self._on_stream
            while handled < POLL_BATCH:
                try:
                    frames = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handled += 1
                handle(frames)
        now = time.monotonic()
        if self._ahead:
            self._settle_replies_ahead(now, backlog=handled >= POLL_BATCH)
        self._maybe_request(now)
        return handled

    def run(self, duration: float | None = None, until_final: bool = False,
            on_tick: Callable[[BookSubscriber], None] | None = None, tick_s: float = 0.25) -> SubscriberStats:  # fmt: skip
        """Poll until ``duration`` s pass, or (``until_final``) every book is final; ``on_tick`` every ``tick_s``."""
        deadline = None if duration is None else time.monotonic() + duration
        next_tick = time.monotonic() + tick_s
        while True:
            self.poll(0.05)
            now = time.monotonic()
            if until_final and self.all_final:
                break
            if deadline is not None and now >= deadline:
                break
            if on_tick is not None and now >= next_tick:
                on_tick(self)
                next_tick = now + tick_s
        return self.stats

    # ------------------------------------------------------------------ stream
    def _on_stream(self, frames: list[bytes]) -> None:
        stats = self.stats
        stats.messages += 1
        if len(frames) != 2:
            self._bad(f"stream message of {len(frames)} frames, expected [topic, body]")
            return
        topic, body = frames
        book = self._by_topic.get(topic)
        if book is None:
            stats.foreign_topics += 1
            return
        if len(body) < HEADER.size:
            self._bad(f"{book.symbol}: body of {len(body)} bytes")
            return
        version, kind, _flags, _count, seq, _ts = HEADER.unpack_from(body)
        if version != WIRE_VERSION:
            self._bad(f"{book.symbol}: wire version {version}, expected {WIRE_VERSION}")
            return
        if kind == KIND_SNAPSHOT:
            stats.snapshots += 1
            try:
                snap = decode_snapshot(body)
            except ProtocolError as exc:
                self._bad(f"{book.symbol}: {exc}")
                return
            self._on_snapshot(book, snap)
            return
        if not book.synced:
            self._buffer(book, seq, body)
            return
        expected = book.seq + 1
        if seq == expected:
            self._apply(book, kind, body)
        elif seq < expected:
            stats.duplicates += 1
        else:
            stats.gaps += 1
            stats.lost_messages += seq - expected
            self._unsync(book)
            self._buffer(book, seq, body)

    def _apply(self, book: L2Book, kind: int, body: bytes) -> bool:
        """Apply one stream message (header already checked); False if malformed (counted, book resynced)."""
        stats = self.stats
        try:
            if kind == KIND_DELTA:
                sides = decode_levels(body, HEADER.unpack_from(body)[3], HEADER.size)
                for rows, (prices, shares, orders) in zip((book.bids, book.asks), sides):
                    rows.update(zip(prices, zip(shares, orders)))  # C speed; then the removals
                    if 0 in shares:
                        pop = rows.pop
                        for price in compress(prices, map(_is_zero, shares)):
                            pop(price, None)
                stats.deltas += 1
            elif kind == KIND_BBO:
                book.last_bbo = decode_bbo(body)
                stats.bbos += 1
            elif kind == KIND_TRADE:
                price, _shares, volume = decode_trade(body)
                if price is not None:
                    book.last_price = price
                book.volume = volume
                stats.trades += 1
            else:
                raise ProtocolError(f"unknown stream message kind {kind}")
        except ProtocolError as exc:
            self._bad(f"{book.symbol}: {exc}")
            self._unsync(book)  # a half-applied delta leaves the book unknown
            return False
        header = HEADER.unpack_from(body)
        book.seq = header[4]
        book.ts_ns = header[5]
        if self.on_update is not None:
            self.on_update(book, kind)
        return True

    def _buffer(self, book: L2Book, seq: int, body: bytes) -> None:
        buf = book.buffer
        if len(buf) >= MAX_BUFFERED:
            del buf[: len(buf) // 2]
            self.stats.buffer_overflows += 1
        buf.append((seq, body))
        self.stats.buffered += 1

    def _unsync(self, book: L2Book) -> None:
        book.synced = False
        self._want.add(book.symbol)

    def _on_snapshot(self, book: L2Book, snap: Snapshot, on_stream: bool = True) -> None:
        stats = self.stats
        if book.synced:
            if snap.seq > book.seq and not on_stream:
                # A reply travels on its own connection and can overtake the stream messages
                # before it: they may be in flight.  Held until the stream shows which.
                stats.replies_ahead += 1
                held = self._ahead.get(book.symbol)
                if held is None or held[0].seq < snap.seq:
                    self._ahead[book.symbol] = (snap, time.monotonic())
                return
            if snap.seq < book.seq:
                stats.stale_snapshots += 1
                return
            if snap.seq == book.seq:
                stats.snapshot_checks += 1
                if not book._matches(snap):
                    stats.snapshot_mismatches += 1
                    if "mismatch" not in self._logged:
                        self._logged.add("mismatch")
                        log.warning("%s: book built from deltas differs from snapshot at seq %d; adopted the snapshot",
                                    book.symbol, snap.seq)  # fmt: skip
                    book._apply_snapshot(snap)
                else:  # same levels: take the totals the deltas do not carry
                    book.volume, book.trading_state = snap.volume, snap.trading_state
            else:  # the snapshot is ahead: messages were lost and nothing after them revealed it yet
                stats.gaps += 1
                stats.lost_messages += snap.seq - book.seq
                stats.resyncs += 1
                stats.syncs += 1
                book.syncs += 1
                book._apply_snapshot(snap)
            if snap.flags & FLAG_FINAL:
                book.final = True
            return
        self._sync_from(book, snap)

    def _sync_from(self, book: L2Book, snap: Snapshot) -> None:
        """Adopt ``snap`` then the buffered messages after it; live if they follow without a hole."""
        stats = self.stats
        book._apply_snapshot(snap)
        buffered = sorted(book.buffer, key=lambda item: item[0])
        book.buffer = []
        book.synced = True
        for i, (seq, body) in enumerate(buffered):
            if seq <= book.seq:
                continue
            if seq != book.seq + 1:  # a hole between the snapshot and what we kept: try again
                book.synced = False
                book.buffer = buffered[i:]
                self._want.add(book.symbol)
                return
            kind = body[1]
            if not self._apply(book, kind, body):
                return
        self._want.discard(book.symbol)
        if snap.flags & FLAG_FINAL:
            book.final = True
        stats.syncs += 1
        if book.syncs:
            stats.resyncs += 1
        book.syncs += 1

    def _settle_replies_ahead(self, now: float, backlog: bool) -> None:
        """Drop held replies the stream has caught up with; adopt those it has not within request_timeout_s.

        The timeout counts only while the stream is read to its end: with a
        ``backlog`` (this poll stopped at POLL_BATCH) the missing messages may
        be queued behind it, so the timer restarts.
        """
        timeout = self.config.request_timeout_s
        for symbol, (snap, since) in list(self._ahead.items()):
            book = self.books[symbol]
            if not book.synced or book.seq >= snap.seq:  # resyncing anyway, or the messages came
                del self._ahead[symbol]
            elif backlog:  # behind, not (yet) losing: wait for the stream to be read up
                self._ahead[symbol] = (snap, now)
            elif now - since >= timeout:  # they are not coming: lost before the reply was taken
                del self._ahead[symbol]
                self._on_snapshot(book, snap)  # as a stream snapshot ahead of the book: a gap, adopted

    # ------------------------------------------------------------------ snapshot requests
    def _maybe_request(self, now: float) -> None:
        out = self._outstanding
        if out is not None:
            if now - out[2] < self.config.request_timeout_s:
                return
            self.stats.request_timeouts += 1
            self._want.update(s for s in out[1] if not self.books[s].synced)
            self._outstanding = None
        want = [s for s in self.config.symbols if s in self._want]
        if not want:
            return
        request_id = self._next_request_id
        self._next_request_id += 1
        try:
            self._req.send_multipart([b"", encode_request(request_id, want)], zmq.NOBLOCK)  # type: ignore[union-attr]
        except zmq.Again:  # not connected yet: try again on the next poll
            return
        self.stats.requests += 1
        self._want.difference_update(want)
        self._outstanding = (request_id, tuple(want), now)

    def _drain_replies(self) -> None:
        while True:
            try:
                frames = self._req.recv_multipart(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                return
            self._on_reply(frames)

    def _on_reply(self, frames: list[bytes]) -> None:
        stats = self.stats
        try:
            if len(frames) < 2 or frames[0] != b"":
                raise ProtocolError(f"reply of {len(frames)} frames without the DEALER delimiter")
            h = decode_header(frames[1])
        except ProtocolError as exc:
            self._bad(f"snapshot reply: {exc}")
            return
        out = self._outstanding
        if out is None or h.seq != out[0]:
            stats.stale_replies += 1
            return
        self._outstanding = None
        if h.kind == KIND_ERROR:
            stats.reply_errors += 1
            text = bytes(frames[1][HEADER.size :]).decode("utf-8", "replace")
            if "reply_error" not in self._logged:
                self._logged.add("reply_error")
                log.warning("snapshot server refused our request: %s", text)
            self._want.update(out[1])
            return
        if h.kind != KIND_REPLY or len(frames) != 2 + 2 * h.count:
            self._bad(f"snapshot reply kind {h.kind} with {len(frames)} frames for {h.count} snapshots")
            self._want.update(out[1])
            return
        stats.replies += 1
        for i in range(h.count):
            topic, body = frames[2 + 2 * i], frames[3 + 2 * i]
            try:
                symbol = symbol_of_topic(topic)
                snap = decode_snapshot(body)
            except ProtocolError as exc:
                self._bad(f"snapshot reply: {exc}")
                continue
            book = self.books.get(symbol)
            if book is None:
                stats.foreign_topics += 1
                continue
            self._on_snapshot(book, snap, on_stream=False)
        # anything in the request still not live (a hole after its snapshot) is asked for again
        self._want.update(s for s in out[1] if not self.books[s].synced)

    # ------------------------------------------------------------------ errors and lifecycle
    def _bad(self, what: str) -> None:
        self.stats.decode_errors += 1
        if "decode" not in self._logged:
            self._logged.add("decode")
            log.warning("subscriber: %s; further malformed messages are counted, not logged", what)

    def _close_sockets(self) -> None:
        for sock in (self._sub, self._req):
            if sock is not None:
                sock.close()
        self._sub = self._req = None
        if self._own_context:
            self._ctx.term()

    def _release(self) -> None:
        self._close_sockets()


def subscribe(endpoint: str, symbols: Iterable[str], **options: Any) -> BookSubscriber:
    """Connect a :class:`BookSubscriber` to ``endpoint`` for ``symbols`` (options: :class:`SubscriberConfig` fields)."""
    return BookSubscriber(SubscriberConfig(endpoint=endpoint, symbols=tuple(symbols), **options))
