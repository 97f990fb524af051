"""Drive a strategy from a recorded ITCH feed (file or in-memory buffer)."""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import BinaryIO

from efsdk.pipeline import FeedHandler, FeedStats
from efsdk.strategy.base import Strategy, StrategyContext

__all__ = ["ReplayResult", "run_replay"]


@dataclass
class ReplayResult:
    feed: FeedHandler
    stats: FeedStats
    book_events: int
    seconds: float


def run_replay(
    strategy: Strategy,
    source: str | os.PathLike[str] | BinaryIO | bytes,
    progress=None,  # noqa: ANN001 - Callable[[int], None]
) -> ReplayResult:
    """Replay ``source`` (BinaryFILE ITCH, plain or gzip, or its bytes) into ``strategy``.

    Only the strategy's symbols are built (the native filter drops the rest
    before Python sees them); ``on_book`` fires after every change to them.
    """
    events = 0

    def on_book(book, event):  # noqa: ANN001 - hot callback
        nonlocal events
        events += 1
        strategy.on_book(book, event)

    feed = FeedHandler(symbols=strategy.config.symbols, on_book=on_book)
    strategy.on_start(StrategyContext(lambda: feed.clock, feed.builder.book))
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(source)
    started = time.perf_counter()
    try:
        stats = feed.replay(source, progress=progress)
    finally:
        strategy.on_stop()
    return ReplayResult(feed, stats, events, time.perf_counter() - started)
