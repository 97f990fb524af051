"""A price-time-priority matching engine that speaks OUCH 4.2 in and ITCH 5.0 out.

One book per instrument; every inbound OUCH request (:meth:`MatchingEngine.enter`,
:meth:`~MatchingEngine.replace`, :meth:`~MatchingEngine.cancel`,
:meth:`~MatchingEngine.modify`) returns the OUCH responses it caused, each
addressed to its account, and appends the ITCH messages it caused (unframed,
packed with the shared layout table :data:`efsdk.itch.layouts.LAYOUTS`) to a
list that :meth:`~MatchingEngine.drain_itch` hands to the feed publisher.
OUCH messages are the shared classes of :mod:`efsdk.orders.ouch.codec`.

Book layout: per side a :class:`~sortedcontainers.SortedDict` of price levels
keyed so that the best level is always index 0 (asks by price, bids by
``-price``), each level a ``dict`` ref -> order whose insertion order is the
time priority (O(1) removal anywhere, and an in-place size decrease keeps the
order's place).  An aggressor on either side then matches while
``best key <= limit key`` with the same code.

Rules this engine follows (NASDAQ where it is simple, documented where not):

* **Session**: orders are accepted only between :meth:`~MatchingEngine.open_session`
  and :meth:`~MatchingEngine.close_session`; outside, Enter is Rejected ``'C'``.
  Closing cancels every resting day order (ITCH ``D``, OUCH Canceled ``'T'``).
* **Validation of Enter** (first failing rule wins; Rejected reason):
  token already used by this account today ``'O'`` (the token is not consumed
  again; real OUCH ignores such orders, the lead asked for a Rejected);
  market closed ``'C'``; unknown stock ``'S'``; side not B/S/T/E ``'O'``;
  shares 0 ``'O'``; shares above ``max_shares`` (default 999,999: OUCH 4.2
  wants fewer than 1,000,000) ``'Z'``; price 0, above $199,999.99 or off the
  tick grid ``'X'``; display not ``'Y'``/``'A'`` ``'D'``; minimum quantity
  not 0 ``'N'`` (not supported).
* **Tick grid** (Reg NMS rule 612): prices of $1.00 and more must be whole
  cents (multiples of 100 price units); below $1.00 any multiple of $0.0001.
* **Time in force**: 0 is IOC (the unfilled rest is Canceled ``'I'``); any
  other value rests until canceled or the session closes (no timers).
* **Display** ``'Y'`` rests as ITCH ``A``, ``'A'`` (attributable) as ``F``
  with the firm as attribution.  Hidden orders are not supported.
* **Cancel**: ``shares`` is the new intended size; 0 cancels the rest
  (ITCH ``D``), a smaller size is an ITCH ``X`` that keeps priority, a size
  not below the current one changes nothing (counted in ``ignored``).  An
  unknown or dead token gets a CancelReject (real NASDAQ ignores it; a
  simulator that answers lets a client settle its state at once).
* **Replace**: an unknown or dead existing token gets Rejected ``'O'`` with
  the replacement token; a replacement token already used is ignored
  (counted, as OUCH 4.2 says; answering would name another order's token);
  invalid details are Rejected with the replacement token and the reason of
  the Enter rules, and leave the existing order as it was (NASDAQ would
  cancel it; keeping it lets client and exchange records agree without a
  race).  A valid replace answers Replaced; at the same price, same display,
  a non-IOC TIF and no more shares it keeps its ITCH reference and time
  priority (an ITCH ``X`` for a decrease, nothing for no change), otherwise
  it gets a new ITCH reference at the back of its new level (ITCH ``U``), or,
  when the new price is marketable or the TIF is IOC, the old order is
  deleted (ITCH ``D``) and the replacement trades as an aggressor, resting
  the rest as a new ``A``.  NASDAQ's OUCH documents that every replace loses
  priority; ``replace_decrease_keeps_priority=False`` does that.
* **Modify** (OUCH 4.2 ``M``): side changes among sell types only (S/T/E;
  a buy stays B) and shares may only go down (0 removes the order); the
  answer is OrderModified.  An unknown token or an invalid modify is ignored
  (counted: OUCH 4.2 has no reject for it).
* **Self-trade**: ``self_trade="allow"`` (default, NASDAQ without its opt-in
  prevention) trades an account against itself like anyone else, which
  leaves its position unchanged and its cash unchanged;
  ``"cancel_resting"`` deletes the resting order instead (ITCH ``D``, OUCH
  Canceled ``'Q'``) and the aggressor goes on matching.
* **Executions**: each match has a new match number, an ITCH ``E`` on the
  resting order, and an OUCH Executed to both owners (liquidity ``'A'``
  added for the resting order, ``'R'`` removed for the aggressor) at the
  resting order's price.  The aggressor never appears on ITCH except as the
  rest it leaves on the book, as on NASDAQ.

Everything is integers: prices in 1/10000 dollars, cash in price units x
shares (sells add, buys subtract), so a client's record can be compared
exactly with :attr:`MatchingEngine.fills`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sortedcontainers import SortedDict

from book import BBO, Depth, LevelView
from efsdk.errors import ConfigError, EfsdkError
from efsdk.itch.layouts import LAYOUTS

__all__ = [
    "DAY",
    "IOC",
    "MAX_PRICE",
    "MAX_SHARES",
    "EngineStats",
    "Fill",
    "MatchingEngine",
    "RestingOrder",
    "Response",
    "SimStateError",
    "ns_since_midnight",
    "on_tick_grid",
]

log = logging.getLogger(__name__)

IOC = 0  # OUCH time in force: immediate or cancel
DAY = 99999  # OUCH time in force: system hours (99998, market hours, behaves the same here)
MAX_SHARES = 999_999  # OUCH 4.2: shares must be fewer than 1,000,000
MAX_PRICE = 199_999_9900  # OUCH 4.2: $199,999.99 is the largest limit price
_DOLLAR = 10_000  # price units per dollar (4 implied decimals)
_CENT = 100  # the tick at and above $1.00 (Reg NMS rule 612)
_TS_LO = 0xFFFFFFFF

_SELL_SIDES = frozenset("STE")  # sell, sell short, sell short exempt
_SIDES = frozenset("BSTE")
_DISPLAYS = frozenset("YA")
_SELF_TRADE_POLICIES = ("allow", "cancel_resting")

#: One OUCH response: (account it is for, outbound message of efsdk.orders.ouch.codec).
Response = tuple[str, Any]


class SimStateError(EfsdkError, RuntimeError):
    """The simulator was driven out of order (a session opened twice, or reopened)."""


def ns_since_midnight() -> int:
    """Wall-clock nanoseconds since local midnight (the ITCH/OUCH timestamp base)."""
    now = time.time_ns()
    sec, frac = divmod(now, 1_000_000_000)
    lt = time.localtime(sec)
    return ((lt.tm_hour * 60 + lt.tm_min) * 60 + lt.tm_sec) * 1_000_000_000 + frac


def on_tick_grid(price: int) -> bool:
    """True if ``price`` (1/10000 $) is a valid limit: whole cents from $1.00, $0.0001 below."""
    return 0 < price <= MAX_PRICE and (price < _DOLLAR or price % _CENT == 0)


class Fill(NamedTuple):
    """One side of one execution, as the exchange recorded it."""

    account: str
    token: str
    symbol: str
    side: str  # "B" buy, "S" any sell (S/T/E)
    shares: int
    price: int
    match_number: int
    timestamp: int  # ns since midnight
    liquidity: str  # "A" added (resting), "R" removed (aggressor)


class RestingOrder(NamedTuple):
    """A live order on the book (inspection view)."""

    ref: int  # ITCH order reference number
    account: str
    token: str
    side: str  # OUCH side: B, S, T or E
    price: int
    shares: int


@dataclass
class EngineStats:
    """What the engine has done; every drop, reject and ignored request is counted here."""

    orders: int = 0  # Enter Order requests
    accepted: int = 0
    rejects: dict[str, int] = field(default_factory=dict)  # OUCH reject reason -> count
    cancels: int = 0  # user cancels that took shares off an order
    cancel_rejects: int = 0
    replaces: int = 0  # Replaced sent
    modifies: int = 0  # OrderModified sent
    executions: int = 0  # matches (one match number each)
    executed_shares: int = 0
    ioc_canceled: int = 0  # IOC remainders canceled
    self_trade_cancels: int = 0
    expired: int = 0  # day orders canceled at the close
    ignored: dict[str, int] = field(default_factory=dict)  # request kind -> count
    itch_messages: int = 0


class _Order:
    """A live (or aggressing) order; mutable, one per ITCH reference."""

    __slots__ = (
        "account", "token", "ref", "is_buy", "side", "price", "shares", "book", "tif", "firm",
        "display", "capacity", "iso", "min_qty", "cross_type", "customer_type",
    )  # fmt: skip

    def __init__(
        self, account: str, token: str, ref: int, is_buy: bool, side: str, price: int, shares: int,
        book: _Book, tif: int, firm: str, display: str, capacity: str, iso: str, min_qty: int,
        cross_type: str, customer_type: str,
    ) -> None:  # fmt: skip
        self.account = account
        self.token = token
        self.ref = ref
        self.is_buy = is_buy
        self.side = side
        self.price = price
        self.shares = shares
        self.book = book
        self.tif = tif
        self.firm = firm
        self.display = display
        self.capacity = capacity
        self.iso = iso
        self.min_qty = min_qty
        self.cross_type = cross_type
        self.customer_type = customer_type

    def view(self) -> RestingOrder:
        return RestingOrder(self.ref, self.account, self.token, self.side, self.price, self.shares)


class _Book:
    """One instrument: bids keyed by -price and asks by price, so index 0 is the best level of both."""

    __slots__ = ("symbol", "locate", "stock", "bids", "asks")

    def __init__(self, symbol: str, locate: int) -> None:
        self.symbol = symbol
        self.locate = locate
        self.stock = symbol.encode("latin-1").ljust(8)
        self.bids: SortedDict = SortedDict()  # -price -> {ref: _Order}
        self.asks: SortedDict = SortedDict()  # price -> {ref: _Order}


def _ouch() -> Any:
    """The shared OUCH 4.2 codec module (imported on first use)."""
    from efsdk.orders.ouch import codec

    return codec


class MatchingEngine:
    """Price-time-priority books for ``symbols``: OUCH 4.2 requests in, OUCH responses and ITCH 5.0 out.

    Locates are ``first_locate``, ``first_locate + 1``... in the order of
    ``symbols``.  ``clock_ns()`` stamps every message (ns since midnight;
    wall clock by default).  See the module docstring for every rule.
    Raises :class:`~efsdk.errors.ConfigError` for bad arguments.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        first_locate: int = 1,
        clock_ns: Callable[[], int] | None = None,
        self_trade: str = "allow",
        max_shares: int = MAX_SHARES,
        replace_decrease_keeps_priority: bool = True,
        unrecorded_accounts: Sequence[str] = (),
    ) -> None:
        symbols = list(symbols)
        if not symbols:
            raise ConfigError("MatchingEngine needs at least one symbol")
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"duplicate symbols in {symbols!r}")
        for s in symbols:
            if not isinstance(s, str) or not 0 < len(s) <= 8 or s != s.strip() or not s.isascii():
                raise ConfigError(f"symbol {s!r} must be 1-8 ASCII characters without spaces at the ends")
        if not 0 < first_locate or first_locate + len(symbols) - 1 > 0xFFFF:
            raise ConfigError(f"locates {first_locate}..{first_locate + len(symbols) - 1} do not fit 1..65535")
        if self_trade not in _SELF_TRADE_POLICIES:
            raise ConfigError(f"self_trade must be one of {_SELF_TRADE_POLICIES}, got {self_trade!r}")
        if not 0 < max_shares <= 0xFFFFFFFF:
            raise ConfigError(f"max_shares must be 1..{0xFFFFFFFF}, got {max_shares}")
        self._books: dict[str, _Book] = {s: _Book(s, first_locate + i) for i, s in enumerate(symbols)}
        self._clock = clock_ns if clock_ns is not None else ns_since_midnight
        self._cancel_resting_on_self_trade = self_trade == "cancel_resting"
        self.self_trade = self_trade
        self.max_shares = max_shares
        self.replace_decrease_keeps_priority = replace_decrease_keeps_priority
        self._itch: list[bytes] = []
        self._live: dict[str, dict[str, _Order]] = {}  # account -> token -> resting order
        self._used: dict[str, set[str]] = {}  # account -> tokens used today
        # Accounts whose tokens are not remembered and whose fills are not recorded (a replay's
        # mirror of the feed: millions of orders a day that nobody reconciles).
        self._unrecorded = frozenset(unrecorded_accounts)
        self._next_ref = 1
        self._next_match = 1
        self._state = "new"  # -> "open" -> "closed"
        self.fills: list[Fill] = []
        self._positions: dict[tuple[str, str], int] = {}
        self._cash: dict[str, int] = {}
        self.stats = EngineStats()
        self._warned: set[str] = set()
        ouch = _ouch()
        self._Accepted = ouch.Accepted
        self._Replaced = ouch.Replaced
        self._Canceled = ouch.Canceled
        self._Executed = ouch.Executed
        self._Rejected = ouch.Rejected
        self._OrderModified = ouch.OrderModified
        self._CancelReject = ouch.CancelReject
        self._pack_A = LAYOUTS[b"A"].struct.pack
        self._pack_F = LAYOUTS[b"F"].struct.pack
        self._pack_E = LAYOUTS[b"E"].struct.pack
        self._pack_X = LAYOUTS[b"X"].struct.pack
        self._pack_D = LAYOUTS[b"D"].struct.pack
        self._pack_U = LAYOUTS[b"U"].struct.pack

    def __repr__(self) -> str:
        live = sum(len(v) for v in self._live.values())
        return (
            f"<MatchingEngine {self._state} symbols={len(self._books)} live_orders={live} "
            f"executions={self.stats.executions} itch_pending={len(self._itch)}>"
        )

    # ------------------------------------------------------------------ session
    @property
    def symbols(self) -> list[str]:
        """Instruments in locate order."""
        return list(self._books)

    @property
    def is_open(self) -> bool:
        """True between open_session() and close_session()."""
        return self._state == "open"

    def locate(self, symbol: str) -> int:
        """Stock locate of ``symbol``."""
        return self._book(symbol).locate

    def open_session(self) -> None:
        """Start the day: ITCH S 'O', R per symbol, H 'T' per symbol, S 'S', S 'Q'.  Once only."""
        if self._state != "new":
            raise SimStateError(f"open_session() on a session that is already {self._state}; make a new engine")
        self._state = "open"
        hi, lo = self._ts()
        emit = self._emit
        pack_S = LAYOUTS[b"S"].struct.pack
        pack_R = LAYOUTS[b"R"].struct.pack
        pack_H = LAYOUTS[b"H"].struct.pack
        emit(pack_S(b"S", 0, 0, hi, lo, b"O"))
        for b in self._books.values():
            # Common stock, normal status, round lot 100, production, tier 2, no ETP.
            emit(pack_R(b"R", b.locate, 0, hi, lo, b.stock, b"Q", b"N", 100, b"N", b"C", b"Z ", b"P",
                        b"N", b"N", b"2", b"N", 0, b"N"))  # fmt: skip
        for b in self._books.values():
            emit(pack_H(b"H", b.locate, 0, hi, lo, b.stock, b"T", b" ", b"    "))
        emit(pack_S(b"S", 0, 0, hi, lo, b"S"))
        emit(pack_S(b"S", 0, 0, hi, lo, b"Q"))

    def close_session(self) -> list[Response]:
        """End the day: cancel every resting order (ITCH D, OUCH Canceled 'T'), then ITCH S 'M', 'E', 'C'.

        Returns the Canceled responses.  Raises :class:`SimStateError` unless open.
        """
        if self._state != "open":
            raise SimStateError(f"close_session() on a session that is {self._state}, not open")
        ts = self._clock()
        hi, lo = ts >> 32, ts & _TS_LO
        out: list[Response] = []
        Canceled = self._Canceled
        for b in self._books.values():
            for levels in (b.bids, b.asks):
                for level in levels.values():
                    for o in level.values():
                        self._emit(self._pack_D(b"D", b.locate, 0, hi, lo, o.ref))
                        out.append((o.account, Canceled("C", ts, o.token, o.shares, "T")))
                        self.stats.expired += 1
                levels.clear()
        self._live.clear()
        self._state = "closed"
        pack_S = LAYOUTS[b"S"].struct.pack
        for code in (b"M", b"E", b"C"):
            self._emit(pack_S(b"S", 0, 0, hi, lo, code))
        return out

    def drain_itch(self) -> list[bytes]:
        """Return and clear the unframed ITCH 5.0 messages emitted since the last call."""
        out = self._itch
        self._itch = []
        return out

    # ------------------------------------------------------------------ OUCH in
    def handle(self, account: str, msg: Any) -> list[Response]:
        """Route any inbound OUCH request (Enter, Replace, Cancel, Modify) by its type."""
        kind = msg[0]
        if kind == "O":
            return self.enter(account, msg)
        if kind == "U":
            return self.replace(account, msg)
        if kind == "X":
            return self.cancel(account, msg)
        if kind == "M":
            return self.modify(account, msg)
        raise ValueError(f"not an inbound OUCH request: type {kind!r}")

    def enter(self, account: str, msg: Any) -> list[Response]:
        """Handle an OUCH Enter Order from ``account``; returns every response it caused."""
        stats = self.stats
        stats.orders += 1
        ts = self._clock()
        token = msg.token
        used = self._used.get(account)
        if used is None:
            used = self._used[account] = set()
            self._live[account] = {}
        if token in used:
            return self._reject(account, token, "O", ts)
        if account not in self._unrecorded:
            used.add(token)
        reason = self._invalid(msg.stock, msg.side, msg.shares, msg.price, msg.display, msg.minimum_quantity)
        if reason is not None:
            return self._reject(account, token, reason, ts)
        book = self._books[msg.stock]
        side = msg.side
        ref = self._next_ref
        self._next_ref = ref + 1
        o = _Order(account, token, ref, side == "B", side, msg.price, msg.shares, book, msg.time_in_force,
                   msg.firm, msg.display, msg.capacity, msg.intermarket_sweep, msg.minimum_quantity,
                   msg.cross_type, msg.customer_type)  # fmt: skip
        stats.accepted += 1
        out: list[Response] = [(account, self._Accepted(
            "A", ts, token, side, o.shares, book.symbol, o.price, o.tif, o.firm, o.display, ref, o.capacity,
            o.iso, o.min_qty, o.cross_type, "L", " "))]  # fmt: skip
        self._aggress(o, ts, out)
        return out

    def cancel(self, account: str, msg: Any) -> list[Response]:
        """Handle an OUCH Cancel Order (``shares`` = new intended size, 0 = all)."""
        ts = self._clock()
        live = self._live.get(account)
        o = live.get(msg.token) if live is not None else None
        if o is None:
            self.stats.cancel_rejects += 1
            return [(account, self._CancelReject("I", ts, msg.token))]
        new = msg.shares
        if new >= o.shares:
            self._ignore("cancel_no_reduction", f"cancel of {msg.token!r} to {new} shares, not below its {o.shares}")
            return []
        decrement = o.shares - new
        self._reduce(o, new, ts)
        self.stats.cancels += 1
        return [(account, self._Canceled("C", ts, o.token, decrement, "U"))]

    def modify(self, account: str, msg: Any) -> list[Response]:
        """Handle an OUCH 4.2 Modify Order: change among sell sides and/or decrease shares."""
        ts = self._clock()
        live = self._live.get(account)
        o = live.get(msg.token) if live is not None else None
        if o is None:
            self._ignore("modify_unknown_token", f"modify of unknown or dead token {msg.token!r}")
            return []
        side = msg.side
        if side != o.side and (o.is_buy or side not in _SELL_SIDES):
            self._ignore("modify_bad_side", f"modify of {msg.token!r} from side {o.side!r} to {side!r}")
            return []
        if msg.shares > o.shares:
            self._ignore("modify_increase", f"modify of {msg.token!r} up to {msg.shares} from {o.shares} shares")
            return []
        o.side = side
        if msg.shares < o.shares:
            self._reduce(o, msg.shares, ts)
        self.stats.modifies += 1
        return [(account, self._OrderModified("M", ts, o.token, side, msg.shares))]

    def replace(self, account: str, msg: Any) -> list[Response]:
        """Handle an OUCH Replace Order (priority kept or lost per the module rules)."""
        ts = self._clock()
        new_token = msg.replacement_token
        used = self._used.get(account)
        if used is None:
            used = self._used[account] = set()
            self._live[account] = {}
        if new_token in used:
            self._ignore("replace_duplicate_token", f"replace with already used token {new_token!r}")
            return []
        live = self._live[account]
        o = live.get(msg.existing_token)
        if o is None:
            return self._reject(account, new_token, "O", ts)
        reason = self._invalid(o.book.symbol, o.side, msg.shares, msg.price, msg.display, msg.minimum_quantity)
        if reason is not None:
            return self._reject(account, new_token, reason, ts)
        used.add(new_token)
        del live[o.token]
        previous = o.token
        book = o.book
        shares, price, tif, display = msg.shares, msg.price, msg.time_in_force, msg.display
        out: list[Response] = []
        self.stats.replaces += 1
        keep = (
            self.replace_decrease_keeps_priority
            and price == o.price
            and shares <= o.shares
            and tif != IOC
            and display == o.display
        )
        if keep:
            if shares < o.shares:
                self._emit(self._pack_X(b"X", book.locate, 0, ts >> 32, ts & _TS_LO, o.ref, o.shares - shares))
                o.shares = shares
            o.token, o.tif, o.iso, o.min_qty = new_token, tif, msg.intermarket_sweep, msg.minimum_quantity
            live[new_token] = o
            out.append((account, self._replaced(o, previous, ts)))
            return out
        # Loses priority: out of its level, back in as a new order with a new reference.
        self._unlink(o)
        ref = self._next_ref
        self._next_ref = ref + 1
        n = _Order(account, new_token, ref, o.is_buy, o.side, price, shares, book, tif, o.firm, display,
                   o.capacity, msg.intermarket_sweep, msg.minimum_quantity, o.cross_type,
                   o.customer_type)  # fmt: skip
        out.append((account, self._replaced(n, previous, ts)))
        if tif != IOC and not self._marketable(n):
            self._emit(self._pack_U(b"U", book.locate, 0, ts >> 32, ts & _TS_LO, o.ref, ref, shares, price))
            self._rest(n)
        else:
            self._emit(self._pack_D(b"D", book.locate, 0, ts >> 32, ts & _TS_LO, o.ref))
            self._aggress(n, ts, out)
        return out

    # ------------------------------------------------------------------ record
    def position(self, account: str, symbol: str) -> int:
        """Signed shares ``account`` holds in ``symbol`` from today's fills (buys +, sells -)."""
        return self._positions.get((account, symbol), 0)

    def cash(self, account: str) -> int:
        """Cash of ``account`` from today's fills in price units x shares (sells +, buys -)."""
        return self._cash.get(account, 0)

    def accounts(self) -> list[str]:
        """Every account that has sent a request today, in first-seen order."""
        return list(self._used)

    # ------------------------------------------------------------------ inspection
    def best(self, symbol: str) -> tuple[int | None, int | None]:
        """(best bid, best ask) prices of ``symbol``, ``None`` for an empty side; O(1)."""
        b = self._book(symbol)
        return (-b.bids.peekitem(0)[0] if b.bids else None, b.asks.peekitem(0)[0] if b.asks else None)

    def bbo(self, symbol: str) -> BBO:
        """Best bid and offer with their total shares and order counts."""
        b = self._book(symbol)
        bid = ask = None
        bid_sh = bid_n = ask_sh = ask_n = 0
        if b.bids:
            key, level = b.bids.peekitem(0)
            bid, bid_sh, bid_n = -key, sum(o.shares for o in level.values()), len(level)
        if b.asks:
            key, level = b.asks.peekitem(0)
            ask, ask_sh, ask_n = key, sum(o.shares for o in level.values()), len(level)
        return BBO(bid, bid_sh, bid_n, ask, ask_sh, ask_n)

    def depth(self, symbol: str, n: int = 5) -> Depth:
        """Top ``n`` levels per side, best first, as (price, total shares, order count)."""
        b = self._book(symbol)

        def rows(levels: SortedDict, sign: int) -> list[LevelView]:
            out = []
            for key in levels.islice(0, n):
                level = levels[key]
                out.append(LevelView(sign * key, sum(o.shares for o in level.values()), len(level)))
            return out

        return Depth(rows(b.bids, -1), rows(b.asks, 1))

    def orders(self, symbol: str) -> list[RestingOrder]:
        """Every resting order of ``symbol``: bids then asks, best price first, time priority within a level."""
        b = self._book(symbol)
        return [o.view() for levels in (b.bids, b.asks) for level in levels.values() for o in level.values()]

    def order(self, account: str, token: str) -> RestingOrder | None:
        """The resting order ``token`` of ``account``, or ``None`` if it is not live."""
        o = self._live.get(account, {}).get(token)
        return o.view() if o is not None else None

    def resting_shares(self, account: str, token: str) -> int:
        """Open shares of ``account``'s order ``token`` (0 if it is not live); no view object is built."""
        o = self._live.get(account, {}).get(token)
        return o.shares if o is not None else 0

    def live_orders(self, account: str) -> list[RestingOrder]:
        """Every resting order of ``account``, in no particular order."""
        return [o.view() for o in self._live.get(account, {}).values()]

    def _check(self) -> None:
        """Assert every invariant (tests and debugging): books uncrossed, levels, index, record."""
        indexed = {(o.account, o.token): o for live in self._live.values() for o in live.values()}
        seen = 0
        for b in self._books.values():
            if b.bids and b.asks:
                assert -b.bids.peekitem(0)[0] < b.asks.peekitem(0)[0], f"{b.symbol} crossed"
            for levels, sign, is_buy in ((b.bids, -1, True), (b.asks, 1, False)):
                for key, level in levels.items():
                    assert level, f"{b.symbol}: empty level kept at {sign * key}"
                    for ref, o in level.items():
                        assert o.ref == ref and o.book is b and o.is_buy is is_buy and o.price == sign * key
                        assert o.shares > 0, f"order {ref} rests with {o.shares} shares"
                        assert indexed.get((o.account, o.token)) is o, f"order {ref} not indexed"
                        seen += 1
        assert seen == len(indexed), "index holds orders that are not on a book"
        for s in self._books:
            assert sum(v for (a, sym), v in self._positions.items() if sym == s) == 0
        assert sum(self._cash.values()) == 0

    # ------------------------------------------------------------------ internals
    def _book(self, symbol: str) -> _Book:
        try:
            return self._books[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}; this engine trades {', '.join(self._books)}") from None

    def _ts(self) -> tuple[int, int]:
        ts = self._clock()
        return ts >> 32, ts & _TS_LO

    def _emit(self, message: bytes) -> None:
        self._itch.append(message)
        self.stats.itch_messages += 1

    def _ignore(self, kind: str, what: str) -> None:
        ignored = self.stats.ignored
        ignored[kind] = ignored.get(kind, 0) + 1
        if kind not in self._warned:  # once per kind, never per request
            self._warned.add(kind)
            log.warning("sim engine: ignored %s; further ones are counted in stats.ignored[%r]", what, kind)

    def _reject(self, account: str, token: str, reason: str, ts: int) -> list[Response]:
        rejects = self.stats.rejects
        rejects[reason] = rejects.get(reason, 0) + 1
        return [(account, self._Rejected("J", ts, token, reason))]

    def _invalid(self, stock: str, side: str, shares: int, price: int, display: str, min_qty: int) -> str | None:
        """OUCH reject reason for these order details, or None if they are valid."""
        if self._state != "open":
            return "C"
        if stock not in self._books:
            return "S"
        if side not in _SIDES or shares <= 0:
            return "O"
        if shares > self.max_shares:
            return "Z"
        if not (0 < price <= MAX_PRICE and (price < _DOLLAR or price % _CENT == 0)):
            return "X"
        if display not in _DISPLAYS:
            return "D"
        if min_qty:
            return "N"
        return None

    def _replaced(self, o: _Order, previous: str, ts: int) -> Any:
        return self._Replaced(
            "U", ts, o.token, o.side, o.shares, o.book.symbol, o.price, o.tif, o.firm, o.display, o.ref,
            o.capacity, o.iso, o.min_qty, o.cross_type, "L", previous, " ",
        )  # fmt: skip

    def _marketable(self, o: _Order) -> bool:
        opp = o.book.asks if o.is_buy else o.book.bids
        return bool(opp) and opp.peekitem(0)[0] <= (o.price if o.is_buy else -o.price)

    def _rest(self, o: _Order) -> None:
        levels = o.book.bids if o.is_buy else o.book.asks
        key = -o.price if o.is_buy else o.price
        level = levels.get(key)
        if level is None:
            level = levels[key] = {}
        level[o.ref] = o
        self._live[o.account][o.token] = o

    def _unlink(self, o: _Order) -> None:
        """Take ``o`` off its level (no ITCH, no index change)."""
        levels = o.book.bids if o.is_buy else o.book.asks
        key = -o.price if o.is_buy else o.price
        level = levels[key]
        del level[o.ref]
        if not level:
            del levels[key]

    def _reduce(self, o: _Order, new_shares: int, ts: int) -> None:
        """Cut a resting order to ``new_shares`` (ITCH X, keeps priority) or remove it at 0 (ITCH D)."""
        locate = o.book.locate
        if new_shares:
            self._emit(self._pack_X(b"X", locate, 0, ts >> 32, ts & _TS_LO, o.ref, o.shares - new_shares))
            o.shares = new_shares
        else:
            self._emit(self._pack_D(b"D", locate, 0, ts >> 32, ts & _TS_LO, o.ref))
            self._unlink(o)
            del self._live[o.account][o.token]
            o.shares = 0

    def _aggress(self, o: _Order, ts: int, out: list[Response]) -> None:
        """Match an incoming order against the book, then rest (ITCH A/F) or IOC-cancel what is left."""
        book = o.book
        opp = book.asks if o.is_buy else book.bids
        limit = o.price if o.is_buy else -o.price
        hi, lo = ts >> 32, ts & _TS_LO
        if opp and opp.peekitem(0)[0] <= limit:
            itch = self._itch
            pack_E = self._pack_E
            Executed = self._Executed
            fills = self.fills
            unrecorded = self._unrecorded
            positions = self._positions
            cash = self._cash
            live = self._live
            stats = self.stats
            locate = book.locate
            symbol = book.symbol
            account = o.account
            a_side, r_side = ("B", "S") if o.is_buy else ("S", "B")
            a_sign = 1 if o.is_buy else -1
            a_pos = (account, symbol)
            stp = self._cancel_resting_on_self_trade
            left = o.shares
            n_exec = n_itch = 0
            while left and opp:
                key, level = opp.peekitem(0)
                if key > limit:
                    break
                price = key if o.is_buy else -key
                for ref, rest in level.items():
                    if stp and rest.account == account:
                        itch.append(self._pack_D(b"D", locate, 0, hi, lo, ref))
                        n_itch += 1
                        out.append((account, self._Canceled("C", ts, rest.token, rest.shares, "Q")))
                        stats.self_trade_cancels += 1
                        q = rest.shares
                    else:
                        q = rest.shares if rest.shares < left else left
                        match = self._next_match
                        self._next_match = match + 1
                        itch.append(pack_E(b"E", locate, 0, hi, lo, ref, q, match))
                        n_itch += 1
                        n_exec += 1
                        r_acct = rest.account
                        out.append((r_acct, Executed("E", ts, rest.token, q, price, "A", match)))
                        out.append((account, Executed("E", ts, o.token, q, price, "R", match)))
                        if r_acct not in unrecorded:
                            fills.append(Fill(r_acct, rest.token, symbol, r_side, q, price, match, ts, "A"))
                        if account not in unrecorded:
                            fills.append(Fill(account, o.token, symbol, a_side, q, price, match, ts, "R"))
                        value = q * price
                        r_pos = (r_acct, symbol)
                        positions[r_pos] = positions.get(r_pos, 0) - a_sign * q
                        positions[a_pos] = positions.get(a_pos, 0) + a_sign * q
                        cash[r_acct] = cash.get(r_acct, 0) + a_sign * value
                        cash[account] = cash.get(account, 0) - a_sign * value
                        stats.executed_shares += q
                        left -= q
                    if q == rest.shares:
                        rest.shares = 0
                        del live[rest.account][rest.token]
                    else:
                        rest.shares -= q
                    break  # the level dict may not change size while iterated: look again
                if not rest.shares:
                    del level[ref]
                    if not level:
                        del opp[key]
            o.shares = left
            stats.executions += n_exec
            stats.itch_messages += n_itch
        if not o.shares:
            return
        if o.tif == IOC:
            self.stats.ioc_canceled += 1
            out.append((o.account, self._Canceled("C", ts, o.token, o.shares, "I")))
            o.shares = 0
            return
        if o.display == "A":
            firm = o.firm.encode("latin-1")[:4].ljust(4)
            self._emit(self._pack_F(b"F", book.locate, 0, hi, lo, o.ref, b"B" if o.is_buy else b"S", o.shares,
                                    book.stock, o.price, firm))  # fmt: skip
        else:
            self._emit(self._pack_A(b"A", book.locate, 0, hi, lo, o.ref, b"B" if o.is_buy else b"S", o.shares,
                                    book.stock, o.price))  # fmt: skip
        self._rest(o)
