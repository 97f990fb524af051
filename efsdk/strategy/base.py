"""The Strategy base class and its configuration model.

A strategy is a :class:`StrategyConfig` subclass (its parameters) plus a
:class:`Strategy` subclass (its hooks).  The same class runs live, on a
replay and against the embedded simulator; only the driver differs.  Hooks
run on the feed thread, one at a time, and must return quickly: the feed
waits for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from book import OrderBook
from efsdk.orders.risk import RiskConfig
from efsdk.pipeline import BookEvent, Trade

if TYPE_CHECKING:
    from efsdk.orders.manager import OrderUpdate
    from efsdk.strategy.context import StrategyContext

__all__ = ["Strategy", "StrategyConfig"]


class StrategyConfig(BaseModel):
    """Base configuration: the instruments, the pre-trade limits and the timer.

    Subclass it to add parameters; unknown keys are rejected so a typo in a
    config file fails at start-up instead of silently using a default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbols: tuple[str, ...]
    risk: RiskConfig = Field(default_factory=RiskConfig, description="pre-trade limits for this strategy's orders")
    timer_interval_ms: float | None = Field(
        default=None, gt=0, description="call on_timer this often (feed time on replay, wall time live)"
    )

    @field_validator("symbols")
    @classmethod
    def _symbols_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is required")
        for symbol in value:
            if not symbol or len(symbol) > 8 or not symbol.isascii() or symbol != symbol.strip():
                raise ValueError(f"{symbol!r} is not an ITCH symbol (1-8 ASCII characters, no spaces)")
        return value


class Strategy:
    """Base class: override the hooks you need.

    ``self.ctx`` (a :class:`~efsdk.strategy.context.StrategyContext`) exists
    from :meth:`on_start` on; nothing may trade before that.
    """

    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig

    def __init__(self, config: StrategyConfig) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.ctx: StrategyContext | None = None

    def on_start(self, ctx: StrategyContext) -> None:
        """Called once before the first event; keep ``super().on_start(ctx)`` if you override it."""
        self.ctx = ctx

    def on_book(self, instrument: str, book: OrderBook, event: BookEvent) -> None:
        """Called after every change to the book of a subscribed instrument."""

    def on_trade(self, instrument: str, trade: Trade) -> None:
        """Called for every execution or trade print of a subscribed instrument (after its ``on_book``)."""

    def on_order(self, update: OrderUpdate) -> None:
        """Called for every change to one of this strategy's orders (accepted, filled, canceled, rejected...)."""

    def on_timer(self, now: int) -> None:
        """Called every ``config.timer_interval_ms`` with the clock in ns since midnight."""

    def on_stop(self) -> None:
        """Called once after the last event (the driver then cancels what is still open)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
