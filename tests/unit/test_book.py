"""The order book: hand-built sequences with known results, and properties.

Two implementations of the same semantics live in ``book``: the per-message
``OrderBook`` methods and the bulk ``BookBuilder.apply_ops`` loop.  Every
property test drives both with the same events and compares them with an
obviously-correct model, so neither can drift.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from book import BUY, SELL, BookBuilder, LevelView, OrderBook
from book.side import TOTAL, BookSide
from book.ops import (
    ADD_BASE,
    OP_ANOMALY,
    OP_CANCEL,
    OP_DELETE,
    OP_EXECUTE,
    OP_EXECUTE_PRICE,
    OP_MESSAGE,
    OP_REPLACE_IN,
    OP_REPLACE_OUT,
    add_op,
    pack_shares,
)

# ---------------------------------------------------------------- hand-built


def test_add_builds_levels_fifo_and_bbo():
    b = OrderBook(1, "AAPL")
    assert b.bbo().bid_price is None and b.bbo().ask_price is None
    assert b.add(1, BUY, 100_0000, 100)
    assert b.add(2, BUY, 100_0000, 50)
    assert b.add(3, BUY, 99_9900, 10)
    assert b.add(4, SELL, 100_0100, 30)
    assert b.add(5, SELL, 100_0200, 70)
    bbo = b.bbo()
    assert (bbo.bid_price, bbo.bid_shares, bbo.bid_orders) == (100_0000, 150, 2)
    assert (bbo.ask_price, bbo.ask_shares, bbo.ask_orders) == (100_0100, 30, 1)
    assert not bbo.crossed
    depth = b.depth(5)
    assert depth.bids == [LevelView(100_0000, 150, 2), LevelView(99_9900, 10, 1)]
    assert depth.asks == [LevelView(100_0100, 30, 1), LevelView(100_0200, 70, 1)]
    assert b.queue_position(2) == (2, 100_0000, 1, 100, 2, 150)
    assert b.queue_position(1).orders_ahead == 0
    assert b.order(3) == (3, BUY, 99_9900, 10, 3)
    assert b.order_count() == 5
    b._check()


def test_execute_partial_keeps_priority_full_removes():
    b = OrderBook(1)
    b.add(1, BUY, 100, 100)
    b.add(2, BUY, 100, 100)
    assert b.execute(1, 40) == 60
    assert b.queue_position(1).orders_ahead == 0  # partial fill keeps time priority
    assert b.queue_position(2).shares_ahead == 60
    assert b.volume == 40 and b.last_price == 100
    assert b.execute(1, 60) == 0
    assert b.order(1) is None
    assert b.queue_position(2).orders_ahead == 0
    assert b.volume == 100
    assert b.stats.over_execution == 0
    b._check()


def test_over_execution_counted_and_order_removed():
    b = OrderBook(1)
    b.add(1, SELL, 100, 10)
    assert b.execute(1, 15) == 0
    assert b.stats.over_execution == 1
    assert b.volume == 10  # only what rested can trade
    assert b.bbo().ask_price is None
    b._check()


def test_cancel_partial_and_over_cancel():
    b = OrderBook(1)
    b.add(1, SELL, 100, 10)
    assert b.cancel(1, 3) == 7
    assert b.order(1).shares == 7
    assert b.cancel(1, 9) == 0
    assert b.stats.over_cancel == 1
    assert b.order_count() == 0
    b._check()


def test_delete_removes_empty_level_and_next_best_appears():
    b = OrderBook(1)
    b.add(1, BUY, 101, 10)
    b.add(2, BUY, 100, 10)
    assert b.best_bid() == 101
    assert b.delete(1)
    assert b.best_bid() == 100
    assert len(b.bids) == 1
    b._check()


def test_replace_new_ref_same_side_back_of_queue():
    b = OrderBook(1)
    b.add(1, BUY, 100, 10)
    b.add(2, BUY, 100, 20)
    assert b.replace(1, 9, 15, 100)
    assert b.order(1) is None
    assert b.order(9) == (9, BUY, 100, 15, 3)  # seq 3: the third event that placed an order
    qp = b.queue_position(9)
    assert (qp.orders_ahead, qp.shares_ahead) == (1, 20)  # loses priority even at the same price
    assert b.replace(2, 10, 5, 99)  # price change
    assert b.depth(5).bids == [LevelView(100, 15, 1), LevelView(99, 5, 1)]
    b._check()


def test_unknown_and_duplicate_refs_are_counted_not_raised():
    b = OrderBook(1)
    assert b.execute(42, 1) is None
    assert b.cancel(42, 1) is None
    assert not b.delete(42)
    assert not b.replace(42, 43, 1, 1)
    assert b.stats.unknown_ref == 4
    b.add(1, BUY, 100, 10)
    assert not b.add(1, SELL, 200, 10)
    assert b.stats.duplicate_ref == 1
    assert b.order(1).side == BUY
    assert not b.add(2, BUY, 100, 0)
    assert b.stats.bad_shares == 1
    b._check()


def test_orders_of_other_books_are_not_visible():
    builder = BookBuilder()
    a, c = builder.book_for(1), builder.book_for(2)
    a.add(1, BUY, 100, 10)
    assert c.order(1) is None and c.queue_position(1) is None
    assert not c.delete(1)  # not this book's order
    assert a.order(1) is not None


def test_crossed_book_detected():
    builder = BookBuilder()
    b = builder.book_for(7)
    b.add(1, BUY, 101, 10)
    b.add(2, SELL, 100, 10)
    assert b.bbo().crossed and b.is_crossed()
    assert builder.check_crossed() == 1
    assert builder.stats.crossed_books == 1


def test_builder_ops_every_record_type():
    builder = BookBuilder()
    seen = []
    anomalies = []
    ops = [
        add_op(5, False), 1, 100, pack_shares(1, 100),
        add_op(5, False), 2, 100, pack_shares(2, 50),
        add_op(5, True), 3, 102, pack_shares(3, 30),
        OP_EXECUTE, 1, 40, 0,
        OP_EXECUTE_PRICE, 1, 10, 0,
        OP_CANCEL, 2, 20, 0,
        OP_REPLACE_OUT, 3, 4, 0,
        OP_REPLACE_IN, 4, 101, pack_shares(7, 25),
        OP_MESSAGE, 123, 5, ord("P"),
        OP_ANOMALY, 456, 1, 12,
        OP_DELETE, 99, 0, 0,  # unknown
        OP_EXECUTE, 98, 1, 0,  # unknown
        OP_REPLACE_OUT, 97, 96, 0,  # unknown: its REPLACE_IN is skipped
        OP_REPLACE_IN, 96, 100, pack_shares(9, 1),
        add_op(5, True), 4, 105, pack_shares(10, 1),  # duplicate of a live ref
    ]  # fmt: skip
    n = builder.apply_ops(ops, on_message=lambda *r: seen.append(r), on_anomaly=lambda *r: anomalies.append(r))
    assert n == len(ops) // 4
    book = builder.book(5)
    assert book.order(1) == (1, BUY, 100, 50, 1)
    assert book.order(2) == (2, BUY, 100, 30, 2)
    assert book.order(3) is None
    assert book.order(4) == (4, SELL, 101, 25, 7)
    assert book.order(96) is None
    assert book.volume == 50 and book.last_price == 100
    assert seen == [(123, 5, ord("P"))]
    assert anomalies == [(456, 1, 12)]
    s = builder.stats
    assert (s.unknown_ref, s.duplicate_ref, s.executions, s.anomalies) == (3, 1, 2, 1)
    builder._check()


def test_builder_rejects_partial_records_and_counts_bad_ops():
    builder = BookBuilder()
    with pytest.raises(ValueError, match="whole 4-word records"):
        builder.apply_ops([1, 2, 3])
    builder.apply_ops([ADD_BASE + 2 * 70000, 1, 1, 1, 9, 0, 0, 0])
    assert builder.stats.bad_op == 2


def test_symbol_binding():
    builder = BookBuilder()
    builder.set_symbol(3, "MSFT")
    assert builder.book("MSFT") is builder.book(3)
    builder.set_symbol(3, "MSFT2")
    assert builder.book("MSFT") is None and builder.book("MSFT2").locate == 3


# ---------------------------------------------------------------- properties

PRICES = st.integers(min_value=99, max_value=102)
LOCATES = st.integers(min_value=1, max_value=2)
SHARES = st.integers(min_value=1, max_value=6)
# A pick chooses among the orders live when the event is resolved, so events
# hit real orders (shared levels, exact fills, replaces into occupied levels);
# picks >= UNKNOWN_PICK name refs that were never added.
PICK = st.integers(min_value=0, max_value=40)
UNKNOWN_PICK = 36

_ADD = st.tuples(st.just("add"), LOCATES, st.booleans(), PRICES, SHARES, st.booleans())
ABSTRACT_EVENTS = st.lists(
    st.one_of(
        _ADD,
        _ADD,
        st.tuples(st.just("exec"), PICK, SHARES),
        st.tuples(st.just("cancel"), PICK, SHARES),
        st.tuples(st.just("delete"), PICK),
        st.tuples(st.just("replace"), PICK, PRICES, SHARES),
    ),
    min_size=5,
    max_size=150,
)


def resolve(abstract):
    """Turn abstract events into concrete ones against a running model."""
    model = Model()
    events = []
    next_ref = 1
    for seq, ev in enumerate(abstract, 1):
        live = list(model.orders)
        kind = ev[0]
        if kind == "add":
            _, loc, sell, price, shares, duplicate = ev
            if duplicate and live:
                ref = live[seq % len(live)]  # a duplicate add of a live ref
            else:
                ref, next_ref = next_ref, next_ref + 1
            concrete = ("add", ref, loc, sell, price, shares)
        else:
            pick = ev[1]
            ref = 10**9 + pick if pick >= UNKNOWN_PICK or not live else live[pick % len(live)]
            if kind == "replace":
                concrete = ("replace", ref, next_ref, ev[2], ev[3])
                next_ref += 1
            else:
                concrete = (kind, ref) + tuple(ev[2:])
        model.apply(concrete, seq)
        events.append(concrete)
    return events


EVENTS = ABSTRACT_EVENTS.map(resolve)


class Model:
    """The obviously-correct reference: one insertion-ordered dict of orders."""

    def __init__(self):
        self.orders = {}  # ref -> [locate, is_sell, price, shares, seq]

    def apply(self, ev, seq):
        kind = ev[0]
        if kind == "add":
            _, ref, loc, sell, price, shares = ev
            if ref not in self.orders:
                self.orders[ref] = [loc, sell, price, shares, seq]
        elif kind in ("exec", "cancel"):
            o = self.orders.get(ev[1])
            if o is not None:
                o[3] -= ev[2]
                if o[3] <= 0:
                    del self.orders[ev[1]]
        elif kind == "delete":
            self.orders.pop(ev[1], None)
        elif kind == "replace":
            _, ref, new, price, shares = ev
            o = self.orders.get(ref)
            if o is not None:
                del self.orders[ref]
                if new not in self.orders:
                    self.orders[new] = [o[0], o[1], price, shares, seq]

    def snapshot(self, loc):
        sides = []
        for sell in (False, True):
            levels = {}
            for ref, (l, s, price, shares, seq) in self.orders.items():
                if l == loc and s == sell:
                    levels.setdefault(price, []).append((ref, shares, seq))
            sides.append(tuple((p, tuple(levels[p])) for p in sorted(levels, reverse=not sell)))
        return tuple(sides)


def to_ops(events):
    ops = []
    for seq, ev in enumerate(events, 1):
        kind = ev[0]
        if kind == "add":
            _, ref, loc, sell, price, shares = ev
            ops += (add_op(loc, sell), ref, price, pack_shares(seq, shares))
        elif kind == "exec":
            ops += (OP_EXECUTE, ev[1], ev[2], 0)
        elif kind == "cancel":
            ops += (OP_CANCEL, ev[1], ev[2], 0)
        elif kind == "delete":
            ops += (OP_DELETE, ev[1], 0, 0)
        else:
            _, ref, new, price, shares = ev
            ops += (OP_REPLACE_OUT, ref, new, 0, OP_REPLACE_IN, new, price, pack_shares(seq, shares))
    return ops


def snap(builder, loc):
    book = builder.book(loc)
    if book is None:
        return ((), ())
    s = book.snapshot()
    return (s.bids, s.asks)


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_builder_and_methods_match_model(events):
    model = Model()
    via_methods = BookBuilder()
    for i, ev in enumerate(events):
        # OrderBook methods need the instrument of E/X/D/U: take it from the model
        _apply_one(via_methods, model.orders, ev, i + 1)
        model.apply(ev, i + 1)
        # check invariants after every step (cheap at this size)
        via_methods._check()
    bulk = BookBuilder()
    bulk.apply_ops(to_ops(events))
    bulk._check()
    for loc in (1, 2):
        expected = model.snapshot(loc)
        assert snap(bulk, loc) == expected
        assert snap(via_methods, loc) == expected
    assert bulk.live_orders() == len(model.orders) == via_methods.live_orders()


def _apply_one(builder, model_orders, ev, seq):
    """Drive OrderBook methods with one event (the model must not have applied it yet)."""
    kind = ev[0]
    if kind == "add":
        _, ref, loc, sell, price, shares = ev
        builder.book_for(loc).add(ref, SELL if sell else BUY, price, shares, seq)
        return
    loc = model_orders[ev[1]][0] if ev[1] in model_orders else 1
    book = builder.book_for(loc)
    if kind == "exec":
        book.execute(ev[1], ev[2])
    elif kind == "cancel":
        book.cancel(ev[1], ev[2])
    elif kind == "delete":
        book.delete(ev[1])
    else:
        book.replace(ev[1], ev[2], ev[4], ev[3], seq)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_level_aggregates_equal_sum_of_orders(events):
    builder = BookBuilder()
    # apply in small batches and read between them, so the lazy sorted index is
    # reconciled at many different points
    ops = to_ops(events)
    for start in range(0, len(ops), 12):
        builder.apply_ops(ops[start : start + 12])
        builder._check()  # before any read reconciles the lazy index
        for book in builder.books():
            depth = book.depth(1000)
            orders = list(book.orders())
            for side, rows in ((BUY, depth.bids), (SELL, depth.asks)):
                mine = [o for o in orders if o.side == side]
                assert sum(r.shares for r in rows) == sum(o.shares for o in mine)
                assert sum(r.orders for r in rows) == len(mine)
                for row in rows:
                    at = [o for o in mine if o.price == row.price]
                    assert row.shares == sum(o.shares for o in at) and row.orders == len(at)
            prices = [r.price for r in depth.bids]
            assert prices == sorted(prices, reverse=True)
            prices = [r.price for r in depth.asks]
            assert prices == sorted(prices)
        builder._check()
    refs = [o.ref for b in builder.books() for o in b.orders()]
    assert len(refs) == len(set(refs)), "an order sits in two places"


@settings(max_examples=100, deadline=None)
@given(EVENTS)
def test_replay_is_deterministic(events):
    ops = to_ops(events)
    a, b = BookBuilder(), BookBuilder()
    a.apply_ops(ops)
    b.apply_ops(list(ops))
    assert [x.snapshot() for x in a.books()] == [y.snapshot() for y in b.books()]


def random_events(rng, n):
    """A long random sequence with realistic referencing, for stress tests."""
    live, events, next_ref = [], [], 1
    for _ in range(n):
        r = rng.random()
        if r < 0.45 or not live:
            loc, sell = rng.randint(1, 3), rng.random() < 0.5
            events.append(("add", next_ref, loc, sell, rng.randint(90, 110), rng.randint(1, 300)))
            live.append(next_ref)
            next_ref += 1
            continue
        i = rng.randrange(len(live))
        ref = live[i] if rng.random() > 0.02 else 10**9 + i  # 2% unknown refs
        if r < 0.75:
            events.append(("delete", ref))
        elif r < 0.85:
            events.append(("replace", ref, next_ref, rng.randint(90, 110), rng.randint(1, 300)))
            live.append(next_ref)
            next_ref += 1
        else:
            events.append((rng.choice(("exec", "cancel")), ref, rng.randint(1, 320)))
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stress_against_model_with_checks(seed):
    import random

    rng = random.Random(seed)
    events = random_events(rng, 6000)
    model = Model()
    for i, ev in enumerate(events, 1):
        model.apply(ev, i)
    ops = to_ops(events)
    builder = BookBuilder()
    # random batch sizes, reads between batches, invariants after every batch
    pos = 0
    while pos < len(ops):
        step = 4 * rng.randint(1, 50)
        builder.apply_ops(ops[pos : pos + step])
        pos += step
        builder._check()
        if rng.random() < 0.5:
            for book in builder.books():
                book.bbo()
    for loc in (1, 2, 3):
        assert snap(builder, loc) == model.snapshot(loc)
    assert builder.live_orders() == len(model.orders)


@settings(max_examples=300, deadline=None)
@given(
    is_bid=st.booleans(),
    steps=st.lists(st.tuples(st.sampled_from("aads"), st.integers(1, 40), st.integers(1, 500)), max_size=150),
    n=st.integers(0, 12),
)
def test_side_top_equals_a_sorted_view_with_changes_pending(is_bid, steps, n):
    """BookSide.top(n) (merged from the stale index and pending changes) equals sorting the levels."""
    side = BookSide(is_bid)
    ref = 0
    for action, price, shares in steps:
        if action == "s":
            side._sync()
        elif action == "d" and price in side.levels:
            side.drop_level(price)
        elif action == "a":
            level = side.levels.get(price)
            if level is None:
                level = side.new_level(price)
            ref += 1
            level[ref] = shares
    want = [(p, sum(v for k, v in side.levels[p].items() if k != TOTAL), len(side.levels[p]) - 1)
            for p in sorted(side.levels, reverse=is_bid)][:n]  # fmt: skip
    assert side.top(n) == want
    assert side.top(n) == side.depth(n)  # and again, now totals are tracked and the index may be synced
    side._check()
