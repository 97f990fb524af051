"""The order manager against the real matching engine: its record must equal the exchange's exactly."""

from __future__ import annotations

import random

import pytest

from efsdk.errors import OrderError, RiskRejected, SessionError
from efsdk.orders.manager import OrderManager, OrderState, Position, UpdateKind
from efsdk.orders.ouch import codec as ouch
from efsdk.orders.risk import RiskConfig, RiskGate
from efsdk.sim import BackgroundFlow, MatchingEngine

ME = "ME"


class EngineGateway:
    """In-process OUCH session to a MatchingEngine: requests in, our responses queued for poll().

    Faults for tests: ``lose`` requests whose bytes die with the connection,
    ``down`` refuses to send, ``reconnect()`` starts a new connection.
    """

    def __init__(self, engine: MatchingEngine, account: str = ME):
        self.engine = engine
        self.account = account
        self.pending = []
        self.lose = 0
        self.down = False
        self.reconnects = 0

    def deliver(self, responses):
        self.pending.extend(m for acct, m in responses if acct == self.account)

    def send(self, message):
        if self.down:
            raise SessionError("order session is down; request not sent")
        if self.lose:
            self.lose -= 1  # written to the socket, never reached the exchange
            return 1
        self.deliver(self.engine.handle(self.account, message))
        return 1

    def reconnect(self):
        self.reconnects += 1

    def poll(self):
        out, self.pending = self.pending, []
        return out


def setup(seed=1, symbols=("AAA", "BBB"), risk=None):
    clock = iter(range(10**9, 10**15, 1000))
    engine = MatchingEngine(symbols, clock_ns=lambda: next(clock))
    engine.open_session()
    flow = BackgroundFlow(engine, seed=seed)
    flow.prime()
    gateway = EngineGateway(engine)
    updates = []
    mgr = OrderManager(gateway, on_update=updates.append)
    if risk is not None:
        mgr.risk = RiskGate(risk, mgr.exposure, engine.best)
    return engine, flow, gateway, mgr, updates


def pump(gateway, mgr):
    mgr.on_responses(gateway.poll())


def test_lifecycle_accept_partial_fill_replace_cancel():
    engine, flow, gw, mgr, updates = setup()
    bid, ask = engine.best("AAA")
    resting = mgr.submit("AAA", "B", 300, bid - 500)
    pump(gw, mgr)
    assert resting.state is OrderState.LIVE and resting.order_reference > 0
    assert updates[-1].kind is UpdateKind.ACCEPTED
    # take part of the ask level: a marketable IOC
    shown = engine.bbo("AAA").ask_shares
    taker = mgr.submit("AAA", "B", shown + 50, ask, time_in_force=ouch.TIF.IOC)
    pump(gw, mgr)
    assert taker.filled == shown and taker.state is OrderState.CANCELED  # IOC remainder canceled
    kinds = [u.kind for u in updates if u.order is taker]
    assert kinds[0] is UpdateKind.ACCEPTED and UpdateKind.CANCELED in kinds
    assert mgr.position("AAA").shares == shown
    new = mgr.replace(resting, price=bid - 600, shares=200)
    assert resting.state is OrderState.PENDING_REPLACE
    pump(gw, mgr)
    assert resting.state is OrderState.REPLACED and new.state is OrderState.LIVE and new.leaves == 200
    mgr.cancel(new, shares=50)
    pump(gw, mgr)
    assert new.leaves == 50 and new.state is OrderState.LIVE
    mgr.cancel(new)
    pump(gw, mgr)
    assert new.state is OrderState.CANCELED and not mgr.open_orders()
    with pytest.raises(OrderError, match="canceled"):
        mgr.cancel(new)


def test_random_session_matches_the_exchange_record_exactly():
    engine, flow, gw, mgr, updates = setup(seed=7)
    rng = random.Random(7)
    for _ in range(3000):
        gw.deliver(flow.step(rng.randint(1, 4)))  # background may hit our resting orders
        pump(gw, mgr)
        symbol = rng.choice(("AAA", "BBB"))
        bid, ask = engine.best(symbol)
        if bid is None or ask is None:
            continue
        action = rng.random()
        live = [o for o in mgr.open_orders(symbol) if o.state is OrderState.LIVE]
        if action < 0.35 or not live:
            side = rng.choice("BS")
            through = rng.randint(-3, 1) * 100
            price = (ask + through) if side == "B" else (bid - through)
            tif = ouch.TIF.IOC if rng.random() < 0.3 else ouch.TIF.SYSTEM_HOURS
            mgr.submit(symbol, side, rng.randint(1, 4) * 100, max(100, price), time_in_force=tif)
        elif action < 0.6:
            order = rng.choice(live)
            mgr.replace(order, price=max(100, order.price + rng.randint(-2, 2) * 100), shares=rng.randint(1, 4) * 100)
        elif action < 0.85:
            mgr.cancel(rng.choice(live), shares=rng.choice((0, 0, 100)))
        else:
            order = rng.choice(live)
            if order.leaves > 100:
                # modify (reduce size, keep side): sent by hand, the manager applies OrderModified
                gw.deliver(engine.modify(ME, ouch.modify_order(order.token, order.side, order.leaves - 100)))
        pump(gw, mgr)
    engine._check()
    assert mgr.stats.fills > 100, "the session should trade"
    assert mgr.stats.unmatched_responses == 0 and mgr.stats.duplicate_executions == 0
    mine = [f for f in engine.fills if f.account == ME]
    assert mgr.stats.fills == len(mine)
    for symbol in ("AAA", "BBB"):
        assert mgr.position(symbol).shares == engine.position(ME, symbol)
    assert sum(p.cash for p in mgr.positions.values()) == engine.cash(ME)
    live = {o.token: o.shares for o in engine.live_orders(ME)}
    assert {o.token: o.leaves for o in mgr.open_orders()} == live
    # P&L identity: realized + unrealized == cash + position x mark, for any mark
    for symbol, pos in mgr.positions.items():
        mark = 50_0000
        assert pos.realized + pos.unrealized(mark) == pytest.approx(pos.cash + pos.shares * mark, abs=1e-3)


def test_duplicate_and_unknown_responses_are_counted_not_applied():
    engine, flow, gw, mgr, updates = setup()
    bid, ask = engine.best("AAA")
    order = mgr.submit("AAA", "B", 100, ask, time_in_force=ouch.TIF.IOC)
    responses = gw.poll()
    mgr.on_responses(responses)
    execution = next(m for m in responses if m.type == "E")
    mgr.on_response(execution)  # replayed twice (e.g. a careless resend)
    assert mgr.stats.duplicate_executions == 1
    assert mgr.position("AAA").shares == order.filled == 100
    mgr.on_response(ouch.Executed("E", 1, "NOSUCHTOKEN", 100, ask, "R", 999))
    assert mgr.stats.unmatched_responses == 1 and mgr.position("AAA").shares == 100


def test_rejects_and_risk_through_the_engine():
    engine, flow, gw, mgr, updates = setup(risk=RiskConfig(max_order_shares=1000, price_collar=0.5))
    with pytest.raises(RiskRejected):
        mgr.submit("AAA", "B", 1001, engine.best("AAA")[0])
    bad = mgr.submit("AAA", "B", 100, engine.best("AAA")[0] + 1)  # off the one-cent grid
    pump(gw, mgr)
    assert bad.state is OrderState.REJECTED and bad.reject_reason
    assert updates[-1].kind is UpdateKind.REJECTED


def test_position_average_cost_and_flip():
    pos = Position("X")
    pos.apply_fill(True, 100, 10_0000)
    pos.apply_fill(True, 100, 12_0000)
    assert pos.average_price == 11_0000
    pos.apply_fill(False, 150, 13_0000)  # close 150 at +2 each
    assert pos.realized == 150 * 2_0000 and pos.shares == 50
    pos.apply_fill(False, 100, 9_0000)  # close 50 at -2, open short 50 at 9
    assert pos.realized == 150 * 2_0000 - 50 * 2_0000
    assert pos.shares == -50 and pos.average_price == 9_0000
    assert pos.cash == -100 * 10_0000 - 100 * 12_0000 + 150 * 13_0000 + 100 * 9_0000
    assert pos.realized + pos.unrealized(8_0000) == pos.cash + pos.shares * 8_0000


def test_kill_switch_leaves_nothing_resting_at_the_exchange():
    engine, flow, gw, mgr, updates = setup(risk=RiskConfig(price_collar=None))
    bid, ask = engine.best("AAA")
    for i in range(5):
        mgr.submit("AAA", "B", 100, bid - 100 * (i + 1))
        mgr.submit("BBB", "S", 100, engine.best("BBB")[1] + 100 * (i + 1))
    pump(gw, mgr)
    assert len(engine.live_orders(ME)) == 10
    assert mgr.kill("test") == 10
    pump(gw, mgr)
    assert engine.live_orders(ME) == [] and mgr.open_orders() == []
    with pytest.raises(RiskRejected, match="kill switch"):
        mgr.submit("AAA", "B", 100, bid)
    assert sum(1 for u in updates if u.kind is UpdateKind.CANCELED) == 10


def live_at_exchange(engine):
    return {o.token: o.shares for o in engine.live_orders(ME)}


def test_a_cancel_lost_with_the_connection_is_sent_again_after_reconnect():
    engine, flow, gw, mgr, updates = setup()
    bid = engine.best("AAA")[0]
    order = mgr.submit("AAA", "B", 100, bid - 300)
    pump(gw, mgr)
    gw.lose = 1
    mgr.cancel(order)
    assert order.token in live_at_exchange(engine)
    gw.reconnect()
    assert mgr.settle_in_doubt() == 1
    pump(gw, mgr)
    assert order.state is OrderState.CANCELED and live_at_exchange(engine) == {}


def test_kill_cancels_again_what_a_lost_cancel_left_behind():
    engine, flow, gw, mgr, updates = setup(risk=RiskConfig(price_collar=None))
    order = mgr.submit("AAA", "B", 100, engine.best("AAA")[0] - 300)
    pump(gw, mgr)
    gw.lose = 1
    mgr.cancel(order)
    assert mgr.kill("test") == 1
    pump(gw, mgr)
    assert live_at_exchange(engine) == {} and not mgr.open_orders()


def test_requests_the_gateway_refuses_leave_no_phantom_state():
    engine, flow, gw, mgr, updates = setup(risk=RiskConfig(max_position=300, price_collar=None))
    bid = engine.best("AAA")[0]
    live = mgr.submit("AAA", "B", 100, bid - 300)
    pump(gw, mgr)
    gw.down = True
    with pytest.raises(SessionError):
        mgr.submit("AAA", "B", 200, bid - 300)
    refused = [o for o in mgr.orders.values() if o.reject_reason == "not_sent"]
    assert len(refused) == 1 and not refused[0].open and mgr.stats.not_sent == 1
    with pytest.raises(SessionError):
        mgr.replace(live, price=bid - 400)
    assert live.state is OrderState.LIVE  # the refused replace left it as it was
    with pytest.raises(SessionError):
        mgr.cancel(live)
    assert live.state is OrderState.LIVE and not live.cancel_sent
    gw.down = False
    mgr.submit("AAA", "B", 200, bid - 300)  # 100 + 200 <= 300: the refused ones hold no exposure
    pump(gw, mgr)
    assert sum(live_at_exchange(engine).values()) == 300


def test_a_new_order_lost_with_the_connection_is_settled_not_resent():
    engine, flow, gw, mgr, updates = setup()
    gw.lose = 1
    lost = mgr.submit("AAA", "B", 100, engine.best("AAA")[0] - 300)
    gw.reconnect()
    fresh = mgr.submit("AAA", "B", 100, engine.best("AAA")[0] - 400)  # sent on the new connection
    assert mgr.settle_in_doubt() == 1  # only the order from before the reconnect
    pump(gw, mgr)
    assert lost.state is OrderState.REJECTED and lost.reject_reason == "lost_in_reconnect"
    assert fresh.state is OrderState.LIVE and live_at_exchange(engine) == {fresh.token: 100}
    assert mgr.stats.lost_in_reconnect == 1 and mgr.stats.sent["O"] == 2  # never re-sent


def test_a_replace_lost_with_the_connection_restores_the_original():
    # 600: risk sees a replace's worst case (the original fills in flight and the new size rests too)
    engine, flow, gw, mgr, updates = setup(risk=RiskConfig(max_position=600, price_collar=None))
    bid = engine.best("AAA")[0]
    original = mgr.submit("AAA", "B", 300, bid - 300)
    pump(gw, mgr)
    gw.lose = 1
    replacement = mgr.replace(original, price=bid - 400)
    gw.reconnect()
    mgr.settle_in_doubt()
    pump(gw, mgr)
    assert replacement.state is OrderState.REJECTED and original.state is OrderState.LIVE
    assert mgr.exposure("AAA", "B") == (0, 300)
    with pytest.raises(RiskRejected):
        mgr.submit("AAA", "B", 301, bid - 300)


def test_cancel_while_a_replace_is_in_flight_cancels_the_replacement_too():
    engine, flow, gw, mgr, updates = setup()
    bid = engine.best("AAA")[0]
    original = mgr.submit("AAA", "B", 100, bid - 300)
    pump(gw, mgr)
    replacement = mgr.replace(original, price=bid - 400)  # applied at the exchange, answer not read yet
    mgr.cancel(original)
    pump(gw, mgr)
    assert original.state is OrderState.REPLACED and replacement.state is OrderState.CANCELED
    assert live_at_exchange(engine) == {} and not mgr.open_orders()


def test_cancel_down_with_nothing_to_cut_and_modify_to_zero_settle():
    engine, flow, gw, mgr, updates = setup()
    order = mgr.submit("AAA", "B", 100, engine.best("AAA")[0] - 300)
    pump(gw, mgr)
    sent = dict(mgr.stats.sent)
    mgr.cancel(order, shares=100)  # already 100: nothing to do, nothing sent
    assert mgr.stats.sent == sent and order.state is OrderState.LIVE
    gw.deliver(engine.modify(ME, ouch.modify_order(order.token, "B", 0)))
    pump(gw, mgr)
    assert order.state is OrderState.CANCELED and not mgr.open_orders()


def test_self_match_and_broken_trades_keep_the_books_exact():
    engine, flow, gw, mgr, updates = setup(risk=RiskConfig(price_collar=None))
    bid, ask = engine.best("AAA")
    sell = mgr.submit("AAA", "S", 100, bid + 100)  # inside the spread: rests
    pump(gw, mgr)
    buy = mgr.submit("AAA", "B", 100, bid + 100)  # crosses our own sell: both legs, one match number
    pump(gw, mgr)
    assert sell.filled == buy.filled == 100 and mgr.stats.fills == 2
    pos = mgr.position("AAA")
    assert pos.shares == 0 and pos.cash == 0 and mgr.stats.duplicate_executions == 0
    match = next(u.match_number for u in updates if u.order is buy and u.kind is UpdateKind.FILLED)
    mgr.on_response(ouch.BrokenTrade("B", 1, sell.token, match, "E"))
    assert mgr.position("AAA").shares == 100 and mgr.position("AAA").cash == -100 * (bid + 100)
    mgr.on_response(ouch.BrokenTrade("B", 2, buy.token, match, "E"))
    pos = mgr.position("AAA")
    assert (pos.shares, pos.cash, pos.realized, pos.bought, pos.sold) == (0, 0, 0, 0, 0)
    assert mgr.stats.fills == 0 and mgr.stats.unmatched_responses == 0


def test_a_broken_trade_leaves_pnl_as_if_the_fill_never_happened():
    engine, flow, gw, mgr, updates = setup()
    pos = mgr.position("AAA")
    fills = [("B", 100, 10_0000, 1), ("B", 100, 12_0000, 2), ("S", 100, 13_0000, 3)]
    for side, shares, price, match in fills:
        order = mgr.submit("AAA", side, shares, engine.best("AAA")[0] - 5000)
        mgr.on_response(ouch.Executed("E", match, order.token, shares, price, "A", 10_000 + match))
    second = [o for o in mgr.orders.values()][1]
    mgr.on_response(ouch.BrokenTrade("B", 9, second.token, 10_002, "E"))
    pos = mgr.position("AAA")
    assert pos.shares == 0 and pos.realized == 100 * 3_0000 and pos.cash == 100 * 3_0000
    mgr.on_response(ouch.PriceCorrection("K", 10, [o for o in mgr.orders.values()][2].token, 10_003, 14_0000, "E"))
    assert mgr.position("AAA").realized == 100 * 4_0000
