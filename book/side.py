"""One side of a book: FIFO price levels plus a lazily sorted price index.

Levels are plain ``dict`` objects mapping order ref -> packed ``seq<<32|shares``;
dict insertion order *is* the time priority of the level, deletion is O(1),
and CPython 3.11 specialises subscripts only for exact dicts, which is why a
level is not a dict subclass.  ``levels`` maps price -> level.

Each level also holds its share total under the key :data:`TOTAL` (``-1``,
which no u64 order reference can be), created first so it never disturbs the
queue order; a level's order count is ``len(level) - 1``.  The total starts
as ``None`` (not tracked): the first read computes it, and from then on every
change to the level keeps it current.  Tracking every level would cost the
full-feed path ~25%, because subtracting a deleted order's shares reads its
stored int, usually a cache miss; computing on every read would cost a
strategy ~50 ns per resting order, and a deep name holds thousands at the
touch.  Adaptive tracking gives the bulk path the first and a strategy
watching the top of the book O(1) reads.

Sorting is the expensive part of a book under level churn, and a full feed
creates and destroys levels far more often than anybody reads the sorted
view.  So the :class:`~sortedcontainers.SortedList` of prices is reconciled
lazily: creating or removing a level only records the price in ``_added`` or
``_removed``, and the first read that needs order (``best``, ``depth``...)
applies the pending changes.  A level that appears and vanishes between two
reads never touches the sorted list at all.

Invariant (checked by :meth:`_check`): ``set(_prices) - _removed | _added ==
set(levels)``, ``_removed <= set(_prices)``, ``_added & set(_prices) == set()``.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedList

from book.ops import SEQ_SHIFT, SHARES_MASK

__all__ = ["BookSide", "TOTAL", "level_orders", "level_total"]

TOTAL = -1  # key of a level's share total (None until first read)
#: :meth:`BookSide.top` reconciles the sorted index once more than this many
#: level changes per requested level are pending (see there).
TOP_SYNC_PENDING = 8


def level_orders(level: dict[int, int]) -> Iterator[tuple[int, int]]:
    """``(ref, packed)`` of a level's orders in time priority (skips :data:`TOTAL`)."""
    items = iter(level.items())
    next(items)  # TOTAL is always the first key
    return items


def level_total(level: dict[int, int]) -> int:
    """Shares resting in ``level``; starts tracking the total (see module doc)."""
    total = level[TOTAL]
    if total is None:
        mask = SHARES_MASK
        total = level[TOTAL] = sum(packed & mask for _, packed in level_orders(level))
    return total


class BookSide:
    """Bids (``is_bid``) or asks of one instrument."""

    __slots__ = ("is_bid", "levels", "_prices", "_added", "_removed", "book")

    def __init__(self, is_bid: bool, book: object = None) -> None:
        self.is_bid = is_bid
        self.book = book  # the OrderBook that owns this side
        self.levels: dict[int, dict[int, int]] = {}
        self._prices = SortedList()
        self._added: set[int] = set()
        self._removed: set[int] = set()

    # -- mutation helpers (the builder's hot loop inlines the same steps) --
    def new_level(self, price: int) -> dict[int, int]:
        """Create an empty level at ``price``; the caller registers it."""
        level: dict[int, int] = {TOTAL: None}  # type: ignore[dict-item]
        self.levels[price] = level
        if price in self._removed:
            self._removed.discard(price)
        else:
            self._added.add(price)
        return level

    def drop_level(self, price: int) -> None:
        """Forget the (empty) level at ``price``."""
        del self.levels[price]
        if price in self._added:
            self._added.discard(price)
        else:
            self._removed.add(price)

    # -- reads --
    def _sync(self) -> SortedList:
        """Apply pending level creations/removals to the sorted index."""
        prices = self._prices
        if self._removed:
            for price in self._removed:
                prices.remove(price)
            self._removed.clear()
        if self._added:
            prices.update(self._added)
            self._added.clear()
        return prices

    def best(self) -> int | None:
        """Best price (highest bid, lowest ask) or ``None`` when empty."""
        if not self.levels:
            return None
        prices = self._sync()
        return prices[-1] if self.is_bid else prices[0]

    def prices(self) -> Iterator[int]:
        """Prices best first.  Do not mutate the side while iterating."""
        prices = self._sync()
        return reversed(prices) if self.is_bid else iter(prices)

    def level_totals(self, price: int) -> tuple[int, int]:
        """``(shares, orders)`` resting at ``price``; ``(0, 0)`` if no level."""
        level = self.levels.get(price)
        if level is None:
            return 0, 0
        return level_total(level), len(level) - 1

    def depth(self, n: int) -> list[tuple[int, int, int]]:
        """Top ``n`` levels as ``(price, shares, orders)``, best first."""
        out = []
        levels = self.levels
        for price in self.prices():
            if len(out) >= n:
                break
            level = levels[price]
            out.append((price, level_total(level), len(level) - 1))
        return out

    def top(self, n: int) -> list[tuple[int, int, int]]:
        """Top ``n`` levels as ``(price, shares, orders)``, best first; equal to
        :meth:`depth` but cheaper on a side with pending level changes.

        Instead of applying every pending creation/removal to the sorted
        index (~1 us each), it sorts the pending additions together with the
        index's first live prices, at C speed.  That
        pays off for a reader of the top after every batch of a full feed
        (the depth-limited publisher).  Once the pending sets outgrow
        :data:`TOP_SYNC_PENDING` per requested level, re-scanning them each
        call would cost more than reconciling, so it reconciles.
        """
        if n <= 0 or not self.levels:
            return []
        added, removed = self._added, self._removed
        if not added and not removed or len(added) + len(removed) > TOP_SYNC_PENDING * n:
            return self.depth(n)
        # The best n live prices lie among the index's best n + len(removed) and the pending adds.
        k = n + len(removed)
        live = self._prices[-k:] if self.is_bid else self._prices[:k]
        if removed:
            live = [price for price in live if price not in removed]
        live.extend(added)
        live.sort(reverse=self.is_bid)
        del live[n:]
        levels = self.levels
        out = []
        for price in live:
            level = levels[price]
            out.append((price, level_total(level), len(level) - 1))
        return out

    def order_count(self) -> int:
        return sum(len(level) for level in self.levels.values()) - len(self.levels)

    def __len__(self) -> int:
        """Number of price levels."""
        return len(self.levels)

    def _check(self) -> None:
        """Assert the lazy index invariant and level sanity."""
        sorted_set = set(self._prices)
        assert len(sorted_set) == len(self._prices), "duplicate price in sorted index"
        assert self._removed <= sorted_set, "pending removal of a price not indexed"
        assert not (self._added & sorted_set), "pending add of a price already indexed"
        assert (sorted_set - self._removed) | self._added == set(self.levels), "index != levels"
        for price, level in self.levels.items():
            assert next(iter(level)) == TOTAL, f"level {price} does not start with its total"
            assert len(level) > 1, f"empty level kept at {price}"
            total = 0
            for ref, packed in level_orders(level):
                assert ref >= 0, f"negative order ref {ref} at {price}"
                assert packed & SHARES_MASK > 0, f"order {ref} at {price} has no shares"
                assert packed >> SEQ_SHIFT >= 0
                total += packed & SHARES_MASK
            tracked = level[TOTAL]
            assert tracked is None or tracked == total, f"level {price} total {tracked} != sum of its orders {total}"
