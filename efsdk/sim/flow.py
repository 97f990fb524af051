"""Background order flow for the simulator: a stable, two-sided, moving book to trade against.

:class:`BackgroundFlow` plays one account (``"BGND"`` by default) through the
engine's own OUCH entry points, so its orders take the same matching and ITCH
path as a strategy's.  Per symbol it keeps a mid price that does a tick-sized
random walk and, around it:

* passive day orders ``half_spread_ticks`` to ``half_spread_ticks + levels - 1``
  ticks from the mid on each side (never priced through the opposite touch),
  up to ``orders_per_side`` per side; a full side cancels its farthest order
  instead of adding one;
* cancels (mostly whole, sometimes down to half) and replaces (repriced back
  around the mid, sometimes resized) of its own orders, preferring the stale
  ones the walk has left outside the quoting band;
* occasional marketable IOC orders that take the touch and up to
  ``max_through_ticks`` beyond it, leaning towards the mid so the traded
  price follows the walk;
* a side left empty by a sweep (its own or anybody's) is quoted again in the
  same call, so after every :meth:`~BackgroundFlow.step` both sides of every
  symbol have a quote.

Order distances and sizes come from the ITCH generator's tables
(:data:`efsdk.itch.generator.ACTIVE_OFFSETS_THIN`, ``ACTIVE_SHARES``,
``EXEC_SHARES``); the walk itself is this module's (the generator's is inline
in its day loop).  Everything is drawn from one ``random.Random(seed)``: the
same engine state, seed and calls give the same orders.

Responses for the background account are consumed here (they keep its view of
its own open orders); :meth:`BackgroundFlow.step` returns the responses meant
for every other account (a strategy hit by a marketable background order gets
its Executed that way), for the caller to deliver.  The other way round, the
caller must pass the responses of everybody else's requests through
:meth:`BackgroundFlow.deliver`, which keeps the background account's share
(fills of its resting orders by a strategy) and returns the rest.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from efsdk.errors import ConfigError
from efsdk.itch.generator import ACTIVE_OFFSETS_THIN, ACTIVE_SHARES, EXEC_SHARES, TICK
from efsdk.sim.engine import DAY, IOC, MatchingEngine, Response, _ouch

__all__ = ["BackgroundFlow", "FlowConfig", "FlowStats"]

log = logging.getLogger(__name__)

_OFFSET_BITS = 12  # ACTIVE_OFFSETS_THIN has 4096 entries
_SHARE_BITS = 8  # the share tables have 256 entries


class FlowConfig(BaseModel):
    """Shape of the background book; defaults give a spread of 2+ ticks and 5 levels a side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    levels: int = Field(5, ge=1, le=100, description="price levels quoted on each side")
    orders_per_side: int = Field(12, ge=1, le=1000, description="target resting background orders per side")
    half_spread_ticks: int = Field(1, ge=1, le=50, description="ticks from the mid to the nearest quote")
    tick: int = Field(TICK, ge=1, description="price step in 1/10000 $ (one cent)")
    p_move: float = Field(0.05, ge=0.0, le=1.0, description="chance an action first moves the mid a tick")
    p_marketable: float = Field(0.06, ge=0.0, le=1.0)
    p_cancel: float = Field(0.2, ge=0.0, le=1.0)
    p_replace: float = Field(0.2, ge=0.0, le=1.0)
    pressure: float = Field(0.3, ge=0.0, le=0.5, description="marketable orders lean towards the mid by this")
    max_through_ticks: int = Field(2, ge=0, le=50, description="how far past the touch a marketable order reaches")
    price_range: tuple[float, float] = Field((20.0, 150.0), description="dollars; start mids are drawn in it")
    firm: str = Field("BGND", max_length=4)


@dataclass
class FlowStats:
    """What the background flow did; anything unexpected from the engine is counted, never silent."""

    actions: dict[str, int] = field(default_factory=dict)  # place / cancel / replace / marketable / skip
    rejected: int = 0
    cancel_rejects: int = 0
    executions: int = 0  # background fills
    responses_out: int = 0  # responses handed back for other accounts
    unexpected: int = 0  # responses of a type the flow never causes


class BackgroundFlow:
    """Deterministic background orders on ``engine`` (every symbol, or ``symbols``) as ``account``."""

    def __init__(
        self,
        engine: MatchingEngine,
        *,
        seed: int,
        account: str = "BGND",
        symbols: Sequence[str] | None = None,
        start_prices: Mapping[str, int] | None = None,
        config: FlowConfig | None = None,
        token_prefix: str = "BG",
    ) -> None:
        self.engine = engine
        self.account = account
        self.config = cfg = config if config is not None else FlowConfig()
        self.symbols = list(symbols) if symbols is not None else engine.symbols
        unknown = [s for s in self.symbols if s not in engine.symbols]
        if unknown or not self.symbols:
            raise ConfigError(f"BackgroundFlow symbols {unknown or self.symbols!r} are not all traded by the engine")
        if not 1 <= len(token_prefix) <= 6:
            raise ConfigError(f"token_prefix must be 1-6 characters, got {token_prefix!r}")
        lo, hi = cfg.price_range
        if not 0 < lo <= hi:
            raise ConfigError(f"price_range must be 0 < low <= high dollars, got {cfg.price_range}")
        self.seed = seed
        self._rng = random.Random(seed)
        rng = self._rng
        self._mid: dict[str, int] = {}
        floor = (cfg.half_spread_ticks + cfg.levels + 1) * cfg.tick
        for s in self.symbols:
            if start_prices is not None and s in start_prices:
                p = int(start_prices[s])
            else:
                dollars = math.exp(rng.uniform(math.log(lo), math.log(hi)))
                p = int(dollars * 10_000)
            self._mid[s] = max(floor, round(p / cfg.tick) * cfg.tick)
        self._floor = floor
        # Our open orders: token -> [symbol, is_buy, price, shares]; per symbol the tokens by side.
        self._orders: dict[str, list[Any]] = {}
        self._by_side: dict[tuple[str, bool], dict[str, None]] = {
            (s, b): {} for s in self.symbols for b in (True, False)
        }
        self._token_prefix = token_prefix
        self._token_width = 14 - len(token_prefix)
        self._next_token = 1
        self.stats = FlowStats()
        self._EnterOrder = _ouch().EnterOrder
        self._ReplaceOrder = _ouch().ReplaceOrder
        self._CancelOrder = _ouch().CancelOrder
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<BackgroundFlow {self.account} symbols={len(self.symbols)} seed={self.seed} open={len(self._orders)}>"

    # ------------------------------------------------------------------ public
    def mid(self, symbol: str) -> int:
        """The background's current mid price of ``symbol`` (1/10000 $)."""
        return self._mid[symbol]

    def open_orders(self, symbol: str | None = None) -> int:
        """How many background orders are open (in ``symbol``, or in all)."""
        if symbol is None:
            return len(self._orders)
        return len(self._by_side[(symbol, True)]) + len(self._by_side[(symbol, False)])

    def deliver(self, responses: list[Response]) -> list[Response]:
        """Take the background account's share of responses caused by others' requests; return the rest.

        A strategy's marketable order that hits background orders answers the
        background account too; routing those here keeps the flow's view of
        its open orders exact (otherwise it would cancel or replace orders
        that are gone, which the engine counts and refuses).
        """
        rest: list[Response] = []
        me = self.account
        for account, m in responses:
            if account == me:
                self._own(m)
            else:
                rest.append((account, m))
        return rest

    def prime(self) -> list[Response]:
        """Fill every side of every symbol up to ``orders_per_side`` passive orders; returns others' responses."""
        out: list[Response] = []
        for s in self.symbols:
            for is_buy in (True, False):
                for _ in range(self.config.orders_per_side - len(self._by_side[(s, is_buy)])):
                    self._place(s, is_buy, out)
        return out

    def step(self, n: int = 1) -> list[Response]:
        """Submit ``n`` background actions; returns the responses addressed to other accounts."""
        cfg = self.config
        rng = self._rng
        rnd = rng.random
        symbols = self.symbols
        c_mkt = cfg.p_marketable
        c_can = c_mkt + cfg.p_cancel
        c_rep = c_can + cfg.p_replace
        out: list[Response] = []
        for _ in range(n):
            s = symbols[rng.randrange(len(symbols))] if len(symbols) > 1 else symbols[0]
            if rnd() < cfg.p_move:
                self._mid[s] = max(self._floor, self._mid[s] + (cfg.tick if rnd() < 0.5 else -cfg.tick))
            r = rnd()
            has = self.open_orders(s) > 0
            if r < c_mkt:
                self._marketable(s, out)
            elif r < c_can and has:
                self._cancel(s, out)
            elif r < c_rep and has:
                self._replace(s, out)
            else:
                nb = len(self._by_side[(s, True)])
                na = len(self._by_side[(s, False)])
                is_buy = nb < na if nb != na else rnd() < 0.5
                self._place(s, is_buy, out)
            # Our own sweep may have emptied a side: quote it again at once.
            self._requote(s, out)
        # ...and so may anybody else's since the last call.
        for s in symbols:
            self._requote(s, out)
        return out

    def _requote(self, s: str, out: list[Response]) -> None:
        bid, ask = self.engine.best(s)
        if bid is None:
            self._place(s, True, out, force=True)
        if ask is None:
            self._place(s, False, out, force=True)

    # ------------------------------------------------------------------ actions
    def _count(self, kind: str) -> None:
        actions = self.stats.actions
        actions[kind] = actions.get(kind, 0) + 1

    def _token(self) -> str:
        n = self._next_token
        self._next_token = n + 1
        return f"{self._token_prefix}{n:0{self._token_width}d}"

    def _passive_price(self, s: str, is_buy: bool) -> int | None:
        """A quote price for a new or repriced order: inside the band, never through the opposite touch."""
        cfg = self.config
        tick = cfg.tick
        off = min(cfg.levels - 1, ACTIVE_OFFSETS_THIN[self._rng.getrandbits(_OFFSET_BITS)] // TICK)
        dist = (cfg.half_spread_ticks + off) * tick
        mid = self._mid[s]
        bid, ask = self.engine.best(s)
        if is_buy:
            price = mid - dist
            if ask is not None and price >= ask:
                price = ask - tick
        else:
            price = mid + dist
            if bid is not None and price <= bid:
                price = bid + tick
        return price if price >= tick else None

    def _stale(self, s: str) -> str | None:
        """A background order of ``s`` outside the quoting band (farthest first), or None."""
        cfg = self.config
        mid = self._mid[s]
        near = cfg.half_spread_ticks * cfg.tick
        far = (cfg.half_spread_ticks + cfg.levels - 1) * cfg.tick
        worst, worst_d = None, 0
        for is_buy in (True, False):
            for token in self._by_side[(s, is_buy)]:
                price = self._orders[token][2]
                d = mid - price if is_buy else price - mid
                if d < near:
                    d = far + near - d + cfg.tick  # on the wrong side of the mid: most stale
                if d > far and d > worst_d:
                    worst, worst_d = token, d
        return worst

    def _pick(self, s: str) -> str:
        stale = self._stale(s)
        if stale is not None:
            return stale
        tokens = list(self._by_side[(s, True)]) + list(self._by_side[(s, False)])
        return tokens[self._rng.randrange(len(tokens))]

    def _place(self, s: str, is_buy: bool, out: list[Response], force: bool = False) -> None:
        cfg = self.config
        side_tokens = self._by_side[(s, is_buy)]
        if len(side_tokens) >= cfg.orders_per_side and not force:
            # Full side: retire its farthest order rather than grow without bound.
            mid = self._mid[s]
            far = max(side_tokens, key=lambda t: abs(self._orders[t][2] - mid))
            self._count("cancel")
            self._send_cancel(far, 0, out)
            return
        price = self._passive_price(s, is_buy)
        if price is None:
            self._count("skip")
            return
        shares = ACTIVE_SHARES[self._rng.getrandbits(_SHARE_BITS)]
        self._count("place")
        self._enter(s, is_buy, shares, price, DAY, out)

    def _cancel(self, s: str, out: list[Response]) -> None:
        token = self._pick(s)
        shares = self._orders[token][3]
        keep = shares // 2 if shares > 1 and self._rng.random() < 0.2 else 0
        self._count("cancel")
        self._send_cancel(token, keep, out)

    def _replace(self, s: str, out: list[Response]) -> None:
        token = self._pick(s)
        _, is_buy, _, shares = self._orders[token]
        price = self._passive_price(s, is_buy)
        if price is None:
            self._count("skip")
            return
        if self._rng.random() >= 0.6:
            shares = ACTIVE_SHARES[self._rng.getrandbits(_SHARE_BITS)]
        new = self._token()
        self._count("replace")
        msg = self._ReplaceOrder(
            type="U", existing_token=token, replacement_token=new, shares=shares, price=price,
            time_in_force=DAY, display="Y", intermarket_sweep="N", minimum_quantity=0,
        )  # fmt: skip
        self._absorb(self.engine.replace(self.account, msg), out)

    def _marketable(self, s: str, out: list[Response]) -> None:
        cfg = self.config
        rng = self._rng
        bid, ask = self.engine.best(s)
        if bid is None or ask is None:
            self._count("skip")
            return
        # Lean towards the mid: buy more often when the mid sits above the book's midpoint.
        lean = cfg.pressure if 2 * self._mid[s] > bid + ask else -cfg.pressure if 2 * self._mid[s] < bid + ask else 0
        is_buy = rng.random() < 0.5 + lean
        through = rng.randint(0, cfg.max_through_ticks) * cfg.tick
        price = ask + through if is_buy else bid - through
        if price < cfg.tick:
            self._count("skip")
            return
        shares = EXEC_SHARES[rng.getrandbits(_SHARE_BITS)] * (1, 1, 2, 5)[rng.getrandbits(2)]
        self._count("marketable")
        self._enter(s, is_buy, shares, price, IOC, out)

    # ------------------------------------------------------------------ engine calls
    def _enter(self, s: str, is_buy: bool, shares: int, price: int, tif: int, out: list[Response]) -> None:
        token = self._token()
        msg = self._EnterOrder(
            type="O", token=token, side="B" if is_buy else "S", shares=shares, stock=s, price=price,
            time_in_force=tif, firm=self.config.firm, display="Y", capacity="P", intermarket_sweep="N",
            minimum_quantity=0, cross_type="N", customer_type="N",
        )  # fmt: skip
        self._absorb(self.engine.enter(self.account, msg), out)

    def _send_cancel(self, token: str, shares: int, out: list[Response]) -> None:
        self._absorb(self.engine.cancel(self.account, self._CancelOrder(type="X", token=token, shares=shares)), out)

    def _absorb(self, responses: list[Response], out: list[Response]) -> None:
        """Fold our own responses into the open-order view; pass the others on."""
        me = self.account
        for account, m in responses:
            if account != me:
                out.append((account, m))
                self.stats.responses_out += 1
            else:
                self._own(m)

    def _own(self, m: Any) -> None:
        """Apply one response addressed to the background account."""
        t = m.type
        if t == "E":
            self.stats.executions += 1
            self._reduce(m.token, m.executed_shares)
        elif t == "A":
            self._open(m.token, m.stock, m.side == "B", m.price, m.shares)
        elif t == "C":
            self._reduce(m.token, m.decrement_shares)
        elif t == "U":
            self._close(m.previous_token)
            self._open(m.replacement_token, m.stock, m.side == "B", m.price, m.shares)
        elif t == "M":
            o = self._orders.get(m.token)
            if o is not None:
                o[3] = m.shares
                if not m.shares:
                    self._close(m.token)
        elif t == "J":
            self.stats.rejected += 1
            self._warn("rejected", f"background order {m.token} rejected with reason {m.reason!r}")
        elif t == "I":
            self.stats.cancel_rejects += 1
            self._close(m.token)
            self._warn("cancel_reject", f"background cancel of {m.token} rejected")
        else:
            self.stats.unexpected += 1
            self._warn("unexpected", f"unexpected response {t!r} for the background account")

    def _open(self, token: str, symbol: str, is_buy: bool, price: int, shares: int) -> None:
        self._orders[token] = [symbol, is_buy, price, shares]
        self._by_side[(symbol, is_buy)][token] = None

    def _close(self, token: str) -> None:
        o = self._orders.pop(token, None)
        if o is not None:
            del self._by_side[(o[0], o[1])][token]

    def _reduce(self, token: str, shares: int) -> None:
        o = self._orders.get(token)
        if o is None:
            return
        o[3] -= shares
        if o[3] <= 0:
            self._close(token)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:  # once per kind; FlowStats counts every one
            self._warned.add(kind)
            log.warning("sim flow: %s; further ones are counted in BackgroundFlow.stats", message)
