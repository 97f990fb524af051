"""Fan-out of book events over ZeroMQ: one PUB stream, one ROUTER snapshot server.

:class:`BookPublisher` attaches to a :class:`~efsdk.pipeline.FeedHandler` and,
after every batch the handler applies, publishes for each book the batch
touched: one DELTA with the new state of every level that changed, a BBO if
the best prices or their sizes moved, a TRADE if the book traded (wire format:
:mod:`efsdk.publish.encoding`).  Periodic snapshots go on the same stream; a
ROUTER answers snapshot requests in the feed thread, between batches, so a
snapshot is always consistent with the topic sequence number it carries.

How changed levels are found: opt-in tracking in ``book/``
---------------------------------------------------------
The bulk loop (:meth:`book.BookBuilder.apply_ops`) emits no per-change
events.  Two designs were built and measured on the 1M-message, 50-symbol
session (full replay, 2-vCPU VM, medians of alternating rounds):

1. *No change to book/*: before each batch, derive the touched levels from
   the op records (an add's op word and price name its level; a delete,
   execute, cancel or replace-out ref is looked up in the shared order index
   and ``where`` before the apply frees the level), with the scan pushed to C
   speed through strided ``memoryview`` slices and ``map``/``compress`` into
   sets.  It cost **~1.6 s per 1M messages on top of a ~0.8-1.0 s build
   (+160-200%)**: every lookup misses cache (the order index is hundreds of
   thousands of entries) and then the builder misses again; scanning in
   1,024-record slices right before applying each did not help.  It also
   needs the replace-out/in pairing re-derived, for refs added in the same
   batch, which duplicates book semantics.
2. *Opt-in tracking* (:meth:`book.BookBuilder.track_changes`, chosen): the
   builder's own loop appends each level object it modifies (one
   ``list.append``, no lookup: it already holds the level) and each removed
   ``(side, price)``; :meth:`~book.BookBuilder.take_changes` dedupes and
   resolves them at C speed after the batch.  Off, it is one ``is not None``
   test per record: alternating A/B replays of the original and the tracking
   builder measured new/old 0.93 and 1.03 (medians, noise ~20%).

Measured cost (``efsdk bench publish``: 1M messages, full-rate replay, each
mode paired with a plain replay in the same round, fresh processes, medians
of 7-11 rounds): every changed level adds **+80-100%** to the book build (the
publisher's own time ~0.55-0.7 s on a ~0.9-1.3 s build).  Where it goes: ~1M
``list.append`` in the loop, the dedupe in ``take_changes`` (~190 ns per
record: ``id()`` makes a fresh int for every level), ~170k distinct level
changes to read, encode and send, and ``book.bbo()`` for every touched book.
The floor of any pure-Python design that reports every changed level is
about one dict operation per record (~10% alone).  On 32-message
(packet-sized) batches the per-batch work dominates: ~+500%, less with
``publish_interval_s``.

Depth windows (``PublisherConfig.depth = N``): the cheap product
------------------------------------------------------------------
Most consumers want the top of the book.  With a window the book loop does
no extra work at all: the native decoder lists the books each batch touched
(:meth:`~efsdk.itch.ops.OpDecoder.take_touched`, ~1 ns a message in C), and
after the batch the publisher reads each touched book's top N per side with
:meth:`book.side.BookSide.top` (which merges pending level changes rather
than reconciling the sorted index when few are pending) and sends the
difference from the window it last published: changed or entering levels
with their state, levels pushed out or removed as ``(0, 0)``.  Snapshots
hold the window (N travels in the flags' high byte), so a subscriber ends
with exactly the publisher's top N.  Measured as above, top 10: the
publisher's own time is **8-10%** of the build; the paired end-to-end
overhead was +2% to +33% over ten runs (typically +10-20%; single rounds
spread from 0.9x to 1.8x), against the issue's goal of 10%.  Whether the
book loop tracks the window levels' totals or the reader sums them made
no measurable difference to that; the excess is the book loop itself
running ~20% slower beside the publisher (same code path: cache and
allocator state).  :class:`~efsdk.publish.sidecar.PublisherSidecar` runs this
same publisher in another process; the feed then measured -10% to +8%
(noise around zero) for either product while the sidecar keeps up (a
sustained full-rate day longer than its queue runs at the sidecar's pace).  The cost scales with books touched per batch,
not with messages: on packet-sized batches every batch touches a third of
the books, and a window costs ~10x the build; with ``publish_interval_s=0.01``
+50-100%.

Both modes publish with the cyclic GC paused, as the book loop does: the
small objects a flush allocates otherwise trigger collections that walk
every resting order (measured ~12% of a full-rate replay).

After each batch the publisher groups the changed levels by book into one
DELTA per topic (absolute ``(shares, orders)`` per level: changes inside a
batch are conflated, and subscribers see the publisher's book exactly at
batch boundaries), then a TRADE if the book's volume moved (executions, and
P/Q prints seen through the handler's message callback) and a BBO if
``book.bbo()`` changed.

Slow subscribers
----------------
Every send is ``NOBLOCK``.  A ZeroMQ PUB socket never blocks and never raises
``Again`` at the high-water mark: it drops, per subscriber, the messages that
subscriber's pipe cannot hold.  So a slow subscriber loses only its own
messages, never slows the feed, and sees the loss as a sequence gap (then
resynchronises from a snapshot).  ``Again`` from PUB can still come from a
full socket in exotic transports; it is counted in ``stats.send_drops``.
(``XPUB_NODROP`` would make drops visible here, but then one slow subscriber
would make the message fail for every subscriber.)  The ROUTER sets
``ROUTER_MANDATORY`` so an undeliverable reply is counted, not silently lost.

High-water marks (messages, per peer pipe): :data:`DEFAULT_SNDHWM` on the
stream, :data:`REPLY_SNDHWM` on the snapshot server; subscribers use
:data:`efsdk.publish.subscriber.DEFAULT_RCVHWM`.  Behind each HWM sit the
kernel socket buffers (TCP autotunes them to megabytes on loopback); the
``sndbuf`` / ``rcvbuf`` options pin them when loss must show up early.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

import zmq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from book import BBO, OrderBook
from book.ops import SHARES_MASK
from book.side import TOTAL
from efsdk.errors import ConfigError, ProtocolError
from efsdk.publish.encoding import (
    DEPTH_WINDOW_MAX,
    FLAG_FINAL,
    FLAG_REPLY,
    decode_request,
    encode_bbo,
    encode_delta,
    encode_error,
    encode_reply_header,
    encode_snapshot,
    encode_trade,
    snapshot_flags,
    topic_for,
)
from efsdk.resource import Resource

__all__ = [
    "DEFAULT_SNDHWM",
    "REPLY_SNDHWM",
    "BookPublisher",
    "StreamEndpoints",
    "PublisherConfig",
    "PublisherStats",
    "default_snapshot_endpoint",
    "published_l2",
    "validate_endpoint",
]

log = logging.getLogger(__name__)

#: Stream messages queued per subscriber before ZeroMQ drops that subscriber's
#: messages.  ~100 bytes a message: <= ~10 MB per stuck subscriber, and about
#: a second of the whole feed's events at the rates measured here, enough to
#: ride out a GC pause or a scheduling hiccup without loss.
DEFAULT_SNDHWM = 100_000
#: Snapshot replies queued per requester; a requester waits for its reply, so
#: more than a handful queued means it is gone.
REPLY_SNDHWM = 100
#: How long close() lets queued stream messages (e.g. final snapshots) drain.
CLOSE_LINGER_MS = 2000
#: The feed thread looks for snapshot requests at most this often (seconds):
#: a ROUTER poll costs ~1 us, too much per small batch, nothing per millisecond.
REQUEST_CHECK_S = 0.001
#: Work the feed thread does per service call, so no subscriber can stall it:
#: snapshot requests answered, and books sent of a periodic snapshot round
#: (a round is spread over calls; a deep book costs ~1 us a level to encode).
REQUESTS_PER_SERVICE = 4
SNAPSHOTS_PER_SERVICE = 4
#: Symbols one request may name (duplicates count once).
MAX_REQUEST_SYMBOLS = 256

_P, _Q = ord("P"), ord("Q")
# Plain ints: or-ing pyzmq's flag enums costs ~1 us a message.
_MORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
_NO_LEVELS: dict[int, tuple[int, int]] = {}
_GONE = (0, 0)  # a level's (shares, orders) in a DELTA that removes it



def validate_endpoint(endpoint: str, what: str = "endpoint") -> str:
    """Check a ZeroMQ endpoint is tcp://HOST:PORT, ipc://PATH or inproc://NAME."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc") or not rest:
        raise ConfigError(f"{what} must be tcp://HOST:PORT, ipc://PATH or inproc://NAME, not {endpoint!r}")
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not (port == "*" or (port.isdigit() and 0 <= int(port) < 65536)):
            raise ConfigError(f"{what} {endpoint!r}: tcp needs HOST:PORT (PORT 0 or * for any free port)")
    return endpoint


def default_snapshot_endpoint(endpoint: str) -> str:
    """The snapshot server next to a stream endpoint: tcp port + 1, ``ipc://PATH.snap``, ``inproc://NAME.snap``.

    A tcp port of 0 or ``*`` gives ``*`` (any free port; read the bound one
    from :attr:`BookPublisher.snapshot_endpoint`).
    """
    scheme, _, rest = validate_endpoint(endpoint).partition("://")
    if scheme != "tcp":
        return f"{scheme}://{rest}.snap"
    host, _, port = rest.rpartition(":")
    if port in ("*", "0"):
        return f"tcp://{host}:*"
    if int(port) >= 65535:
        raise ConfigError(f"no port after {port} for the snapshot server; pass its endpoint explicitly")
    return f"tcp://{host}:{int(port) + 1}"


class StreamEndpoints(BaseModel):
    """The stream's endpoint and its snapshot server's: what both ends of a fan-out name, validated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str  # stream (PUB): tcp://127.0.0.1:5556, ipc:///tmp/efsdk.pub; a publisher may bind port 0 (any)
    snapshot_endpoint: str | None = None  # ROUTER; default: default_snapshot_endpoint(endpoint)

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        return validate_endpoint(v, "endpoint")

    @field_validator("snapshot_endpoint")
    @classmethod
    def _check_snapshot_endpoint(cls, v: str | None) -> str | None:
        return None if v is None else validate_endpoint(v, "snapshot_endpoint")


class PublisherConfig(StreamEndpoints):
    """What a :class:`BookPublisher` binds and publishes; validated once."""

    symbols: tuple[str, ...] | None = None  # publish only these books (default: every named book)
    snapshot_interval_s: float = Field(5.0, ge=0)  # periodic stream snapshots; 0: never
    bbo: bool = True  # publish BBO messages
    trades: bool = True  # publish TRADE messages
    bbo_conflation_s: float = Field(0.0, ge=0)  # >0: at most one BBO per topic per interval, the latest
    publish_interval_s: float = Field(0.0, ge=0)  # >0: conflate batches, publish at most this often (latency for cost)
    # 0: every level; N: only the top N levels per side (a window; N travels in a snapshot's flags)
    depth: int = Field(0, ge=0, le=DEPTH_WINDOW_MAX)
    sndhwm: int = Field(DEFAULT_SNDHWM, ge=1)
    sndbuf: int = Field(0, ge=0)  # kernel send buffer per connection, bytes; 0: the OS default (autotuned)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            for s in v:
                topic_for(s)  # raises ValueError -> pydantic ValidationError
        return v

    @model_validator(mode="after")
    def _distinct(self) -> PublisherConfig:
        any_port = self.endpoint.endswith((":0", ":*"))
        if self.snapshot_endpoint is not None and self.snapshot_endpoint == self.endpoint and not any_port:
            raise ValueError("snapshot_endpoint must differ from endpoint")
        return self


@dataclass
class PublisherStats:
    """Counters of one publisher; every drop and refusal has one."""

    batches: int = 0  # feed batches seen
    messages: int = 0  # stream messages handed to ZeroMQ
    deltas: int = 0
    levels: int = 0  # level rows in those deltas
    bbos: int = 0
    bbos_conflated: int = 0  # BBOs superseded before their conflation interval ended
    trades: int = 0
    snapshots: int = 0  # on the stream (periodic, first-publication and final)
    send_drops: int = 0  # zmq.Again on the stream socket
    requests: int = 0  # snapshot requests answered
    request_errors: int = 0  # unreadable requests (answered with an error)
    reply_drops: int = 0  # replies ZeroMQ could not deliver (requester gone or stuck)
    unnamed_books: int = 0  # touched books with no symbol yet (no R message): not published
    publish_seconds: float = 0.0  # time spent in the feed thread by this publisher

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Topic:
    """Per-book publishing state."""

    __slots__ = ("topic", "symbol", "seq", "bbo", "volume", "pending_bbo", "last_ts", "window")

    def __init__(self, symbol: str, volume: int) -> None:
        self.symbol = symbol
        self.topic = topic_for(symbol)
        self.seq = 0
        self.bbo: tuple | None = None
        self.volume = volume
        self.pending_bbo: tuple | None = None
        self.last_ts = 0
        # Depth-window mode: the (bids, asks) rows last published, each [(price, shares, orders)] best first.
        self.window: tuple[list, list] = ([], [])


_UNPUBLISHED = object()  # topic-state marker: a named book outside the symbol filter


class BookPublisher(Resource):
    """Publishes the books of one :class:`~efsdk.pipeline.FeedHandler` over ZeroMQ.

    ``publisher.attach(feed)`` once, before (or while) the feed runs; then
    every batch the handler applies is published, and snapshot requests are
    served between batches.  While the feed is idle, call :meth:`poll`
    (``efsdk publish`` does) so requests, conflated BBOs and periodic
    snapshots keep flowing.  :meth:`finish` publishes final snapshots;
    :meth:`close` releases the sockets (idempotent).
    """

    def __init__(self, config: PublisherConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.stats = PublisherStats()
        self._own_context = context is None
        self._ctx = context if context is not None else zmq.Context()
        self._pub: zmq.Socket | None = None
        self._router: zmq.Socket | None = None
        try:
            pub = self._pub = self._ctx.socket(zmq.PUB)
            pub.setsockopt(zmq.SNDHWM, config.sndhwm)
            if config.sndbuf:
                pub.setsockopt(zmq.SNDBUF, config.sndbuf)
            pub.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
            pub.bind(_bindable(config.endpoint))
            router = self._router = self._ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.SNDHWM, REPLY_SNDHWM)
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.LINGER, 0)
            router.bind(_bindable(config.snapshot_endpoint or default_snapshot_endpoint(config.endpoint)))
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ConfigError(f"cannot bind {config.endpoint} / {config.snapshot_endpoint or 'its snapshot server'}: {exc}") from exc
        self.endpoint: str = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.snapshot_endpoint: str = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._send = pub.send
        self._symbols = frozenset(config.symbols) if config.symbols is not None else None
        self._topics: dict[OrderBook, Any] = {}
        self._feed: Any = None
        self._volume_at_attach: dict[OrderBook, int] = {}
        self._builder: Any = None
        # Books to look at on the next flush besides recorded changes: P/Q prints; in window
        # mode also every book the decoder saw touched (taken after each batch) and, once,
        # every book present at attach.
        self._pending_locates: set[int] = set()
        self.clock = 0  # feed time (ns since midnight) of the last batch
        self.finished = False
        now = time.monotonic()
        self._next_request_check = now
        self._next_snapshot = now + config.snapshot_interval_s if config.snapshot_interval_s else float("inf")
        self._round: list[tuple[_Topic, OrderBook]] | None = None  # a periodic round in progress
        self._snapshot_cache: dict[bytes, tuple[tuple, bytes]] = {}  # topic -> (state key, encoded body)
        self._next_bbo_flush = now + config.bbo_conflation_s
        self._next_publish = now
        self._pending_bbo: set[_Topic] = set()
        self._opened()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("finished" if self.finished else "open")
        return (
            f"<BookPublisher {state} {self.endpoint} snapshots {self.snapshot_endpoint} "
            f"topics={sum(1 for t in self._topics.values() if t is not _UNPUBLISHED)} messages={self.stats.messages}>"
        )

    # ------------------------------------------------------------------ feed hook
    def attach(self, feed: Any) -> None:
        """Publish every batch ``feed`` (a :class:`~efsdk.pipeline.FeedHandler`) applies from now on.

        Works on the full-feed and the strategy path alike, through the
        handler's ``batch_listeners`` and ``print_listeners`` (undone by
        :meth:`detach`).
        """
        if self._feed is not None:
            raise ConfigError("this publisher is already attached to a feed handler")
        if any(getattr(fn, "__self__", None) is not None and isinstance(fn.__self__, BookPublisher)
               for fn in feed.batch_listeners):  # fmt: skip
            raise ConfigError("that feed handler already has a publisher attached")
        self._feed = feed
        self._builder = feed.builder
        self._volume_at_attach = {book: book.volume for book in feed.builder.books() if book.volume}
        if self.config.depth:
            feed.decoder.track_touched(True)
            feed.decoder.take_touched()  # stale: every book present now is published on the first flush
            self._pending_locates.update(book.locate for book in feed.builder.books())
        else:
            feed.builder.track_changes(True)
        feed.batch_listeners.append(self._timed_after)
        feed.print_listeners.append(self._pending_locates.add)

    def _timed_after(self, ops: memoryview, chunk: Any) -> None:
        started = time.perf_counter()
        # Like the book loop, publish with the cyclic GC paused: the thousands of small
        # objects a flush allocates would otherwise trigger collections that walk every
        # order of every book (measured: ~12% of a full-rate replay).  Nothing here makes cycles.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._after(ops, chunk)
        finally:
            if gc_was_enabled:
                gc.enable()
            self.stats.publish_seconds += time.perf_counter() - started

    def detach(self) -> None:
        """Publish what is still held back, then stop publishing the attached feed's batches (idempotent)."""
        feed = self._feed
        if feed is None:
            return
        self._flush_pending()
        if self._timed_after in feed.batch_listeners:
            feed.batch_listeners.remove(self._timed_after)
        if self._pending_locates.add in feed.print_listeners:
            feed.print_listeners.remove(self._pending_locates.add)
        if self.config.depth:
            feed.decoder.track_touched(False)
        else:
            feed.builder.track_changes(False)
        self._feed = None

    def _after(self, ops: memoryview, chunk: Any) -> None:
        """Publish what the batch changed; runs after the builder applied it."""
        stats = self.stats
        stats.batches += 1
        # Feed time: the batch's last message, as the native decoder read it (adds included).
        ts = self._feed.decoder.last_timestamp if self._feed is not None else 0
        if ts:
            self.clock = ts
        if self.config.depth:
            # Only here, after the batch is applied: the decoder lists a book when it decodes
            # the batch, so a flush in the middle of one (a hook serving the publisher) must not
            # take the list, or books would be published half-applied and never again.
            self._pending_locates.update(self._feed.decoder.take_touched())
        now = time.monotonic()
        if now >= self._next_publish:  # else conflating: the builder keeps recording until then
            self._flush_changes(now)
        if now >= self._next_request_check:
            self._service(now)

    def _flush_changes(self, now: float) -> None:
        """Publish every change recorded since the last flush."""
        self._next_publish = now + self.config.publish_interval_s
        if self.config.depth:
            self._flush_windows()
            return
        by_book: dict[OrderBook, list[dict[int, tuple[int, int]]]] = {}
        for side, levels in self._builder.take_changes().items():  # a few sides, not levels
            pair = by_book.get(side.book)  # type: ignore[arg-type]
            if pair is None:
                pair = by_book[side.book] = [_NO_LEVELS, _NO_LEVELS]  # type: ignore[index]
            pair[0 if side.is_bid else 1] = levels
        trade_books: list[OrderBook] = []
        if self._pending_locates:
            book_of = self._builder.book
            trade_books = [b for b in map(book_of, self._pending_locates) if b is not None and b not in by_book]
            self._pending_locates.clear()
        if by_book or trade_books:
            self._publish(by_book, trade_books)

    def _flush_windows(self) -> None:
        """Depth-window mode: diff the top levels of every book the decoder saw touched."""
        if not self._pending_locates or self._builder is None:
            return
        locates = list(self._pending_locates)
        self._pending_locates.clear()
        cfg = self.config
        ts = self.clock
        n = cfg.depth
        want_bbo, want_trades = cfg.bbo, cfg.trades
        book_of = self._builder.book
        topic_of = self._topic_of
        for locate in locates:
            book = book_of(locate)
            if book is None:
                continue
            st = topic_of(book)
            if st is None:
                continue
            old_bids, old_asks = st.window
            bids = book.bids.top(n)
            asks = book.asks.top(n)
            if bids != old_bids or asks != old_asks:
                st.window = (bids, asks)
                self._send_delta(st, _window_delta(old_bids, bids), _window_delta(old_asks, asks), ts)
                if want_bbo:  # the window's first rows are the BBO
                    bbo = BBO(*(bids[0] if bids else (None, 0, 0)), *(asks[0] if asks else (None, 0, 0)))
                    if bbo != st.bbo:
                        self._publish_bbo(st, bbo, ts)
            if want_trades and book.volume != st.volume:
                self._send_trade(st, book, ts)

    def _topic_of(self, book: OrderBook) -> _Topic | None:
        st = self._topics.get(book)
        if st is not None and st is not _UNPUBLISHED and st.symbol == book.symbol:
            return st
        if st is _UNPUBLISHED and book.symbol is not None:
            return None
        symbol = book.symbol
        if symbol is None:
            self.stats.unnamed_books += 1
            return None
        if self._symbols is not None and symbol not in self._symbols:
            self._topics[book] = _UNPUBLISHED
            return None
        try:
            # Traded volume before the first publication: what the book had at attach
            # (a book created since started at 0), so the first batch's trades are published.
            st = _Topic(symbol, self._volume_at_attach.get(book, 0))
        except ValueError:  # a symbol that cannot be a topic (control bytes...): counted, logged once
            if book not in self._topics:
                log.warning("book %d: symbol %r cannot be a topic; not published", book.locate, symbol)
            self._topics[book] = _UNPUBLISHED
            self.stats.unnamed_books += 1
            return None
        self._topics[book] = st
        return st

    def _publish(self, by_book: dict[OrderBook, list[dict[int, tuple[int, int]]]], trade_books: list[OrderBook]) -> None:
        cfg = self.config
        ts = self.clock
        want_bbo, want_trades = cfg.bbo, cfg.trades
        topic_of = self._topic_of
        for book, (bids, asks) in by_book.items():
            st = topic_of(book)
            if st is None:
                continue
            if st.seq == 0 and len(book.bids) + len(book.asks) > len(bids) + len(asks):
                # First publication of a book that already had levels (attached mid-feed):
                # a snapshot first, so a subscriber never starts from a partial book.
                self._send_snapshot(st, book, 0)
            self._send_delta(st, bids, asks, ts)
            if want_trades and book.volume != st.volume:
                self._send_trade(st, book, ts)
            if want_bbo and _may_move_bbo(st.bbo, bids, asks):
                bbo = book.bbo()
                if bbo != st.bbo:
                    self._publish_bbo(st, bbo, ts)
        if want_trades:
            for book in trade_books:
                st = topic_of(book)
                if st is not None and book.volume != st.volume:
                    self._send_trade(st, book, ts)

    def _send_delta(self, st: _Topic, bids: dict[int, tuple[int, int]], asks: dict[int, tuple[int, int]], ts: int) -> None:
        st.seq += 1
        self._send_pair(st.topic, encode_delta(st.seq, ts, bids, asks))
        self.stats.deltas += 1
        self.stats.levels += len(bids) + len(asks)

    def _publish_bbo(self, st: _Topic, bbo: BBO, ts: int) -> None:
        """A changed BBO: sent now, or held for the conflation interval (the latest wins)."""
        st.bbo = bbo
        if self.config.bbo_conflation_s > 0:
            if st.pending_bbo is not None:
                self.stats.bbos_conflated += 1
            st.pending_bbo = bbo
            self._pending_bbo.add(st)
        else:
            self._send_bbo(st, bbo, ts)

    def _send_trade(self, st: _Topic, book: OrderBook, ts: int) -> None:
        st.seq += 1
        body = encode_trade(st.seq, ts, book.last_price, book.volume - st.volume, book.volume)
        st.volume = book.volume
        self._send_pair(st.topic, body)
        self.stats.trades += 1

    def _send_bbo(self, st: _Topic, bbo: tuple, ts: int) -> None:
        st.seq += 1
        self._send_pair(st.topic, encode_bbo(st.seq, ts, bbo))
        self.stats.bbos += 1

    def _send_pair(self, topic: bytes, body: bytes) -> None:
        try:
            self._send(topic, _MORE_NOBLOCK)
            self._send(body, _NOBLOCK)
        except zmq.Again:
            self.stats.send_drops += 1
        self.stats.messages += 1

    # ------------------------------------------------------------------ snapshots
    def _snapshot_body(self, st: _Topic | None, book: OrderBook | None, flags: int) -> bytes:
        final = snapshot_flags(FLAG_FINAL if self.finished else 0, self.config.depth)
        if book is None or st is None:
            return encode_snapshot(0, self.clock, _NO_LEVELS, _NO_LEVELS, flags=flags | final)
        # The topic's seq names the levels' state (pending changes are flushed before any
        # snapshot); with the fields the seq does not cover, it keys one reusable encoding.
        key = (st.seq, flags | final, book.volume, book.last_price, book.trading_state)
        cached = self._snapshot_cache.get(st.topic)
        if cached is not None and cached[0] == key:
            return cached[1]
        body = self._encode_snapshot(st, book, flags | final)
        self._snapshot_cache[st.topic] = (key, body)
        return body

    def _encode_snapshot(self, st: _Topic, book: OrderBook, flags: int) -> bytes:
        # A window's snapshot is the window last published (what st.seq covers), not the book now.
        levels = book_levels(book) if not self.config.depth else tuple({p: (s, o) for p, s, o in rows} for rows in st.window)
        return encode_snapshot(
            st.seq,
            self.clock,
            *levels,
            flags=flags,
            volume=book.volume,
            last_price=book.last_price,
            trading_state=book.trading_state,
        )

    def _send_snapshot(self, st: _Topic, book: OrderBook, flags: int) -> None:
        self._send_pair(st.topic, self._snapshot_body(st, book, flags))
        self.stats.snapshots += 1

    def _published_books(self) -> Iterable[tuple[_Topic, OrderBook]]:
        if self._builder is None:
            return
        for book in self._builder.books():
            st = self._topic_of(book) if book.symbol is not None else None
            if st is not None:
                yield st, book

    def publish_snapshots(self) -> int:
        """Publish a snapshot of every published book on the stream now; returns how many."""
        self._flush_pending()
        n = 0
        for st, book in list(self._published_books()):
            self._flush_bbo(st)
            self._send_snapshot(st, book, 0)
            n += 1
        if self.finished and self._symbols is not None:
            # Symbols configured but never seen: an empty final snapshot, so subscribers stop waiting.
            seen = {st.symbol for st in self._topics.values() if st is not _UNPUBLISHED}
            for symbol in sorted(self._symbols - seen):
                self._send_pair(topic_for(symbol), self._snapshot_body(None, None, 0))
                self.stats.snapshots += 1
                n += 1
        return n

    def finish(self) -> int:
        """End of stream: flush conflated BBOs and publish a final snapshot (``FLAG_FINAL``) of every book.

        Later periodic snapshots and request replies carry ``FLAG_FINAL`` too.
        Returns the number of final snapshots.
        """
        self.finished = True
        self._flush_all_bbo()
        return self.publish_snapshots()

    # ------------------------------------------------------------------ idle work
    def poll(self, timeout: float = 0.0) -> int:
        """Serve snapshot requests (waiting up to ``timeout`` s for one), flush conflated BBOs,
        publish periodic snapshots when due; returns the requests served."""
        router = self._router
        if router is None:
            return 0
        if timeout > 0:
            router.poll(int(timeout * 1000), zmq.POLLIN)  # wait for a request; _service answers it
        return self._service(time.monotonic())

    def _service(self, now: float) -> int:
        self._next_request_check = now + REQUEST_CHECK_S
        if self.config.publish_interval_s and now >= self._next_publish and self._builder is not None:
            self._flush_changes(now)  # the feed went quiet with changes still held
        served = self._serve_requests()
        if self._pending_bbo and now >= self._next_bbo_flush:
            self._flush_all_bbo()
            self._next_bbo_flush = now + self.config.bbo_conflation_s
        if self._round is None and now >= self._next_snapshot:
            self._flush_pending()
            self._round = list(self._published_books())  # this round's books, sent a few per call
            self._next_snapshot = now + self.config.snapshot_interval_s
        if self._round is not None:
            for _ in range(min(SNAPSHOTS_PER_SERVICE, len(self._round))):
                st, book = self._round.pop()
                self._flush_bbo(st)
                self._send_snapshot(st, book, 0)
            if not self._round:
                self._round = None
        return served

    def _flush_pending(self) -> None:
        """Publish every change not yet published, so a snapshot's seq covers the book it shows:
        changes held by ``publish_interval_s``, or applied so far in a batch still running
        (a hook serving the publisher); for windows, books of finished batches and of attach."""
        if self._builder is not None:
            self._flush_changes(time.monotonic())

    def _flush_bbo(self, st: _Topic) -> None:
        bbo = st.pending_bbo
        if bbo is not None:
            st.pending_bbo = None
            self._pending_bbo.discard(st)
            self._send_bbo(st, bbo, self.clock)

    def _flush_all_bbo(self) -> None:
        for st in list(self._pending_bbo):
            self._flush_bbo(st)

    def _serve_requests(self) -> int:
        """Answer at most :data:`REQUESTS_PER_SERVICE` queued requests (the rest wait for the next call)."""
        router = self._router
        served = 0
        while served < REQUESTS_PER_SERVICE:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                return served
            served += 1
            self._answer(frames)
        return served

    def _answer(self, frames: list[bytes]) -> None:
        stats = self.stats
        identity = frames[0]
        request_id = 0
        try:
            if len(frames) != 3 or frames[1] != b"":
                raise ProtocolError(f"expected [identity, empty, request], got {len(frames)} frames")
            request_id, symbols = decode_request(frames[2])
            symbols = list(dict.fromkeys(symbols))
            if len(symbols) > MAX_REQUEST_SYMBOLS:
                raise ProtocolError(f"a request may name at most {MAX_REQUEST_SYMBOLS} symbols, not {len(symbols)}")
        except ProtocolError as exc:
            if not stats.request_errors:
                log.warning("snapshot server: unreadable request (%s); further ones are counted", exc)
            stats.request_errors += 1
            self._reply([identity, b"", encode_error(request_id, str(exc))])
            return
        stats.requests += 1
        self._flush_pending()
        out = [identity, b"", encode_reply_header(request_id, len(symbols))]
        for symbol in symbols:
            book = self._builder.book(symbol) if self._builder is not None else None
            st = self._topic_of(book) if book is not None else None
            if st is None and book is not None and book.symbol == symbol and self._symbols is not None:
                book = None  # named but outside the filter: as if unknown
            out.append(topic_for(symbol))
            out.append(self._snapshot_body(st, book if st is not None else None, FLAG_REPLY))
        self._reply(out)

    def _reply(self, frames: list[bytes]) -> None:
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK)  # type: ignore[union-attr]
        except zmq.ZMQError:  # Again (HWM) or EHOSTUNREACH (requester gone): ROUTER_MANDATORY
            self.stats.reply_drops += 1

    # ------------------------------------------------------------------ reads
    def topic_seq(self, symbol: str) -> int:
        """The last sequence number published on ``symbol``'s topic (0 if none)."""
        for st in self._topics.values():
            if st is not _UNPUBLISHED and st.symbol == symbol:
                return st.seq
        return 0

    def expected_l2(self) -> dict[str, dict[str, Any]]:
        """Every published book's L2 (its top ``depth`` levels in window mode) as ``book.depth()``
        sees it, with its topic seq (for tests and dumps)."""
        depth = self.config.depth
        return {st.symbol: {"seq": st.seq, **published_l2(book, depth)} for st, book in self._published_books()}

    # ------------------------------------------------------------------ lifecycle
    def _close_sockets(self) -> None:
        for sock in (self._pub, self._router):
            if sock is not None:
                sock.close()
        self._pub = self._router = None
        if self._own_context:
            self._ctx.term()

    def _release(self) -> None:
        self.detach()
        self._close_sockets()


def published_l2(book: OrderBook, depth: int = 0) -> dict[str, Any]:
    """What a publisher of ``depth`` (0: every level) shows of ``book``: its levels as
    ``book.depth()`` sees them, ``[price, shares, orders]`` rows, and its traded volume."""
    rows = book.depth(depth or max(len(book.bids), len(book.asks), 1))
    return {"bids": [list(r) for r in rows.bids], "asks": [list(r) for r in rows.asks], "volume": book.volume}


def _window_delta(old: list, new: list) -> dict[int, tuple[int, int]]:
    """What turns window ``old`` into ``new`` (rows ``(price, shares, orders)``): changed or
    entering levels with their state, ``(0, 0)`` for prices that left."""
    delta = {price: _GONE for price, _, _ in old}
    for price, shares, orders in new:
        delta[price] = (shares, orders)
    for row in set(old).intersection(new):  # unchanged rows need not travel
        del delta[row[0]]
    return delta


def _may_move_bbo(prev: tuple | None, bids: dict[int, Any], asks: dict[int, Any]) -> bool:
    """Whether changes at these prices can move the BBO: only at or through the previous touch.

    Saves ``book.bbo()``, which sorts pending levels, on batches that only
    touched the book away from the touch.
    """
    if prev is None:
        return True
    bid, ask = prev[0], prev[3]
    return bool(bids and (bid is None or max(bids) >= bid)) or bool(asks and (ask is None or min(asks) <= ask))


def book_levels(book: OrderBook) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]:
    """Every level of ``book``: ``(bids, asks)``, each ``price -> (shares, orders)``.

    Reads share totals without switching on their tracking (see
    :mod:`book.side`): a snapshot must not make the feed path slower.
    """
    mask = SHARES_MASK
    out = []
    for side in (book.bids, book.asks):
        rows = {}
        for price, level in side.levels.items():
            total = level[TOTAL]
            if total is None:
                total = sum(p & mask for p in islice(level.values(), 1, None))
            rows[price] = (total, len(level) - 1)
        out.append(rows)
    return out[0], out[1]


def _bindable(endpoint: str) -> str:
    """ZeroMQ spells 'any port' ``*``; accept 0 as well."""
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        return endpoint[:-1] + "*"
    return endpoint
