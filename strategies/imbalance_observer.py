"""Observe order-book imbalance: the classic short-horizon price signal.

Imbalance over the top ``levels`` of the book is
``(bid_shares - ask_shares) / (bid_shares + ask_shares)`` in [-1, 1]; a
strongly positive value means resting demand outweighs supply near the touch.
This strategy only watches: it samples the signal once per ``sample_ns`` of
feed time per symbol and keeps statistics, which ``efsdk demo`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from book import OrderBook
from efsdk.pipeline import BookEvent
from efsdk.strategy import Strategy, StrategyConfig


class ImbalanceConfig(StrategyConfig):
    levels: int = Field(default=5, ge=1, le=100, description="book levels per side in the signal")
    sample_ns: int = Field(default=60_000_000_000, gt=0, description="feed time between samples")


@dataclass
class SymbolImbalance:
    updates: int = 0
    samples: list[tuple[int, float, int | None, int | None]] = field(default_factory=list)  # (ns, imb, bid, ask)
    last: float = 0.0
    next_sample_ns: int = 0

    @property
    def mean(self) -> float:
        return sum(s[1] for s in self.samples) / len(self.samples) if self.samples else 0.0


def imbalance(book: OrderBook, levels: int) -> float:
    """Top-``levels`` share imbalance of ``book`` in [-1, 1]; 0 for an empty book."""
    depth = book.depth(levels)
    bid = sum(level.shares for level in depth.bids)
    ask = sum(level.shares for level in depth.asks)
    total = bid + ask
    return (bid - ask) / total if total else 0.0


class ImbalanceObserver(Strategy):
    config_class = ImbalanceConfig
    config: ImbalanceConfig

    def __init__(self, config: ImbalanceConfig) -> None:
        super().__init__(config)
        self.by_symbol: dict[str, SymbolImbalance] = {s: SymbolImbalance() for s in config.symbols}

    def on_book(self, instrument: str, book: OrderBook, event: BookEvent) -> None:
        state = self.by_symbol.get(instrument or "")
        if state is None:  # a book whose directory message has not arrived yet
            return
        state.updates += 1
        now = self.ctx.now if self.ctx is not None else 0
        if now < state.next_sample_ns:
            return  # depth() walks levels: sample on feed time, not on every update
        state.last = imbalance(book, self.config.levels)
        state.samples.append((now, state.last, book.best_bid(), book.best_ask()))
        state.next_sample_ns = now + self.config.sample_ns
