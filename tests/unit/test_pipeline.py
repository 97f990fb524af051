"""FeedHandler against an independent path through the same feed.

The reference reads the file with :func:`efsdk.itch.reader.iter_messages`
(pure-Python framing and :mod:`efsdk.itch.codec` decoding, no native code)
and drives the per-message :class:`book.OrderBook` methods; the FeedHandler
goes native decoder -> op stream -> :meth:`book.BookBuilder.apply_ops`.  The
two share no decoding code and no book-mutation code, so equal snapshots
(every level, every order, its shares and arrival sequence) mean both are
right or both wrong in the same way; the generator's own end-of-day summary
is a third opinion on order and level counts.
"""

from __future__ import annotations

import gzip
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from book import BookBuilder, Order
from book.ops import (
    ADD_BASE,
    OP_CANCEL,
    OP_DELETE,
    OP_EXECUTE,
    OP_EXECUTE_PRICE,
    OP_REPLACE_IN,
    OP_REPLACE_OUT,
)
from efsdk.itch.codec import decode, encode_fields, frame
from efsdk.itch.ops import ANOMALY_BAD_SIDE
from efsdk.itch.reader import ReaderStats, iter_messages
from efsdk.itch.records import (
    ANOMALY_BAD_LENGTH,
    ANOMALY_EMPTY,
    ANOMALY_TRUNCATED_TAIL,
    ANOMALY_UNKNOWN_TYPE,
)
from efsdk.pipeline import HANDLED_MESSAGE_TYPES, BookEvent, FeedHandler

# ------------------------------------------------------------------ the reference


@dataclass
class Reference:
    """Books built one message at a time through OrderBook's methods."""

    builder: BookBuilder = field(default_factory=BookBuilder)  # a container: only book_for/set_symbol used
    trades: int = 0
    broken_trades: int = 0
    system_events: list[tuple[int, str]] = field(default_factory=list)
    # (locate, op, ref, timestamp, the order's state right after) per book change
    events: list[tuple[int, int, int, int, Order | None]] = field(default_factory=list)

    def apply(self, seq: int, m) -> None:  # noqa: C901 - one dispatch, flat on purpose
        t = m.type
        b = self.builder
        loc = m.stock_locate
        if t in ("A", "F"):
            if m.side not in ("B", "S"):
                return  # not an order the book can hold (reported as bad_side by the feed)
            book = b.book_for(loc)
            if book.add(m.order_reference_number, m.side, m.price, m.shares, seq):
                op = ADD_BASE + 2 * loc + (m.side == "S")
                self._event(book, op, m.order_reference_number, m.timestamp)
        elif t == "D":
            book = b.book_for(loc)
            if book.delete(m.order_reference_number):
                self._event(book, OP_DELETE, m.order_reference_number, m.timestamp)
        elif t in ("E", "C"):
            book = b.book_for(loc)
            if book.execute(m.order_reference_number, m.executed_shares) is not None:
                op = OP_EXECUTE if t == "E" else OP_EXECUTE_PRICE
                self._event(book, op, m.order_reference_number, m.timestamp)
        elif t == "X":
            book = b.book_for(loc)
            if book.cancel(m.order_reference_number, m.cancelled_shares) is not None:
                self._event(book, OP_CANCEL, m.order_reference_number, m.timestamp)
        elif t == "U":
            book = b.book_for(loc)
            old, new = m.original_order_reference_number, m.new_order_reference_number
            if book.order(old) is not None:
                book.replace(old, new, m.shares, m.price, seq)
                self._event(book, OP_REPLACE_OUT, old, m.timestamp)
                self._event(book, OP_REPLACE_IN, new, m.timestamp)
            else:
                book.replace(old, new, m.shares, m.price, seq)  # counted as unknown
        elif t == "R":
            b.set_symbol(loc, m.stock)
        elif t == "H":
            b.book_for(loc).trading_state = m.trading_state
        elif t == "P":
            self.trades += 1
            book = b.book_for(loc)
            book.volume += m.shares
            book.last_price = m.price
        elif t == "Q":
            self.trades += 1
            book = b.book_for(loc)
            book.volume += m.shares
            book.last_price = m.cross_price
        elif t == "B":
            self.broken_trades += 1
        elif t == "S":
            self.system_events.append((m.timestamp, m.event_code))

    def _event(self, book, op: int, ref: int, timestamp: int) -> None:
        self.events.append((book.locate, op, ref, timestamp, book.order(ref)))


def reference_from_file(path) -> tuple[Reference, ReaderStats]:
    """Replay a clean file: each message's sequence number is its 1-based position."""
    ref = Reference()
    stats = ReaderStats()
    for seq, m in enumerate(iter_messages(path, stats=stats), 1):
        ref.apply(seq, m)
    assert stats.anomaly_count == 0, "the reference needs a clean file to number messages"
    return ref, stats


def book_states(builder: BookBuilder, locates=None) -> dict[int, tuple]:
    """Everything a book holds: full L3 snapshot, trading state, traded volume, last price."""
    return {
        b.locate: (b.snapshot(), b.trading_state, b.volume, b.last_price)
        for b in builder.books()
        if locates is None or b.locate in locates
    }


@pytest.fixture(scope="module")
def session_reference(itch_session):
    return reference_from_file(itch_session.path)


@pytest.fixture(scope="module")
def full_feed(itch_session):
    fh = FeedHandler()
    fh.replay(itch_session.path)
    return fh


# ------------------------------------------------------------------ replay


def test_replay_equals_per_message_reference(itch_session, session_reference, full_feed):
    ref, reader_stats = session_reference
    fh = full_feed
    summary = itch_session.summary
    got = book_states(fh.builder)
    want = book_states(ref.builder)
    assert got.keys() == want.keys() == {s.locate for s in itch_session.symbols}
    for loc in want:  # one book at a time, so a failure names the instrument
        assert got[loc] == want[loc], f"locate {loc}"
    fh.builder._check()
    bstats = fh.builder.stats
    assert (bstats.unknown_ref, bstats.duplicate_ref, bstats.over_execution, bstats.over_cancel) == (0, 0, 0, 0)
    assert bstats.bad_shares == bstats.bad_op == bstats.anomalies == 0
    # The generator's own end-of-day book: live orders and levels per symbol.
    assert fh.builder.live_orders() == summary.live_orders
    assert [
        (b.symbol, b.order_count(), len(b.bids), len(b.asks)) for b in fh.builder.books()
    ] == [tuple(row) for row in summary.books]
    assert fh.builder.check_crossed() == 0  # the generator never crosses its book

    s = fh.stats
    assert s.messages == itch_session.messages == reader_stats.messages
    assert s.by_type == summary.counts == reader_stats.by_type
    # nothing is filtered but the non-book types the handler does not act on (NOII, RPII...)
    unhandled = sum(n for t, n in s.by_type.items() if t not in "AFEXDCU" and t not in HANDLED_MESSAGE_TYPES)
    assert unhandled > 0 and s.filtered == unhandled
    assert s.anomalies == 0 and not fh.anomalies
    assert s.trades == ref.trades == summary.counts["P"] + summary.counts["Q"]
    assert s.broken_trades == ref.broken_trades == summary.counts["B"]
    assert s.system_events == ref.system_events
    assert [code for _, code in s.system_events] == list("OSQMEC")
    assert s.bytes == itch_session.path.stat().st_size


def test_r_binds_every_symbol_to_its_locate(itch_session, full_feed):
    for info in itch_session.symbols:
        book = full_feed.builder.book(info.ticker)
        assert book is not None and book.locate == info.locate and book.symbol == info.ticker
        assert full_feed.builder.book(info.locate) is book
    assert full_feed.builder.book("NOPE") is None


def test_trading_state_follows_h_messages(itch_session, session_reference, full_feed):
    """H sets trading_state; the halted IPO and LULD names went through other states first."""
    last_h: dict[int, str] = {}
    seen: dict[int, set[str]] = {}
    for m in iter_messages(itch_session.path):
        if m.type == "H":
            last_h[m.stock_locate] = m.trading_state
            seen.setdefault(m.stock_locate, set()).add(m.trading_state)
    assert last_h and set(last_h) == {s.locate for s in itch_session.symbols}
    for loc, state in last_h.items():
        assert full_feed.builder.book(loc).trading_state == state
    assert any(len(states) > 1 for states in seen.values()), "the session should halt and release a name"


@pytest.mark.parametrize("chunk_size", [1000, 65_537, 1 << 20])
def test_replay_independent_of_chunk_size(small_itch_session, chunk_size):
    a, b = FeedHandler(), FeedHandler(capacity=5)
    a.replay(small_itch_session.path)
    b.replay(small_itch_session.path, chunk_size=chunk_size)
    assert book_states(a.builder) == book_states(b.builder)
    assert a.stats.by_type == b.stats.by_type and a.stats.system_events == b.stats.system_events


def test_gzip_replay_equals_plain(itch_session, full_feed):
    fh = FeedHandler()
    progress: list[int] = []
    stats = fh.replay(itch_session.gz_path, chunk_size=1 << 18, progress=progress.append)
    assert book_states(fh.builder) == book_states(full_feed.builder)
    assert stats.messages == full_feed.stats.messages and stats.bytes == full_feed.stats.bytes
    assert stats.by_type == full_feed.stats.by_type
    assert stats.system_events == full_feed.stats.system_events and stats.trades == full_feed.stats.trades
    with gzip.open(itch_session.gz_path, "rb") as f:
        size = len(f.read())
    assert progress == sorted(progress) and progress[-1] == size == itch_session.path.stat().st_size


# ------------------------------------------------------------------ subscriptions


def _subscriptions(session) -> list[list[str]]:
    deep, thin = session.deep, session.thin
    ipo = next(s.ticker for s in session.symbols if s.locate == session.ipo_locate)
    return [[deep[0]], [thin[0]], [deep[-1], thin[3], ipo], deep + thin]


@pytest.mark.parametrize("which", range(4))
def test_subscribed_books_equal_full_feed(itch_session, full_feed, which):
    symbols = _subscriptions(itch_session)[which]
    wanted = {itch_session.locate_of[s] for s in symbols}
    fh = FeedHandler(symbols=symbols)
    stats = fh.replay(itch_session.path)
    got = book_states(fh.builder)
    assert set(got) == wanted, "books of unsubscribed symbols must not exist"
    assert got == book_states(full_feed.builder, wanted)
    for sym in symbols:
        assert fh.builder.book(sym).locate == itch_session.locate_of[sym]
    assert stats.messages == itch_session.messages  # every frame is seen (and numbered)...
    assert stats.filtered > full_feed.stats.filtered or len(wanted) == len(itch_session.symbols)
    assert stats.filtered >= full_feed.stats.filtered  # ...but most never reach Python
    assert stats.system_events == full_feed.stats.system_events  # locate 0 always passes


def test_subscription_by_locate_equals_full_feed(itch_session, full_feed):
    wanted = {itch_session.locate_of[itch_session.deep[1]], itch_session.locate_of[itch_session.thin[-1]]}
    fh = FeedHandler(locates=wanted)
    fh.replay(itch_session.gz_path)
    assert book_states(fh.builder) == book_states(full_feed.builder, wanted)


# ------------------------------------------------------------------ process()


def feed_in_pieces(fh: FeedHandler, data: bytes, cuts: list[int]) -> bytes:
    """Hand ``data`` to ``process`` in pieces; feed back what it leaves; return the final leftover."""
    pending = b""
    offset = 0  # absolute offset of pending[0]
    for lo, hi in zip([0, *cuts], [*cuts, len(data)], strict=True):
        buf = pending + data[lo:hi]
        used = fh.process(buf, offset)
        assert 0 <= used <= len(buf)
        pending = buf[used:]
        offset += used
    return pending


@pytest.fixture(scope="module")
def small_feed(small_itch_session):
    fh = FeedHandler()
    fh.replay(small_itch_session.path)
    return fh


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), capacity=st.sampled_from([2, 3, 64, 65536]))
def test_process_split_at_arbitrary_points(small_itch_session, small_feed, data, capacity):
    raw = small_itch_session.path.read_bytes()
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40), label="cuts"))
    fh = FeedHandler(capacity=capacity)
    leftover = feed_in_pieces(fh, raw, cuts)
    assert leftover == b""
    assert book_states(fh.builder) == book_states(small_feed.builder)
    stats = fh.refresh_stats()
    assert stats.by_type == small_feed.stats.by_type and stats.bytes == len(raw)
    assert stats.system_events == small_feed.stats.system_events


def test_process_leaves_an_incomplete_message():
    msg = frame(encode_fields("S", timestamp=5, event_code="O"))
    fh = FeedHandler()
    for k in range(len(msg)):
        assert fh.process(msg[:k]) == 0
    assert fh.process(msg + msg[:3]) == len(msg)
    assert fh.stats.system_events == [(5, "O")]


# ------------------------------------------------------------------ rare messages


def _f(type_: str, **fields) -> bytes:
    fields.setdefault("timestamp", 0)
    return frame(encode_fields(type_, **fields))


def _add(ref, loc=1, side="B", shares=100, price=10_000, stock="AAPL", ts=0) -> bytes:
    return _f(
        "A", stock_locate=loc, timestamp=ts, order_reference_number=ref, side=side, shares=shares, stock=stock,
        price=price,
    )  # fmt: skip


def _dir(loc: int, stock: str) -> bytes:
    return _f(
        "R", stock_locate=loc, stock=stock, market_category="Q", financial_status="N", round_lot_size=100,
        round_lots_only="N", issue_classification="C", issue_subtype="Z", authenticity="P",
        short_sale_threshold="N", ipo_flag="N", luld_reference_price_tier="1", etp_flag="N",
        etp_leverage_factor=0, inverse_indicator="N",
    )  # fmt: skip


def _halt(loc: int, stock: str, state: str, ts: int = 0) -> bytes:
    return _f("H", stock_locate=loc, timestamp=ts, stock=stock, trading_state=state, reserved=" ", reason="")


def test_rare_messages_by_hand():
    stream = (
        _f("S", timestamp=100, event_code="O")
        + _dir(7, "AAPL")
        + _dir(9, "MSFT")
        + _halt(7, "AAPL", "H", 150)
        + _f("S", timestamp=200, event_code="Q")
        + _halt(7, "AAPL", "T", 250)
        + _f("P", stock_locate=7, timestamp=300, order_reference_number=0, side="B", shares=40, stock="AAPL",
             price=1_234_500, match_number=1)
        + _f("Q", stock_locate=9, timestamp=310, shares=5000, stock="MSFT", cross_price=4_000_000, match_number=2,
             cross_type="O")
        + _f("B", timestamp=320, match_number=1)
        + _dir(7, "AAPL2")  # a directory update rebinds the locate
        + _f("S", timestamp=400, event_code="C")
    )  # fmt: skip
    fh = FeedHandler()
    assert fh.process(stream) == len(stream)
    b = fh.builder
    assert b.book("AAPL") is None and b.book("AAPL2").locate == 7 and b.book("MSFT").locate == 9
    assert b.book(7).trading_state == "T" and b.book(9).trading_state is None
    assert (b.book(7).volume, b.book(7).last_price) == (40, 1_234_500)
    assert (b.book(9).volume, b.book(9).last_price) == (5000, 4_000_000)
    s = fh.refresh_stats()
    assert (s.trades, s.broken_trades) == (2, 1)
    assert s.system_events == [(100, "O"), (200, "Q"), (400, "C")]
    assert s.last_timestamp == 400
    assert s.by_type == {"S": 3, "R": 3, "H": 2, "P": 1, "Q": 1, "B": 1}
    assert b.live_orders() == 0

    # The trading state is per book and observable mid-stream.
    fh2 = FeedHandler()
    fh2.process(_dir(7, "AAPL") + _halt(7, "AAPL", "H"))
    assert fh2.builder.book("AAPL").trading_state == "H"
    fh2.process(_halt(7, "AAPL", "Q"))
    assert fh2.builder.book("AAPL").trading_state == "Q"


# ------------------------------------------------------------------ malformed input


def malformed_stream() -> tuple[bytes, list[tuple[int, int]], Reference]:
    """Orders around every kind of bad frame, each kind twice.

    Returns the stream, the expected ``(kind, offset of the length prefix)``
    of every framing anomaly, and the reference books (good messages only,
    numbered by their position among all frames, bad ones included).
    """
    frames: list[tuple[bytes, bool]] = []  # (bytes, is a good message)

    def good(b: bytes) -> None:
        frames.append((b, True))

    def bad(b: bytes) -> None:
        frames.append((b, False))

    good(_dir(1, "AAPL"))
    good(_dir(2, "MSFT"))
    for round_ in range(2):
        r = 100 * round_
        good(_add(r + 1, 1, "B", 100, 10_000))
        bad(frame(b"A" + bytes(20)))  # bad length for its type
        good(_add(r + 2, 1, "B", 50, 10_000))
        bad(frame(b"Z" + bytes(30)))  # unknown type
        good(_add(r + 3, 2, "S", 70, 20_000))
        bad(b"\x00\x00")  # zero length
        good(_f("E", stock_locate=1, order_reference_number=r + 1, executed_shares=30, match_number=1))
        bad(_add(r + 4, 1, "X", 10, 10_000))  # side byte neither B nor S
        good(_f("U", stock_locate=2, original_order_reference_number=r + 3, new_order_reference_number=r + 5,
                shares=60, price=20_100))  # fmt: skip
        good(_f("X", stock_locate=1, order_reference_number=r + 2, cancelled_shares=10))
        good(_add(r + 6, 2, "B", 10, 19_000))
    stream = b"".join(f for f, _ in frames)

    expected: list[tuple[int, int]] = []
    ref = Reference()
    pos = 0
    for seq, (f, ok) in enumerate(frames, 1):
        if ok:
            ref.apply(seq, decode(f, 2))
        else:
            t = f[2:3]
            kind = (
                ANOMALY_EMPTY if not t
                else ANOMALY_BAD_SIDE if t == b"A" and len(f) == 38
                else ANOMALY_BAD_LENGTH if t == b"A"
                else ANOMALY_UNKNOWN_TYPE
            )  # fmt: skip
            expected.append((kind, pos))
        pos += len(f)
    return stream, expected, ref


NAMES = {
    ANOMALY_UNKNOWN_TYPE: "unknown_type",
    ANOMALY_BAD_LENGTH: "bad_length",
    ANOMALY_EMPTY: "empty",
    ANOMALY_BAD_SIDE: "bad_side",
    ANOMALY_TRUNCATED_TAIL: "truncated_tail",
}


def _warnings_by_kind(caplog) -> Counter:
    out: Counter = Counter()
    for rec in caplog.records:
        if rec.name == "efsdk.pipeline" and rec.levelno == logging.WARNING:
            kinds = [name for name in NAMES.values() if name in rec.getMessage()]
            assert len(kinds) == 1, rec.getMessage()
            out[kinds[0]] += 1
    return out


@pytest.mark.parametrize("chunk_size", [7, 64, 1 << 20])
def test_malformed_file_is_counted_logged_once_and_books_stay_exact(tmp_path, caplog, chunk_size):
    stream, expected, ref = malformed_stream()
    tail = _add(999, 1)[:17]  # the file ends inside a frame
    path = tmp_path / "bad.itch"
    path.write_bytes(stream + tail)

    fh = FeedHandler()
    with caplog.at_level(logging.WARNING, logger="efsdk.pipeline"):
        stats = fh.replay(path, chunk_size=chunk_size)  # never raises

    assert stats.anomalies_by_kind == {
        "bad_length": 2, "unknown_type": 2, "empty": 2, "bad_side": 2, "truncated_tail": 1,
    }  # fmt: skip
    assert stats.anomalies == 9
    assert _warnings_by_kind(caplog) == Counter({k: 1 for k in stats.anomalies_by_kind})
    # Framing anomalies and the tail carry the absolute offset of their length prefix.
    framing = [(a.kind, a.offset) for a in fh.anomalies if a.kind != ANOMALY_BAD_SIDE]
    assert framing == [e for e in expected if e[0] != ANOMALY_BAD_SIDE] + [(ANOMALY_TRUNCATED_TAIL, len(stream))]
    tail_anomaly = fh.anomalies[-1]
    assert tail_anomaly.length == int.from_bytes(tail[:2], "big") == 36
    assert sorted(a.kind for a in fh.anomalies) == sorted([k for k, _ in expected] + [ANOMALY_TRUNCATED_TAIL])

    assert book_states(fh.builder) == book_states(ref.builder)
    assert fh.builder.stats.dropped == 0 and fh.builder.stats.anomalies == 9
    assert fh.builder.book(1).order(1) == Order(1, "B", 10_000, 70, 3)  # seq counts the bad frames
    assert fh.builder.book(2).order(5) == Order(5, "S", 20_100, 60, 11)


def test_malformed_buffer_through_process_split_anywhere(caplog):
    stream, expected, ref = malformed_stream()
    rng = random.Random(3)
    whole = FeedHandler()
    with caplog.at_level(logging.WARNING, logger="efsdk.pipeline"):
        assert whole.process(stream) == len(stream)
    kinds = ("bad_length", "unknown_type", "empty", "bad_side")
    assert _warnings_by_kind(caplog) == Counter({k: 1 for k in kinds})
    assert book_states(whole.builder) == book_states(ref.builder)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 30)))
        fh = FeedHandler(capacity=rng.choice([2, 3, 100]))
        assert feed_in_pieces(fh, stream, cuts) == b""
        assert book_states(fh.builder) == book_states(ref.builder)
        assert fh.stats.anomalies_by_kind == whole.stats.anomalies_by_kind
        assert fh.anomalies == whole.anomalies  # same kinds, same absolute offsets
    assert [(a.kind, a.offset) for a in whole.anomalies if a.kind != ANOMALY_BAD_SIDE] == [
        e for e in expected if e[0] != ANOMALY_BAD_SIDE
    ]


def test_bad_side_anomaly_has_the_length_prefix_offset():
    stream, expected, _ = malformed_stream()
    fh = FeedHandler()
    fh.process(stream)
    got = [(a.kind, a.offset, a.length) for a in fh.anomalies if a.kind == ANOMALY_BAD_SIDE]
    assert got == [(k, off, 36) for k, off in expected if k == ANOMALY_BAD_SIDE]


_garbage_frame = st.one_of(
    st.binary(max_size=50),
    st.sampled_from([b"A", b"F", b"R", b"H", b"S", b"P", b"Q", b"O", b"I", b"Z", b"\x00"]).flatmap(
        lambda t: st.binary(max_size=60).map(lambda body: frame(t + body))
    ),
    st.just(b"\x00\x00"),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_garbage_frame, max_size=30), on_book=st.booleans())
def test_garbage_never_raises(tmp_path, parts, on_book):
    """Any bytes: counted, never raised, and the book invariants hold."""
    data = b"".join(parts)
    cb = (lambda book, event: None) if on_book else None
    fh = FeedHandler(on_book=cb)
    used = fh.process(data)
    fh.builder._check()
    d = fh.decoder.stats
    counts = fh.stats.anomalies_by_kind
    assert counts.get("unknown_type", 0) == d.unknown_type and counts.get("bad_length", 0) == d.bad_length
    assert counts.get("empty", 0) == d.empty and used == d.bytes
    path = tmp_path / "garbage.itch"
    path.write_bytes(data)
    if data.startswith(b"\x1f\x8b"):
        # Sniffed as gzip: a corrupt compressed stream is counted, never raised.
        fh2 = FeedHandler(on_book=cb)
        fh2.replay(path)
        assert fh2.stats.anomalies_by_kind.get("bad_compression", 0) == 1
        return
    fh2 = FeedHandler(on_book=cb)
    fh2.replay(path, chunk_size=16)
    assert book_states(fh2.builder) == book_states(fh.builder)
    assert fh2.stats.anomalies_by_kind.get("truncated_tail", 0) == (1 if used < len(data) else 0)


def test_corrupt_gzip_is_counted_not_raised(tmp_path, caplog):
    """A file sniffed as gzip whose stream is corrupt or cut short: counted, logged, books kept.

    No valid BinaryFILE starts with 1f 8b (a 0x1f8b-byte first frame), so such a
    file is read as gzip; where decompression breaks, reading stops and the
    break is reported like every other malformed input.
    """
    data = b"\x1f\x8b" + bytes(8)
    path = tmp_path / "looks_gzipped.itch"
    path.write_bytes(data)
    fh = FeedHandler()
    stats = fh.replay(path)
    assert stats.anomalies_by_kind == {"bad_compression": 1}
    assert [(a.kind_name, a.offset) for a in fh.anomalies] == [("bad_compression", 0)]
    assert "compressed stream broke off" in caplog.text
    # a real gzip capture cut short keeps every message before the cut
    import gzip as _gzip

    whole = b"".join(frame(encode_fields("S", timestamp=i, event_code="O")) for i in range(2000))
    cut = tmp_path / "cut.itch.gz"
    cut.write_bytes(_gzip.compress(whole)[:-40])
    fh = FeedHandler()
    stats = fh.replay(cut)
    assert stats.anomalies_by_kind.get("bad_compression") == 1
    assert 0 < len(stats.system_events) <= 2000
    assert FeedHandler().process(data) == 0  # an incomplete 8077-byte frame: left for the caller


# ------------------------------------------------------------------ strategy path


def test_on_book_strategy_path(itch_session, session_reference, full_feed):
    ref, _ = session_reference
    events = []
    fh = FeedHandler()

    def on_book(book, event):
        # The book is the builder's own, already changed; the clock is the message's time.
        assert isinstance(event, BookEvent) and fh.builder.book(book.locate) is book
        events.append((book.locate, event.op, event.ref, fh.clock, book.order(event.ref)))

    fh.on_book = on_book
    fh.replay(itch_session.path)
    assert book_states(fh.builder) == book_states(full_feed.builder)
    assert len(events) == len(ref.events)
    counts = itch_session.summary.counts
    assert len(events) == sum(counts[t] for t in "AFDECX") + 2 * counts["U"]
    for i, (got, want) in enumerate(zip(events, ref.events, strict=True)):
        loc, op, oref, clock, order = got
        w_loc, w_op, w_ref, w_ts, w_order = want
        assert (loc, op, oref, order) == (w_loc, w_op, w_ref, w_order), f"event {i}"
        if op < ADD_BASE:  # adds carry no offset, so the clock is only read for the others
            assert clock == w_ts, f"event {i}"


def test_on_book_with_subscription_only_sees_its_books(itch_session, full_feed):
    sym = itch_session.thin[1]
    loc = itch_session.locate_of[sym]
    seen = Counter()
    fh = FeedHandler(symbols=[sym], on_book=lambda book, event: seen.update([book.locate]))
    fh.replay(itch_session.path)
    assert set(seen) == {loc} and seen[loc] > 0
    assert book_states(fh.builder) == book_states(full_feed.builder, {loc})


def test_on_book_by_hand():
    stream = (
        _add(1, 1, "B", 100, 10_000)
        + _add(2, 2, "S", 10, 20_000)
        + _f("D", stock_locate=1, order_reference_number=77)  # unknown: no change, no call
        + _f("U", stock_locate=2, original_order_reference_number=2, new_order_reference_number=3, shares=5,
             price=20_100)
        + _f("U", stock_locate=2, original_order_reference_number=88, new_order_reference_number=89, shares=5,
             price=1)  # unknown: neither half calls back
        + _f("E", stock_locate=1, order_reference_number=1, executed_shares=100, match_number=1)
        + _f("S", event_code="Q")
    )  # fmt: skip
    calls = []
    fh = FeedHandler(on_book=lambda book, e: calls.append((book.locate, e, book.order_count())), capacity=2)
    fh.process(stream)
    assert calls == [
        (1, BookEvent(ADD_BASE + 2, 1), 1),
        (2, BookEvent(ADD_BASE + 5, 2), 1),
        (2, BookEvent(OP_REPLACE_OUT, 2), 0),
        (2, BookEvent(OP_REPLACE_IN, 3), 1),
        (1, BookEvent(OP_EXECUTE, 1), 0),
    ]
    assert fh.builder.stats.unknown_ref == 2


def test_on_book_not_called_for_dropped_adds():
    calls = []
    fh = FeedHandler(on_book=lambda book, e: calls.append(e))
    fh.process(_add(1) + _add(1, shares=7) + _add(2, shares=0))
    assert fh.builder.stats.duplicate_ref == 1 and fh.builder.stats.bad_shares == 1
    assert calls == [BookEvent(ADD_BASE + 2, 1)]


def test_the_full_feed_path_keeps_feed_time_per_batch_even_for_filtered_and_add_only_batches():
    from efsdk.itch.codec import decode

    stream = _dir(1, "AAPL") + _dir(2, "MSFT") + _add(1, 1, "B", 100, 10_000, "AAPL", ts=5_000)
    fh = FeedHandler(symbols=["AAPL"])
    fh.process(stream)
    assert fh.clock == 5_000
    fh.process(_add(2, 2, "S", 100, 20_000, "MSFT", ts=7_000))  # filtered out by locate: time still moves
    assert fh.clock == 7_000 and fh.decoder.last_timestamp == 7_000
    last = _add(3, 1, "B", 100, 10_000, "AAPL", ts=9_000)
    fh.process(last)  # adds only: no offset in their op records, the decoder read it anyway
    assert fh.clock == decode(last[2:]).timestamp == 9_000


@pytest.mark.parametrize("capacity", [3, 65536])
def test_input_listeners_see_every_consumed_byte_once_in_order(small_itch_session, tmp_path, capacity):
    """What a publisher sidecar is fed: every byte, filtered messages and a truncated tail included."""
    raw = small_itch_session.path.read_bytes()
    cut = tmp_path / "cut.itch"
    cut.write_bytes(raw[:-5])  # the last message broken off
    one_thin = small_itch_session.thin[:1]  # most messages are filtered out before Python

    replayed: list[bytes] = []
    fh = FeedHandler(symbols=one_thin, capacity=capacity)
    fh.input_listeners.append(lambda span: replayed.append(bytes(span)))
    fh.replay(cut, chunk_size=4096)
    assert b"".join(replayed) == raw[:-5]
    assert fh.stats.anomalies_by_kind == {"truncated_tail": 1}

    processed: list[bytes] = []
    fh = FeedHandler(symbols=one_thin, capacity=capacity)
    fh.input_listeners.append(lambda span: processed.append(bytes(span)))
    view, pos = memoryview(raw), 0
    while pos < len(raw):
        used = fh.process(view[pos : pos + 1000])  # pieces that cut messages: the cut one waits
        assert used
        pos += used
    assert b"".join(processed) == raw
    assert len(processed) > len(raw) // 1000 // 2
