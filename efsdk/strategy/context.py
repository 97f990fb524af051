"""What a started strategy can see and do: books, clock, orders, positions, P&L."""

from __future__ import annotations

from collections.abc import Callable

from book import OrderBook
from efsdk.errors import ConfigError, OrderError
from efsdk.orders.manager import DAY, IOC, Order, OrderManager, Position
from efsdk.orders.risk import PRICE_SCALE

__all__ = ["DAY", "IOC", "StrategyContext"]


class StrategyContext:
    """The runtime's face to a strategy.

    Prices are integers in 1/10000 dollars (the feed's unit) everywhere;
    :meth:`price` converts dollars.  Order methods raise
    :class:`~efsdk.errors.RiskRejected` (nothing sent) when a pre-trade limit
    blocks them, and :class:`~efsdk.errors.OrderError` on misuse.
    """

    __slots__ = ("_clock", "_books", "_orders", "_frame_ts", "symbols")

    def __init__(
        self,
        symbols: tuple[str, ...],
        clock: Callable[[], int],
        books: Callable[[str], OrderBook | None],
        orders: OrderManager | None,
        frame_ts: Callable[[], int],
    ) -> None:
        self.symbols = symbols
        self._clock = clock
        self._books = books
        self._orders = orders
        self._frame_ts = frame_ts

    # ------------------------------------------------------------------ market
    @property
    def now(self) -> int:
        """The clock in ns since midnight: feed time on replay, wall time live."""
        return self._clock()

    @property
    def event_timestamp(self) -> int:
        """Wall-clock ns at which the frame carrying the current event reached the host (0 on file replay)."""
        return self._frame_ts()

    def book(self, symbol: str) -> OrderBook | None:
        """The book of a subscribed symbol (``None`` before its directory message)."""
        return self._books(symbol)

    def mark(self, symbol: str) -> int | None:
        """Mid price (or the one side there is, or the last trade) used to value positions."""
        book = self._books(symbol)
        if book is None:
            return None
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            return (bid + ask) // 2
        return bid if bid is not None else ask if ask is not None else (book.last_price or None)

    @staticmethod
    def price(dollars: float) -> int:
        """Dollars -> price units (1/10000), rounded to the nearest unit."""
        return round(dollars * PRICE_SCALE)

    # ------------------------------------------------------------------ orders
    @property
    def orders(self) -> OrderManager:
        if self._orders is None:
            # A setup mistake, not a refused order: it ends the run instead of being counted.
            raise ConfigError("this driver has no order entry (run with --orders, --sim or a replay fill model)")
        return self._orders

    def buy(self, symbol: str, shares: int, price: int, time_in_force: int = DAY) -> Order:
        """Send a limit buy; ``time_in_force`` 0 (IOC) or :data:`DAY`."""
        self._subscribed(symbol)
        return self.orders.submit(symbol, "B", shares, price, time_in_force)

    def sell(self, symbol: str, shares: int, price: int, time_in_force: int = DAY) -> Order:
        """Send a limit sell; ``time_in_force`` 0 (IOC) or :data:`DAY`."""
        self._subscribed(symbol)
        return self.orders.submit(symbol, "S", shares, price, time_in_force)

    def replace(self, order: Order, *, shares: int | None = None, price: int | None = None) -> Order:
        """Replace an open order: a new order (token) that loses time priority if price or size grows."""
        return self.orders.replace(order, shares=shares, price=price)

    def cancel(self, order: Order, shares: int = 0) -> None:
        """Cancel an open order down to ``shares`` (0 = all)."""
        self.orders.cancel(order, shares)

    def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every open order (of ``symbol``); returns how many cancels were sent."""
        return self.orders.cancel_all(symbol)

    def kill(self, reason: str = "strategy kill switch") -> int:
        """Cancel everything and block new orders for the rest of the run."""
        return self.orders.kill(reason)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self.orders.open_orders(symbol)

    def position(self, symbol: str) -> int:
        """Signed shares held in ``symbol``."""
        pos = self.orders.positions.get(symbol)
        return pos.shares if pos else 0

    @property
    def positions(self) -> dict[str, Position]:
        return self.orders.positions

    def pnl(self) -> tuple[float, float]:
        """``(realized, unrealized)`` P&L in dollars, open positions marked at :meth:`mark`."""
        return self.orders.pnl(self.mark)

    def _subscribed(self, symbol: str) -> None:
        if symbol not in self.symbols:
            raise OrderError(f"{symbol!r} is not one of this strategy's symbols {self.symbols}")

    def __repr__(self) -> str:
        return f"<StrategyContext symbols={self.symbols} now={self.now}>"
