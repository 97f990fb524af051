"""Pre-trade risk: every order passes :meth:`RiskGate.check` before its bytes are built.

Limits are per strategy (its config's ``risk`` section).  A blocked order
raises :class:`~efsdk.errors.RiskRejected` whose ``reason`` is a stable code
(``max_order_shares``, ``max_notional``, ``max_position``, ``price_collar``,
``no_reference_price``, ``order_rate``, ``kill_switch``) and whose message
names the limit and the value that broke it.  Every block is counted by
reason in :attr:`RiskGate.rejected`.

The position limit is checked against the worst case: current position plus
every open order on the same side plus this one, so a burst of resting
orders cannot jointly exceed it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from efsdk.errors import RiskRejected

__all__ = ["RiskConfig", "RiskGate"]

log = logging.getLogger(__name__)

PRICE_SCALE = 10_000  # OUCH/ITCH prices carry 4 implied decimals


class RiskConfig(BaseModel):
    """Per-strategy pre-trade limits (``None`` disables a limit).  Prices in dollars."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_shares: int | None = Field(default=10_000, gt=0, description="shares in one order")
    max_notional: float | None = Field(default=1_000_000.0, gt=0, description="dollars in one order (shares x price)")
    max_position: int | None = Field(
        default=50_000, gt=0, description="absolute shares per symbol, counting every open order on the same side"
    )
    price_collar: float | None = Field(
        default=0.05, gt=0, description="fraction away from the far side of the BBO a limit price may be"
    )
    max_orders_per_second: int | None = Field(default=1000, gt=0, description="new, replace and cancel requests")
    require_reference_price: bool = Field(
        default=True, description="block orders when the BBO side the collar needs is empty"
    )


class RiskGate:
    """Checks orders against a :class:`RiskConfig`; owns the kill switch.

    ``exposure(symbol, side)`` returns ``(position, open_same_side_shares)``
    from the order manager; ``reference(symbol)`` returns ``(bid, ask)`` in
    price units (either may be ``None``).
    """

    def __init__(
        self,
        config: RiskConfig,
        exposure: Callable[[str, str], tuple[int, int]],
        reference: Callable[[str], tuple[int | None, int | None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._exposure = exposure
        self._reference = reference
        self._clock = clock
        self._recent: collections.deque[float] = collections.deque()
        self.killed = False
        self.kill_reason = ""
        self.rejected: collections.Counter[str] = collections.Counter()
        self.passed = 0

    # ------------------------------------------------------------------ kill switch
    def kill(self, reason: str = "kill switch") -> None:
        """Block every new order from now on (cancels are still allowed)."""
        if not self.killed:
            log.warning("risk: kill switch engaged (%s); new orders are blocked", reason)
        self.killed = True
        self.kill_reason = reason

    def reset_kill(self) -> None:
        self.killed = False
        self.kill_reason = ""

    # ------------------------------------------------------------------ checks
    def _block(self, reason: str, message: str) -> RiskRejected:
        self.rejected[reason] += 1
        return RiskRejected(reason, message)

    def check_rate(self) -> None:
        """Count one request against the per-second rate (new, replace, cancel)."""
        limit = self.config.max_orders_per_second
        if limit is None:
            return
        now = self._clock()
        recent = self._recent
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= limit:
            raise self._block("order_rate", f"{len(recent)} requests in the last second, limit {limit}/s")
        recent.append(now)

    def check_order(self, symbol: str, side: str, shares: int, price: int) -> None:
        """Raise :class:`RiskRejected` unless a ``side`` order of ``shares`` at ``price`` may be sent.

        A replace is checked like a new order of its new size: the original's
        open shares may fill while it is in flight (the worst case).
        """
        cfg = self.config
        if self.killed:
            raise self._block("kill_switch", f"kill switch engaged ({self.kill_reason}); no new orders")
        if cfg.max_order_shares is not None and shares > cfg.max_order_shares:
            raise self._block("max_order_shares", f"{shares:,} shares > max_order_shares {cfg.max_order_shares:,}")
        notional = shares * price / PRICE_SCALE
        if cfg.max_notional is not None and notional > cfg.max_notional:
            raise self._block("max_notional", f"notional ${notional:,.2f} > max_notional ${cfg.max_notional:,.2f}")
        if cfg.max_position is not None:
            position, open_same_side = self._exposure(symbol, side)
            sign = 1 if side == "B" else -1
            worst = position + sign * (open_same_side + shares)
            if abs(worst) > cfg.max_position and abs(worst) > abs(position):
                raise self._block(
                    "max_position",
                    f"{symbol} position {position:+,} with open {side} orders {open_same_side:,} and this "
                    f"{shares:,} could reach {worst:+,}, max_position {cfg.max_position:,}",
                )
        if cfg.price_collar is not None:
            bid, ask = self._reference(symbol)
            # A buy is collared against the ask (how far above the market it may
            # reach), a sell against the bid.
            far = ask if side == "B" else bid
            if far is None:
                if cfg.require_reference_price:
                    raise self._block(
                        "no_reference_price", f"{symbol} has no {'ask' if side == 'B' else 'bid'} to collar against"
                    )
            else:
                limit = far * (1 + cfg.price_collar) if side == "B" else far * (1 - cfg.price_collar)
                if (side == "B" and price > limit) or (side != "B" and price < limit):
                    raise self._block(
                        "price_collar",
                        f"{symbol} {side} at {price / PRICE_SCALE:.4f} is beyond the {cfg.price_collar:.1%} collar "
                        f"around {'ask' if side == 'B' else 'bid'} {far / PRICE_SCALE:.4f} "
                        f"(limit {limit / PRICE_SCALE:.4f})",
                    )
        self.passed += 1

    def __repr__(self) -> str:
        state = f"killed ({self.kill_reason})" if self.killed else "armed"
        return f"<RiskGate {state} passed={self.passed} rejected={dict(self.rejected)}>"
