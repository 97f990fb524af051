"""Background order flow: deterministic per seed, a realistic two-sided book, trades, and its own bookkeeping."""

from __future__ import annotations

import statistics

import pydantic
import pytest

from efsdk.errors import ConfigError
from efsdk.orders.ouch import codec as ouch
from efsdk.sim import DAY, BackgroundFlow, FlowConfig, MatchingEngine

T0 = 34_200_000_000_000
SYMBOLS = ["AAPL", "MSFT", "ZION"]


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def make(seed: int, **kwargs) -> tuple[MatchingEngine, BackgroundFlow]:
    e = MatchingEngine(SYMBOLS, clock_ns=FakeClock())
    e.open_session()
    return e, BackgroundFlow(e, seed=seed, **kwargs)


def run(seed: int, steps: int = 3000) -> tuple[MatchingEngine, list[bytes]]:
    e, flow = make(seed)
    flow.prime()
    flow.step(steps)
    return e, e.drain_itch()


def test_same_seed_same_orders_and_itch():
    e1, itch1 = run(11)
    e2, itch2 = run(11)
    assert itch1 == itch2
    assert e1.fills == e2.fills and e1.stats == e2.stats
    _, itch3 = run(12)
    assert itch3 != itch1


def test_book_stays_two_sided_uncrossed_with_a_spread_of_a_few_ticks():
    e, flow = make(3)
    flow.prime()
    spreads = []
    levels = []
    for _ in range(4000):
        flow.step(1)
        for s in SYMBOLS:
            bid, ask = e.best(s)
            assert bid is not None and ask is not None, s
            assert bid < ask, (s, bid, ask)
            spreads.append((ask - bid) // 100)
            d = e.depth(s, 10)
            levels.append(min(len(d.bids), len(d.asks)))
    e._check()
    assert 1 <= statistics.median(spreads) <= 4
    assert max(spreads) <= 12
    assert statistics.median(levels) >= 4  # depth on each side, not just a touch


def test_trades_happen_and_some_sweep_through_the_touch():
    e, flow = make(4)
    flow.prime()
    flow.step(5000)
    assert e.stats.executions > 200
    assert flow.stats.executions > 0 and flow.stats.actions["marketable"] > 100
    # A marketable order that fills at more than one price swept a level.
    prices_by_token: dict[str, set[int]] = {}
    for f in e.fills:
        if f.liquidity == "R":
            prices_by_token.setdefault(f.token, set()).add(f.price)
    assert any(len(p) > 1 for p in prices_by_token.values())
    assert flow.stats.rejected == 0 and flow.stats.cancel_rejects == 0


def test_flow_view_of_its_orders_matches_the_engine():
    e, flow = make(5)
    flow.prime()
    for _ in range(20):
        flow.step(250)
        live = e.live_orders("BGND")
        assert flow.open_orders() == len(live)
        for s in SYMBOLS:
            assert flow.open_orders(s) == sum(1 for o in e.orders(s) if o.account == "BGND")
            assert flow.open_orders(s) <= 2 * flow.config.orders_per_side


def test_mid_walks_and_the_book_follows():
    e, flow = make(6, config=FlowConfig(p_move=0.3))
    flow.prime()
    start = {s: flow.mid(s) for s in SYMBOLS}
    for _ in range(10):
        flow.step(1000)
        for s in SYMBOLS:
            bid, ask = e.best(s)
            band = (flow.config.half_spread_ticks + flow.config.levels + 3) * flow.config.tick
            assert flow.mid(s) - band <= bid < ask <= flow.mid(s) + band
    assert any(flow.mid(s) != start[s] for s in SYMBOLS)


def test_other_accounts_get_their_responses_back():
    e, flow = make(7)
    flow.prime()
    bid, ask = e.best("AAPL")
    # A strategy joins the best bid with a large order: background sells hit it sooner or later.
    e.enter("STRAT", ouch.EnterOrder(
        type="O", token="S1", side="B", shares=5000, stock="AAPL", price=bid, time_in_force=DAY, firm="STRT",
        display="Y", capacity="P", intermarket_sweep="N", minimum_quantity=0, cross_type="N", customer_type="N",
    ))  # fmt: skip
    got = []
    for _ in range(200):
        got += flow.step(50)
        if got:
            break
    assert got and all(acct == "STRAT" for acct, _ in got)
    assert got[0][1].type == "E" and got[0][1].liquidity_flag == "A" and got[0][1].token == "S1"
    assert flow.stats.responses_out == len(got)
    assert e.position("STRAT", "AAPL") == sum(m.executed_shares for _, m in got if m.type == "E")


def test_start_prices_and_symbols_subset():
    e = MatchingEngine(SYMBOLS, clock_ns=FakeClock())
    e.open_session()
    flow = BackgroundFlow(e, seed=1, symbols=["MSFT"], start_prices={"MSFT": 410_0000})
    flow.prime()
    assert flow.mid("MSFT") == 410_0000
    bid, ask = e.best("MSFT")
    assert bid < 410_0000 < ask
    assert e.best("AAPL") == (None, None)
    assert "symbols=1" in repr(flow)


def test_bad_configuration_is_refused():
    e = MatchingEngine(SYMBOLS, clock_ns=FakeClock())
    with pytest.raises(ConfigError):
        BackgroundFlow(e, seed=1, symbols=["NOPE"])
    with pytest.raises(ConfigError):
        BackgroundFlow(e, seed=1, token_prefix="")
    with pytest.raises(pydantic.ValidationError):
        FlowConfig(levels=0)
    with pytest.raises(pydantic.ValidationError):
        FlowConfig(spread=3)  # extra="forbid"
    cfg = FlowConfig()
    with pytest.raises(pydantic.ValidationError):
        cfg.levels = 3  # frozen


def test_deliver_keeps_the_flow_view_exact_when_others_take_its_orders():
    e, flow = make(8)
    flow.prime()
    k = 0
    for _ in range(300):
        flow.step(5)
        bid, ask = e.best("ZION")
        k += 1
        out = e.enter("TAKER", ouch.EnterOrder(
            type="O", token=f"T{k}", side="B" if k % 2 else "S", shares=700, stock="ZION",
            price=ask + 200 if k % 2 else bid - 200, time_in_force=0, firm="TAKR", display="Y", capacity="P",
            intermarket_sweep="N", minimum_quantity=0, cross_type="N", customer_type="N",
        ))  # fmt: skip
        rest = flow.deliver(out)
        assert rest and all(acct == "TAKER" for acct, _ in rest)
    assert flow.open_orders() == len(e.live_orders("BGND"))
    assert flow.stats.rejected == flow.stats.cancel_rejects == flow.stats.unexpected == 0
    assert not e.stats.ignored and e.stats.cancel_rejects == 0
    assert e.position("TAKER", "ZION") == -sum(e.position("BGND", s) for s in ["ZION"])
