"""The simulator's matching engine: matching rules, OUCH answers, ITCH output, and the feed-handler oracle.

The oracle tests run the engine's ITCH output, framed as on the wire, through
the SDK's real feed path (:class:`efsdk.pipeline.FeedHandler`: native decoder,
book ops, :class:`book.OrderBook`) and require the resulting books to equal
the engine's own, level by level and order by order, after long random
sequences of participant and background orders.
"""

from __future__ import annotations

import logging
import random

import pytest

from efsdk.errors import ConfigError
from efsdk.itch.codec import decode, frame
from efsdk.orders.ouch import codec as ouch
from efsdk.pipeline import FeedHandler
from efsdk.sim import DAY, IOC, BackgroundFlow, FlowConfig, MatchingEngine, SimStateError, on_tick_grid
from efsdk.sim.engine import MAX_PRICE, MAX_SHARES

T0 = 34_200_000_000_000  # 09:30:00 in ns since midnight


class FakeClock:
    """Deterministic clock: each read is 1 us after the previous one."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def enter(token, side, shares, price, stock="AAPL", tif=DAY, display="Y", min_qty=0, firm="TEST"):
    return ouch.EnterOrder(
        type="O", token=token, side=side, shares=shares, stock=stock, price=price, time_in_force=tif, firm=firm,
        display=display, capacity="P", intermarket_sweep="N", minimum_quantity=min_qty, cross_type="N",
        customer_type="N",
    )  # fmt: skip


def replace(existing, new, shares, price, tif=DAY, display="Y", min_qty=0):
    return ouch.ReplaceOrder(
        type="U", existing_token=existing, replacement_token=new, shares=shares, price=price, time_in_force=tif,
        display=display, intermarket_sweep="N", minimum_quantity=min_qty,
    )  # fmt: skip


def cancel(token, shares=0):
    return ouch.CancelOrder(type="X", token=token, shares=shares)


def modify(token, side, shares):
    return ouch.ModifyOrder(type="M", token=token, side=side, shares=shares)


def itch(engine):
    """Decoded ITCH messages emitted since the last call."""
    return [decode(m) for m in engine.drain_itch()]


def kinds(responses):
    return [(acct, m.type) for acct, m in responses]


@pytest.fixture
def eng():
    e = MatchingEngine(["AAPL", "MSFT"], clock_ns=FakeClock())
    e.open_session()
    e.drain_itch()
    return e


def book_view(engine, symbol):
    """Engine book as {side: [(price, [(ref, shares), ...]), ...]} best first."""
    out = {"B": [], "S": []}
    for o in engine.orders(symbol):
        side = "B" if o.side == "B" else "S"
        rows = out[side]
        if not rows or rows[-1][0] != o.price:
            rows.append((o.price, []))
        rows[-1][1].append((o.ref, o.shares))
    return out


def feed_view(book):
    out = {"B": [], "S": []}
    for o in book.orders():
        rows = out[o.side]
        if not rows or rows[-1][0] != o.price:
            rows.append((o.price, []))
        rows[-1][1].append((o.ref, o.shares))
    return out


# ------------------------------------------------------------------ session


def test_open_session_emits_the_start_of_day():
    e = MatchingEngine(["AAPL", "MSFT", "QQQ"], first_locate=7, clock_ns=FakeClock())
    e.open_session()
    msgs = itch(e)
    assert [m.type for m in msgs] == ["S", "R", "R", "R", "H", "H", "H", "S", "S"]
    assert [m.event_code for m in msgs if m.type == "S"] == ["O", "S", "Q"]
    assert [(m.stock_locate, m.stock) for m in msgs if m.type == "R"] == [(7, "AAPL"), (8, "MSFT"), (9, "QQQ")]
    assert all(m.trading_state == "T" for m in msgs if m.type == "H")
    assert all(m.round_lot_size == 100 for m in msgs if m.type == "R")
    assert e.locate("QQQ") == 9 and e.symbols == ["AAPL", "MSFT", "QQQ"]
    assert e.stats.itch_messages == 9
    with pytest.raises(SimStateError):
        e.open_session()


def test_close_session_expires_resting_orders_and_ends_the_day(eng):
    eng.enter("ACC1", enter("T1", "B", 100, 100_0000))
    eng.enter("ACC2", enter("T2", "S", 200, 101_0000, stock="MSFT"))
    ref1 = eng.order("ACC1", "T1").ref
    itch(eng)
    out = eng.close_session()
    assert sorted((a, m.token, m.decrement_shares, m.reason) for a, m in out) == [
        ("ACC1", "T1", 100, "T"),
        ("ACC2", "T2", 200, "T"),
    ]
    msgs = itch(eng)
    assert [m.type for m in msgs] == ["D", "D", "S", "S", "S"]
    assert msgs[0].order_reference_number == ref1
    assert [m.event_code for m in msgs[2:]] == ["M", "E", "C"]
    assert eng.orders("AAPL") == [] and eng.stats.expired == 2
    # Closed: no more orders, no second close.
    (acct, rej), = eng.enter("ACC1", enter("T3", "B", 100, 100_0000))
    assert rej.type == "J" and rej.reason == "C"
    with pytest.raises(SimStateError):
        eng.close_session()


def test_orders_before_the_open_are_rejected_closed():
    e = MatchingEngine(["AAPL"], clock_ns=FakeClock())
    (_, rej), = e.enter("A", enter("T1", "B", 100, 100_0000))
    assert (rej.type, rej.token, rej.reason) == ("J", "T1", "C")
    with pytest.raises(SimStateError):
        e.close_session()


# ------------------------------------------------------------------ matching


def test_accepted_echoes_the_order_and_a_resting_order_is_an_itch_add(eng):
    out = eng.enter("ACC1", enter("T1", "B", 300, 150_2500, firm="ABCD"))
    (acct, acc), = out
    assert acct == "ACC1" and acc.type == "A"
    assert (acc.token, acc.side, acc.shares, acc.stock, acc.price) == ("T1", "B", 300, "AAPL", 150_2500)
    assert (acc.time_in_force, acc.firm, acc.display, acc.order_state) == (DAY, "ABCD", "Y", "L")
    assert acc.timestamp > T0
    (add,) = itch(eng)
    assert add.type == "A" and add.order_reference_number == acc.order_reference
    assert (add.stock_locate, add.side, add.shares, add.stock, add.price, add.timestamp) == (
        1, "B", 300, "AAPL", 150_2500, acc.timestamp,
    )  # fmt: skip


def test_attributable_display_rests_as_add_with_mpid(eng):
    eng.enter("ACC1", enter("T1", "S", 100, 10_0000, display="A", firm="GSCO"))
    (f,) = itch(eng)
    assert f.type == "F" and f.attribution == "GSCO" and f.side == "S"


def test_price_priority_best_price_trades_first(eng):
    for tok, px in (("A1", 101_0000), ("A2", 100_0000), ("A3", 102_0000)):
        eng.enter("MAKER", enter(tok, "S", 100, px))
    refs = {o.token: o.ref for o in eng.orders("AAPL")}
    itch(eng)
    out = eng.enter("TAKER", enter("B1", "B", 300, 102_0000))
    execs = [m for a, m in out if a == "TAKER" and m.type == "E"]
    assert [m.execution_price for m in execs] == [100_0000, 101_0000, 102_0000]
    assert all(m.liquidity_flag == "R" for m in execs)
    made = [m for a, m in out if a == "MAKER"]
    assert [(m.token, m.liquidity_flag) for m in made] == [("A2", "A"), ("A1", "A"), ("A3", "A")]
    msgs = itch(eng)
    assert [(m.type, m.order_reference_number) for m in msgs] == [
        ("E", refs["A2"]), ("E", refs["A1"]), ("E", refs["A3"])
    ]  # fmt: skip
    matches = [m.match_number for m in msgs]
    assert matches == sorted(set(matches)) and [m.match_number for m in execs] == matches
    assert eng.orders("AAPL") == []


def test_time_priority_within_a_level(eng):
    eng.enter("M1", enter("first", "S", 100, 100_0000))
    eng.enter("M2", enter("second", "S", 100, 100_0000))
    eng.enter("M1", enter("third", "S", 100, 100_0000))
    out = eng.enter("TAKER", enter("B1", "B", 150, 100_0000))
    assert [(a, m.token, m.executed_shares) for a, m in out if m.type == "E" and a != "TAKER"] == [
        ("M1", "first", 100),
        ("M2", "second", 50),
    ]
    assert [(o.token, o.shares) for o in eng.orders("AAPL")] == [("second", 50), ("third", 100)]


def test_partial_fills_across_levels_then_the_rest_rests(eng):
    eng.enter("M", enter("S1", "S", 100, 100_0000))
    eng.enter("M", enter("S2", "S", 200, 100_0100))
    eng.enter("M", enter("S3", "S", 300, 100_0300))
    itch(eng)
    out = eng.enter("T", enter("B1", "B", 500, 100_0200))
    assert kinds(out) == [("T", "A"), ("M", "E"), ("T", "E"), ("M", "E"), ("T", "E")]
    accepted = out[0][1]
    assert accepted.shares == 500  # Accepted shows the whole order, before it trades
    mine = [(m.executed_shares, m.execution_price) for a, m in out if a == "T" and m.type == "E"]
    assert mine == [(100, 100_0000), (200, 100_0100)]
    msgs = itch(eng)
    assert [m.type for m in msgs] == ["E", "E", "A"]
    assert (msgs[2].order_reference_number, msgs[2].side, msgs[2].shares, msgs[2].price) == (
        accepted.order_reference, "B", 200, 100_0200,
    )  # fmt: skip
    assert eng.bbo("AAPL")[:3] == (100_0200, 200, 1) and eng.best("AAPL") == (100_0200, 100_0300)
    assert eng.position("T", "AAPL") == 300 and eng.position("M", "AAPL") == -300
    assert eng.cash("T") == -(100 * 100_0000 + 200 * 100_0100) == -eng.cash("M")


def test_ioc_remainder_is_canceled_and_never_rests(eng):
    eng.enter("M", enter("S1", "S", 100, 100_0000))
    itch(eng)
    out = eng.enter("T", enter("B1", "B", 250, 100_0000, tif=IOC))
    assert kinds(out) == [("T", "A"), ("M", "E"), ("T", "E"), ("T", "C")]
    canceled = out[-1][1]
    assert (canceled.token, canceled.decrement_shares, canceled.reason) == ("B1", 150, "I")
    assert [m.type for m in itch(eng)] == ["E"]
    assert eng.orders("AAPL") == [] and eng.stats.ioc_canceled == 1
    # An IOC that cannot trade at all: accepted, then canceled whole; no ITCH.
    out = eng.enter("T", enter("B2", "B", 100, 99_0000, tif=IOC))
    assert kinds(out) == [("T", "A"), ("T", "C")] and out[1][1].decrement_shares == 100
    assert itch(eng) == []


def test_fills_record_both_sides(eng):
    eng.enter("M", enter("S1", "S", 100, 100_0000))
    eng.enter("T", enter("B1", "B", 40, 100_0000))
    maker, taker = eng.fills
    assert maker.account == "M" and maker.side == "S" and maker.liquidity == "A" and maker.token == "S1"
    assert taker.account == "T" and taker.side == "B" and taker.liquidity == "R" and taker.token == "B1"
    for f in (maker, taker):
        assert (f.symbol, f.shares, f.price) == ("AAPL", 40, 100_0000)
    assert maker.match_number == taker.match_number and maker.timestamp == taker.timestamp
    assert eng.stats.executions == 1 and eng.stats.executed_shares == 40


# ------------------------------------------------------------------ cancel


def test_cancel_to_a_smaller_size_keeps_priority(eng):
    eng.enter("M", enter("S1", "S", 300, 100_0000))
    eng.enter("M", enter("S2", "S", 100, 100_0000))
    ref = eng.order("M", "S1").ref
    itch(eng)
    (acct, c), = eng.cancel("M", cancel("S1", 120))
    assert (acct, c.type, c.token, c.decrement_shares, c.reason) == ("M", "C", "S1", 180, "U")
    (x,) = itch(eng)
    assert (x.type, x.order_reference_number, x.cancelled_shares) == ("X", ref, 180)
    assert [(o.token, o.shares) for o in eng.orders("AAPL")] == [("S1", 120), ("S2", 100)]


def test_cancel_all_deletes_and_unknown_tokens_get_a_cancel_reject(eng):
    eng.enter("M", enter("S1", "S", 300, 100_0000))
    ref = eng.order("M", "S1").ref
    itch(eng)
    (_, c), = eng.cancel("M", cancel("S1", 0))
    assert c.decrement_shares == 300
    (d,) = itch(eng)
    assert (d.type, d.order_reference_number) == ("D", ref)
    for acct, token in (("M", "S1"), ("M", "nope"), ("OTHER", "S1")):  # dead, unknown, not yours
        (a, rej), = eng.cancel(acct, cancel(token))
        assert (a, rej.type, rej.token) == (acct, "I", token)
    assert eng.stats.cancel_rejects == 3 and eng.stats.cancels == 1


def test_cancel_that_does_not_reduce_is_counted_and_logged_once(eng, caplog):
    eng.enter("M", enter("S1", "S", 100, 100_0000))
    itch(eng)
    with caplog.at_level(logging.WARNING, logger="efsdk.sim.engine"):
        assert eng.cancel("M", cancel("S1", 100)) == []
        assert eng.cancel("M", cancel("S1", 500)) == []
    assert eng.stats.ignored == {"cancel_no_reduction": 2}
    assert len(caplog.records) == 1
    assert itch(eng) == [] and eng.order("M", "S1").shares == 100


# ------------------------------------------------------------------ replace


def test_replace_down_in_size_keeps_priority_with_an_itch_cancel(eng):
    eng.enter("M", enter("S1", "S", 300, 100_0000))
    eng.enter("M", enter("S2", "S", 100, 100_0000))
    ref = eng.order("M", "S1").ref
    itch(eng)
    (acct, r), = eng.replace("M", replace("S1", "S1b", 200, 100_0000))
    assert (acct, r.type, r.replacement_token, r.previous_token, r.shares, r.price) == (
        "M", "U", "S1b", "S1", 200, 100_0000,
    )  # fmt: skip
    assert r.order_reference == ref and r.side == "S" and r.stock == "AAPL" and r.order_state == "L"
    (x,) = itch(eng)
    assert (x.type, x.order_reference_number, x.cancelled_shares) == ("X", ref, 100)
    assert [(o.token, o.shares, o.ref) for o in eng.orders("AAPL")][0] == ("S1b", 200, ref)
    assert eng.order("M", "S1") is None
    # Same size, same price: nothing on ITCH, still first.
    eng.replace("M", replace("S1b", "S1c", 200, 100_0000))
    assert itch(eng) == [] and eng.orders("AAPL")[0].token == "S1c"


@pytest.mark.parametrize(
    ("shares", "price"), [(300, 100_0100), (400, 100_0000)], ids=["price-change", "size-increase"]
)
def test_replace_that_changes_price_or_adds_shares_loses_priority(eng, shares, price):
    eng.enter("M", enter("S1", "S", 300, 100_0000))
    eng.enter("M", enter("S2", "S", 100, 100_0100))
    eng.enter("M", enter("S3", "S", 100, 100_0000))
    old = eng.order("M", "S1").ref
    itch(eng)
    (_, r), = eng.replace("M", replace("S1", "S1b", shares, price))
    assert r.order_reference != old and r.shares == shares and r.price == price
    (u,) = itch(eng)
    assert (u.type, u.original_order_reference_number, u.new_order_reference_number, u.shares, u.price) == (
        "U", old, r.order_reference, shares, price,
    )  # fmt: skip
    level = [o.token for o in eng.orders("AAPL") if o.price == price]
    assert level[-1] == "S1b"  # back of the queue


def test_replace_can_be_told_to_always_lose_priority():
    e = MatchingEngine(["AAPL"], clock_ns=FakeClock(), replace_decrease_keeps_priority=False)
    e.open_session()
    e.enter("M", enter("S1", "S", 300, 100_0000))
    e.enter("M", enter("S2", "S", 100, 100_0000))
    e.drain_itch()
    e.replace("M", replace("S1", "S1b", 200, 100_0000))
    (u,) = itch(e)
    assert u.type == "U" and [o.token for o in e.orders("AAPL")] == ["S2", "S1b"]


def test_marketable_replace_deletes_trades_and_rests_the_rest(eng):
    eng.enter("M", enter("S1", "S", 100, 100_0100))
    eng.enter("T", enter("B1", "B", 300, 100_0000))
    old = eng.order("T", "B1").ref
    itch(eng)
    out = eng.replace("T", replace("B1", "B1b", 300, 100_0100))
    assert kinds(out) == [("T", "U"), ("M", "E"), ("T", "E")]
    new_ref = out[0][1].order_reference
    msgs = itch(eng)
    assert [m.type for m in msgs] == ["D", "E", "A"]
    assert msgs[0].order_reference_number == old and msgs[2].order_reference_number == new_ref
    assert msgs[2].shares == 200 and eng.order("T", "B1b").shares == 200
    assert [(f.token, f.liquidity) for f in eng.fills] == [("S1", "A"), ("B1b", "R")]


def test_replace_to_ioc_trades_and_cancels_the_rest(eng):
    eng.enter("M", enter("S1", "S", 100, 100_0100))
    eng.enter("T", enter("B1", "B", 300, 100_0000))
    itch(eng)
    out = eng.replace("T", replace("B1", "B1b", 300, 100_0100, tif=IOC))
    assert kinds(out) == [("T", "U"), ("M", "E"), ("T", "E"), ("T", "C")]
    assert out[-1][1].reason == "I" and out[-1][1].decrement_shares == 200
    assert [m.type for m in itch(eng)] == ["D", "E"] and eng.orders("AAPL") == []


def test_replace_of_unknown_token_is_rejected_and_duplicate_replacement_ignored(eng):
    eng.enter("M", enter("S1", "S", 100, 100_0000))
    eng.enter("M", enter("S2", "S", 100, 100_0100))
    itch(eng)
    (acct, rej), = eng.replace("M", replace("gone", "new1", 100, 100_0000))
    assert (acct, rej.type, rej.token, rej.reason) == ("M", "J", "new1", "O")
    assert eng.replace("M", replace("S1", "S2", 100, 100_0000)) == []  # S2 is taken
    assert eng.stats.ignored == {"replace_duplicate_token": 1}
    assert itch(eng) == [] and eng.order("M", "S1").shares == 100


@pytest.mark.parametrize(
    ("shares", "price", "display", "reason"),
    [(100, 100_0050, "Y", "X"), (MAX_SHARES + 1, 100_0000, "Y", "Z"), (0, 100_0000, "Y", "O"),
     (100, 100_0000, "N", "D")],
    ids=["off-grid", "too-many-shares", "zero-shares", "hidden"],
)  # fmt: skip
def test_invalid_replace_is_rejected_and_leaves_the_order_alone(eng, shares, price, display, reason):
    eng.enter("M", enter("S1", "S", 100, 100_0000))
    itch(eng)
    (_, rej), = eng.replace("M", replace("S1", "S1b", shares, price, display=display))
    assert (rej.type, rej.token, rej.reason) == ("J", "S1b", reason)
    assert eng.order("M", "S1").shares == 100 and itch(eng) == []


# ------------------------------------------------------------------ modify


def test_modify_decreases_in_place_and_changes_sell_type(eng):
    eng.enter("M", enter("S1", "S", 300, 100_0000))
    eng.enter("M", enter("S2", "S", 100, 100_0000))
    ref = eng.order("M", "S1").ref
    itch(eng)
    (acct, m), = eng.modify("M", modify("S1", "T", 100))
    assert (acct, m.type, m.token, m.side, m.shares) == ("M", "M", "S1", "T", 100)
    (x,) = itch(eng)
    assert (x.type, x.order_reference_number, x.cancelled_shares) == ("X", ref, 200)
    first = eng.orders("AAPL")[0]
    assert (first.token, first.side, first.shares) == ("S1", "T", 100)
    # A short sale still sells: position goes negative.
    eng.enter("T", enter("B1", "B", 100, 100_0000))
    assert eng.position("M", "AAPL") == -100 and eng.fills[0].side == "S"
    # Modify to zero removes the order.
    eng.modify("M", modify("S2", "S", 0))
    assert [m.type for m in itch(eng)][-1] == "D" and eng.order("M", "S2") is None


def test_invalid_modifies_are_ignored_and_counted(eng):
    eng.enter("M", enter("B1", "B", 100, 100_0000))
    eng.enter("M", enter("S1", "S", 100, 101_0000))
    itch(eng)
    assert eng.modify("M", modify("B1", "S", 100)) == []  # a buy cannot become a sell
    assert eng.modify("M", modify("S1", "B", 100)) == []
    assert eng.modify("M", modify("S1", "S", 200)) == []  # no increase
    assert eng.modify("M", modify("zz", "S", 10)) == []
    assert eng.stats.ignored == {"modify_bad_side": 2, "modify_increase": 1, "modify_unknown_token": 1}
    assert itch(eng) == [] and eng.stats.modifies == 0


# ------------------------------------------------------------------ rejects


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"stock": "ZZZZ"}, "S"),
        ({"shares": 0}, "O"),
        ({"shares": MAX_SHARES + 1}, "Z"),
        ({"price": 0}, "X"),
        ({"price": 100_0050}, "X"),  # half a cent above $1
        ({"price": MAX_PRICE + 100}, "X"),
        ({"display": "N"}, "D"),
        ({"min_qty": 100}, "N"),
        ({"side": "Q"}, "O"),
    ],
    ids=["unknown-stock", "zero-shares", "too-many-shares", "zero-price", "off-grid", "too-high", "hidden",
         "min-qty", "bad-side"],
)  # fmt: skip
def test_enter_rejects(eng, kwargs, reason):
    args = {"token": "T1", "side": "B", "shares": 100, "price": 100_0000} | kwargs
    out = eng.enter("ACC", enter(**args))
    assert [(a, m.type, m.token, m.reason) for a, m in out] == [("ACC", "J", "T1", reason)]
    assert eng.stats.rejects == {reason: 1} and eng.stats.accepted == 0
    assert itch(eng) == []


def test_tick_grid():
    assert on_tick_grid(1) and on_tick_grid(9999) and on_tick_grid(5001)  # sub-dollar: $0.0001 steps
    assert on_tick_grid(10_000) and on_tick_grid(10_100) and on_tick_grid(MAX_PRICE)
    assert not on_tick_grid(0) and not on_tick_grid(10_001) and not on_tick_grid(MAX_PRICE + 100)


def test_sub_dollar_prices_rest(eng):
    (_, acc), = eng.enter("ACC", enter("T1", "B", 1000, 5001))
    assert acc.type == "A" and eng.best("AAPL") == (5001, None)


def test_duplicate_tokens_are_rejected_per_account(eng):
    assert eng.enter("A", enter("T1", "B", 100, 100_0000))[0][1].type == "A"
    (_, rej), = eng.enter("A", enter("T1", "B", 100, 100_0000))
    assert (rej.type, rej.reason) == ("J", "O")
    # A rejected token is used too; another account may use the same token.
    eng.enter("A", enter("T2", "B", 0, 100_0000))
    assert eng.enter("A", enter("T2", "B", 100, 100_0000))[0][1].type == "J"
    assert eng.enter("B", enter("T1", "B", 100, 100_0000))[0][1].type == "A"
    assert eng.stats.rejects == {"O": 3}


# ------------------------------------------------------------------ self-trade


def test_self_trade_allowed_by_default(eng):
    eng.enter("A", enter("S1", "S", 100, 100_0000))
    out = eng.enter("A", enter("B1", "B", 100, 100_0000))
    assert kinds(out) == [("A", "A"), ("A", "E"), ("A", "E")]
    assert eng.position("A", "AAPL") == 0 and eng.cash("A") == 0 and len(eng.fills) == 2


def test_self_trade_cancel_resting():
    e = MatchingEngine(["AAPL"], clock_ns=FakeClock(), self_trade="cancel_resting")
    e.open_session()
    e.enter("A", enter("S1", "S", 100, 100_0000))
    e.enter("B", enter("S2", "S", 100, 100_0000))
    ref1 = e.order("A", "S1").ref
    e.drain_itch()
    out = e.enter("A", enter("B1", "B", 150, 100_0000))
    assert kinds(out) == [("A", "A"), ("A", "C"), ("B", "E"), ("A", "E")]
    assert (out[1][1].token, out[1][1].reason, out[1][1].decrement_shares) == ("S1", "Q", 100)
    msgs = itch(e)
    assert [(m.type, m.order_reference_number) for m in msgs[:1]] == [("D", ref1)]
    assert [m.type for m in msgs] == ["D", "E", "A"]
    assert e.stats.self_trade_cancels == 1 and e.position("A", "AAPL") == 100


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "kwargs",
    [{"symbols": []}, {"symbols": ["A", "A"]}, {"symbols": ["TOOLONGNAME"]}, {"symbols": [" A"]},
     {"symbols": ["A"], "first_locate": 0}, {"symbols": ["A", "B"], "first_locate": 65535},
     {"symbols": ["A"], "self_trade": "maybe"}, {"symbols": ["A"], "max_shares": 0}],
)  # fmt: skip
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ConfigError):
        MatchingEngine(**kwargs)


def test_unknown_symbol_in_inspection_says_which(eng):
    with pytest.raises(KeyError, match="ZZZ"):
        eng.bbo("ZZZ")


def test_depth_and_repr(eng):
    eng.enter("M", enter("S1", "S", 100, 100_0100))
    eng.enter("M", enter("S2", "S", 50, 100_0100))
    eng.enter("M", enter("S3", "S", 70, 100_0200))
    eng.enter("M", enter("B1", "B", 10, 99_0000))
    d = eng.depth("AAPL", 1)
    assert [tuple(x) for x in d.bids] == [(99_0000, 10, 1)] and [tuple(x) for x in d.asks] == [(100_0100, 150, 2)]
    assert len(eng.depth("AAPL", 5).asks) == 2
    assert "live_orders=4" in repr(eng)
    assert eng.accounts() == ["M"] and len(eng.live_orders("M")) == 4


# ------------------------------------------------------------------ the oracle


def assert_books_equal(engine, feed):
    for s in engine.symbols:
        book = feed.builder.book(s)
        book._check()
        assert book.symbol == s
        assert feed_view(book) == book_view(engine, s), s
        assert [tuple(x) for x in book.depth(10).bids] == [tuple(x) for x in engine.depth(s, 10).bids]
        assert [tuple(x) for x in book.depth(10).asks] == [tuple(x) for x in engine.depth(s, 10).asks]
        assert tuple(book.bbo()) == tuple(engine.bbo(s))
        position = {}
        for o in engine.orders(s):
            position.setdefault(o.price, 0)
            q = book.queue_position(o.ref)
            assert q is not None and q.orders_ahead == position[o.price], (s, o)
            position[o.price] += 1


def feed(feed_handler, engine):
    buf = b"".join(frame(m) for m in engine.drain_itch())
    assert feed_handler.process(buf) == len(buf)


class Participant:
    """A random trader: passive and marketable orders, cancels, replaces and modifies of its own."""

    def __init__(self, engine, account, rng, symbols, mid):
        self.e, self.account, self.rng, self.symbols, self.mid = engine, account, rng, symbols, mid
        self.n = 0

    def token(self):
        self.n += 1
        return f"{self.account[:3]}{self.n}"

    def act(self):
        e, rng, acct = self.e, self.rng, self.account
        live = e.live_orders(acct)
        r = rng.random()
        if r < 0.45 or not live:
            s = rng.choice(self.symbols)
            side = rng.choice("BSTE" if r < 0.05 else "BS")
            price = self.mid(s) + rng.randint(-6, 6) * 100
            tif = IOC if rng.random() < 0.2 else DAY
            return e.enter(acct, enter(self.token(), side, rng.choice((1, 50, 100, 100, 200, 500, 1300)), price,
                                stock=s, tif=tif))  # fmt: skip
        elif r < 0.65:
            o = rng.choice(live)
            return e.cancel(acct, cancel(o.token, rng.choice((0, 0, o.shares // 2))))
        elif r < 0.9:
            o = rng.choice(live)
            shares = rng.choice((o.shares, max(1, o.shares // 2), o.shares + 100))
            price = rng.choice((o.price, o.price, o.price + rng.randint(-3, 3) * 100))
            return e.replace(acct, replace(o.token, self.token(), shares, max(100, price),
                                    tif=IOC if rng.random() < 0.05 else DAY))  # fmt: skip
        else:
            o = rng.choice(live)
            side = o.side if o.side == "B" else rng.choice("STE")
            return e.modify(acct, modify(o.token, side, rng.randint(0, o.shares)))


@pytest.mark.parametrize("self_trade", ["allow", "cancel_resting"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_feed_books_equal_engine_books_after_random_flow(seed, self_trade):
    rng = random.Random(seed)
    symbols = ["AAPL", "MSFT", "TQQQ"]
    e = MatchingEngine(symbols, first_locate=3, clock_ns=FakeClock(), self_trade=self_trade)
    e.open_session()
    flow = BackgroundFlow(e, seed=seed, start_prices={"AAPL": 190_0000, "MSFT": 410_0000, "TQQQ": 60_0000},
                          config=FlowConfig(orders_per_side=8))  # fmt: skip
    fh = FeedHandler()
    flow.prime()
    people = [Participant(e, f"P{i}", rng, symbols, flow.mid) for i in range(3)]
    for round_ in range(40):
        for _ in range(50):
            if rng.random() < 0.6:
                flow.step(1)
            else:
                rest = flow.deliver(rng.choice(people).act())
                assert all(acct != "BGND" for acct, _ in rest)
        feed(fh, e)
        e._check()
        assert_books_equal(e, fh)
    assert flow.stats.rejected == flow.stats.cancel_rejects == flow.stats.unexpected == 0
    stats = fh.refresh_stats()
    assert stats.anomalies == 0
    bs = fh.builder.stats
    assert (bs.unknown_ref, bs.duplicate_ref, bs.over_execution, bs.over_cancel, bs.crossed_books) == (0, 0, 0, 0, 0)
    assert e.stats.executions > 100 and e.stats.replaces > 50 and e.stats.modifies > 10
    assert fh.builder.stats.executions == e.stats.executions
    # The record balances: every share bought was sold, every dollar paid was received.
    accounts = {f.account for f in e.fills}
    for s in symbols:
        assert sum(e.position(a, s) for a in accounts) == 0
    assert sum(e.cash(a) for a in accounts) == 0
    # ...and equals a recomputation from the fills.
    for a in accounts:
        assert e.cash(a) == sum((f.price * f.shares) * (1 if f.side == "S" else -1) for f in e.fills if f.account == a)
        for s in symbols:
            assert e.position(a, s) == sum(
                f.shares * (1 if f.side == "B" else -1) for f in e.fills if f.account == a and f.symbol == s
            )
    # Closing the day empties the feed's books too.
    e.close_session()
    feed(fh, e)
    assert all(fh.builder.book(s).order_count() == 0 for s in symbols)
    assert [c for _, c in fh.stats.system_events][-3:] == ["M", "E", "C"]


def test_itch_counter_matches_what_was_drained(eng):
    flow = BackgroundFlow(eng, seed=5)
    flow.prime()
    flow.step(300)
    assert len(eng.drain_itch()) == eng.stats.itch_messages - 7  # the fixture drained the 7 of the open


def test_every_response_encodes_with_the_shared_ouch_codec():
    """What the gateway will send: each response survives encode -> decode_outbound unchanged."""
    rng = random.Random(9)
    e = MatchingEngine(["AAPL", "MSFT"], clock_ns=FakeClock(), self_trade="cancel_resting")
    e.open_session()
    flow = BackgroundFlow(e, seed=9)
    flow.prime()
    p = Participant(e, "P1", rng, ["AAPL", "MSFT"], flow.mid)
    seen = set()
    responses = []
    for _ in range(3000):
        out = flow.step(1) + flow.deliver(p.act() or [])
        responses += out
    responses += e.cancel("P1", cancel("never-sent"))
    responses += e.enter("P1", enter("bad", "B", 100, 100_0050))
    responses += e.close_session()
    for _, m in responses:
        assert ouch.decode_outbound(ouch.encode(m)) == m
        seen.add(m.type)
    assert seen == {"A", "U", "C", "E", "J", "M", "I"}


def test_handle_routes_every_inbound_type_and_refuses_outbound_ones():
    from efsdk.orders.ouch import codec as ouch
    from efsdk.sim.engine import MatchingEngine

    engine = MatchingEngine(["AAA"], clock_ns=lambda: 1)
    engine.open_session()
    [(_, accepted)] = engine.handle("X", ouch.enter_order("T1", "B", 300, "AAA", 10_0000))
    assert accepted.type == "A"
    assert engine.handle("X", ouch.modify_order("T1", "B", 200))[0][1].type == "M"
    assert engine.handle("X", ouch.replace_order("T1", "T2", 200, 9_9900))[0][1].type == "U"
    assert engine.handle("X", ouch.cancel_order("T2"))[0][1].type == "C"
    with pytest.raises(ValueError, match="not an inbound OUCH request"):
        engine.handle("X", ouch.Rejected("J", 1, "T3", "O"))
