"""Fills on a replay: the simulator's matching engine, mirroring the replayed book.

A recorded feed cannot react to our orders, so the strategy's orders go to
a :class:`~efsdk.sim.engine.MatchingEngine` (the one ``efsdk sim`` runs)
that holds a mirror of the replayed book of every subscribed instrument:

* every displayed order the feed adds (A/F, the new half of a U) is entered
  for the account ``FEED`` at its price; deletes, cancels and the old half
  of a U cancel it down to what the feed shows;
* an execution printed by the feed (E/C) is replayed as an aggressor: an IOC
  from the account ``TAPE`` for the printed shares at the printed price
  against the side that was hit.  Price-time priority then decides: a
  strategy order that sits ahead of the executed order in the engine's
  queue is filled first, exactly as it would have been on the exchange;
  afterwards the executed order is cut to what the feed shows;
* the strategy's orders (account ``ME``) match against all of it: a
  marketable order takes the displayed liquidity (which the mirror then no
  longer has, so the same shares are never taken twice); a feed order that
  arrives crossing a resting strategy order trades with it.

The engine answers in OUCH 4.2, so the order manager, P&L and strategy run
exactly the code they run live; responses are handed out by :meth:`poll`
after the hook that sent the order returns.  The mirror drifts from the
feed where the strategy traded (liquidity it took stays gone; a feed order
that traded with it rests smaller), which is the point: the strategy sees
its own effect.  Only E prints (continuous executions at the displayed
price) are replayed as aggressors: C prints (crosses, executions away from
the displayed price), hidden (P) and cross (Q) prints only shrink the feed's
order.  While an instrument is not in continuous trading (trading state
other than ``T``) the strategy's new orders and replaces are rejected
(``H``), and feed orders that would cross the mirror are held until trading
resumes, since a halted book may lock or cross.  Feed orders the engine
refuses (a reference too large for a 14-character token, a price off its
tick grid) are counted in :attr:`ReplayFillGateway.mirror_refused`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from book import OrderBook
from book.ops import ADD_BASE, OP_CANCEL, OP_DELETE, OP_EXECUTE, OP_EXECUTE_PRICE, OP_REPLACE_IN, OP_REPLACE_OUT
from efsdk.orders.ouch import codec as ouch
from efsdk.pipeline import BookEvent, Trade
from efsdk.sim.engine import MatchingEngine

__all__ = ["ReplayFillGateway"]

ME, FEED, TAPE = "ME", "FEED", "TAPE"
_EnterOrder, _CancelOrder = ouch.EnterOrder, ouch.CancelOrder
_DAY = ouch.TIF.SYSTEM_HOURS
_EXECUTIONS = (OP_EXECUTE, OP_EXECUTE_PRICE)
_MAX_SHARES = 0xFFFFFFFF  # feed orders may be larger than OUCH's 999,999


class ReplayFillGateway:
    """An OUCH 4.2 gateway whose exchange is a matching engine mirroring the replayed books."""

    answers_immediately = True  # the runtime delivers responses after every event

    def __init__(self) -> None:
        self.engine: MatchingEngine | None = None
        self._books: Callable[[str], OrderBook | None] = lambda symbol: None
        self._clock: Callable[[], int] = lambda: 0
        self._out: list[tuple] = []
        self._executed_ref = 0  # the ref of the E/C just applied, for its on_trade
        self._tape = 0
        self._token_symbols: dict[str, str] = {}  # the strategy's tokens -> symbol (for replaces)
        self._held_adds: dict[str, list[int]] = {}  # symbol -> refs added while halted, crossing the mirror
        self.requests = 0
        self.mirror_refused = 0
        self.halted_rejects = 0

    def bind(self, runtime: Any) -> None:
        """Use ``runtime``'s books, symbols and clock (the runtime calls this when it is built)."""
        self._books = runtime.feed.builder.book
        self._clock = lambda: runtime.clock
        # Every replace loses priority, as on NASDAQ (the engine's default keeps it on a size-down).
        # FEED and TAPE are the mirror: their tokens and fills are not kept (a busy day has millions).
        self.engine = MatchingEngine(runtime.symbols, clock_ns=self._clock, max_shares=_MAX_SHARES,
                                     replace_decrease_keeps_priority=False, unrecorded_accounts=(FEED, TAPE))  # fmt: skip
        self.engine.open_session()
        self.engine.drain_itch()

    @property
    def fills(self) -> list[tuple[str, bool, int, int]]:
        """The engine's record of the strategy's fills: ``(symbol, is_buy, shares, price)``."""
        engine = self.engine
        return [(f.symbol, f.side == "B", f.shares, f.price) for f in engine.fills if f.account == ME] if engine else []

    # ------------------------------------------------------------------ gateway protocol
    def send(self, message: tuple) -> int:
        sent = time.time_ns()
        self.requests += 1
        engine = self.engine
        kind = message[0]
        if kind in ("O", "U"):
            symbol = message.stock if kind == "O" else self._token_symbols.get(message.existing_token)
            if kind == "U" and symbol is not None:
                self._token_symbols[message.replacement_token] = symbol
            elif kind == "O":
                self._token_symbols[message.token] = symbol
            book = self._books(symbol) if symbol else None
            if book is not None and _halted(book):  # no new interest while the stock is not trading
                token = message.token if kind == "O" else message.replacement_token
                self.halted_rejects += 1
                self._out.append(ouch.Rejected("J", self._clock(), token, "H"))
                return sent
        self._keep(engine.handle(ME, message))
        return sent

    def poll(self) -> list[tuple]:
        out, self._out = self._out, []
        return out

    def _keep(self, responses: list) -> None:
        """Our answers go to the strategy; the mirror's own (FEED, TAPE) are dropped."""
        out = self._out
        for account, message in responses:
            if account == ME:
                out.append(message)
        self.engine.drain_itch()  # type: ignore[union-attr]  # nobody reads the mirror's ITCH

    # ------------------------------------------------------------------ the mirror
    def on_book(self, book: OrderBook, event: BookEvent) -> None:
        op, ref = event.op, event.ref
        halted = _halted(book)
        if not halted and self._held_adds.get(book.symbol):  # trading again: bring the held orders in
            for held in self._held_adds.pop(book.symbol):  # type: ignore[arg-type]
                self._mirror_add(book, held, halted=False)
        if op >= ADD_BASE or op == OP_REPLACE_IN:
            self._mirror_add(book, ref, halted)
        elif op in _EXECUTIONS:
            self._executed_ref = ref  # replayed as an aggressor by on_trade, which follows
        elif op == OP_CANCEL or op == OP_DELETE or op == OP_REPLACE_OUT:
            self._mirror_cut(book, ref)

    def on_trade(self, book: OrderBook, trade: Trade) -> None:
        if trade.kind not in ("E", "C"):
            return
        ref, self._executed_ref = self._executed_ref, 0
        if trade.kind == "C" or _halted(book):
            # C prints are crosses and executions away from the displayed price (not continuous
            # trading a resting strategy order could have met): only the feed's order shrinks.
            if ref:
                self._mirror_cut(book, ref)
            return
        self._tape += 1
        aggressor_side = "S" if trade.resting_side == "B" else "B"
        token = f"T{self._tape:013d}"
        self._keep(self.engine.enter(TAPE, ouch.enter_order(  # type: ignore[union-attr]
            token, aggressor_side, trade.shares, book.symbol, trade.price, time_in_force=0)))  # fmt: skip
        if ref:
            self._mirror_cut(book, ref)

    def _mirror_add(self, book: OrderBook, ref: int, halted: bool) -> None:
        """Enter the feed's order ``ref`` as it shows now; while halted, hold it if it would cross."""
        order = book.order(ref)
        if order is None:
            return
        symbol = book.symbol
        if halted and self._would_cross(symbol, order.side, order.price):  # type: ignore[arg-type]
            # A halted book may lock or cross (quotation period); the engine would trade it.
            self._held_adds.setdefault(symbol, []).append(ref)  # type: ignore[arg-type]
            return
        token = _feed_token(ref)
        if token is None:
            self.mirror_refused += 1
            return
        # The named tuple directly: the engine validates it, and this runs for every feed order.
        responses = self.engine.enter(FEED, _EnterOrder(  # type: ignore[union-attr]
            "O", token, order.side, order.shares, symbol, order.price, _DAY, "", "Y", "A", "N", 0, "N", " "))  # fmt: skip
        if any(account == FEED and m[0] == "J" for account, m in responses):
            self.mirror_refused += 1
        self._keep(responses)

    def _would_cross(self, symbol: str, side: str, price: int) -> bool:
        bid, ask = self.engine.best(symbol)  # type: ignore[union-attr]
        return (ask is not None and price >= ask) if side == "B" else (bid is not None and price <= bid)

    def _mirror_cut(self, book: OrderBook, ref: int) -> None:
        """Cut the mirrored order down to what the feed shows now (0: gone)."""
        token = _feed_token(ref)
        if token is None:
            return
        engine = self.engine
        resting = engine.resting_shares(FEED, token)  # type: ignore[union-attr]
        if not resting:
            return
        shown = book.order(ref)
        target = shown.shares if shown is not None else 0
        if resting > target:
            self._keep(engine.cancel(FEED, _CancelOrder("X", token, target)))  # type: ignore[union-attr]


def _halted(book: OrderBook) -> bool:
    """The instrument is not in continuous trading (halted, paused, quotation only)."""
    state = book.trading_state
    return bool(state) and state != "T"


def _feed_token(ref: int) -> str | None:
    """The mirror's token for feed order ``ref`` (``None`` if it cannot fit 14 characters)."""
    token = "F" + format(ref, "x")
    return token if len(token) <= 14 else None
