"""A pure-Python L3/L2 order-book builder backed by sortedcontainers.

Usable on its own: build an :class:`OrderBook` by calling its methods, or a
whole feed's books with :class:`BookBuilder` and a book-op stream
(:mod:`book.ops`).  No C, no Numba, no Cython: speed comes from data layout
(see :mod:`book.builder`).
"""

from book.builder import BookBuilder
from book.orderbook import (
    BBO,
    BUY,
    SELL,
    BookSnapshot,
    Depth,
    LevelView,
    Order,
    OrderBook,
    OrderIndex,
    QueuePosition,
)
from book.side import BookSide
from book.stats import BookStats

__all__ = [
    "BBO",
    "BUY",
    "SELL",
    "BookBuilder",
    "BookSide",
    "BookSnapshot",
    "BookStats",
    "Depth",
    "LevelView",
    "Order",
    "OrderBook",
    "OrderIndex",
    "QueuePosition",
]
