"""Quote both sides with inventory limits: a simple market maker.

Whenever the touch moves (and on every timer tick, in case a quote was
blocked or in flight) the strategy keeps one buy and one sell order per
symbol: the bid joins the best bid and the ask joins the best ask, each
shifted by ``skew_ticks`` per ``skew_every`` shares of inventory (long
inventory lowers both quotes, so the ask gets hit more and the bid less).
At ``max_inventory`` shares it stops quoting the side that would add to the
position.  Quotes are replaced only when their price is off by at least
``requote_ticks``, to keep the order rate (and the risk gate) calm.
"""

from __future__ import annotations

from pydantic import Field

from book import OrderBook
from efsdk.strategy import BookEvent, Order, OrderState, OrderUpdate, Strategy, StrategyConfig, UpdateKind


class MarketMakerConfig(StrategyConfig):
    quote_shares: int = Field(default=100, gt=0)
    max_inventory: int = Field(default=400, gt=0, description="absolute shares per symbol")
    tick: int = Field(default=100, gt=0, description="price increment in 1/10000 dollars (100 = one cent)")
    skew_ticks: int = Field(default=1, ge=0)
    skew_every: int = Field(default=100, gt=0, description="inventory shares per skew step")
    requote_ticks: int = Field(default=1, ge=1)
    min_requote_ms: float = Field(default=20.0, ge=0, description="clock time between requotes of one symbol")
    timer_interval_ms: float | None = Field(default=100.0, gt=0)


class MarketMaker(Strategy):
    config_class = MarketMakerConfig
    config: MarketMakerConfig

    def __init__(self, config: MarketMakerConfig) -> None:
        super().__init__(config)
        self.quotes: dict[tuple[str, str], Order] = {}  # (symbol, side) -> our working order
        self.fills: list[OrderUpdate] = []
        self.requotes = 0
        self.touch: dict[str, tuple[int | None, int | None]] = {}
        self.next_quote_ns: dict[str, int] = {}

    def on_book(self, instrument: str, book: OrderBook, event: BookEvent) -> None:
        touch = (book.best_bid(), book.best_ask())
        if self.touch.get(instrument) == touch:  # requote on a touch change, not on every update
            return
        now = self.ctx.now
        if now < self.next_quote_ns.get(instrument, 0):
            return  # the timer catches up with this change
        self.touch[instrument] = touch
        self.next_quote_ns[instrument] = now + int(self.config.min_requote_ms * 1_000_000)
        self._quote(instrument)

    def on_timer(self, now: int) -> None:
        for symbol in self.config.symbols:
            self._quote(symbol)

    def on_order(self, update: OrderUpdate) -> None:
        if update.kind in (UpdateKind.FILLED, UpdateKind.PARTIALLY_FILLED):
            self.fills.append(update)
        order = update.order
        key = (order.symbol, "B" if order.is_buy else "S")
        if update.kind is UpdateKind.REPLACED or (update.kind is UpdateKind.ACCEPTED and order.open):
            self.quotes[key] = order
        elif not order.open and self.quotes.get(key) is order:
            del self.quotes[key]

    def _quote(self, symbol: str) -> None:
        ctx = self.ctx
        book = ctx.book(symbol)
        if book is None:
            return
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None or bid >= ask:
            return
        cfg = self.config
        inventory = ctx.position(symbol)
        shift = (inventory // cfg.skew_every) * cfg.skew_ticks * cfg.tick
        targets = {"B": bid - shift, "S": ask - shift}
        if targets["B"] >= ask:  # never cross the market we are making
            targets["B"] = ask - cfg.tick
        if targets["S"] <= bid:
            targets["S"] = bid + cfg.tick
        for side, price in targets.items():
            adds = side == "B" and inventory >= cfg.max_inventory or side == "S" and inventory <= -cfg.max_inventory
            working = self.quotes.get((symbol, side))
            if working is None:
                if not adds and not any(o.symbol == symbol and (o.side == side) for o in ctx.open_orders(symbol)):
                    (ctx.buy if side == "B" else ctx.sell)(symbol, cfg.quote_shares, price)
                continue
            if working.state is not OrderState.LIVE:
                continue  # a request is in flight: wait for its answer
            if adds:
                ctx.cancel(working)
            elif abs(working.price - price) >= cfg.requote_ticks * cfg.tick:
                self.requotes += 1
                ctx.replace(working, price=price, shares=cfg.quote_shares)
