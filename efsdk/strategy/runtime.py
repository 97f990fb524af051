"""One kernel for every mode: feed events -> strategy hooks -> order manager -> gateway.

:class:`StrategyRuntime` owns the :class:`~efsdk.pipeline.FeedHandler` that
builds the strategy's books, the :class:`~efsdk.orders.manager.OrderManager`
with its risk gate, the timer and the tick-to-trade histogram.  A driver
(:mod:`efsdk.strategy.drivers`) feeds it bytes and pumps its gateway; the
strategy cannot tell which driver it runs on.

Order responses are delivered between events, never inside a hook: after
each hook returns the runtime drains the gateway, so ``on_order`` never
re-enters ``on_book``.  An order request refused inside a hook (pre-trade risk, a
misuse such as canceling a filled order, the order session being down)
that the hook did not catch is counted and logged once per kind; the feed
goes on.  Any
other exception from a hook ends the run (open orders are still canceled).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from book import OrderBook
from book.ops import OP_EXECUTE, OP_EXECUTE_PRICE
from efsdk.errors import OrderError, SessionError
from efsdk.orders.manager import OrderManager, OrderUpdate
from efsdk.orders.risk import RiskGate
from efsdk.pipeline import BookEvent, FeedHandler, Trade
from efsdk.strategy.base import Strategy
from efsdk.strategy.context import StrategyContext

__all__ = ["PollingGateway", "StrategyRuntime", "wall_ns_since_midnight"]

log = logging.getLogger(__name__)

#: Tick-to-trade histogram range: 1 ns .. 10 s at 3 significant digits.
LATENCY_MAX_NS = 10_000_000_000


_midnight = [0, 0]  # [local midnight as epoch ns, the next one]: recomputed once a day


def wall_ns_since_midnight() -> int:
    """Local wall-clock ns since midnight: the live clock (ITCH/OUCH timestamps use the same unit).

    The local midnight is computed once a day (a datetime per call would
    cost microseconds on the order path).
    """
    now = time.time_ns()
    if not _midnight[0] <= now < _midnight[1]:
        local = _dt.datetime.fromtimestamp(now / 1e9).astimezone()
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        _midnight[0] = int(start.timestamp()) * 1_000_000_000
        _midnight[1] = int((start + _dt.timedelta(days=1)).timestamp()) * 1_000_000_000
    return now - _midnight[0]


class PollingGateway(Protocol):
    """An order gateway the runtime pumps: ``send`` requests, ``poll`` responses (non-blocking)."""

    def send(self, message: tuple) -> int: ...

    def poll(self) -> list[tuple]: ...


class _TimedGateway:
    """Stamps tick-to-trade for requests sent while a market-data hook runs."""

    __slots__ = ("inner", "runtime")

    def __init__(self, inner: PollingGateway, runtime: StrategyRuntime) -> None:
        self.inner = inner
        self.runtime = runtime

    @property
    def reconnects(self) -> int:
        """The wrapped gateway's connection number (orders are tagged with it)."""
        return getattr(self.inner, "reconnects", 0)

    def send(self, message: tuple) -> int:
        sent = self.inner.send(message)
        rt = self.runtime
        if rt._in_market_hook and rt.feed.frame_ts:
            rt.tick_to_trade.record_value(min(max(1, sent - rt.feed.frame_ts), LATENCY_MAX_NS))
        return sent


class StrategyRuntime:
    """Runs one strategy: its books, its hooks, its orders.

    ``gateway`` is ``None`` for a watch-only run (no order entry).  ``clock``
    returns ns since midnight; ``None`` means feed time (replay).
    ``schedule_clock`` (ns, never going back) drives the order-rate window
    and the timer; ``None`` means the same as ``clock``.  Live it is
    ``time.monotonic_ns``: wall time steps back at midnight and under NTP.
    """

    def __init__(
        self,
        strategy: Strategy,
        gateway: PollingGateway | None = None,
        *,
        clock: Callable[[], int] | None = None,
        schedule_clock: Callable[[], int] | None = None,
        token_prefix: str = "EF",
        first_token: int = 1,
    ) -> None:
        self.strategy = strategy
        config = strategy.config
        self.symbols = config.symbols
        self.feed = FeedHandler(symbols=config.symbols, on_book=self._on_book, on_trade=self._on_trade)
        self._clock = clock if clock is not None else (lambda: self.feed.clock)
        self._schedule = schedule_clock if schedule_clock is not None else self._clock
        self.gateway = gateway
        # A local fill model answers at once: deliver after every event.  A
        # network session is pumped once per loop turn by its driver (a
        # syscall per book event would cost more than the event).
        self._pump_per_event = bool(getattr(gateway, "answers_immediately", False))
        self._reconnects_seen = 0
        # A fill model watches the market before the strategy does (network gateways don't).
        self._gateway_on_book = getattr(gateway, "on_book", None)
        self._gateway_on_trade = getattr(gateway, "on_trade", None)
        self._held: tuple[OrderBook, BookEvent] | None = None  # an execution's book event, until its print
        self.tick_to_trade = HdrHistogram(1, LATENCY_MAX_NS, 3)
        self._in_market_hook = False
        self.orders: OrderManager | None = None
        if gateway is not None:
            self.orders = OrderManager(
                _TimedGateway(gateway, self),
                on_update=self._on_update,
                token_prefix=token_prefix,
                first_token=first_token,
            )
            # The order-rate window runs on the strategy's clock: feed time on a replay.
            self.orders.risk = RiskGate(config.risk, self.orders.exposure, self._reference,
                                        clock=lambda: self._schedule() / 1e9)  # fmt: skip
        self.ctx = StrategyContext(config.symbols, self._clock, self.feed.builder.book, self.orders,
                                   lambda: self.feed.frame_ts)  # fmt: skip
        bind = getattr(gateway, "bind", None)
        if bind is not None:
            bind(self)
        interval = config.timer_interval_ms
        self._timer_ns = int(interval * 1_000_000) if interval else 0
        self._next_timer = 0
        self.events = 0
        #: Order requests refused inside hooks that the strategy did not catch, by kind.
        self.refused: dict[str, int] = {}
        self._refusals_warned: set[str] = set()
        self.trades = 0
        #: The live driver's :class:`~efsdk.live.LiveFeed` (``None`` on a replay).
        self.live: Any = None
        self.started = False
        self.stopped = False

    @property
    def clock(self) -> int:
        """The strategy's clock now: ns since midnight (feed time on a replay)."""
        return self._clock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Give the strategy its context (once)."""
        if not self.started:
            self.started = True
            self.strategy.on_start(self.ctx)
            self.pump()

    def stop(self, cancel_open: bool = True) -> None:
        """Call ``on_stop`` (once), then cancel whatever is still open."""
        if self.stopped:
            return
        self.stopped = True
        self.strategy.on_stop()
        if cancel_open and self.orders is not None:
            try:
                self.orders.cancel_all()
            except SessionError as exc:  # the session is down: the exchange's own end-of-day cancels remain
                log.error("strategy: could not cancel open orders at stop: %s", exc)
        try:
            self.pump()
        except SessionError as exc:
            log.error("strategy: order session down at stop: %s", exc)

    # ------------------------------------------------------------------ events
    def _reference(self, symbol: str) -> tuple[int | None, int | None]:
        book = self.feed.builder.book(symbol)
        return (book.best_bid(), book.best_ask()) if book is not None else (None, None)

    def _on_book(self, book: OrderBook, event: BookEvent) -> None:
        self.events += 1
        if self._gateway_on_book is not None:
            self._gateway_on_book(book, event)  # the replay fill model sees the market first
            if event.op == OP_EXECUTE or event.op == OP_EXECUTE_PRICE:
                # Its on_trade follows at once: the fill model must replay that print before the
                # strategy can react, or a reaction could take shares the print already used.
                self._held = (book, event)
                return
        self._book_hook(book, event)

    def _book_hook(self, book: OrderBook, event: BookEvent) -> None:
        self._hook(self.strategy.on_book, book.symbol, book, event, market=True)
        if self._timer_ns:
            self.tick()
        if self._pump_per_event:
            self.pump()

    def _on_trade(self, book: OrderBook, trade: Trade) -> None:
        self.trades += 1
        if self._gateway_on_trade is not None:
            self._gateway_on_trade(book, trade)
        held = self._held
        if held is not None:
            self._held = None
            self._book_hook(*held)
        self._hook(self.strategy.on_trade, book.symbol, trade, market=True)
        if self._pump_per_event:
            self.pump()

    def _on_update(self, update: OrderUpdate) -> None:
        self._hook(self.strategy.on_order, update)

    def _hook(self, hook: Callable[..., None], *args: object, market: bool = False) -> None:
        """Call a strategy hook; orders it sends count for tick-to-trade when it handles market data."""
        outer = self._in_market_hook
        self._in_market_hook = market or outer
        try:
            hook(*args)
        except (OrderError, SessionError) as exc:
            self._order_refused(exc)
        finally:
            self._in_market_hook = outer

    def _order_refused(self, exc: Exception) -> None:
        """A hook's order request was refused (risk, misuse, session down) and the hook did not catch it.

        The feed goes on: the refusal is counted (risk blocks also in the risk
        stats) and logged once per kind.
        """
        kind = getattr(exc, "reason", None) or type(exc).__name__
        self.refused[kind] = self.refused.get(kind, 0) + 1
        if kind not in self._refusals_warned:  # once per kind: never per order
            self._refusals_warned.add(kind)
            log.warning("strategy: order refused: %s (not caught by the strategy; further ones are counted)", exc)

    def tick(self) -> None:
        """Fire ``on_timer(now)`` if its interval has passed on the schedule clock (drivers call this)."""
        if not self._timer_ns:
            return
        at = self._schedule()
        if at < self._next_timer:
            return
        if self._next_timer == 0:  # first call: start the schedule, fire at once
            self._next_timer = at
        self._next_timer = max(self._next_timer + self._timer_ns, at)
        self._hook(self.strategy.on_timer, self._clock())

    def pump(self) -> int:
        """Deliver every response the gateway has; returns how many."""
        if self.gateway is None or self.orders is None:
            return 0
        delivered = 0
        on_response = self.orders.on_response
        reconnects = getattr(self.gateway, "reconnects", 0)
        while True:
            responses = self.gateway.poll()
            if not responses:
                if reconnects != self._reconnects_seen:  # the replay after login has been applied
                    self._reconnects_seen = reconnects
                    self.orders.settle_in_doubt(reconnects)
                return delivered
            for message in responses:
                on_response(message)
            delivered += len(responses)

    # ------------------------------------------------------------------ reporting
    def tick_to_trade_us(self) -> dict[str, float]:
        """Frame timestamp -> order bytes handed to the socket: p50/p99/p99.9/max in us ({} without samples)."""
        hist = self.tick_to_trade
        if not hist.get_total_count():
            return {}
        out = {f"p{p:g}_us": hist.get_value_at_percentile(p) / 1000 for p in (50, 99, 99.9)}
        out["max_us"] = hist.get_max_value() / 1000
        out["samples"] = hist.get_total_count()
        return out

    def summary(self) -> dict:
        """Positions, P&L, order and feed counters as plain data (for tables and --json)."""
        out: dict = {
            "strategy": type(self.strategy).__name__,
            "symbols": list(self.symbols),
            "book_events": self.events,
            "trades_seen": self.trades,
            "feed_messages": self.feed.stats.messages,
        }
        if self.live is not None:
            session = self.live.session.stats
            out["feed_latency_us"] = self.live.latency_summary()
            out["feed_gaps"] = {"detected": session.gaps_detected, "lost": session.gaps_lost}
        if self.orders is not None:
            realized, unrealized = self.ctx.pnl()
            stats = self.orders.stats
            out.update(
                orders_sent=dict(stats.sent),
                responses=dict(stats.responses),
                fills=stats.fills,
                filled_shares=stats.filled_shares,
                risk_rejected=dict(self.orders.risk.rejected) if self.orders.risk else {},
                exchange_rejected=stats.exchange_rejected,
                unmatched_responses=stats.unmatched_responses,
                duplicate_executions=stats.duplicate_executions,
                positions={s: p.shares for s, p in self.orders.positions.items()},
                cash={s: p.cash for s, p in self.orders.positions.items()},
                realized_pnl=realized,
                unrealized_pnl=unrealized,
                open_orders=len(self.orders.open_orders()),
                next_token=self.orders.next_token_number,  # resume point for a restart the same day
                not_sent=stats.not_sent,
                in_doubt=stats.in_doubt,
                lost_in_reconnect=stats.lost_in_reconnect,
                refused_in_hooks=dict(self.refused),
                tick_to_trade_us=self.tick_to_trade_us(),
            )
        return out
