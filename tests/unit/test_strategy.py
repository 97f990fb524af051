"""Strategy config, lifecycle and the replay driver, on real generated days."""

from __future__ import annotations

import io

import pydantic
import pytest

from book import BUY, SELL, OrderBook
from efsdk.itch.codec import frame
from efsdk.itch.generator import SessionGenerator
from efsdk.itch.reader import iter_messages
from efsdk.pipeline import FeedHandler
from efsdk.strategy import Strategy, StrategyConfig, run_replay
from strategies.imbalance_observer import ImbalanceConfig, ImbalanceObserver, imbalance


@pytest.fixture(scope="module")
def day():
    gen = SessionGenerator(10, 30_000, 3)
    data = b"".join(frame(m) for m in gen)
    return data, gen.summary


def test_config_rejects_unknown_keys_and_bad_symbols():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        ImbalanceConfig(symbols=("AAPL",), levelz=3)
    with pytest.raises(pydantic.ValidationError, match="at least one symbol"):
        StrategyConfig(symbols=())
    with pytest.raises(pydantic.ValidationError, match="not an ITCH symbol"):
        StrategyConfig(symbols=("TOOLONGSYM",))
    with pytest.raises(pydantic.ValidationError):
        ImbalanceConfig(symbols=("AAPL",), levels=0)
    with pytest.raises(TypeError, match="needs a ImbalanceConfig"):
        ImbalanceObserver(StrategyConfig(symbols=("AAPL",)))


def test_imbalance_of_a_hand_built_book():
    b = OrderBook(1, "X")
    assert imbalance(b, 5) == 0.0
    b.add(1, BUY, 100, 300)
    b.add(2, SELL, 101, 100)
    b.add(3, SELL, 150, 10_000)  # outside the top level
    assert imbalance(b, 1) == pytest.approx((300 - 100) / 400)
    assert imbalance(b, 2) == pytest.approx((300 - 10_100) / 10_400)


class Recorder(Strategy):
    def __init__(self, config):
        super().__init__(config)
        self.calls = []
        self.events = []
        self.clock = []

    def on_start(self, ctx):
        super().on_start(ctx)
        self.calls.append("start")

    def on_book(self, instrument, book, event):
        assert instrument == book.symbol
        self.events.append((book.symbol, event.op, event.ref))
        self.clock.append(self.ctx.now)

    def on_stop(self):
        self.calls.append("stop")


def test_replay_delivers_every_change_of_the_watched_books_only(day):
    data, summary = day
    deep, thin = summary.books[0][0], summary.books[-1][0]
    strategy = Recorder(StrategyConfig(symbols=(deep, thin)))
    result = run_replay(strategy, data)
    assert strategy.calls == ["start", "stop"]
    assert {e[0] for e in strategy.events} <= {deep, thin}
    assert result.book_events == len(strategy.events)
    # every book-changing message of the two symbols produced exactly one event
    # (a replace is two records: out of the old ref, into the new one)
    counts = {deep: 0, thin: 0}
    full = FeedHandler()
    full.process(data)
    locate = {full.builder.book(sym).locate: sym for sym in (deep, thin)}
    for m in iter_messages(io.BytesIO(data)):
        if m.stock_locate in locate and m.type in "AFEXDCU":
            counts[locate[m.stock_locate]] += 2 if m.type == "U" else 1
    assert sum(1 for e in strategy.events if e[0] == deep) == counts[deep]
    assert sum(1 for e in strategy.events if e[0] == thin) == counts[thin]
    # the books the strategy saw are the full-feed books
    for sym in (deep, thin):
        assert result.feed.builder.book(sym).snapshot() == full.builder.book(sym).snapshot()
    # the feed clock never runs backwards
    assert strategy.clock == sorted(strategy.clock) and strategy.clock[-1] > 0


def test_imbalance_observer_samples_on_feed_time(day):
    data, summary = day
    symbols = tuple(row[0] for row in summary.books[:2])
    strategy = ImbalanceObserver(ImbalanceConfig(symbols=symbols, sample_ns=600_000_000_000))
    run_replay(strategy, data)
    for sym in symbols:
        state = strategy.by_symbol[sym]
        assert state.updates > 0 and state.samples
        times = [s[0] for s in state.samples]
        assert all(b - a >= 600_000_000_000 for a, b in zip(times, times[1:], strict=False))
        assert all(-1.0 <= s[1] <= 1.0 for s in state.samples)
