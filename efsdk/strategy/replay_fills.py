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
its own effect.  Hidden (P) and cross (Q) prints are not replayed, and feed
orders the engine refuses (a reference too large for a 14-character token,
a price off its tick grid) are counted in :attr:`ReplayFillGateway.mirror_refused`.
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
_EXECUTIONS = (OP_EXECUTE, OP_EXECUTE_PRICE)
_MAX_SHARES = 0xFFFFFFFF  # feed orders may be larger than OUCH's 999,999


class ReplayFillGateway:
    """An OUCH 4.2 gateway whose exchange is a matching engine mirroring the replayed books."""

    answers_immediately = True  # the runtime delivers responses after every event

    def __init__(self) -> None:
        self.engine: MatchingEngine | None = None
        self._books: Callable[[str], OrderBook | None] = lambda symbol: None
        self._out: list[tuple] = []
        self._executed_ref = 0  # the ref of the E/C just applied, for its on_trade
        self._tape = 0
        self.requests = 0
        self.mirror_refused = 0

    def bind(self, runtime: Any) -> None:
        """Use ``runtime``'s books, symbols and clock (the runtime calls this when it is built)."""
        self._books = runtime.feed.builder.book
        self.engine = MatchingEngine(runtime.symbols, clock_ns=runtime.ctx._clock, max_shares=_MAX_SHARES)
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
        if kind == "O":
            responses = engine.enter(ME, message)
        elif kind == "U":
            responses = engine.replace(ME, message)
        elif kind == "X":
            responses = engine.cancel(ME, message)
        else:
            responses = engine.modify(ME, message)
        self._keep(responses)
        return sent

    def poll(self) -> list[tuple]:
        out, self._out = self._out, []
        return out

    def _keep(self, responses: list) -> None:
        """Our answers go to the strategy; the mirror's own (FEED, TAPE) are dropped."""
        self._out.extend(m for account, m in responses if account == ME)
        self.engine.drain_itch()  # type: ignore[union-attr]  # nobody reads the mirror's ITCH

    # ------------------------------------------------------------------ the mirror
    def on_book(self, book: OrderBook, event: BookEvent) -> None:
        op, ref = event.op, event.ref
        if op >= ADD_BASE or op == OP_REPLACE_IN:
            order = book.order(ref)
            if order is not None:
                self._mirror_add(book.symbol, ref, order.side, order.price, order.shares)  # type: ignore[arg-type]
        elif op in _EXECUTIONS:
            self._executed_ref = ref  # replayed as an aggressor by on_trade, which follows
        elif op == OP_CANCEL or op == OP_DELETE or op == OP_REPLACE_OUT:
            self._mirror_cut(book, ref)

    def on_trade(self, book: OrderBook, trade: Trade) -> None:
        if trade.kind not in ("E", "C"):
            return
        ref, self._executed_ref = self._executed_ref, 0
        self._tape += 1
        aggressor_side = "S" if trade.resting_side == "B" else "B"
        token = f"T{self._tape:013d}"
        self._keep(self.engine.enter(TAPE, ouch.enter_order(  # type: ignore[union-attr]
            token, aggressor_side, trade.shares, book.symbol, trade.price, time_in_force=0)))  # fmt: skip
        if ref:
            self._mirror_cut(book, ref)

    def _mirror_add(self, symbol: str, ref: int, side: str, price: int, shares: int) -> None:
        token = _feed_token(ref)
        if token is None:
            self.mirror_refused += 1
            return
        responses = self.engine.enter(FEED, ouch.enter_order(token, side, shares, symbol, price))  # type: ignore[union-attr]
        if any(account == FEED and m[0] == "J" for account, m in responses):
            self.mirror_refused += 1
        self._keep(responses)

    def _mirror_cut(self, book: OrderBook, ref: int) -> None:
        """Cut the mirrored order down to what the feed shows now (0: gone)."""
        token = _feed_token(ref)
        if token is None:
            return
        engine = self.engine
        resting = engine.order(FEED, token)  # type: ignore[union-attr]
        if resting is None:
            return
        shown = book.order(ref)
        target = shown.shares if shown is not None else 0
        if resting.shares > target:
            self._keep(engine.cancel(FEED, ouch.cancel_order(token, target)))  # type: ignore[union-attr]


def _feed_token(ref: int) -> str | None:
    """The mirror's token for feed order ``ref`` (``None`` if it cannot fit 14 characters)."""
    token = "F" + format(ref, "x")
    return token if len(token) <= 14 else None
