"""The example strategies trade on a replay, and their P&L is accounted exactly."""

from __future__ import annotations

import pytest

from efsdk.errors import ConfigError
from efsdk.itch.codec import frame
from efsdk.itch.generator import SessionGenerator
from efsdk.orders.manager import UpdateKind
from efsdk.strategy import run_replay
from strategies.imbalance_taker import ImbalanceTaker, ImbalanceTakerConfig
from strategies.market_maker import MarketMaker, MarketMakerConfig


@pytest.fixture(scope="module")
def day():
    gen = SessionGenerator(8, 60_000, 11)
    return b"".join(frame(m) for m in gen), [row[0] for row in gen.summary.books[:3]]


def check_accounting(result, fills):
    """The manager's positions and cash equal the fill model's own record (the replay's "exchange"),
    and the strategy heard of every fill."""
    orders = result.runtime.orders
    shares, cash = {}, {}
    for symbol, is_buy, n, price in result.runtime.gateway.fills:
        sign = 1 if is_buy else -1
        shares[symbol] = shares.get(symbol, 0) + sign * n
        cash[symbol] = cash.get(symbol, 0) - sign * n * price
    assert len(fills) == len(result.runtime.gateway.fills)
    engine = result.runtime.gateway.engine  # the replay's exchange: its record must equal the strategy's
    assert sum(p.cash for p in orders.positions.values()) == engine.cash("ME")
    for symbol, pos in orders.positions.items():
        assert pos.shares == engine.position("ME", symbol)
    for symbol, pos in orders.positions.items():
        assert pos.shares == shares.get(symbol, 0)
        assert pos.cash == cash.get(symbol, 0)
        mark = result.runtime.ctx.mark(symbol) or 0
        assert pos.realized + pos.unrealized(mark) == pytest.approx(pos.cash + pos.shares * mark, abs=1e-3)
    realized, unrealized = result.runtime.ctx.pnl()
    assert realized * 10_000 == pytest.approx(sum(p.realized for p in orders.positions.values()))
    assert orders.stats.fills == len(fills)
    assert orders.stats.unmatched_responses == 0
    assert not orders.open_orders(), "the driver cancels what is open at the end"


def test_imbalance_taker_trades_within_its_limits(day):
    data, symbols = day
    strategy = ImbalanceTaker(ImbalanceTakerConfig(symbols=tuple(symbols), max_position=300))
    result = run_replay(strategy, data)
    assert strategy.signals > 10 and len(strategy.fills) > 10
    assert all(u.reason == "R" for u in strategy.fills), "IOC takers only remove liquidity"
    for pos in result.runtime.orders.positions.values():
        assert abs(pos.shares) <= 300
    check_accounting(result, strategy.fills)


def test_market_maker_quotes_both_sides_and_respects_inventory(day):
    data, symbols = day
    strategy = MarketMaker(MarketMakerConfig(symbols=tuple(symbols), max_inventory=300, quote_shares=100))
    result = run_replay(strategy, data)
    fills = strategy.fills
    assert len(fills) > 10 and strategy.requotes > 10
    assert {u.order.side for u in fills} == {"B", "S"}
    assert all(u.reason == "A" for u in fills), "quotes join the touch: they only ever add liquidity"
    assert result.runtime.gateway.mirror_refused == 0
    # a quote adds at most quote_shares beyond the inventory limit before the side is pulled
    for pos in result.runtime.orders.positions.values():
        assert abs(pos.shares) <= 300 + 100
    kinds = {u.kind for u in fills}
    assert UpdateKind.FILLED in kinds
    check_accounting(result, fills)


def test_a_trading_strategy_on_a_driver_without_order_entry_fails_clearly(day):
    data, symbols = day
    strategy = MarketMaker(MarketMakerConfig(symbols=tuple(symbols[:1])))
    with pytest.raises(ConfigError, match="no order entry"):
        run_replay(strategy, data, fills=False)


def test_refused_orders_inside_hooks_are_counted_and_the_feed_goes_on(day):
    from efsdk.strategy import Strategy, StrategyConfig

    data, symbols = day

    class Sloppy(Strategy):
        """Cancels its IOC orders after they are already done: a misuse the runtime must survive."""

        def __init__(self, config):
            super().__init__(config)
            self.done = []

        def on_book(self, instrument, book, event):
            if self.done:
                self.ctx.cancel(self.done.pop())  # already filled or canceled: OrderError
            ask = book.best_ask()
            if ask is not None and len(self.ctx.orders.orders) < 20:
                self.ctx.buy(instrument, 1, ask, 0)

        def on_order(self, update):
            if not update.order.open:
                self.done.append(update.order)

    strategy = Sloppy(StrategyConfig(symbols=tuple(symbols[:1])))
    result = run_replay(strategy, data)
    assert result.runtime.refused.get("OrderError", 0) >= 10
    assert result.book_events > 1000  # the whole day went through
