"""The Strategy base class, its configuration model and its context."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from book import OrderBook
from efsdk.pipeline import BookEvent

__all__ = ["Strategy", "StrategyConfig", "StrategyContext"]


class StrategyConfig(BaseModel):
    """Base configuration: which instruments the strategy trades or watches.

    Subclass it to add parameters; unknown keys are rejected so a typo in a
    config file fails at start-up instead of silently using a default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbols: tuple[str, ...]

    @field_validator("symbols")
    @classmethod
    def _symbols_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is required")
        for symbol in value:
            if not symbol or len(symbol) > 8 or not symbol.isascii() or symbol != symbol.strip():
                raise ValueError(f"{symbol!r} is not an ITCH symbol (1-8 ASCII characters, no spaces)")
        return value


class StrategyContext:
    """What the runtime gives a started strategy: the clock and the books."""

    __slots__ = ("_clock", "_books")

    def __init__(self, clock, books) -> None:  # noqa: ANN001 - internal wiring
        self._clock = clock
        self._books = books

    @property
    def now(self) -> int:
        """Feed time in ns since midnight (of the last timestamped message seen)."""
        return self._clock()

    def book(self, symbol: str) -> OrderBook | None:
        """The book of a subscribed symbol (``None`` before its directory message)."""
        return self._books(symbol)


class Strategy:
    """Base class: override the hooks you need.

    Nothing may touch the context before :meth:`on_start`; hooks run on the
    feed thread and must return quickly (the feed waits for them).
    """

    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig

    def __init__(self, config: StrategyConfig) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.ctx: StrategyContext | None = None

    def on_start(self, ctx: StrategyContext) -> None:
        """Called once before the first event."""
        self.ctx = ctx

    def on_book(self, book: OrderBook, event: BookEvent) -> None:
        """Called after every change to the book of a subscribed symbol."""

    def on_stop(self) -> None:
        """Called once after the last event."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
