"""Fills on a replay: the strategy's orders matched against the replayed book.

A recorded feed cannot react to our orders, so this gateway plays the
exchange's part with a conservative, documented model and answers in the
same OUCH 4.2 messages a real session would (so the order manager, P&L and
the strategy run exactly the code they run live):

* **Marketable orders** take the displayed opposite liquidity at each
  level's price, best first, up to their limit.  Liquidity taken is
  remembered per level, so two orders cannot take the same displayed shares;
  the memory is dropped when that level leaves the book.
* **Resting orders** join the back of their level's queue: the displayed
  shares there when they arrive are ahead of them.  Executions printed at
  that price on that side eat the queue ahead first and then fill us.  If the
  opposite side comes to or through our price (a seller crossing our bid),
  we are filled at our price up to the shares shown there, since on a live
  exchange that order would have traded with ours.
* IOC remainders are canceled (reason ``I``); replaces lose queue position;
  cancels are immediate.

Responses are queued and handed out by :meth:`poll`, so the strategy sees
them after the hook that sent the order returns, as it would live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from book import OrderBook
from efsdk.orders.ouch import codec as ouch
from efsdk.pipeline import BookEvent, Trade

__all__ = ["ReplayFillGateway"]


@dataclass(slots=True)
class _Resting:
    token: str
    symbol: str
    is_buy: bool
    price: int
    leaves: int
    ahead: int  # displayed shares queued in front of us
    tif: int
    reference: int


class ReplayFillGateway:
    """An OUCH 4.2 "exchange" over replayed books; see the module docstring for the fill model."""

    answers_immediately = True  # the runtime delivers responses after every event

    def __init__(
        self, books: Callable[[str], OrderBook | None] | None = None, clock: Callable[[], int] | None = None
    ) -> None:
        self._books: Callable[[str], OrderBook | None] = books or (lambda symbol: None)
        self._clock: Callable[[], int] = clock or (lambda: 0)
        self._out: list[tuple] = []
        self._resting: dict[str, _Resting] = {}
        self._by_symbol: dict[str, dict[str, _Resting]] = {}
        self._taken: dict[tuple[str, bool, int], int] = {}  # (symbol, bid side?, price) -> shares taken
        self._next_reference = 1
        self._next_match = 1
        self.requests = 0
        self.rejected = 0
        #: The fill model's own record, (symbol, is_buy, shares, price) per fill: what the
        #: strategy's positions must reconcile with, as live against the exchange.
        self.fills: list[tuple[str, bool, int, int]] = []

    def bind(self, runtime: Any) -> None:
        """Use ``runtime``'s books and clock (the runtime calls this when it is built)."""
        self._books = runtime.feed.builder.book
        self._clock = runtime.ctx._clock

    # ------------------------------------------------------------------ gateway protocol
    def send(self, message: tuple) -> int:
        sent = time.time_ns()
        self.requests += 1
        kind = message[0]
        if kind == "O":
            self._enter(message)
        elif kind == "U":
            self._replace(message)
        elif kind == "X":
            self._cancel(message.token, message.shares, "U")
        elif kind == "M":
            self._modify(message)
        return sent

    def poll(self) -> list[tuple]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ market events
    def on_book(self, book: OrderBook, event: BookEvent) -> None:
        resting = self._by_symbol.get(book.symbol or "")
        if resting:
            for order in list(resting.values()):
                self._cross_check(book, order)

    def on_trade(self, book: OrderBook, trade: Trade) -> None:
        resting = self._by_symbol.get(book.symbol or "")
        if not resting or trade.kind not in ("E", "C"):
            return
        for order in list(resting.values()):
            same_side = (trade.resting_side == "B") == order.is_buy
            if not same_side or trade.price != order.price:
                continue
            remaining = trade.shares - order.ahead
            order.ahead = max(0, order.ahead - trade.shares)
            if remaining > 0:
                self._fill(order, min(remaining, order.leaves), order.price, "A")

    # ------------------------------------------------------------------ requests
    def _now(self) -> int:
        return self._clock()

    def _reject(self, token: str, reason: str) -> None:
        self.rejected += 1
        self._out.append(ouch.Rejected(type="J", timestamp=self._now(), token=token, reason=reason))

    def _enter(self, m: tuple) -> None:
        book = self._books(m.stock)
        if book is None:
            self._reject(m.token, "S")  # invalid stock: no book for it in the replay
            return
        if m.token in self._resting:
            self._reject(m.token, "D")  # duplicate token
            return
        reference = self._next_reference
        self._next_reference += 1
        is_buy = m.side == "B"
        self._out.append(ouch.Accepted(
            type="A", timestamp=self._now(), token=m.token, side=m.side, shares=m.shares, stock=m.stock,
            price=m.price, time_in_force=m.time_in_force, firm=m.firm, display=m.display,
            order_reference=reference, capacity=m.capacity, intermarket_sweep=m.intermarket_sweep,
            minimum_quantity=m.minimum_quantity, cross_type=m.cross_type, order_state="L",
            bbo_weight_indicator=" ",
        ))  # fmt: skip
        order = _Resting(m.token, m.stock, is_buy, m.price, m.shares, 0, m.time_in_force, reference)
        self._rest_or_take(book, order)

    def _rest_or_take(self, book: OrderBook, order: _Resting) -> None:
        self._take(book, order)
        if not order.leaves:
            return
        if order.tif == 0:  # IOC: what did not trade at once is canceled
            self._out.append(ouch.Canceled(type="C", timestamp=self._now(), token=order.token,
                                           decrement_shares=order.leaves, reason="I"))  # fmt: skip
            return
        side = book.bids if order.is_buy else book.asks
        order.ahead = side.level_totals(order.price)[0] if order.price in side.levels else 0
        self._resting[order.token] = order
        self._by_symbol.setdefault(order.symbol, {})[order.token] = order

    def _take(self, book: OrderBook, order: _Resting) -> None:
        """Take displayed opposite liquidity up to the order's limit."""
        opposite = book.asks if order.is_buy else book.bids
        bid_side = not order.is_buy
        taken = self._taken
        for price in opposite.prices():
            if not order.leaves or (price > order.price if order.is_buy else price < order.price):
                break
            key = (order.symbol, bid_side, price)
            shown = opposite.level_totals(price)[0]
            available = shown - taken.get(key, 0)
            if available <= 0:
                continue
            shares = min(available, order.leaves)
            taken[key] = taken.get(key, 0) + shares
            self._fill(order, shares, price, "R")
        # Forget what was taken at levels that have since left the book.
        for key in [k for k in taken if k[0] == order.symbol and k[2] not in
                    (book.bids if k[1] else book.asks).levels]:  # fmt: skip
            del taken[key]

    def _cross_check(self, book: OrderBook, order: _Resting) -> None:
        """The opposite side reached our price: that flow would have traded with us."""
        best = book.best_ask() if order.is_buy else book.best_bid()
        if best is None or (best > order.price if order.is_buy else best < order.price):
            return
        opposite = book.asks if order.is_buy else book.bids
        for price in opposite.prices():
            if not order.leaves or (price > order.price if order.is_buy else price < order.price):
                break
            key = (order.symbol, not order.is_buy, price)
            available = opposite.level_totals(price)[0] - self._taken.get(key, 0)
            if available > 0:
                shares = min(available, order.leaves)
                self._taken[key] = self._taken.get(key, 0) + shares
                self._fill(order, shares, order.price, "A")

    def _fill(self, order: _Resting, shares: int, price: int, liquidity: str) -> None:
        match = self._next_match
        self._next_match += 1
        order.leaves -= shares
        self.fills.append((order.symbol, order.is_buy, shares, price))
        self._out.append(ouch.Executed(type="E", timestamp=self._now(), token=order.token, executed_shares=shares,
                                       execution_price=price, liquidity_flag=liquidity, match_number=match))  # fmt: skip
        if not order.leaves:
            self._forget(order.token)

    def _forget(self, token: str) -> _Resting | None:
        order = self._resting.pop(token, None)
        if order is not None:
            self._by_symbol.get(order.symbol, {}).pop(token, None)
        return order

    def _cancel(self, token: str, shares: int, reason: str) -> None:
        order = self._resting.get(token)
        if order is None:
            self._out.append(ouch.CancelReject(type="I", timestamp=self._now(), token=token))
            return
        decrement = max(0, order.leaves - shares)
        if not decrement:
            return
        order.leaves -= decrement
        if not order.leaves:
            self._forget(token)
        self._out.append(ouch.Canceled(type="C", timestamp=self._now(), token=token,
                                       decrement_shares=decrement, reason=reason))  # fmt: skip

    def _replace(self, m: tuple) -> None:
        old = self._resting.get(m.existing_token)
        book = self._books(old.symbol) if old is not None else None
        if old is None or book is None:
            self._reject(m.replacement_token, "X")  # original order gone (filled or canceled)
            return
        self._forget(old.token)
        reference = self._next_reference
        self._next_reference += 1
        new = _Resting(m.replacement_token, old.symbol, old.is_buy, m.price, m.shares, 0, m.time_in_force, reference)
        self._out.append(ouch.Replaced(
            type="U", timestamp=self._now(), replacement_token=new.token, side="B" if new.is_buy else "S",
            shares=new.leaves, stock=new.symbol, price=new.price, time_in_force=new.tif, firm="", display="Y",
            order_reference=reference, capacity="A", intermarket_sweep="N", minimum_quantity=0, cross_type="N",
            order_state="L", previous_token=old.token, bbo_weight_indicator=" ",
        ))  # fmt: skip
        self._rest_or_take(book, new)

    def _modify(self, m: tuple) -> None:
        order = self._resting.get(m.token)
        if order is None or m.shares > order.leaves:
            self._out.append(ouch.CancelReject(type="I", timestamp=self._now(), token=m.token))
            return
        order.leaves = m.shares
        order.is_buy = m.side == "B"
        if not order.leaves:
            self._forget(order.token)
        self._out.append(ouch.OrderModified(type="M", timestamp=self._now(), token=m.token, side=m.side,
                                            shares=m.shares))  # fmt: skip
