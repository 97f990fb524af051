"""Take liquidity when the book leans: a book-imbalance taker.

When the top-``levels`` share imbalance (see :func:`imbalance`) passes
``entry`` the strategy buys at the ask (or sells at the bid) with an IOC
order, expecting the price to follow the resting pressure; when the signal
fades below ``exit`` it flattens the position the same way.  Position is
capped at ``max_position`` shares; ``cooldown_ms`` of clock time separates
orders so one burst of updates does not fire a burst of orders.
"""

from __future__ import annotations

from pydantic import Field

from book import OrderBook
from efsdk.strategy import IOC, BookEvent, OrderUpdate, Strategy, StrategyConfig, UpdateKind
from strategies.imbalance_observer import imbalance


class ImbalanceTakerConfig(StrategyConfig):
    levels: int = Field(default=3, ge=1, le=50, description="book levels per side in the signal")
    entry: float = Field(default=0.6, gt=0, lt=1, description="|imbalance| that opens or adds to a position")
    exit: float = Field(default=0.1, ge=0, lt=1, description="|imbalance| below which the position is flattened")
    order_shares: int = Field(default=100, gt=0)
    max_position: int = Field(default=500, gt=0, description="absolute shares per symbol")
    cooldown_ms: float = Field(default=50.0, ge=0, description="clock time between two orders in one symbol")


class ImbalanceTaker(Strategy):
    config_class = ImbalanceTakerConfig
    config: ImbalanceTakerConfig

    def __init__(self, config: ImbalanceTakerConfig) -> None:
        super().__init__(config)
        self.next_order_ns: dict[str, int] = dict.fromkeys(config.symbols, 0)
        self.in_flight: dict[str, int] = dict.fromkeys(config.symbols, 0)  # IOCs not yet answered
        self.signals = 0
        self.fills: list[OrderUpdate] = []

    def on_book(self, instrument: str, book: OrderBook, event: BookEvent) -> None:
        ctx = self.ctx
        now = ctx.now
        if now < self.next_order_ns[instrument] or self.in_flight[instrument]:
            return
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None or bid >= ask:
            return
        cfg = self.config
        signal = imbalance(book, cfg.levels)
        position = ctx.position(instrument)
        order = None
        if signal >= cfg.entry and position < cfg.max_position:
            order = ctx.buy(instrument, min(cfg.order_shares, cfg.max_position - position), ask, IOC)
        elif signal <= -cfg.entry and position > -cfg.max_position:
            order = ctx.sell(instrument, min(cfg.order_shares, cfg.max_position + position), bid, IOC)
        elif abs(signal) < cfg.exit and position:
            order = (ctx.sell(instrument, position, bid, IOC) if position > 0
                     else ctx.buy(instrument, -position, ask, IOC))  # fmt: skip
        if order is not None:
            self.signals += 1
            self.in_flight[instrument] += 1
            self.next_order_ns[instrument] = now + int(cfg.cooldown_ms * 1_000_000)

    def on_order(self, update: OrderUpdate) -> None:
        if update.kind in (UpdateKind.FILLED, UpdateKind.PARTIALLY_FILLED):
            self.fills.append(update)
        if not update.order.open and self.in_flight.get(update.order.symbol):
            self.in_flight[update.order.symbol] -= 1
