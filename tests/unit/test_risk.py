"""Pre-trade risk: every limit blocks the violating order and passes the compliant one."""

from __future__ import annotations

import pydantic
import pytest

from efsdk.errors import OrderError, RiskRejected
from efsdk.orders.manager import OrderManager, OrderState
from efsdk.orders.risk import RiskConfig, RiskGate

BID, ASK = 100_0000, 100_0100  # $100.00 / $100.01


class Recorder:
    """A gateway that only records what would go on the wire."""

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)
        return 1


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def manager(clock=None, reference=(BID, ASK), **limits):
    config = RiskConfig(**limits)
    gateway = Recorder()
    mgr = OrderManager(gateway)
    mgr.risk = RiskGate(config, mgr.exposure, lambda symbol: reference, clock=clock or Clock())
    return mgr, gateway


def blocked(mgr, gateway, reason, *args):
    before = len(gateway.sent)
    with pytest.raises(RiskRejected) as info:
        mgr.submit(*args)
    assert info.value.reason == reason
    assert len(gateway.sent) == before  # nothing reached the wire
    assert mgr.risk.rejected[reason] >= 1
    return str(info.value)


def test_max_order_shares():
    mgr, gw = manager(max_order_shares=500)
    message = blocked(mgr, gw, "max_order_shares", "AAPL", "B", 501, BID)
    assert "501" in message and "500" in message
    mgr.submit("AAPL", "B", 500, BID)
    assert len(gw.sent) == 1


def test_max_notional():
    mgr, gw = manager(max_notional=10_000.0, max_order_shares=None)
    message = blocked(mgr, gw, "max_notional", "AAPL", "B", 101, BID)  # $10,100
    assert "$10,100.00" in message
    mgr.submit("AAPL", "B", 100, BID)  # exactly $10,000


def test_max_position_counts_open_orders_on_the_same_side():
    mgr, gw = manager(max_position=300)
    first = mgr.submit("AAPL", "B", 200, BID)
    blocked(mgr, gw, "max_position", "AAPL", "B", 101, BID)  # 200 open + 101 > 300
    mgr.submit("AAPL", "B", 100, BID)  # exactly 300
    mgr.submit("AAPL", "S", 300, ASK)  # the other side does not add to a long
    # A fill moves exposure from open orders to position: still 300 in total.
    from efsdk.orders.ouch import codec as ouch

    mgr.on_response(ouch.Executed("E", 1, first.token, 200, BID, "A", 7))
    assert mgr.position("AAPL").shares == 200
    blocked(mgr, gw, "max_position", "AAPL", "B", 1, BID)


def test_price_collar_against_the_far_side_and_missing_reference():
    mgr, gw = manager(price_collar=0.01)
    blocked(mgr, gw, "price_collar", "AAPL", "B", 10, ASK * 102 // 100)
    blocked(mgr, gw, "price_collar", "AAPL", "S", 10, BID * 98 // 100)
    mgr.submit("AAPL", "B", 10, ASK * 1005 // 1000)
    mgr.submit("AAPL", "S", 10, BID * 995 // 1000)
    empty, gw2 = manager(reference=(None, None))
    blocked(empty, gw2, "no_reference_price", "AAPL", "B", 10, BID)
    lax, _ = manager(reference=(None, None), require_reference_price=False)
    lax.submit("AAPL", "B", 10, BID)


def test_order_rate_per_second_on_the_given_clock():
    clock = Clock()
    mgr, gw = manager(clock, max_orders_per_second=3)
    for _ in range(3):
        mgr.submit("AAPL", "B", 1, BID)
    blocked(mgr, gw, "order_rate", "AAPL", "B", 1, BID)
    clock.t = 0.999
    blocked(mgr, gw, "order_rate", "AAPL", "B", 1, BID)
    clock.t = 1.0  # the first three leave the window
    mgr.submit("AAPL", "B", 1, BID)


def test_kill_switch_cancels_everything_and_blocks_new_orders():
    mgr, gw = manager()
    a = mgr.submit("AAPL", "B", 100, BID)
    b = mgr.submit("MSFT", "S", 100, ASK)
    assert mgr.kill("test") == 2
    cancels = [m for m in gw.sent if m.type == "X"]
    assert sorted(m.token for m in cancels) == sorted([a.token, b.token])
    assert all(m.shares == 0 for m in cancels)
    assert "kill switch engaged (test)" in blocked(mgr, gw, "kill_switch", "AAPL", "B", 1, BID)
    # cancels stay allowed; a cancel of an already canceling order is not sent twice
    assert mgr.cancel_all() == 0
    mgr.risk.reset_kill()
    mgr.submit("AAPL", "B", 1, BID)


def test_reducing_orders_pass_even_beyond_the_position_limit():
    mgr, gw = manager(max_position=100)
    from efsdk.orders.ouch import codec as ouch

    order = mgr.submit("AAPL", "B", 100, BID)
    mgr.on_response(ouch.Executed("E", 1, order.token, 100, BID, "A", 1))
    assert order.state is OrderState.FILLED
    mgr.submit("AAPL", "S", 100, ASK)  # reduces to 0


def test_config_validation_and_bad_requests():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        RiskConfig(max_shares=1)
    with pytest.raises(pydantic.ValidationError):
        RiskConfig(max_order_shares=0)
    mgr, _ = manager()
    with pytest.raises(OrderError, match="side"):
        mgr.submit("AAPL", "Q", 1, BID)
    with pytest.raises(OrderError, match="positive"):
        mgr.submit("AAPL", "B", 0, BID)


def test_replace_is_checked_at_its_worst_case():
    from efsdk.orders.ouch import codec as ouch

    mgr, gw = manager(max_position=500)
    order = mgr.submit("AAA", "B", 300, BID)
    mgr.on_response(ouch.Accepted("A", 1, order.token, "B", 300, "AAA", BID, 99999, "", "Y", 1, "A", "N", 0, "N", "L", " "))
    # the 300 open may fill while the replace is in flight, and the new 300 rest as well: 600 > 500
    with pytest.raises(RiskRejected) as info:
        mgr.replace(order, price=BID - 100)
    assert info.value.reason == "max_position"
    assert order.state is OrderState.LIVE
    mgr.replace(order, price=BID - 100, shares=200)  # 300 + 200 <= 500
