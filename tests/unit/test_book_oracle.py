"""Our books against an independent order-book builder, meatpy 0.5.0.

meatpy's ``ITCH50MarketProcessor`` keeps one ``LimitOrderBook`` per symbol:
price levels in lists (best first) holding FIFO lists of ``OrderOnBook``; it
parses messages with its own hand-written classes and routes them by the
stock field of A/F and by the order refs it has seen, where we route by stock
locate.  It shares no code with efsdk, so agreeing with it on every level,
every order and the FIFO order of every queue, at several points of a
generated day, is strong evidence that the whole path (native decoder, op
stream, bulk book) is right.

meatpy cannot parse NASDAQ's 48-byte 'O' message (see test_itch_oracle.py),
so both sides replay the session's copy without 'O' messages.

Where the two disagree by design (malformed or out-of-priority input), the
tests at the bottom pin both behaviours; they fail, on purpose, the day
either side changes.
"""

from __future__ import annotations

import datetime

import pytest

from book import BookBuilder
from efsdk.itch.codec import encode_fields, frame
from efsdk.pipeline import FeedHandler

itch50 = pytest.importorskip("meatpy.itch50")
from meatpy.itch50 import ITCH50MarketProcessor, ITCH50MessageReader  # noqa: E402
from meatpy.itch50.itch50_market_message import ITCH50MarketMessage  # noqa: E402
from meatpy.lob import ExecutionPriorityExceptionList  # noqa: E402
from meatpy.level import VolumeInconsistencyException  # noqa: E402

BOOK_DATE = datetime.datetime(2024, 1, 2)
CHECKPOINTS = (0.1, 0.35, 0.6, 0.85, 1.0)  # fractions of the session compared on the way


# ------------------------------------------------------------------ views of both books


def meatpy_side(levels) -> list[tuple[int, list[tuple[int, int]]]]:
    return [(lvl.price, [(o.order_id, o.volume) for o in lvl.queue]) for lvl in levels]


def meatpy_book(proc) -> tuple[list, list]:
    lob = proc.current_lob
    if lob is None:  # meatpy makes its book on the first order event
        return [], []
    return meatpy_side(lob.bid_levels), meatpy_side(lob.ask_levels)


def meatpy_depth(proc) -> tuple[list, list]:
    lob = proc.current_lob
    if lob is None:
        return [], []
    return (
        [(lvl.price, lvl.volume, lvl.n_orders) for lvl in lob.bid_levels],
        [(lvl.price, lvl.volume, lvl.n_orders) for lvl in lob.ask_levels],
    )


def our_book(builder: BookBuilder, symbol: str) -> tuple[list, list]:
    book = builder.book(symbol)
    if book is None:
        return [], []
    snap = book.snapshot()
    return tuple(  # type: ignore[return-value]
        [(price, [(ref, shares) for ref, shares, _ in orders]) for price, orders in rows]
        for rows in (snap.bids, snap.asks)
    )


def our_depth(builder: BookBuilder, symbol: str) -> tuple[list, list]:
    book = builder.book(symbol)
    if book is None:
        return [], []
    depth = book.depth(1 << 30)  # aggregates come from BookSide.depth, not from the snapshot
    return [tuple(r) for r in depth.bids], [tuple(r) for r in depth.asks]


def frame_ends(raw: bytes) -> list[int]:
    """Offset just past each frame of a clean BinaryFILE stream."""
    ends = []
    pos = 0
    while pos < len(raw):
        pos += 2 + int.from_bytes(raw[pos : pos + 2], "big")
        ends.append(pos)
    assert pos == len(raw)
    return ends


# ------------------------------------------------------------------ the whole day


def test_books_equal_meatpy_through_the_day(itch_session):
    path = itch_session.no_dlcr_path
    raw = path.read_bytes()
    ends = frame_ends(raw)
    n = len(ends)
    assert n == itch_session.messages - itch_session.dlcr_messages
    checkpoints = sorted({max(1, int(n * f)) for f in CHECKPOINTS})
    symbols = [s.ticker for s in itch_session.symbols]

    procs = [(s, ITCH50MarketProcessor(s, BOOK_DATE)) for s in symbols]
    fh = FeedHandler()
    done = 0  # messages applied on both sides
    compared = 0
    with ITCH50MessageReader(path) as reader:
        for i, msg in enumerate(reader, 1):
            for _, proc in procs:
                proc.process_message(msg)  # any meatpy exception fails the test
            if i not in checkpoints:
                continue
            start = ends[done - 1] if done else 0
            assert fh.process(raw[start : ends[i - 1]], start) == ends[i - 1] - start
            done = i
            for sym, proc in procs:
                want = meatpy_book(proc)
                got = our_book(fh.builder, sym)
                # Level by level first, so a failure names the symbol, side and price.
                for side, g, w in (("bid", got[0], want[0]), ("ask", got[1], want[1])):
                    assert [p for p, _ in g] == [p for p, _ in w], f"{sym} {side} prices after {i} messages"
                    for (price, g_orders), (_, w_orders) in zip(g, w, strict=True):
                        assert g_orders == w_orders, f"{sym} {side} {price}: FIFO queue after {i} messages"
                assert our_depth(fh.builder, sym) == meatpy_depth(proc), f"{sym} aggregates after {i} messages"
                book = fh.builder.book(sym)
                assert (book.trading_state or "") == proc.stock_status.decode(), sym
                compared += 1
    assert done == n and compared == len(checkpoints) * len(symbols)

    # Every execution hit the first order in line at the best price: meatpy checks
    # that (time priority) and would raise here if one had not.
    for _, proc in procs:
        proc.processing_done()
    # The comparison was not vacuous: deep books with thousands of orders, thin ones with a few.
    sizes = {sym: sum(len(q) for side in our_book(fh.builder, sym) for _, q in side) for sym in symbols}
    assert min(sizes[s] for s in itch_session.deep) > 3000
    assert all(sizes[s] > 0 for s in symbols)
    assert sum(len(our_book(fh.builder, s)[0]) for s in itch_session.deep) > 1000  # bid levels


def test_dropping_dlcr_changes_only_sequence_numbers(itch_session):
    """The 'O'-less copy meatpy reads builds the same books; only arrival numbers shift."""
    full, no_o = FeedHandler(), FeedHandler()
    full.replay(itch_session.path)
    no_o.replay(itch_session.no_dlcr_path)
    assert itch_session.dlcr_messages > 0
    for info in itch_session.symbols:
        assert our_book(full.builder, info.ticker) == our_book(no_o.builder, info.ticker), info.ticker
    seqs = [o.seq for b in full.builder.books() for o in b.orders()]
    assert seqs != [o.seq for b in no_o.builder.books() for o in b.orders()]


# ------------------------------------------------------------------ where the semantics differ


def _msg(type_: str, **fields) -> bytes:
    fields.setdefault("timestamp", 0)
    fields.setdefault("stock_locate", 1)
    return encode_fields(type_, **fields)


def _add(ref, side="B", shares=100, price=10_000, stock="AAPL", ts=0, loc=1) -> bytes:
    return _msg(
        "A", stock_locate=loc, timestamp=ts, order_reference_number=ref, side=side, shares=shares, stock=stock,
        price=price,
    )  # fmt: skip


def _exec(ref, shares, ts=0) -> bytes:
    return _msg("E", timestamp=ts, order_reference_number=ref, executed_shares=shares, match_number=1)


def _cancel(ref, shares) -> bytes:
    return _msg("X", order_reference_number=ref, cancelled_shares=shares)


def both(messages: list[bytes]):
    """Run unframed messages through meatpy (for AAPL) and through a FeedHandler.

    Returns ``(meatpy bids, meatpy exceptions by message index, our bids, our BookStats)``;
    bids as ``[(price, [(ref, shares), ...]), ...]``.
    """
    proc = ITCH50MarketProcessor("AAPL", BOOK_DATE)
    raised = {}
    for i, m in enumerate(messages):
        try:
            proc.process_message(ITCH50MarketMessage.from_bytes(m))
        except Exception as exc:  # noqa: BLE001 - what meatpy raises is the finding
            raised[i] = exc
    fh = FeedHandler()
    stream = b"".join(frame(m) for m in messages)
    assert fh.process(stream) == len(stream)  # ours never raises
    return meatpy_book(proc)[0], raised, _our_bids(fh), fh.builder.stats


def _our_bids(fh: FeedHandler) -> list:
    """Bids of locate 1 (what the streams here call AAPL)."""
    book = fh.builder.book(1)
    if book is None:
        return []
    return [(price, [(ref, shares) for ref, shares, _ in orders]) for price, orders in book.snapshot().bids]


def test_same_semantics_on_the_ordinary_events():
    """Partial/full executions, cancels, deletes, replaces (back of the queue, same side)."""
    msgs = [
        _add(1), _add(2), _add(3, price=9_900), _add(4, side="S", price=10_100),
        _exec(1, 30), _cancel(2, 20),
        _msg("U", original_order_reference_number=1, new_order_reference_number=5, shares=70, price=10_000),
        _msg("C", order_reference_number=2, executed_shares=80, match_number=2, printable="Y",
             execution_price=10_000),
        _msg("D", order_reference_number=3),
        _msg("U", original_order_reference_number=4, new_order_reference_number=6, shares=9, price=9_000),
    ]  # fmt: skip
    m_bids, raised, o_bids, stats = both(msgs)
    assert not raised
    assert m_bids == o_bids == [(10_000, [(5, 70)])]
    assert stats.dropped == 0


def test_duplicate_add_meatpy_keeps_both_we_drop_the_second():
    m_bids, raised, o_bids, stats = both([_add(1), _add(1, shares=5)])
    assert not raised
    assert m_bids == [(10_000, [(1, 100), (1, 5)])]  # two live orders with one ref
    assert o_bids == [(10_000, [(1, 100)])] and stats.duplicate_ref == 1


def test_zero_share_add_meatpy_rests_it_we_drop_it():
    m_bids, raised, o_bids, stats = both([_add(1), _add(2, shares=0)])
    assert not raised
    assert m_bids == [(10_000, [(1, 100), (2, 0)])]
    assert o_bids == [(10_000, [(1, 100)])] and stats.bad_shares == 1


@pytest.mark.parametrize("over", ["execute", "cancel"])
def test_over_execution_meatpy_raises_we_count(over):
    """Both remove the order; meatpy raises VolumeInconsistencyException, we count it."""
    last = _exec(1, 150) if over == "execute" else _cancel(1, 150)
    m_bids, raised, o_bids, stats = both([_add(1), _add(2), last])
    assert list(raised) == [2] and isinstance(raised[2], VolumeInconsistencyException)
    assert m_bids == o_bids == [(10_000, [(2, 100)])]
    assert (stats.over_execution, stats.over_cancel) == ((1, 0) if over == "execute" else (0, 1))


@pytest.mark.parametrize("second_price", [10_000, 9_900])
def test_execution_out_of_time_priority_meatpy_raises_later(second_price):
    """E on an order that is not first in line (same level, or a worse level).

    meatpy executes it anyway, buffers an ExecutionPriorityException, and raises
    the buffered list on the next execution with a different timestamp; we apply
    both executions and count nothing, since the feed, not the book, decides
    who traded.  The books agree.
    """
    msgs = [_add(1), _add(2, price=second_price), _exec(2, 10, ts=1_000), _exec(1, 10, ts=9_000)]
    m_bids, raised, o_bids, stats = both(msgs)
    assert list(raised) == [3] and isinstance(raised[3], ExecutionPriorityExceptionList)
    assert m_bids == o_bids
    assert sum(len(q) for _, q in o_bids) == 2 and stats.executions == 2 and stats.dropped == 0


def test_routing_meatpy_by_stock_field_we_by_locate():
    """An add whose stock field disagrees with its locate lands in different books."""
    directory = _msg(
        "R", stock="AAPL", market_category="Q", financial_status="N", round_lot_size=100, round_lots_only="N",
        issue_classification="C", issue_subtype="Z", authenticity="P", short_sale_threshold="N", ipo_flag="N",
        luld_reference_price_tier="1", etp_flag="N", etp_leverage_factor=0, inverse_indicator="N",
    )  # fmt: skip
    m_bids, raised, o_bids, _ = both([directory, _add(1, stock="MSFT"), _add(2), _add(3, loc=2)])
    assert not raised
    assert m_bids == [(10_000, [(2, 100), (3, 100)])]  # meatpy: stock field AAPL, any locate
    assert o_bids == [(10_000, [(1, 100), (2, 100)])]  # ours: locate 1 (bound to AAPL by R)
