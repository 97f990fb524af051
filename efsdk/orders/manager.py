"""Orders, positions and P&L: one owner for everything a strategy has sent.

:class:`OrderManager` turns ``buy``/``sell``/``replace``/``cancel`` into
OUCH 4.2 requests (after pre-trade risk), hands them to an
:class:`OrderGateway`, and folds every OUCH response it gets back into
order state, positions and cash, telling the strategy through
``on_update(OrderUpdate)``.

Rules that keep the record exact:

* a token is used once: a request is never sent twice, in particular not
  after a reconnect (SoupBinTCP replays the responses we missed, which
  settle what the exchange did with it);
* every response is matched to its order by token; one that matches none,
  or repeats an execution already counted (same match number), is counted
  in :attr:`OrderManager.stats` and dropped, never applied twice;
* cash and positions are integers (price units x shares), so they can be
  compared exactly with the exchange's record.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from efsdk.errors import OrderError
from efsdk.orders.ouch import codec as ouch
from efsdk.orders.risk import PRICE_SCALE, RiskGate

__all__ = [
    "ManagerStats",
    "Order",
    "OrderGateway",
    "OrderManager",
    "OrderState",
    "OrderUpdate",
    "Position",
    "UpdateKind",
]

log = logging.getLogger(__name__)

DAY = 99999  # OUCH TIF: system hours
IOC = 0


class OrderGateway(Protocol):
    """Where OUCH requests go: a SoupBinTCP session, or a local fill model on replay."""

    def send(self, message: tuple) -> int:
        """Send one inbound OUCH message; return the wall-clock ns at which its bytes left for the socket."""
        ...


class OrderState(enum.Enum):
    PENDING_NEW = "pending_new"
    LIVE = "live"
    PENDING_REPLACE = "pending_replace"
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELED = "canceled"
    REPLACED = "replaced"  # closed: lives on under its replacement token
    REJECTED = "rejected"

    @property
    def open(self) -> bool:
        return self in _OPEN_STATES


_OPEN_STATES = frozenset(
    {OrderState.PENDING_NEW, OrderState.LIVE, OrderState.PENDING_REPLACE, OrderState.PENDING_CANCEL}
)


class UpdateKind(enum.Enum):
    ACCEPTED = "accepted"
    REPLACED = "replaced"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    CANCEL_REJECTED = "cancel_rejected"
    MODIFIED = "modified"
    TRADE_BROKEN = "trade_broken"
    PRICE_CORRECTED = "price_corrected"


@dataclass(slots=True, eq=False)
class Order:
    """One order as this client knows it.  Prices in 1/10000 dollars."""

    token: str
    symbol: str
    side: str  # "B" or "S" (OUCH also has T/E short sells: they count as sells)
    price: int
    shares: int  # as accepted (or as last replaced/modified)
    time_in_force: int
    leaves: int = 0  # open shares at the exchange
    filled: int = 0
    state: OrderState = OrderState.PENDING_NEW
    order_reference: int = 0
    sent_ns: int = 0  # wall clock when the request's bytes left for the socket
    replaces: str | None = None  # token of the order this one replaces
    cancel_sent: bool = False  # a full cancel is on its way: cancel_all skips it
    in_doubt: bool = False  # unanswered when the session dropped: being settled by a cancel
    epoch: int = 0  # gateway connection number it was sent on (see settle_in_doubt)
    reject_reason: str = ""

    @property
    def is_buy(self) -> bool:
        return self.side == "B"

    @property
    def open(self) -> bool:
        return self.state in _OPEN_STATES

    def __repr__(self) -> str:
        return (
            f"<Order {self.token} {self.side} {self.symbol} {self.leaves}/{self.shares} @ "
            f"{self.price / PRICE_SCALE:.4f} {self.state.value} filled={self.filled}>"
        )


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """What changed about an order; ``shares``/``price`` are the fill (or decrement) of this event."""

    kind: UpdateKind
    order: Order
    shares: int = 0
    price: int = 0
    reason: str = ""
    timestamp: int = 0  # exchange time, ns since midnight
    match_number: int = 0


@dataclass(slots=True)
class Position:
    """Signed position in one symbol, with integer cash and average-cost realised P&L."""

    symbol: str
    shares: int = 0
    cash: int = 0  # price units x shares: sells add, buys subtract
    bought: int = 0
    sold: int = 0
    cost: float = 0.0  # signed cost basis of the open position (price units x shares)
    realized: float = 0.0  # price units x shares

    def apply_fill(self, is_buy: bool, shares: int, price: int) -> None:
        signed = shares if is_buy else -shares
        if is_buy:
            self.bought += shares
        else:
            self.sold += shares
        self.cash -= signed * price
        if self.shares == 0 or (self.shares > 0) == is_buy:  # opening or adding
            self.cost += signed * price
        else:  # reducing, maybe through zero
            held = abs(self.shares)
            closing = min(shares, held)
            average = self.cost / self.shares
            self.realized += (price - average) * closing * (1 if self.shares > 0 else -1)
            if shares > held:  # flipped: the rest opens a new position at this price
                self.cost = (shares - held) * price * (1 if is_buy else -1)
            else:
                self.cost = self.cost * (held - closing) / held
        self.shares += signed

    def unrealized(self, mark: int | None) -> float:
        """P&L of the open position marked at ``mark`` (price units x shares; 0 without a mark)."""
        if mark is None or not self.shares:
            return 0.0
        return self.shares * mark - self.cost

    @property
    def average_price(self) -> float:
        return self.cost / self.shares if self.shares else 0.0


@dataclass
class ManagerStats:
    sent: dict[str, int] = field(default_factory=dict)  # requests by OUCH type
    responses: dict[str, int] = field(default_factory=dict)  # responses by OUCH type
    fills: int = 0
    filled_shares: int = 0
    unmatched_responses: int = 0  # token we never sent (or already closed and unknown)
    duplicate_executions: int = 0  # same token + match number seen twice
    risk_rejected: int = 0
    exchange_rejected: int = 0
    cancel_rejected: int = 0
    broken_trades: int = 0
    in_doubt: int = 0  # orders unanswered across a reconnect, settled with a cancel
    not_sent: int = 0  # requests the gateway refused (session down): closed, never re-sent
    lost_in_reconnect: int = 0  # of those, the ones the exchange never received


class OrderManager:
    """Sends orders through a gateway and keeps orders, positions and P&L from the responses.

    ``on_update`` receives every :class:`OrderUpdate`; ``token_prefix`` keeps
    tokens unique per account and day (restart with ``first_token`` past the
    last one used).
    """

    def __init__(
        self,
        gateway: OrderGateway,
        *,
        risk: RiskGate | None = None,
        on_update: Callable[[OrderUpdate], None] | None = None,
        token_prefix: str = "EF",
        first_token: int = 1,
        firm: str = "",
    ) -> None:
        self.gateway = gateway
        self.risk = risk
        self.on_update = on_update
        self.firm = firm
        self.tokens = ouch.TokenGenerator(token_prefix, first_token)
        self.orders: dict[str, Order] = {}  # every token ever sent today
        self._open: dict[str, Order] = {}  # the open ones, so queries do not scan the day
        self.positions: dict[str, Position] = {}
        self.stats = ManagerStats()
        self.system_events: list[tuple[int, str]] = []
        # (token, match) -> (order, shares, price): both legs of a self-match share the match number.
        self._fills: dict[tuple[str, int], tuple[Order, int, int]] = {}
        self._warned: set[str] = set()
        self._dispatch: dict[str, Callable[[Any], None]] = {
            "A": self._on_accepted,
            "U": self._on_replaced,
            "C": self._on_canceled,
            "D": self._on_canceled,  # AIQ cancel: same decrement semantics
            "E": self._on_executed,
            "J": self._on_rejected,
            "I": self._on_cancel_reject,
            "P": self._on_cancel_pending,
            "M": self._on_modified,
            "B": self._on_broken,
            "K": self._on_price_correction,
            "S": self._on_system_event,
        }

    @property
    def next_token_number(self) -> int:
        """Resume point for a restart the same day (pass as ``first_token``)."""
        return self.tokens.next_counter

    # ------------------------------------------------------------------ queries
    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    def exposure(self, symbol: str, side: str) -> tuple[int, int]:
        """``(position, open shares on side)`` for the risk gate."""
        buy = side == "B"
        # An order being replaced is counted through its replacement (which
        # carries the size it will have), not twice.
        pending = sum(
            o.leaves
            for o in self._open.values()
            if o.symbol == symbol and o.is_buy == buy and o.state is not OrderState.PENDING_REPLACE
        )
        pos = self.positions.get(symbol)
        return (pos.shares if pos else 0), pending

    # ------------------------------------------------------------------ requests
    def _send(self, message: tuple) -> int:
        kind = message[0]
        sent = self.stats.sent
        sent[kind] = sent.get(kind, 0) + 1
        return self.gateway.send(message)

    def _risk(self, symbol: str | None = None, side: str = "", shares: int = 0, price: int = 0) -> None:
        """Pre-trade checks, counted when they block: the order's limits (when one is given), then the rate."""
        if self.risk is None:
            return
        try:
            if symbol is not None:
                self.risk.check_order(symbol, side, shares, price)
            self.risk.check_rate()
        except OrderError:
            self.stats.risk_rejected += 1
            raise

    def _epoch(self) -> int:
        """The gateway's connection number (bumped on every reconnect): what an order was sent on."""
        return getattr(self.gateway, "reconnects", 0)

    def submit(self, symbol: str, side: str, shares: int, price: int, time_in_force: int = DAY) -> Order:
        """Risk-check and send a new limit order; returns it in ``PENDING_NEW``.

        Raises :class:`~efsdk.errors.RiskRejected` (nothing sent) when a limit
        blocks it; if the gateway cannot send it, the order is marked rejected
        (``not_sent``) and the gateway's exception propagates.
        """
        if side not in ("B", "S", "T", "E"):
            raise OrderError(f"side must be B, S, T or E, not {side!r}")
        if shares <= 0 or price <= 0:
            raise OrderError(f"shares and price must be positive, got {shares} @ {price}")
        self._risk(symbol, side if side == "B" else "S", shares, price)
        token = self.tokens.next()
        order = Order(token, symbol, side, price, shares, time_in_force, leaves=shares, epoch=self._epoch())
        self.orders[token] = self._open[token] = order
        try:
            order.sent_ns = self._send(
                ouch.enter_order(token, side, shares, symbol, price, time_in_force=time_in_force, firm=self.firm)
            )
        except Exception:
            self._not_sent(order)
            raise
        return order

    def _not_sent(self, order: Order) -> None:
        """The gateway refused a new order or replacement: it never left, so it is closed here.

        It stays in :attr:`orders` (its token is spent), so a late answer
        would still be matched rather than lost.
        """
        self.stats.not_sent += 1
        self._reject(order, "not_sent")
        self._open.pop(order.token, None)

    def _reject(self, order: Order, reason: str) -> None:
        """Close ``order`` as rejected; a replacement that did not happen leaves its original as it was."""
        order.state = OrderState.REJECTED
        order.leaves = 0
        order.reject_reason = reason
        if order.replaces is not None:
            old = self.orders.get(order.replaces)
            if old is not None and old.state is OrderState.PENDING_REPLACE:
                old.state = OrderState.LIVE

    def replace(self, order: Order, *, shares: int | None = None, price: int | None = None) -> Order:
        """Replace an open order (new token); the new order is returned pending, the old one stays live until
        the exchange confirms.

        Risk sees the worst case: the original's open shares may fill while
        the replace is in flight and the new size rests as well.
        """
        self._require_open(order, "replace")
        if order.state is not OrderState.LIVE:
            raise OrderError(f"cannot replace {order.token}: it is {order.state.value} (wait for the answer)")
        new_shares = order.leaves if shares is None else shares
        new_price = order.price if price is None else price
        if new_shares <= 0 or new_price <= 0:
            raise OrderError(f"replacement shares and price must be positive, got {new_shares} @ {new_price}")
        self._risk(order.symbol, "B" if order.is_buy else "S", new_shares, new_price)
        token = self.tokens.next()
        new = Order(token, order.symbol, order.side, new_price, new_shares, order.time_in_force,
                    leaves=new_shares, replaces=order.token, epoch=self._epoch())  # fmt: skip
        self.orders[token] = self._open[token] = new
        order.state = OrderState.PENDING_REPLACE
        try:
            new.sent_ns = self._send(
                ouch.replace_order(order.token, token, new_shares, new_price, time_in_force=order.time_in_force)
            )
        except Exception:
            self._not_sent(new)
            raise
        return new

    def cancel(self, order: Order, shares: int = 0) -> None:
        """Cancel an open order down to ``shares`` (0: all of it).  Allowed under the kill switch.

        A cancel-down to ``shares`` at or above what is still open has nothing
        to do and is not sent.  Canceling an order whose replace is in flight
        cancels the replacement too (the exchange may apply either first).
        """
        self._require_open(order, "cancel")
        if shares and shares >= order.leaves:
            return
        self._risk()  # a cancel only counts against the request rate
        self._send_cancel(order, shares)
        if not shares and order.state is OrderState.PENDING_REPLACE:
            for pending in list(self._open.values()):
                if pending.replaces == order.token and not pending.cancel_sent:
                    self._send_cancel(pending, 0)

    def _send_cancel(self, order: Order, shares: int) -> None:
        previous = order.state
        if previous is OrderState.LIVE:
            order.state = OrderState.PENDING_CANCEL
        try:
            self._send(ouch.cancel_order(order.token, shares))
        except Exception:
            order.state = previous
            raise
        order.cancel_sent = order.cancel_sent or shares == 0

    def cancel_all(self, symbol: str | None = None, *, again: bool = False) -> int:
        """Cancel every open order (of ``symbol``); bypasses the rate limit so it always goes out.

        Orders with a full cancel already on its way are skipped unless
        ``again`` (a repeated cancel only costs a Cancel Reject).
        """
        count = 0
        for order in self.open_orders(symbol):
            if order.cancel_sent and not again:
                continue
            self._send_cancel(order, 0)
            count += 1
        return count

    def kill(self, reason: str = "kill switch") -> int:
        """Engage the kill switch (block new orders) and cancel everything open; returns cancels sent."""
        if self.risk is None:
            raise OrderError("no risk gate configured: nothing to kill")
        self.risk.kill(reason)
        return self.cancel_all(again=True)

    def settle_in_doubt(self, epoch: int | None = None) -> int:
        """After a reconnect: settle every request that may have died with the old connection.

        Re-sending could duplicate an order, so orders still waiting for their
        first answer are canceled instead: the exchange answers Canceled if it
        had the order (its fills arrive first, in sequence) or Cancel Reject if
        it never saw it, which marks the order rejected (``lost_in_reconnect``;
        this relies on a Cancel Reject for an unknown token, as the embedded
        exchange sends).  Full cancels still unanswered are sent again.  Only
        orders sent before connection ``epoch`` (default: the current one)
        are touched.  Returns the cancels sent.
        """
        current = self._epoch() if epoch is None else epoch
        count = 0
        for order in list(self._open.values()):
            if order.epoch >= current:
                continue  # sent on the new connection: its answer is simply in flight
            if order.state is OrderState.PENDING_NEW and not order.cancel_sent:
                order.in_doubt = True
                self.stats.in_doubt += 1
                self._send_cancel(order, 0)
                count += 1
            elif order.cancel_sent:
                order.epoch = current
                self._send_cancel(order, 0)
                count += 1
        if count:
            log.warning("orders: %d requests unanswered across a reconnect; canceling to settle", count)
        return count

    def _require_open(self, order: Order, what: str) -> None:
        known = self.orders.get(order.token)
        if known is not order:
            raise OrderError(f"cannot {what} {order.token}: not an order of this session")
        if not order.open:
            raise OrderError(f"cannot {what} {order.token}: it is {order.state.value}")

    # ------------------------------------------------------------------ responses
    def on_response(self, message: tuple) -> None:
        """Apply one outbound OUCH message (a codec named tuple)."""
        kind = message[0]
        responses = self.stats.responses
        responses[kind] = responses.get(kind, 0) + 1
        handler = self._dispatch.get(kind)
        if handler is None:
            self._drop("unknown_type", f"OUCH response type {kind!r} is not handled")
            return
        handler(message)
        # Closed orders leave the open set (a replace closes its original too).
        for token in (getattr(message, "token", None), getattr(message, "replacement_token", None),
                      getattr(message, "previous_token", None)):  # fmt: skip
            if token is not None:
                order = self._open.get(token)
                if order is not None and not order.open:
                    del self._open[token]

    def on_responses(self, messages: Iterable[tuple]) -> None:
        for message in messages:
            self.on_response(message)

    def _drop(self, kind: str, message: str) -> None:
        self.stats.unmatched_responses += 1
        if kind not in self._warned:  # once per kind: never per message
            self._warned.add(kind)
            log.warning("orders: %s; further ones are counted in stats.unmatched_responses", message)

    def _order(self, token: str, what: str) -> Order | None:
        order = self.orders.get(token)
        if order is None:
            self._drop(f"unknown_{what}", f"{what} for unknown token {token!r}")
        return order

    def _emit(self, update: OrderUpdate) -> None:
        if self.on_update is not None:
            self.on_update(update)

    def _on_accepted(self, m: Any) -> None:
        order = self._order(m.token, "accepted")
        if order is None:
            return
        self._take_terms(order, m)
        self._emit(OrderUpdate(UpdateKind.ACCEPTED, order, m.shares, m.price, timestamp=m.timestamp))

    @staticmethod
    def _take_terms(order: Order, m: Any) -> None:
        """The terms the exchange accepted (Accepted or Replaced): reference, price, size, live or dead."""
        order.order_reference = m.order_reference
        order.price = m.price
        order.shares = m.shares
        if m.order_state == "L":
            order.leaves = m.shares
            order.state = OrderState.LIVE
        else:  # accepted dead (e.g. an IOC that could not rest)
            order.leaves = 0
            order.state = OrderState.CANCELED

    def _on_replaced(self, m: Any) -> None:
        new = self._order(m.replacement_token, "replaced")
        if new is None:
            return
        old = self.orders.get(m.previous_token)
        if old is not None:
            old.state = OrderState.REPLACED
            old.leaves = 0
        self._take_terms(new, m)
        self._emit(OrderUpdate(UpdateKind.REPLACED, new, m.shares, m.price, timestamp=m.timestamp))

    def _on_canceled(self, m: Any) -> None:
        order = self._order(m.token, "canceled")
        if order is None:
            return
        order.leaves = max(0, order.leaves - m.decrement_shares)
        if order.leaves == 0:
            order.state = OrderState.CANCELED
        elif order.state is OrderState.PENDING_CANCEL:
            order.state = OrderState.LIVE
        self._emit(OrderUpdate(UpdateKind.CANCELED, order, m.decrement_shares, reason=m.reason, timestamp=m.timestamp))

    def _on_executed(self, m: Any) -> None:
        order = self._order(m.token, "executed")
        if order is None:
            return
        key = (m.token, m.match_number)
        if key in self._fills:
            self.stats.duplicate_executions += 1
            return
        shares, price = m.executed_shares, m.execution_price
        self._fills[key] = (order, shares, price)
        order.leaves = max(0, order.leaves - shares)
        order.filled += shares
        if order.leaves == 0:
            order.state = OrderState.FILLED
        self.stats.fills += 1
        self.stats.filled_shares += shares
        self.position(order.symbol).apply_fill(order.is_buy, shares, price)
        kind = UpdateKind.FILLED if order.leaves == 0 else UpdateKind.PARTIALLY_FILLED
        self._emit(OrderUpdate(kind, order, shares, price, reason=m.liquidity_flag, timestamp=m.timestamp,
                               match_number=m.match_number))  # fmt: skip

    def _on_rejected(self, m: Any) -> None:
        order = self._order(m.token, "rejected")
        if order is None:
            return
        self.stats.exchange_rejected += 1
        self._reject(order, m.reason)  # a refused replace leaves the original as it was (as the sim does)
        self._emit(OrderUpdate(UpdateKind.REJECTED, order, reason=m.reason, timestamp=m.timestamp))

    def _on_cancel_reject(self, m: Any) -> None:
        order = self._order(m.token, "cancel reject")
        if order is None:
            return
        self.stats.cancel_rejected += 1
        order.cancel_sent = False
        if order.in_doubt and order.state is OrderState.PENDING_NEW:  # the exchange never had it
            self.stats.lost_in_reconnect += 1
            self._reject(order, "lost_in_reconnect")  # a lost replacement leaves its original live
            self._emit(OrderUpdate(UpdateKind.REJECTED, order, reason="lost_in_reconnect", timestamp=m.timestamp))
            return
        if order.state is OrderState.PENDING_CANCEL:
            order.state = OrderState.LIVE
        self._emit(OrderUpdate(UpdateKind.CANCEL_REJECTED, order, timestamp=m.timestamp))

    def _on_cancel_pending(self, m: Any) -> None:
        order = self._order(m.token, "cancel pending")
        if order is not None and order.open:
            order.state = OrderState.PENDING_CANCEL

    def _on_modified(self, m: Any) -> None:
        order = self._order(m.token, "modified")
        if order is None:
            return
        order.side = m.side
        order.shares = order.filled + m.shares
        order.leaves = m.shares
        if not m.shares:  # modified down to nothing: it is gone from the book
            order.state = OrderState.CANCELED
        self._emit(OrderUpdate(UpdateKind.MODIFIED, order, m.shares, timestamp=m.timestamp))

    def _on_broken(self, m: Any) -> None:
        fill = self._fills.pop((m.token, m.match_number), None)
        if fill is None:
            self._drop("unknown_break", f"broken trade for unknown match {m.match_number} of {m.token!r}")
            return
        order, shares, price = fill
        self.stats.broken_trades += 1
        self.stats.fills -= 1
        self.stats.filled_shares -= shares
        order.filled -= shares
        self._rebuild_position(order.symbol)
        self._emit(OrderUpdate(UpdateKind.TRADE_BROKEN, order, shares, price, reason=m.reason,
                               timestamp=m.timestamp, match_number=m.match_number))  # fmt: skip

    def _on_price_correction(self, m: Any) -> None:
        key = (m.token, m.match_number)
        fill = self._fills.get(key)
        if fill is None:
            self._drop("unknown_correction", f"price correction for unknown match {m.match_number} of {m.token!r}")
            return
        order, shares, _old_price = fill
        self._fills[key] = (order, shares, m.new_execution_price)
        self._rebuild_position(order.symbol)
        self._emit(OrderUpdate(UpdateKind.PRICE_CORRECTED, order, shares, m.new_execution_price,
                               reason=m.reason, timestamp=m.timestamp, match_number=m.match_number))  # fmt: skip

    def _rebuild_position(self, symbol: str) -> None:
        """Replay the symbol's standing fills in order (a break or correction rewrites history; rare)."""
        pos = Position(symbol)
        for order, shares, price in self._fills.values():  # dicts keep execution order
            if order.symbol == symbol:
                pos.apply_fill(order.is_buy, shares, price)
        self.positions[symbol] = pos

    def _on_system_event(self, m: Any) -> None:
        self.system_events.append((m.timestamp, m.event_code))

    # ------------------------------------------------------------------ P&L
    def pnl(self, marks: Callable[[str], int | None]) -> tuple[float, float]:
        """``(realized, unrealized)`` in dollars, marking open positions with ``marks(symbol)``."""
        realized = sum(p.realized for p in self.positions.values())
        unrealized = sum(p.unrealized(marks(p.symbol)) for p in self.positions.values())
        return realized / PRICE_SCALE, unrealized / PRICE_SCALE

    def __repr__(self) -> str:
        return (
            f"<OrderManager orders={len(self.orders)} open={len(self.open_orders())} fills={self.stats.fills} "
            f"positions={ {s: p.shares for s, p in self.positions.items() if p.shares} }>"
        )

