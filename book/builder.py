"""Build the books of a whole feed from a book-op stream (see :mod:`book.ops`).

:meth:`BookBuilder.apply_ops` is the hot loop of the SDK.  It is written for
CPython's specialising interpreter, and every choice in it was measured
(``tests/bench/test_bench_book.py``; figures in the README):

* records arrive as a flat sequence of ints consumed by ``zip(it, it, it,
  it)``, whose result tuple CPython reuses; best is a ``memoryview`` cast to
  ``"Q"`` over the decoder's buffer, whose iterator makes each int on demand
  so transient ones are recycled at once (~35% faster than ``tolist()``,
  whose batch of ints scatters the objects the book keeps);
* an add's op word indexes a list that holds the side's level dict directly;
* levels are exact dicts (subscripts specialise); their share totals are
  kept only once somebody has read them, and the sorted price index is
  reconciled lazily (both by :class:`~book.side.BookSide`);
* methods and containers are bound to locals, counters are locals flushed
  once per call, the branch order follows message frequency, and the cyclic
  GC is paused for the batch (the book creates no reference cycles).

Change tracking is opt-in (:meth:`BookBuilder.track_changes`, for
publishers that fan out L2 deltas): when on, the loop appends each level it
modifies, and each ``(side, price)`` it removes, to two lists; when off (the
default) it costs one ``is not None`` test per record, which measured within
the VM's noise (``efsdk bench book``, alternating runs, medians).  Recording
the level objects, not their prices, keeps the cost to one ``list.append``
per record and needs no lookup; :meth:`BookBuilder.take_changes` resolves
them to ``(side, price)`` at C speed afterwards.  Levels created while
tracking keep their share total from birth (a consumer reads every changed
level's total anyway; summing it on first read cost more).

The same semantics are implemented one message at a time by
:class:`~book.orderbook.OrderBook`'s methods; tests replay identical feeds
through both and compare snapshots, so the two never drift apart.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence

from book.ops import (
    ADD_BASE,
    OP_ANOMALY,
    OP_CANCEL,
    OP_DELETE,
    OP_EXECUTE,
    OP_EXECUTE_PRICE,
    OP_MESSAGE,
    OP_REPLACE_IN,
    OP_REPLACE_OUT,
    SHARES_MASK,
)
from book.orderbook import OrderBook, OrderIndex
from book.side import TOTAL, BookSide, level_total
from book.stats import BookStats

__all__ = ["BookBuilder", "MessageHandler", "AnomalyHandler"]

MAX_LOCATE = 65535

#: ``on_message(offset, locate, type_byte)`` for records that do not change resting orders.
MessageHandler = Callable[[int, int, int], None]
#: ``on_anomaly(offset, kind, declared_length)`` for malformed input the decoder reported.
AnomalyHandler = Callable[[int, int, int], None]


class BookBuilder:
    """The books of every instrument of one feed, by stock locate."""

    def __init__(self, stats: BookStats | None = None) -> None:
        self.index = OrderIndex(stats)
        self._books: list[OrderBook | None] = [None] * (MAX_LOCATE + 1)
        # Indexed by an add's op word (ADD_BASE + 2*locate + is_sell).
        self._side_levels: list[dict[int, dict[int, int]] | None] = [None] * (ADD_BASE + 2 * (MAX_LOCATE + 1))
        self._sides: list[BookSide | None] = [None] * len(self._side_levels)
        self._by_symbol: dict[str, OrderBook] = {}
        # Side of the order a REPLACE_OUT removed, for its REPLACE_IN; kept across
        # calls because a batch boundary may fall between the two records.
        self._replaced_side: BookSide | None = None
        # Opt-in change tracking (track_changes): levels modified, (side, price) removed.
        self._changed: list[dict[int, int]] | None = None
        self._removed_levels: list[tuple[BookSide, int]] | None = None

    # ------------------------------------------------------------------ books
    @property
    def stats(self) -> BookStats:
        return self.index.stats

    def book_for(self, locate: int) -> OrderBook:
        """The book of ``locate``, created empty on first use."""
        book = self._books[locate]
        if book is None:
            book = OrderBook(locate, None, self.index)
            self._books[locate] = book
            op = ADD_BASE + (locate << 1)
            self._sides[op] = book.bids
            self._sides[op + 1] = book.asks
            self._side_levels[op] = book.bids.levels
            self._side_levels[op + 1] = book.asks.levels
        return book

    def book(self, key: int | str) -> OrderBook | None:
        """The book by stock locate or by symbol; ``None`` if never seen."""
        if isinstance(key, str):
            return self._by_symbol.get(key)
        return self._books[key] if 0 <= key <= MAX_LOCATE else None

    def books(self) -> Iterator[OrderBook]:
        """Every book that exists, in locate order."""
        return (b for b in self._books if b is not None)

    def set_symbol(self, locate: int, symbol: str) -> OrderBook:
        """Bind ``symbol`` to ``locate`` (ITCH R, stock directory)."""
        book = self.book_for(locate)
        if book.symbol and book.symbol != symbol:
            self._by_symbol.pop(book.symbol, None)
        book.symbol = symbol
        self._by_symbol[symbol] = book
        return book

    def check_crossed(self) -> int:
        """Count books whose best bid >= best ask now; stored in ``stats.crossed_books``."""
        crossed = sum(1 for b in self.books() if b.is_crossed())
        self.stats.crossed_books = crossed
        return crossed

    def live_orders(self) -> int:
        return len(self.index.orders)

    # ------------------------------------------------------------------ change tracking
    def track_changes(self, enabled: bool = True) -> None:
        """Opt in (or out) to recording the levels :meth:`apply_ops` changes; see :meth:`take_changes`.

        Only the bulk path records (``apply_ops``, not the ``OrderBook``
        methods).  While on, call :meth:`take_changes` after every batch: the
        record grows by one entry per applied record until taken.
        """
        if enabled:
            if self._changed is None:
                self._changed = []
                self._removed_levels = []
        else:
            self._changed = self._removed_levels = None

    @property
    def tracking_changes(self) -> bool:
        return self._changed is not None

    def take_changes(self) -> dict[BookSide, dict[int, tuple[int, int]]]:
        """Levels changed since the last call, by side: ``{side: {price: (shares, orders)}}``.

        A removed level reads ``(0, 0)``.  Each level appears once, with its
        state now, however often it changed.  Reading a level's shares starts
        tracking its total (see :mod:`book.side`), as any reader would.
        ``{}`` when tracking is off.  Cost: C-speed dedupe of the record, then
        one dict lookup per distinct level.
        """
        changed, removed = self._changed, self._removed_levels
        if not changed and not removed:
            return {}
        out: dict[BookSide, dict[int, tuple[int, int]]] = {}
        gone = (0, 0)
        for side, price in removed:  # type: ignore[union-attr]
            prices = out.get(side)
            if prices is None:
                out[side] = {price: gone}
            else:
                prices[price] = gone
        # Dedupe by identity (the record holds every level it names, so no id
        # was reused), then map each level to (side, price); a level removed
        # after its change is no longer in ``where`` and is skipped (its
        # removal is above).  Live levels come second: a price removed then
        # re-created reads as the new level.
        unique = dict(zip(map(id, changed), changed)).values()  # type: ignore[arg-type]
        total_key = TOTAL
        for key, level in zip(map(self.index.where.get, map(id, unique)), unique):
            if key is None:
                continue
            side, price = key
            total = level[total_key]
            if total is None:
                total = level_total(level)
            prices = out.get(side)
            if prices is None:
                out[side] = {price: (total, len(level) - 1)}
            else:
                prices[price] = (total, len(level) - 1)
        changed.clear()  # type: ignore[union-attr]
        removed.clear()  # type: ignore[union-attr]
        return out

    def _check(self) -> None:
        """Assert every invariant of every book and of the shared index."""
        total = 0
        for book in self.books():
            book._check()
            total += book.order_count()
        assert total == len(self.index.orders), "index holds orders that no level holds"
        assert len(self.index.where) == sum(len(b.bids) + len(b.asks) for b in self.books())

    # ------------------------------------------------------------------ hot loop
    def apply_ops(
        self,
        words: Sequence[int],
        on_message: MessageHandler | None = None,
        on_anomaly: AnomalyHandler | None = None,
    ) -> int:
        """Apply flat book-op records (a ``list[int]`` or a ``memoryview`` cast
        to ``"Q"``); returns the number of records.

        Unknown refs, duplicate adds, over-executions are counted in
        :attr:`stats` and skipped; nothing here raises on bad feed data.
        ``words`` must hold whole records (``len(words) % 4 == 0``).
        """
        if len(words) & 3:
            raise ValueError(f"op stream of {len(words)} words is not whole 4-word records")
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._apply(words, on_message, on_anomaly)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _apply(self, words: Sequence[int], on_message, on_anomaly) -> int:  # noqa: C901 - one hot loop on purpose
        index = self.index
        orders = index.orders
        where = index.where
        orders_pop = orders.pop
        orders_get = orders.get
        where_pop = where.pop
        side_levels = self._side_levels
        sides = self._sides
        mask = SHARES_MASK
        total = TOTAL  # key of a level's share total, None until read (see book.side)
        # Op codes as locals: LOAD_FAST beats LOAD_GLOBAL by ~50 ns a message here.
        add_base, op_delete, op_replace_out, op_replace_in = ADD_BASE, OP_DELETE, OP_REPLACE_OUT, OP_REPLACE_IN
        op_execute, op_execute_price, op_cancel = OP_EXECUTE, OP_EXECUTE_PRICE, OP_CANCEL
        op_message, op_anomaly = OP_MESSAGE, OP_ANOMALY
        unknown = duplicate = over_exec = over_cancel = executions = others = anomalies = bad = bad_op = 0
        replaced_side = self._replaced_side
        changed = self._changed  # None unless track_changes(): one `is not None` test a record
        if changed is not None:
            track = changed.append
            track_removed = self._removed_levels.append  # type: ignore[union-attr]

        it = iter(words)
        for op, a, b, c in zip(it, it, it, it):
            if op >= add_base:  # add: a=ref, b=price, c=seq<<32|shares
                try:
                    levels = side_levels[op]
                except IndexError:  # not a valid op word (free in 3.11: zero-cost try)
                    bad_op += 1
                    continue
                if levels is None:
                    self.book_for((op - add_base) >> 1)
                    levels = side_levels[op]
                if a in orders:
                    duplicate += 1
                    continue
                shares = c & mask
                if not shares:
                    bad += 1
                    continue
                level = levels.get(b)
                if level is None:
                    side = sides[op]
                    level = levels[b] = {total: None if changed is None else shares, a: c}
                    where[id(level)] = (side, b)
                    if b in side._removed:
                        side._removed.discard(b)
                    else:
                        side._added.add(b)
                else:
                    level[a] = c
                    t = level[total]
                    if t is not None:
                        level[total] = t + shares
                orders[a] = level
                if changed is not None:
                    track(level)
            elif op == op_delete:
                level = orders_pop(a, None)
                if level is None:
                    unknown += 1
                    continue
                t = level[total]
                if t is not None:
                    level[total] = t - (level[a] & mask)
                del level[a]
                if len(level) == 1:
                    side, price = where_pop(id(level))
                    del side.levels[price]
                    if price in side._added:
                        side._added.discard(price)
                    else:
                        side._removed.add(price)
                    if changed is not None:
                        track_removed((side, price))
                elif changed is not None:
                    track(level)
            elif op == op_replace_out:  # a=old ref; the next record adds the new ref
                level = orders_pop(a, None)
                if level is None:
                    unknown += 1
                    replaced_side = None
                    continue
                t = level[total]
                if t is not None:
                    level[total] = t - (level[a] & mask)
                del level[a]
                if len(level) > 1:
                    replaced_side = where[id(level)][0]
                    if changed is not None:
                        track(level)
                else:
                    replaced_side, price = where_pop(id(level))
                    del replaced_side.levels[price]
                    if price in replaced_side._added:
                        replaced_side._added.discard(price)
                    else:
                        replaced_side._removed.add(price)
                    if changed is not None:
                        track_removed((replaced_side, price))
            elif op == op_replace_in:  # a=new ref, b=price, c=seq<<32|shares
                side = replaced_side
                replaced_side = None
                if side is None:
                    continue  # its REPLACE_OUT was for an unknown ref, already counted
                if a in orders:
                    duplicate += 1
                    continue
                shares = c & mask
                if not shares:
                    bad += 1
                    continue
                levels = side.levels
                level = levels.get(b)
                if level is None:
                    level = levels[b] = {total: None if changed is None else shares, a: c}
                    where[id(level)] = (side, b)
                    if b in side._removed:
                        side._removed.discard(b)
                    else:
                        side._added.add(b)
                else:
                    level[a] = c
                    t = level[total]
                    if t is not None:
                        level[total] = t + shares
                orders[a] = level
                if changed is not None:
                    track(level)
            elif op == op_execute or op == op_cancel or op == op_execute_price:
                level = orders_get(a)
                if level is None:
                    unknown += 1
                    continue
                packed = level[a]
                left = (packed & mask) - b
                if op != op_cancel:
                    executions += 1
                    side, price = where[id(level)]
                    book = side.book
                    book.volume += b if left >= 0 else b + left
                    book.last_price = price
                t = level[total]
                if left > 0:
                    level[a] = packed - b
                    if t is not None:
                        level[total] = t - b
                    if changed is not None:
                        track(level)
                    continue
                if left < 0:
                    if op == op_cancel:
                        over_cancel += 1
                    else:
                        over_exec += 1
                if t is not None:
                    level[total] = t - (packed & mask)
                del orders[a]
                del level[a]
                if len(level) == 1:
                    side, price = where_pop(id(level))
                    del side.levels[price]
                    if price in side._added:
                        side._added.discard(price)
                    else:
                        side._removed.add(price)
                    if changed is not None:
                        track_removed((side, price))
                elif changed is not None:
                    track(level)
            elif op == op_message:  # a=offset, b=locate, c=type byte
                if on_message is None:
                    others += 1
                else:
                    on_message(a, b, c)
            elif op == op_anomaly:  # a=offset, b=kind, c=declared length
                anomalies += 1
                if on_anomaly is not None:
                    on_anomaly(a, b, c)
            else:
                bad_op += 1

        self._replaced_side = replaced_side
        stats = index.stats
        stats.records += len(words) >> 2
        stats.unknown_ref += unknown
        stats.duplicate_ref += duplicate
        stats.over_execution += over_exec
        stats.over_cancel += over_cancel
        stats.executions += executions
        stats.other_messages += others
        stats.anomalies += anomalies
        stats.bad_shares += bad
        stats.bad_op += bad_op
        return len(words) >> 2
