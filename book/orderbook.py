"""A per-instrument L3 order book: every live order, L2 levels, BBO, snapshots.

Orders are kept in an :class:`OrderIndex` that may be shared by many books
(exchange order references are unique for the day across instruments, which
lets the feed builder find an order without knowing its instrument).  Each
order lives in exactly one level dict of one :class:`~book.side.BookSide`;
the index maps ref -> that level dict, and ``where`` maps ``id(level)`` ->
``(side, price)`` so an emptied level can be removed in O(1).

Prices and shares are integers in feed units (ITCH: 1/10000 dollars); this
package never converts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from book.ops import SEQ_SHIFT, SHARES_MASK
from book.side import TOTAL, BookSide, level_orders, level_total
from book.stats import BookStats

__all__ = [
    "BBO",
    "BUY",
    "SELL",
    "Depth",
    "LevelView",
    "Order",
    "OrderBook",
    "OrderIndex",
    "QueuePosition",
    "BookSnapshot",
]

BUY = "B"
SELL = "S"


class Order(NamedTuple):
    ref: int
    side: str  # "B" or "S"
    price: int
    shares: int
    seq: int  # arrival sequence (feed sequence number of the add/replace)


class LevelView(NamedTuple):
    price: int
    shares: int
    orders: int


class BBO(NamedTuple):
    bid_price: int | None
    bid_shares: int
    bid_orders: int
    ask_price: int | None
    ask_shares: int
    ask_orders: int

    @property
    def crossed(self) -> bool:
        return self.bid_price is not None and self.ask_price is not None and self.bid_price >= self.ask_price


class Depth(NamedTuple):
    bids: list[LevelView]
    asks: list[LevelView]


class QueuePosition(NamedTuple):
    ref: int
    price: int
    orders_ahead: int
    shares_ahead: int
    level_orders: int
    level_shares: int


class BookSnapshot(NamedTuple):
    """A consistent, immutable copy of a book; equal books give equal snapshots."""

    locate: int
    symbol: str | None
    bids: tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...]  # (price, ((ref, shares, seq), ...))
    asks: tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...]

    def levels(self, side: str) -> list[LevelView]:
        rows = self.bids if side == BUY else self.asks
        return [LevelView(p, sum(o[1] for o in orders), len(orders)) for p, orders in rows]


class OrderIndex:
    """Live orders by reference, shared by the books of one feed."""

    __slots__ = ("orders", "where", "stats", "next_seq")

    def __init__(self, stats: BookStats | None = None) -> None:
        self.orders: dict[int, dict[int, int]] = {}  # ref -> level dict
        self.where: dict[int, tuple[BookSide, int]] = {}  # id(level) -> (side, price)
        self.stats = stats if stats is not None else BookStats()
        self.next_seq = 1  # for callers that do not supply feed sequence numbers

    def locate(self, ref: int) -> tuple[BookSide, int, dict[int, int]] | None:
        """``(side, price, level)`` of a live order, or ``None``."""
        level = self.orders.get(ref)
        if level is None:
            return None
        side, price = self.where[id(level)]
        return side, price, level

    def __len__(self) -> int:
        return len(self.orders)


class OrderBook:
    """L3 + L2 book of one instrument.

    Mutations follow ITCH semantics (see :mod:`book.builder` for the bulk
    path that applies a whole feed); anomalies such as unknown references or
    over-executions are counted in :attr:`stats` and never raise.
    """

    __slots__ = ("locate", "symbol", "bids", "asks", "index", "trading_state", "volume", "last_price", "__weakref__")

    def __init__(self, locate: int = 0, symbol: str | None = None, index: OrderIndex | None = None) -> None:
        self.locate = locate
        self.symbol = symbol
        self.index = index if index is not None else OrderIndex()
        self.bids = BookSide(True, self)
        self.asks = BookSide(False, self)
        self.trading_state: str | None = None
        self.volume = 0  # executed shares of resting orders
        self.last_price: int | None = None

    @property
    def stats(self) -> BookStats:
        return self.index.stats

    def __repr__(self) -> str:
        bbo = self.bbo()
        return (
            f"OrderBook(locate={self.locate}, symbol={self.symbol!r}, orders={self.order_count()}, "
            f"levels={len(self.bids)}x{len(self.asks)}, bbo={bbo.bid_price}x{bbo.ask_price})"
        )

    # ------------------------------------------------------------------ mutations
    def add(self, ref: int, side: str, price: int, shares: int, seq: int | None = None) -> bool:
        """Add a resting order (ITCH A/F).  Returns False for a duplicate ref (counted)."""
        if ref < 0:
            raise ValueError(f"order reference must be >= 0, got {ref}")
        index = self.index
        if ref in index.orders:
            index.stats.duplicate_ref += 1
            return False
        if shares <= 0 or shares > SHARES_MASK:
            index.stats.bad_shares += 1
            return False
        if seq is None:
            seq = index.next_seq
            index.next_seq += 1
        book_side = self.bids if side == BUY else self.asks
        level = book_side.levels.get(price)
        if level is None:
            level = book_side.new_level(price)
            index.where[id(level)] = (book_side, price)
        level[ref] = (seq << SEQ_SHIFT) | shares
        if level[TOTAL] is not None:
            level[TOTAL] += shares
        index.orders[ref] = level
        return True

    def _remove(self, ref: int, level: dict[int, int]) -> None:
        index = self.index
        del index.orders[ref]
        shares = level.pop(ref) & SHARES_MASK
        if level[TOTAL] is not None:
            level[TOTAL] -= shares
        if len(level) == 1:
            side, price = index.where.pop(id(level))
            side.drop_level(price)

    def _reduce(self, ref: int, level: dict[int, int], shares: int) -> int:
        """Take ``shares`` off a resting order, removing it when none are left.

        Returns the shares left; negative when more were taken than rested.
        """
        packed = level[ref]
        left = (packed & SHARES_MASK) - shares
        if left > 0:
            level[ref] = packed - shares
            if level[TOTAL] is not None:
                level[TOTAL] -= shares
        else:
            self._remove(ref, level)
        return left

    def _found(self, ref: int) -> tuple[BookSide, int, dict[int, int]] | None:
        hit = self.index.locate(ref)
        if hit is None or hit[0].book is not self:
            self.index.stats.unknown_ref += 1
            return None
        return hit

    def execute(self, ref: int, shares: int) -> int | None:
        """Execute ``shares`` of a resting order (ITCH E/C).

        Returns the shares left on the order, or ``None`` for an unknown ref.
        Executing more than rests removes the order and counts an over-execution.
        """
        hit = self._found(ref)
        if hit is None:
            return None
        _, price, level = hit
        self.volume += min(shares, level[ref] & SHARES_MASK)  # only what rested can trade
        self.last_price = price
        left = self._reduce(ref, level, shares)
        if left < 0:
            self.index.stats.over_execution += 1
        return max(left, 0)

    def cancel(self, ref: int, shares: int) -> int | None:
        """Cancel ``shares`` of a resting order (ITCH X); returns shares left or ``None``."""
        hit = self._found(ref)
        if hit is None:
            return None
        left = self._reduce(ref, hit[2], shares)
        if left < 0:
            self.index.stats.over_cancel += 1
        return max(left, 0)

    def delete(self, ref: int) -> bool:
        """Delete a resting order (ITCH D); False for an unknown ref (counted)."""
        hit = self._found(ref)
        if hit is None:
            return False
        self._remove(ref, hit[2])
        return True

    def replace(self, ref: int, new_ref: int, shares: int, price: int, seq: int | None = None) -> bool:
        """Replace an order (ITCH U): new ref, same side, back of the queue."""
        hit = self._found(ref)
        if hit is None:
            return False
        side = BUY if hit[0].is_bid else SELL
        self._remove(ref, hit[2])
        return self.add(new_ref, side, price, shares, seq)

    # ------------------------------------------------------------------ reads
    def best_bid(self) -> int | None:
        return self.bids.best()

    def best_ask(self) -> int | None:
        return self.asks.best()

    def bbo(self) -> BBO:
        """Best bid and offer with their aggregate shares and order counts."""
        bid = self.bids.best()
        ask = self.asks.best()
        bid_shares, bid_orders = self.bids.level_totals(bid) if bid is not None else (0, 0)
        ask_shares, ask_orders = self.asks.level_totals(ask) if ask is not None else (0, 0)
        return BBO(bid, bid_shares, bid_orders, ask, ask_shares, ask_orders)

    def depth(self, n: int = 5) -> Depth:
        """Top ``n`` L2 levels per side, best first."""
        return Depth(
            [LevelView(*row) for row in self.bids.depth(n)],
            [LevelView(*row) for row in self.asks.depth(n)],
        )

    def is_crossed(self) -> bool:
        bid = self.bids.best()
        ask = self.asks.best()
        return bid is not None and ask is not None and bid >= ask

    def order(self, ref: int) -> Order | None:
        """The live order ``ref`` of this book, or ``None``."""
        hit = self.index.locate(ref)
        if hit is None or hit[0].book is not self:
            return None
        side, price, level = hit
        packed = level[ref]
        return Order(ref, BUY if side.is_bid else SELL, price, packed & SHARES_MASK, packed >> SEQ_SHIFT)

    def orders(self) -> Iterator[Order]:
        """Every live order, bids then asks, best price first, time priority within a level."""
        for side, name in ((self.bids, BUY), (self.asks, SELL)):
            levels = side.levels
            for price in side.prices():
                for ref, packed in level_orders(levels[price]):
                    yield Order(ref, name, price, packed & SHARES_MASK, packed >> SEQ_SHIFT)

    def queue_position(self, ref: int) -> QueuePosition | None:
        """Where ``ref`` stands in its level's FIFO queue; ``None`` if not live here.

        O(orders ahead of it in the level); the level totals are O(1).
        """
        hit = self.index.locate(ref)
        if hit is None or hit[0].book is not self:
            return None
        _, price, level = hit
        ahead = shares_ahead = 0
        for other, packed in level_orders(level):
            if other == ref:
                break
            ahead += 1
            shares_ahead += packed & SHARES_MASK
        return QueuePosition(ref, price, ahead, shares_ahead, len(level) - 1, level_total(level))

    def order_count(self) -> int:
        return self.bids.order_count() + self.asks.order_count()

    def snapshot(self, depth: int | None = None) -> BookSnapshot:
        """A consistent immutable copy: all levels (or the top ``depth``) with their orders."""

        def side_rows(side: BookSide) -> tuple:
            rows = []
            levels = side.levels
            for price in side.prices():
                if depth is not None and len(rows) >= depth:
                    break
                rows.append(
                    (
                        price,
                        tuple((ref, p & SHARES_MASK, p >> SEQ_SHIFT) for ref, p in level_orders(levels[price])),
                    )
                )
            return tuple(rows)

        return BookSnapshot(self.locate, self.symbol, side_rows(self.bids), side_rows(self.asks))

    def _check(self) -> None:
        """Assert every invariant of this book (for tests and debugging)."""
        index = self.index
        for side in (self.bids, self.asks):
            side._check()
            assert side.book is self
            for price, level in side.levels.items():
                assert index.where[id(level)] == (side, price), f"level {price} not registered"
                for ref, _ in level_orders(level):
                    assert index.orders.get(ref) is level, f"order {ref} not indexed to its level"
        # an order is in exactly one level: refs are dict keys of the index, and each
        # indexed level is the one we found it in above, so a second copy would fail there.
