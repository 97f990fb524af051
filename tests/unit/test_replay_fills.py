"""The replay fill model, step by step on a hand-written feed."""

from __future__ import annotations

from efsdk.orders.manager import OrderState, UpdateKind
from efsdk.strategy import IOC, Strategy, StrategyConfig, run_replay
from efsdk.orders.risk import RiskConfig
from tests.unit.test_pipeline import _add, _dir, _f

D = 10_000  # one dollar in price units


class Script(Strategy):
    """Sends a marketable IOC buy and a resting buy once the book has both sides."""

    def __init__(self, config):
        super().__init__(config)
        self.sent = False
        self.updates = []
        self.trades = []

    def on_book(self, instrument, book, event):
        if not self.sent and book.best_ask() == 10 * D + 200 and book.asks.level_totals(10 * D + 300)[0]:
            self.sent = True
            self.taker = self.ctx.buy(instrument, 250, 10 * D + 200, IOC)
            self.maker = self.ctx.buy(instrument, 150, 10 * D)

    def on_trade(self, instrument, trade):
        self.trades.append(trade)

    def on_order(self, update):
        self.updates.append((update.kind, update.order.token, update.shares, update.price, update.reason))


def E(ref, shares, match):
    return _f("E", stock_locate=1, order_reference_number=ref, executed_shares=shares, match_number=match)


def test_take_queue_and_cross_fills():
    feed = (
        _dir(1, "TEST")
        + _add(1, 1, "B", 100, 10 * D, "TEST")
        + _add(2, 1, "S", 200, 10 * D + 200, "TEST")
        + _add(3, 1, "S", 300, 10 * D + 300, "TEST")  # -> taker takes 200 @ 10.02, 50 canceled; maker rests
        + E(1, 60, 1)  # 40 still ahead of the maker
        + E(1, 40, 2)  # queue ahead gone, nothing for us yet
        + _add(4, 1, "B", 100, 10 * D, "TEST")  # behind us in time
        + E(4, 100, 3)  # a seller hit 10.00: we are first in line -> 100 @ 10.00
        + _add(5, 1, "S", 500, 10 * D - 100, "TEST")  # a seller through our bid -> our last 50 @ 10.00
    )
    strategy = Script(StrategyConfig(symbols=("TEST",), risk=RiskConfig(price_collar=None)))
    result = run_replay(strategy, feed)
    taker, maker = strategy.taker, strategy.maker
    fills = [(u[1], u[2], u[3], u[4]) for u in strategy.updates if u[0] in (UpdateKind.FILLED, UpdateKind.PARTIALLY_FILLED)]
    assert fills == [
        (taker.token, 200, 10 * D + 200, "R"),
        (maker.token, 100, 10 * D, "A"),
        (maker.token, 50, 10 * D, "A"),
    ]
    assert taker.state is OrderState.CANCELED and taker.filled == 200
    assert (UpdateKind.CANCELED, taker.token, 50, 0, "I") in strategy.updates
    assert maker.state is OrderState.FILLED
    assert result.runtime.ctx.position("TEST") == 350
    assert [t.match_number for t in strategy.trades] == [1, 2, 3]
    assert [(t.price, t.resting_side, t.kind) for t in strategy.trades] == [(10 * D, "B", "E")] * 3


def test_displayed_liquidity_is_not_taken_twice():
    feed = (
        _dir(1, "TEST")
        + _add(2, 1, "S", 200, 10 * D + 200, "TEST")
        + _add(1, 1, "B", 100, 10 * D, "TEST")
        + _add(9, 1, "B", 100, 10 * D - 100, "TEST")
    )

    class Twice(Strategy):
        def on_book(self, instrument, book, event):
            if book.order_count() == 2 and event.ref == 1:
                self.a = self.ctx.buy(instrument, 150, 10 * D + 200, IOC)
            if event.ref == 9:
                self.b = self.ctx.buy(instrument, 150, 10 * D + 200, IOC)

    strategy = Twice(StrategyConfig(symbols=("TEST",), risk=RiskConfig(price_collar=None)))
    run_replay(strategy, feed)
    assert strategy.a.filled == 150
    assert strategy.b.filled == 50  # only what the first order left of the 200 shown


def test_a_reaction_to_a_print_cannot_take_the_shares_it_used():
    from book.ops import OP_EXECUTE

    class Chase(Strategy):
        def on_book(self, instrument, book, event):
            if event.op == OP_EXECUTE and not hasattr(self, "order"):
                assert book.best_ask() is None  # the feed book already shows the ask executed
                self.order = self.ctx.buy(instrument, 200, 10 * D + 200, IOC)

    feed = (
        _dir(1, "TEST")
        + _add(1, 1, "B", 100, 10 * D, "TEST")
        + _add(2, 1, "S", 200, 10 * D + 200, "TEST")
        + E(2, 200, 1)
    )
    strategy = Chase(StrategyConfig(symbols=("TEST",), risk=RiskConfig(price_collar=None, require_reference_price=False)))
    run_replay(strategy, feed)
    assert strategy.order.filled == 0 and strategy.order.state is OrderState.CANCELED


def test_a_replace_loses_queue_priority_even_when_it_only_shrinks():
    class SizeDown(Strategy):
        def on_book(self, instrument, book, event):
            if event.ref == 1 and not hasattr(self, "order"):
                self.order = self.ctx.buy(instrument, 100, 10 * D)  # first at 10.00
            if event.ref == 2 and not hasattr(self, "replaced"):
                self.replaced = self.ctx.replace(self.order, shares=50)  # must go behind order 2

    feed = (
        _dir(1, "TEST")
        + _add(1, 1, "S", 100, 10 * D + 100, "TEST")
        + _add(2, 1, "B", 100, 10 * D, "TEST")
        + _add(3, 1, "S", 100, 10 * D + 200, "TEST")
        + E(2, 50, 1)  # a seller hits 10.00 for 50: order 2 is ahead now
    )
    strategy = SizeDown(StrategyConfig(symbols=("TEST",), risk=RiskConfig(price_collar=None)))
    result = run_replay(strategy, feed)
    assert result.runtime.orders.stats.filled_shares == 0


def test_no_fills_while_halted_and_crossed_halt_books_do_not_trade():
    from tests.unit.test_pipeline import _halt

    class DuringHalt(Strategy):
        def on_book(self, instrument, book, event):
            if event.ref == 1 and not hasattr(self, "ioc"):
                self.ioc = self.ctx.buy(instrument, 50, 10 * D, IOC)
            if event.ref == 3 and not hasattr(self, "rest"):
                self.rest = self.ctx.buy(instrument, 100, 10 * D + 300)

    feed = (
        _dir(1, "TEST") + _halt(1, "TEST", "H")
        + _add(1, 1, "S", 100, 10 * D, "TEST")
        + _add(2, 1, "B", 100, 10 * D + 500, "TEST")  # the halted book crosses (quotation period)
        + _add(3, 1, "B", 10, 9 * D, "TEST")
        + _halt(1, "TEST", "T")
        + _f("C", stock_locate=1, order_reference_number=2, executed_shares=100, match_number=7, printable="N",
             execution_price=10 * D + 200)
        + _f("C", stock_locate=1, order_reference_number=1, executed_shares=100, match_number=7, printable="N",
             execution_price=10 * D + 200)
    )  # fmt: skip
    strategy = DuringHalt(StrategyConfig(symbols=("TEST",), risk=RiskConfig(price_collar=None)))
    result = run_replay(strategy, feed)
    assert strategy.ioc.state is OrderState.REJECTED and strategy.ioc.reject_reason == "H"
    assert strategy.rest.state is OrderState.REJECTED
    gateway = result.runtime.gateway
    assert gateway.halted_rejects == 2 and gateway.engine.fills == []
