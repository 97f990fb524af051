"""Benchmarks of the feed path and the book: one implementation for ``efsdk bench book`` and ``tests/bench``.

Everything here is a :class:`Case`: an untimed ``setup()`` that builds fresh
state, a timed ``run(state)``, and an untimed ``check(result)`` that asserts
the answer, so a fast wrong book can never pass for a fast book.  The CLI
times cases with :func:`measure` (warm-up, several rounds, median and spread);
the pytest-benchmark suites hand the same three callables to
``benchmark.pedantic``.

Scenarios (the targets come from the performance issue; sizes default to its
1M-message, 50-symbol session):

* :func:`full_replay_case` - file -> :class:`~efsdk.pipeline.FeedHandler` ->
  every book (file read, native decode, book build), checked against the
  generator's :class:`~efsdk.itch.generator.SessionSummary` *and* against
  per-book L3 digests from an independent implementation;
* :func:`subscribed_case` - the same file with 5 of the symbols subscribed,
  rated in feed messages scanned per second (:func:`pick_subscriptions`
  chooses the names, deterministically);
* :func:`straightforward_case` - the baseline: a per-message
  ``struct.unpack_from`` + ``SortedDict`` L3 book (:class:`StraightforwardBooks`),
  the "~0.85 M msg/s" kind of Python book;
* :func:`meatpy_case` - MeatPy on the first messages of the session,
  extrapolated (optimistic: its books slow down as they deepen);
* :func:`op_cases` - each book operation on an AAPL-like deep book
  (:class:`DeepBookSpec`), through :class:`~book.OrderBook` methods and through
  :meth:`~book.BookBuilder.apply_ops` batches.

Sessions are generated once into a cache directory (:func:`session`) keyed by
(symbols, messages, seed) and a fingerprint of the generator's source, so an
edited generator never serves a stale file.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import random
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from book import BUY, SELL, BookBuilder, OrderBook
from book.side import level_orders
from book.ops import (
    OP_CANCEL,
    OP_DELETE,
    OP_EXECUTE,
    OP_REPLACE_IN,
    OP_REPLACE_OUT,
    SHARES_MASK,
    add_op,
    pack_shares,
)
from efsdk.itch.files import open_binary
from efsdk.itch.generator import SessionSummary, write_binaryfile
from efsdk.itch.layouts import LAYOUTS

__all__ = [
    "BASELINE_MEATPY_REFERENCE",
    "BASELINE_STRAIGHTFORWARD_REFERENCE",
    "Case",
    "DEEP_BOOK",
    "DEFAULT_MESSAGES",
    "DEFAULT_SEED",
    "DEFAULT_SYMBOLS",
    "DeepBook",
    "DeepBookSpec",
    "OP_CASE_IDS",
    "Result",
    "Session",
    "StraightforwardBooks",
    "TARGET_FULL_REPLAY",
    "TARGET_SUBSCRIBED",
    "book_digest",
    "cache_dir",
    "full_replay_case",
    "measure",
    "meatpy_case",
    "op_cases",
    "pick_subscriptions",
    "session",
    "straightforward_case",
    "subscribed_case",
]

# ---------------------------------------------------------------------------
# Sizes and targets (from the performance issue)
# ---------------------------------------------------------------------------

DEFAULT_SYMBOLS = 50
DEFAULT_MESSAGES = 1_000_000
DEFAULT_SEED = 1
DEFAULT_ROUNDS = 5
#: Untimed rounds first: page cache, allocator arenas and the specialising
#: interpreter's inline caches all warm up on the first pass.
DEFAULT_WARMUP = 1
#: Messages per second, end to end (file -> all books), median of rounds.
TARGET_FULL_REPLAY = 2.5e6
#: Feed messages scanned per second with 5 of 50 symbols subscribed.
TARGET_SUBSCRIBED = 15e6
#: The issue's reference points on the reference machine (msg/s), for context;
#: ratios are always computed against the baseline measured in the same run.
BASELINE_STRAIGHTFORWARD_REFERENCE = 0.85e6
BASELINE_MEATPY_REFERENCE = 0.045e6
#: Subscribed scenario: how many symbols (the issue's "5 of 50").
SUBSCRIBED_SYMBOLS = 5
#: MeatPy is ~50x slower than the SDK; time a prefix of the session and
#: extrapolate rather than spend minutes per round.
DEFAULT_MEATPY_MESSAGES = 50_000
#: Operations per timed round of a per-operation case: long enough (~1-10 ms)
#: for perf_counter resolution and loop setup to vanish, short enough that the
#: deep book's shape barely changes during the round.
DEFAULT_OPS = 10_000

_CACHE_ENV = "EFSDK_BENCH_CACHE_DIR"
_CACHE_FORMAT = 1  # bump when the sidecar JSON changes shape


# ---------------------------------------------------------------------------
# Results and timing
# ---------------------------------------------------------------------------


@dataclass
class Result:
    """Timings of one case: ``count`` messages (or ops) per round, one entry per timed round."""

    name: str
    group: str  # "feed" or "op"
    count: int
    unit: str  # "msg" or "op"
    seconds: list[float]
    via: str = ""
    target: float | None = None  # units per second the issue asks for
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rates(self) -> list[float]:
        return [self.count / s for s in self.seconds]

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """Units per second at the median round."""
        return self.count / self.median_s

    @property
    def ns_per_unit(self) -> float:
        return 1e9 * self.median_s / self.count

    def rate_quantiles(self) -> tuple[float, float]:
        """(p10, p90) of the per-round rates (min/max below 3 rounds)."""
        rates = sorted(self.rates)
        if len(rates) < 3:
            return rates[0], rates[-1]
        q = statistics.quantiles(rates, n=10, method="inclusive")
        return q[0], q[-1]

    @property
    def spread(self) -> float:
        """(max - min) / median of the per-round rates: the run-to-run noise."""
        rates = self.rates
        return (max(rates) - min(rates)) / self.rate

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.rate >= self.target

    def as_dict(self) -> dict[str, Any]:
        p10, p90 = self.rate_quantiles()
        rates = self.rates
        return {
            **asdict(self),
            "rounds": len(self.seconds),
            "median_s": self.median_s,
            "per_s_median": self.rate,
            "per_s_p10": p10,
            "per_s_p90": p90,
            "per_s_min": min(rates),
            "per_s_max": max(rates),
            "ns_per_unit": self.ns_per_unit,
            "spread": self.spread,
            "meets_target": self.meets_target,
        }


@dataclass
class Case:
    """A benchmark: ``run(setup())`` is timed, ``check(result)`` must pass after every round."""

    name: str
    group: str
    count: int  # messages or ops per run
    unit: str
    run: Callable[[Any], Any]
    setup: Callable[[], Any] = lambda: None
    check: Callable[[Any], None] = lambda result: None
    via: str = ""
    target: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # stable identifier (test ids, JSON); defaults to the name

    def __post_init__(self) -> None:
        if not self.key:
            self.key = self.name

    def result(self, seconds: list[float]) -> Result:
        info = {"key": self.key, **self.info}
        return Result(self.name, self.group, self.count, self.unit, list(seconds), self.via, self.target, info)


def measure(case: Case, rounds: int = DEFAULT_ROUNDS, warmup: int = DEFAULT_WARMUP) -> Result:
    """Time ``case``: ``warmup`` untimed rounds, then ``rounds`` timed ones, each on fresh state.

    The result of every round (warm-up included) goes through ``case.check``
    and is released before the next round starts, outside the timed region.
    A full collection runs before each timed region; the cyclic GC stays
    enabled inside it, as in production (the book's bulk path pauses it itself).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    clock = time.perf_counter
    seconds: list[float] = []
    for i in range(warmup + rounds):
        state = case.setup()
        gc.collect()
        t0 = clock()
        result = case.run(state)
        elapsed = clock() - t0
        case.check(result)
        del state, result
        if i >= warmup:
            seconds.append(elapsed)
    return case.result(seconds)


# ---------------------------------------------------------------------------
# Session cache
# ---------------------------------------------------------------------------


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Where generated sessions live: ``path``, else ``$EFSDK_BENCH_CACHE_DIR``, else ``~/.cache/efsdk/bench``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "efsdk" / "bench"


def _generator_fingerprint() -> str:
    """Hash of the generator's and layout table's source: a changed generator means a new cache key."""
    import efsdk.itch.generator as gen_mod
    import efsdk.itch.layouts as layouts_mod

    h = hashlib.blake2b(digest_size=6)
    for mod in (gen_mod, layouts_mod):
        h.update(Path(mod.__file__).read_bytes())  # type: ignore[arg-type]
    return h.hexdigest()


@dataclass
class Session:
    """A generated ITCH file plus what the generator says its books look like at the end."""

    path: Path
    summary: SessionSummary
    meta_path: Path
    _reference: dict[str, str] | None = None

    @property
    def symbols(self) -> int:
        return self.summary.symbols

    @property
    def messages(self) -> int:
        return self.summary.messages

    @property
    def seed(self) -> int:
        return self.summary.seed

    def expected_books(self) -> dict[str, tuple[int, int, int]]:
        """symbol -> (live orders, bid levels, ask levels) at the end of the session."""
        return {b[0]: (b[1], b[2], b[3]) for b in self.summary.books}

    def reference_digests(self) -> dict[str, str]:
        """symbol -> :func:`book_digest` of its final book, built by :class:`StraightforwardBooks`.

        Computed once per session (the baseline is an independent L3
        implementation, itself checked against the generator's counts) and
        stored next to the file.
        """
        if self._reference is None:
            meta = json.loads(self.meta_path.read_text())
            ref = meta.get("reference_digests")
            if ref is None:
                books = StraightforwardBooks()
                books.replay(self.path)
                check_books_against_summary(books.book_shapes(), books.live_orders(), self)
                ref = books.digests()
                meta["reference_digests"] = ref
                _write_atomic(self.meta_path, json.dumps(meta).encode())
            self._reference = ref
        return self._reference

    def describe(self) -> dict[str, Any]:
        s = self.summary
        return {
            "path": str(self.path),
            "symbols": s.symbols,
            "messages": s.messages,
            "seed": s.seed,
            "bytes": s.bytes_written,
            "live_orders": s.live_orders,
            "deep_symbols": list(s.deep_symbols),
        }


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def session(
    symbols: int = DEFAULT_SYMBOLS,
    messages: int = DEFAULT_MESSAGES,
    seed: int = DEFAULT_SEED,
    directory: str | os.PathLike[str] | None = None,
) -> Session:
    """The benchmark session for (symbols, messages, seed), generated on first use (~4 s per 1M messages).

    Concurrent callers are safe: each generates into a temporary name and
    renames it into place.
    """
    d = cache_dir(directory)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"itch50-{symbols}sym-{messages}msg-seed{seed}-{_generator_fingerprint()}"
    path = d / f"{stem}.itch"
    meta_path = d / f"{stem}.json"
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") == _CACHE_FORMAT and meta["summary"]["bytes_written"] == path.stat().st_size:
                summary = SessionSummary(**meta["summary"])
                summary.books = [tuple(b) for b in summary.books]  # type: ignore[misc]
                summary.deep_symbols = tuple(summary.deep_symbols)
                summary.path = str(path)
                return Session(path, summary, meta_path)
        except (ValueError, KeyError, TypeError):
            pass  # unreadable or stale sidecar: regenerate
    fd, tmp = tempfile.mkstemp(dir=d, prefix=stem + ".", suffix=".itch.tmp")
    os.close(fd)
    try:
        summary = write_binaryfile(tmp, symbols, messages, seed)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    summary.path = str(path)
    _write_atomic(meta_path, json.dumps({"format": _CACHE_FORMAT, "summary": asdict(summary)}).encode())
    return Session(path, summary, meta_path)


# ---------------------------------------------------------------------------
# Book digests and validation
# ---------------------------------------------------------------------------

Rows = Iterable[tuple[int, Iterable[tuple[int, int]]]]  # (price, ((ref, shares), ...)) best first


def book_digest(bids: Rows, asks: Rows) -> str:
    """An L3 fingerprint: every level best first, every order in time priority, with its shares.

    Implementation-neutral, so books built by different code (the SDK, the
    straightforward baseline, MeatPy) can be compared exactly.
    """
    h = hashlib.blake2b(digest_size=10)
    pack = struct.Struct("<QQ").pack
    for tag, rows in ((b"B", bids), (b"S", asks)):
        h.update(tag)
        for price, orders in rows:
            h.update(pack(price, 0xFFFFFFFFFFFFFFFF))
            h.update(b"".join([pack(ref, shares) for ref, shares in orders]))
    return h.hexdigest()


def orderbook_digest(book: OrderBook) -> str:
    """:func:`book_digest` of an SDK :class:`~book.OrderBook`."""
    mask = SHARES_MASK

    def rows(side: Any) -> Iterable[tuple[int, Iterable[tuple[int, int]]]]:
        levels = side.levels
        for price in side.prices():
            yield price, ((ref, packed & mask) for ref, packed in level_orders(levels[price]))

    return book_digest(rows(book.bids), rows(book.asks))


def check_books_against_summary(
    shapes: dict[str, tuple[int, int, int]], live_orders: int, sess: Session, only: Iterable[str] | None = None
) -> None:
    """Assert books' (orders, bid levels, ask levels) equal the generator's, symbol by symbol."""
    expected = sess.expected_books()
    names = list(expected) if only is None else list(only)
    wrong = {s: (shapes.get(s), expected[s]) for s in names if shapes.get(s, (0, 0, 0)) != expected[s]}
    assert not wrong, f"books differ from the generator's summary (got, expected): {dict(list(wrong.items())[:5])}"
    want_live = sess.summary.live_orders if only is None else sum(expected[s][0] for s in names)
    assert live_orders == want_live, f"{live_orders} live orders, the generator left {want_live}"


def _builder_shapes(builder: BookBuilder) -> dict[str, tuple[int, int, int]]:
    return {b.symbol: (b.order_count(), len(b.bids), len(b.asks)) for b in builder.books() if b.symbol}


def check_feed_handler(handler: Any, sess: Session, symbols: Sequence[str] | None = None) -> None:
    """Assert a replayed :class:`~efsdk.pipeline.FeedHandler` built exactly the session's books.

    Checks every message was framed, nothing was dropped or crossed, the
    generator's per-book counts, and each (subscribed) book's L3 digest
    against the reference implementation's.
    """
    stats = handler.stats
    builder = handler.builder
    bstats = builder.stats
    assert stats.messages == sess.messages, f"framed {stats.messages} of {sess.messages} messages"
    assert stats.anomalies == 0, f"anomalies on a clean session: {stats.anomalies_by_kind}"
    assert bstats.dropped == 0 and bstats.over_execution == 0 and bstats.over_cancel == 0, f"book refused ops: {bstats}"
    assert bstats.crossed_books == 0, f"{bstats.crossed_books} crossed books"
    check_books_against_summary(_builder_shapes(builder), builder.live_orders(), sess, symbols)
    reference = sess.reference_digests()
    names = list(symbols) if symbols is not None else [b[0] for b in sess.summary.books]
    for name in names:
        book = builder.book(name)
        assert book is not None, f"no book for {name}"
        got = orderbook_digest(book)
        assert got == reference[name], f"{name}: L3 digest {got} != reference {reference[name]}"
    if symbols is not None:
        others = [b.symbol for b in builder.books() if b.symbol not in names and b.order_count()]
        assert not others, f"unsubscribed books got orders: {others[:5]}"


# ---------------------------------------------------------------------------
# Feed scenarios
# ---------------------------------------------------------------------------


def full_replay_case(sess: Session) -> Case:
    """File -> FeedHandler.replay() -> every book; rated in messages per second end to end."""
    from efsdk.pipeline import FeedHandler

    path = os.fspath(sess.path)
    sess.reference_digests()  # computed (once) outside any timed region

    def run(_: Any) -> Any:
        handler = FeedHandler()
        handler.replay(path)
        return handler

    return Case(
        name=f"full replay, {sess.symbols} books",
        group="feed",
        count=sess.messages,
        unit="msg",
        run=run,
        check=lambda h: check_feed_handler(h, sess),
        via="FeedHandler.replay",
        key="full_replay",
        target=TARGET_FULL_REPLAY,
        info={"symbols": sess.symbols},
    )


def shard_books(handler: Any) -> tuple[dict[str, tuple[int, int, int]], int, dict[str, str]]:
    """In a shard process: (book shapes, live orders, L3 digests) of the books it holds, for checking."""
    builder = handler.builder
    digests = {b.symbol: orderbook_digest(b) for b in builder.books() if b.symbol}
    return _builder_shapes(builder), builder.live_orders(), digests


def check_sharded(pool: Any, stats: Any, sess: Session) -> None:
    """Assert a :class:`~efsdk.shards.ShardedReplay` built exactly the session's books, over its shards."""
    assert stats.messages == sess.messages, f"framed {stats.messages} of {sess.messages} messages"
    assert not stats.anomalies_by_kind, f"anomalies on a clean session: {stats.anomalies_by_kind}"
    bstats = stats.book
    assert bstats.dropped == 0 and bstats.over_execution == 0 and bstats.over_cancel == 0, f"book refused ops: {bstats}"
    assert bstats.crossed_books == 0, f"{bstats.crossed_books} crossed books"
    shapes: dict[str, tuple[int, int, int]] = {}
    digests: dict[str, str] = {}
    live = 0
    for shard_shapes, shard_live, shard_digests in pool.map(shard_books):
        twice = shard_shapes.keys() & shapes.keys()
        assert not twice, f"books built by two shards: {sorted(twice)[:5]}"
        shapes.update(shard_shapes)
        digests.update(shard_digests)
        live += shard_live
    assert live == stats.live_orders
    check_books_against_summary(shapes, live, sess)
    reference = sess.reference_digests()
    wrong = [s for s in reference if digests.get(s) != reference[s]]
    assert not wrong, f"L3 digests differ from the reference: {wrong[:5]}"


def sharded_replay_case(sess: Session, pool: Any) -> Case:
    """File -> :class:`~efsdk.shards.ShardedReplay` (started outside the timing) -> every book, over its shards.

    Timed: planning from the file's own counts, every shard's replay, the
    replies.  Each round's books are checked, then released outside the timing.
    """
    path = os.fspath(sess.path)
    sess.reference_digests()

    def check(stats: Any) -> None:
        check_sharded(pool, stats, sess)
        pool.clear()

    return Case(
        name=f"full replay, {sess.symbols} books, {pool.shards} shards",
        group="feed",
        count=sess.messages,
        unit="msg",
        run=lambda _: pool.replay(path),
        check=check,
        via="ShardedReplay.replay",
        key=f"sharded_replay[{pool.shards}]",
        target=TARGET_FULL_REPLAY,
        info={"symbols": sess.symbols, "shards": pool.shards, "processes": pool.shards},
    )


def pick_subscriptions(summary: SessionSummary, n: int = SUBSCRIBED_SYMBOLS) -> dict[str, tuple[str, ...]]:
    """Deterministic subscriptions for the subscribed scenario.

    ``deep+thin``: the busiest deep name (the first, e.g. AAPL: ~20% of the
    flow) plus ``n-1`` thin names evenly spaced over the thin list, which runs
    from busiest to quietest;  ``thin-only``: ``n`` thin names spaced the same
    way.  Scanning cost is the whole feed either way; the deep name adds the
    Python book work of a fifth of the session.
    """
    deep = [b[0] for b in summary.books if b[0] in summary.deep_symbols]
    thin = [b[0] for b in summary.books if b[0] not in summary.deep_symbols]

    def spaced(names: list[str], k: int) -> list[str]:
        k = min(k, len(names))
        return [names[i * len(names) // k] for i in range(k)]

    out = {"thin-only": tuple(spaced(thin, n))}
    if deep:
        out["deep+thin"] = (deep[0], *spaced(thin, n - 1))
    return dict(sorted(out.items()))


def subscribed_case(sess: Session, symbols: Sequence[str], label: str) -> Case:
    """The same file with only ``symbols`` subscribed; rated in feed messages scanned per second."""
    from efsdk.pipeline import FeedHandler

    path = os.fspath(sess.path)
    symbols = tuple(symbols)
    sess.reference_digests()
    expected = sess.expected_books()

    def run(_: Any) -> Any:
        handler = FeedHandler(symbols=symbols)
        handler.replay(path)
        return handler

    return Case(
        name=f"subscribed {len(symbols)}/{sess.symbols}, {label}",
        group="feed",
        count=sess.messages,
        unit="msg",
        run=run,
        check=lambda h: check_feed_handler(h, sess, symbols),
        via="FeedHandler(symbols=).replay",
        key=f"subscribed[{label}]",
        target=TARGET_SUBSCRIBED,
        info={"symbols": list(symbols), "label": label, "live_orders_subscribed": sum(expected[s][0] for s in symbols)},
    )


# ---------------------------------------------------------------------------
# Baseline: the straightforward Python book
# ---------------------------------------------------------------------------


class StraightforwardBooks:
    """BASELINE, not the SDK: the straightforward pure-Python L3 book the SDK is measured against.

    Per message: read the length prefix, dispatch on the type byte, unpack the
    whole message with its precompiled ``struct`` from
    :data:`efsdk.itch.layouts.LAYOUTS`, then update a dict of live orders and a
    ``SortedDict`` of FIFO levels (``dict`` ref -> shares) per side.  Written
    with the usual care (bound methods in locals, frequency-ordered if-chain),
    but no batching and no native code: the "~0.85 M msg/s" kind of book.
    """

    def __init__(self) -> None:
        self.orders: dict[int, list[Any]] = {}  # ref -> [level dict, side SortedDict, price]
        self.books: dict[int, tuple[Any, Any]] = {}  # locate -> (bids, asks) SortedDict price -> level
        self.symbols: dict[int, str] = {}
        self.messages = 0

    def replay(self, path: str | os.PathLike[str]) -> StraightforwardBooks:
        with open_binary(path) as f:
            data = f.read()
        self.apply(data)
        return self

    def apply(self, data: bytes) -> int:  # noqa: C901 - one dispatch loop, as such books are written
        from sortedcontainers import SortedDict

        structs = {t[0]: layout.struct.unpack_from for t, layout in LAYOUTS.items()}
        un_a, un_f, un_d, un_u = structs[ord("A")], structs[ord("F")], structs[ord("D")], structs[ord("U")]
        un_e, un_c, un_x, un_r = structs[ord("E")], structs[ord("C")], structs[ord("X")], structs[ord("R")]
        length_at = struct.Struct(">H").unpack_from
        orders = self.orders
        books = self.books
        pop = orders.pop

        def add(locate: int, ref: int, side: bytes, shares: int, price: int) -> None:
            pair = books.get(locate)
            if pair is None:
                pair = books[locate] = (SortedDict(), SortedDict())
            book_side = pair[0] if side == b"B" else pair[1]
            level = book_side.get(price)
            if level is None:
                level = book_side[price] = {}
            level[ref] = shares
            orders[ref] = [level, book_side, price]

        def remove(ref: int) -> list[Any]:
            entry = pop(ref)
            level = entry[0]
            del level[ref]
            if not level:
                del entry[1][entry[2]]
            return entry

        def reduce(ref: int, shares: int) -> None:
            entry = orders[ref]
            level = entry[0]
            left = level[ref] - shares
            if left > 0:
                level[ref] = left
            else:
                remove(ref)

        pos = 0
        end = len(data)
        n = 0
        while pos + 2 <= end:
            (length,) = length_at(data, pos)
            off = pos + 2
            pos = off + length
            if pos > end:
                break  # truncated tail
            n += 1
            t = data[off]
            if t == 65:  # A
                m = un_a(data, off)
                add(m[1], m[5], m[6], m[7], m[9])
            elif t == 68:  # D
                remove(un_d(data, off)[5])
            elif t == 85:  # U: same side, new ref, back of the queue
                m = un_u(data, off)
                entry = remove(m[5])
                level = entry[1].get(m[8])
                if level is None:
                    level = entry[1][m[8]] = {}
                level[m[6]] = m[7]
                orders[m[6]] = [level, entry[1], m[8]]
            elif t == 69:  # E
                m = un_e(data, off)
                reduce(m[5], m[6])
            elif t == 88:  # X
                m = un_x(data, off)
                reduce(m[5], m[6])
            elif t == 70:  # F
                m = un_f(data, off)
                add(m[1], m[5], m[6], m[7], m[9])
            elif t == 67:  # C
                m = un_c(data, off)
                reduce(m[5], m[6])
            elif t == 82:  # R: stock directory
                m = un_r(data, off)
                self.symbols[m[1]] = m[5].decode("ascii").rstrip()
                if m[1] not in books:
                    books[m[1]] = (SortedDict(), SortedDict())
        self.messages += n
        return n

    def live_orders(self) -> int:
        return len(self.orders)

    def book_shapes(self) -> dict[str, tuple[int, int, int]]:
        out = {}
        for locate, (bids, asks) in self.books.items():
            orders = sum(len(v) for v in bids.values()) + sum(len(v) for v in asks.values())
            out[self.symbols.get(locate, f"#{locate}")] = (orders, len(bids), len(asks))
        return out

    def digests(self) -> dict[str, str]:
        """symbol -> :func:`book_digest` of its book."""
        out = {}
        for locate, (bids, asks) in self.books.items():
            out[self.symbols.get(locate, f"#{locate}")] = book_digest(
                ((p, bids[p].items()) for p in reversed(bids)), ((p, asks[p].items()) for p in asks)
            )
        return out


def straightforward_case(sess: Session) -> Case:
    """The straightforward baseline on the same file, end to end, checked like the SDK."""
    path = sess.path
    sess.reference_digests()

    def run(_: Any) -> StraightforwardBooks:
        return StraightforwardBooks().replay(path)

    def check(books: StraightforwardBooks) -> None:
        assert books.messages == sess.messages
        check_books_against_summary(books.book_shapes(), books.live_orders(), sess)
        assert books.digests() == sess.reference_digests()

    return Case(
        name="baseline: struct+SortedDict",
        group="feed",
        count=sess.messages,
        unit="msg",
        run=run,
        check=check,
        via="StraightforwardBooks",
        key="baseline_straightforward",
        info={"reference_per_s": BASELINE_STRAIGHTFORWARD_REFERENCE, "baseline": "straightforward"},
    )


# ---------------------------------------------------------------------------
# Baseline: MeatPy (optional, on a prefix of the session)
# ---------------------------------------------------------------------------


def _prefix(path: Path, messages: int) -> tuple[bytes, int]:
    """The first ``messages`` BinaryFILE frames of ``path`` and how many there were."""
    with open_binary(path) as f:
        data = f.read()
    pos = n = 0
    while n < messages and pos + 2 <= len(data):
        pos += 2 + ((data[pos] << 8) | data[pos + 1])
        n += 1
    return data[:pos], n


def meatpy_available() -> bool:
    try:
        import meatpy.itch50  # noqa: F401
    except ImportError:
        return False
    return True


def meatpy_case(sess: Session, messages: int = DEFAULT_MEATPY_MESSAGES) -> Case:
    """MeatPy 0.5 on the first ``messages`` messages of the session; its rate is an extrapolation.

    One ``ITCH50MarketProcessor`` per instrument (MeatPy's design), messages
    dispatched by stock locate so each is processed once, system events to
    all.  Optimistic for MeatPy: early in the day books are shallow, and its
    list-of-levels book slows down as they deepen.  The ``O`` (DLCR) messages
    are skipped: MeatPy 0.5 mis-sizes them (see ``tests/unit/test_itch_oracle.py``).
    Checked against the SDK's books on the same prefix.
    """
    import datetime as dt

    from meatpy.itch50 import ITCH50MarketProcessor
    from meatpy.itch50.itch50_market_message import (
        ITCH50MarketMessage,
        StockDirectoryMessage,
        SystemEventMessage,
    )

    from efsdk.pipeline import FeedHandler

    data, n = _prefix(sess.path, messages)
    reference = FeedHandler()
    reference.process(data)
    ref_builder = reference.builder
    want = {b.symbol: orderbook_digest(b) for b in ref_builder.books() if b.symbol}
    book_date = dt.datetime(2024, 1, 2)

    def run(_: Any) -> dict[int, Any]:
        from_bytes = ITCH50MarketMessage.from_bytes
        processors: dict[int, Any] = {}
        pos, end = 0, len(data)
        while pos + 2 <= end:
            length = (data[pos] << 8) | data[pos + 1]
            raw = data[pos + 2 : pos + 2 + length]
            pos += 2 + length
            if raw[0] == 79:  # 'O': see the docstring
                continue
            msg = from_bytes(raw)
            if isinstance(msg, StockDirectoryMessage):
                processors[msg.stock_locate] = ITCH50MarketProcessor(msg.stock, book_date)
            if isinstance(msg, SystemEventMessage):
                for p in processors.values():
                    p.process_message(msg)
                continue
            p = processors.get(msg.stock_locate)
            if p is not None:
                p.process_message(msg)
        return processors

    def check(processors: dict[int, Any]) -> None:
        got = {}
        for p in processors.values():
            lob = p.current_lob
            name = p.instrument.decode().rstrip()
            if lob is None:
                got[name] = book_digest((), ())
                continue
            got[name] = book_digest(
                ((lv.price, ((o.order_id, o.volume) for o in lv.queue)) for lv in lob.bid_levels),
                ((lv.price, ((o.order_id, o.volume) for o in lv.queue)) for lv in lob.ask_levels),
            )
        assert got == want, "MeatPy's books differ from the SDK's on the same prefix"

    return Case(
        name=f"baseline: MeatPy, first {n:,} msgs",
        group="feed",
        count=n,
        unit="msg",
        run=run,
        check=check,
        via="meatpy.itch50",
        key="baseline_meatpy",
        info={
            "reference_per_s": BASELINE_MEATPY_REFERENCE,
            "baseline": "meatpy",
            "extrapolated_from_messages": n,
            "prefix_live_orders": ref_builder.live_orders(),
        },
    )


# ---------------------------------------------------------------------------
# Per-operation micro-benchmarks on a deep book
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeepBookSpec:
    """An AAPL-like book: its shape copies AAPL's at the end of the 1M/50 session.

    There AAPL has ~46,400 orders over ~3,200 levels a side; the touch holds
    tens of orders, the next levels 50-200 each, and the long tail a few.
    Levels sit every other tick so that adds "at a new level" land inside the
    book (in the gaps), not only beyond its ends.
    """

    levels: int = 3200  # per side
    touch_orders: int = 100  # orders in the best level of each side
    near_levels: int = 40  # levels after the touch with ~near_orders each
    near_orders: int = 150
    tail_mean: float = 5.5  # 1 + int(exponential): ~50k orders over both sides
    mid: int = 200_0000  # $200.00 in ITCH price units
    tick: int = 100
    locate: int = 1
    seed: int = 7

    def scaled(self, factor: float) -> DeepBookSpec:
        """The same shape with ``factor`` times the levels and orders (for quick runs)."""
        if factor == 1.0:
            return self
        return dataclasses.replace(
            self,
            levels=max(12, round(self.levels * factor)),
            touch_orders=max(2, round(self.touch_orders * factor)),
            near_levels=max(2, round(self.near_levels * factor)),
        )


DEEP_BOOK = DeepBookSpec()


class DeepBook:
    """A :class:`DeepBookSpec` made concrete: the add records that build it and where every order sits."""

    def __init__(self, spec: DeepBookSpec = DEEP_BOOK) -> None:
        self.spec = spec
        rng = random.Random(spec.seed)
        self.levels: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (side, price) -> [(ref, shares)] FIFO
        self.order_at: dict[int, tuple[str, int, int]] = {}  # ref -> (side, price, shares)
        words: list[int] = []
        ref = seq = 0
        tail_scale = max(spec.tail_mean - 1.0, 1e-9)
        orders_by_level: list[tuple[str, int, int]] = []
        for side in (BUY, SELL):
            for i in range(spec.levels):
                price = spec.mid - 2 * spec.tick * (i + 1) if side == BUY else spec.mid + 2 * spec.tick * (i + 1)
                if i == 0:
                    n = spec.touch_orders
                elif i <= spec.near_levels:
                    n = rng.randint(spec.near_orders * 4 // 5, spec.near_orders * 6 // 5)
                else:
                    n = 1 + int(rng.expovariate(1.0 / tail_scale))
                orders_by_level.append((side, price, n))
                self.levels[(side, price)] = []
        # Interleave arrivals across levels so refs are not sorted by price.
        pending = [[s, p, n] for s, p, n in orders_by_level]
        while pending:
            rng.shuffle(pending)
            keep = []
            for item in pending:
                side, price, _ = item
                ref += 1 + rng.getrandbits(2)  # gaps, as on a real feed
                seq += 1
                shares = 100 * rng.randint(1, 10)
                words += (add_op(spec.locate, side == SELL), ref, price, pack_shares(seq, shares))
                self.levels[(side, price)].append((ref, shares))
                self.order_at[ref] = (side, price, shares)
                item[2] -= 1
                if item[2]:
                    keep.append(item)
            pending = keep
        self.words = words
        self.next_ref = ref + 1
        self.next_seq = seq + 1
        self.bid_prices = sorted((p for s, p in self.levels if s == BUY), reverse=True)
        self.ask_prices = sorted(p for s, p in self.levels if s == SELL)

    @property
    def orders(self) -> int:
        return len(self.order_at)

    def build(self) -> tuple[BookBuilder, OrderBook]:
        """A fresh builder holding the deep book, sorted price index up to date."""
        builder = BookBuilder()
        builder.apply_ops(self.words)
        book = builder.book_for(self.spec.locate)
        book.bbo()  # reconcile the lazy price index, as after any read
        return builder, book

    def describe(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "bid_levels": len(self.bid_prices),
            "ask_levels": len(self.ask_prices),
            "touch_orders": self.spec.touch_orders,
            "single_order_levels": sum(1 for v in self.levels.values() if len(v) == 1),
        }


_DEEP_BOOKS: dict[DeepBookSpec, DeepBook] = {}


def deep_book(spec: DeepBookSpec = DEEP_BOOK) -> DeepBook:
    """The (cached) :class:`DeepBook` of ``spec``."""
    book = _DEEP_BOOKS.get(spec)
    if book is None:
        book = _DEEP_BOOKS[spec] = DeepBook(spec)
    return book


@dataclass
class _OpState:
    builder: BookBuilder
    book: OrderBook
    levels_before: tuple[int, int]
    orders_before: int
    out: Any = None


_Workload = tuple[str, list[tuple], Callable[[_OpState, list[tuple]], None]]  # (name, items, check)


def _mutation_workloads(deep: DeepBook, n: int) -> dict[str, _Workload]:
    """Per operation: the work items (same rng every call) and a check of the book after applying them.

    Items: ``("add", ref, side, price, shares, seq)``, ``("exec"|"cancel", ref, shares)``,
    ``("delete", ref)``, ``("replace", ref, new_ref, shares, price, seq)``.
    """
    spec = deep.spec
    rng = random.Random(spec.seed + 1)
    refs = sorted(deep.order_at)
    nref = deep.next_ref
    nseq = deep.next_seq
    out: dict[str, _Workload] = {}

    def check_added(state: _OpState, items: list[tuple], new_levels: bool) -> None:
        book = state.book
        for _, ref, side, price, shares, seq in items:
            assert book.order(ref) == (ref, side, price, shares, seq), f"add {ref} missing or wrong"
        n_bid = sum(1 for it in items if it[2] == BUY)
        grow = (n_bid, len(items) - n_bid) if new_levels else (0, 0)
        want = (state.levels_before[0] + grow[0], state.levels_before[1] + grow[1])
        assert (len(book.bids), len(book.asks)) == want, "level count after adds"
        assert book.order_count() == state.orders_before + len(items)

    # add at a new level: in the gaps between existing levels, distinct prices
    gaps = [(BUY, p - spec.tick) for p in deep.bid_prices] + [(SELL, p + spec.tick) for p in deep.ask_prices]
    picks = rng.sample(gaps, min(n, len(gaps)))
    items = [("add", nref + i, s, p, 100, nseq + i) for i, (s, p) in enumerate(picks)]
    out["add_new_level"] = ("add, new level", items, lambda st, it: check_added(st, it, True))

    # add at an existing level (uniform over levels)
    all_levels = list(deep.levels)
    items = [("add", nref + i, *rng.choice(all_levels), 100, nseq + i) for i in range(n)]
    out["add_existing_level"] = ("add, existing level", items, lambda st, it: check_added(st, it, False))

    # execute / cancel part of distinct random orders (every order has >= 100 shares)
    def check_reduced(state: _OpState, items: list[tuple], executed: bool) -> None:
        book = state.book
        for _, ref, shares in items:
            side, price, before = deep.order_at[ref]
            assert book.order(ref)[3] == before - shares, f"order {ref} shares after reduce"
        assert book.volume == (sum(it[2] for it in items) if executed else 0)
        assert book.order_count() == state.orders_before

    targets = rng.sample(refs, min(n, len(refs)))
    out["execute_partial"] = (
        "execute, partial", [("exec", r, 1) for r in targets], lambda st, it: check_reduced(st, it, True)
    )
    targets = rng.sample(refs, min(n, len(refs)))
    out["cancel_partial"] = (
        "cancel, partial", [("cancel", r, 1) for r in targets], lambda st, it: check_reduced(st, it, False)
    )

    def check_deleted(state: _OpState, items: list[tuple], vanish: bool) -> None:
        book = state.book
        for it in items:
            assert book.order(it[1]) is None, f"order {it[1]} still live"
        gone = [deep.order_at[it[1]][0] for it in items] if vanish else []
        want = (state.levels_before[0] - gone.count(BUY), state.levels_before[1] - gone.count(SELL))
        assert (len(book.bids), len(book.asks)) == want, "level count after deletes"
        assert book.order_count() == state.orders_before - len(items)

    # delete, level survives: never the last order of its level
    survivors = [ref for queue in deep.levels.values() for ref, _ in queue[1:]]
    targets = rng.sample(survivors, min(n, len(survivors)))
    out["delete_level_survives"] = (
        "delete, level survives", [("delete", r) for r in targets], lambda st, it: check_deleted(st, it, False)
    )
    # delete, level vanishes: the only order of single-order levels
    singles = [queue[0][0] for queue in deep.levels.values() if len(queue) == 1]
    targets = rng.sample(singles, min(n, len(singles)))
    out["delete_level_vanishes"] = (
        "delete, level vanishes", [("delete", r) for r in targets], lambda st, it: check_deleted(st, it, True)
    )

    # replace: new ref, new size, same price -> back of its level's queue
    def check_replaced(state: _OpState, items: list[tuple]) -> None:
        book = state.book
        last_in_level: dict[int, int] = {}
        for _, ref, new_ref, shares, price, _seq in items:
            assert book.order(ref) is None, f"replaced order {ref} still live"
            assert book.order(new_ref)[2:4] == (price, shares), f"replacement {new_ref} wrong"
            last_in_level[price] = new_ref
        for new_ref in last_in_level.values():
            q = book.queue_position(new_ref)
            assert q.orders_ahead == q.level_orders - 1, "a replacement is not at the back of its queue"
        assert book.order_count() == state.orders_before

    targets = rng.sample(refs, min(n, len(refs)))
    items = [("replace", r, nref + i, 200, deep.order_at[r][1], nseq + i) for i, r in enumerate(targets)]
    out["replace"] = ("replace", items, check_replaced)
    return out


def _as_words(items: list[tuple], locate: int) -> list[int]:
    """Book-op records for work items (see :mod:`book.ops`)."""
    words: list[int] = []
    for it in items:
        kind = it[0]
        if kind == "add":
            _, ref, side, price, shares, seq = it
            words += (add_op(locate, side == SELL), ref, price, pack_shares(seq, shares))
        elif kind == "exec":
            words += (OP_EXECUTE, it[1], it[2], 0)
        elif kind == "cancel":
            words += (OP_CANCEL, it[1], it[2], 0)
        elif kind == "delete":
            words += (OP_DELETE, it[1], 0, 0)
        elif kind == "replace":
            _, ref, new_ref, shares, price, seq = it
            words += (OP_REPLACE_OUT, ref, new_ref, 0, OP_REPLACE_IN, new_ref, price, pack_shares(seq, shares))
    return words


def _method_runner(kind: str) -> Callable[[_OpState, list[tuple]], None]:
    """The loop a user writes to drive :class:`~book.OrderBook` one message at a time."""
    if kind == "add":

        def run(state: _OpState, items: list[tuple]) -> None:
            add = state.book.add
            for _, ref, side, price, shares, seq in items:
                add(ref, side, price, shares, seq)

    elif kind == "exec":

        def run(state: _OpState, items: list[tuple]) -> None:
            execute = state.book.execute
            for _, ref, shares in items:
                execute(ref, shares)

    elif kind == "cancel":

        def run(state: _OpState, items: list[tuple]) -> None:
            cancel = state.book.cancel
            for _, ref, shares in items:
                cancel(ref, shares)

    elif kind == "delete":

        def run(state: _OpState, items: list[tuple]) -> None:
            delete = state.book.delete
            for _, ref in items:
                delete(ref)

    elif kind == "replace":

        def run(state: _OpState, items: list[tuple]) -> None:
            replace = state.book.replace
            for _, ref, new_ref, shares, price, seq in items:
                replace(ref, new_ref, shares, price, seq)

    else:  # pragma: no cover
        raise ValueError(kind)
    return run


#: (key, via) of every case :func:`op_cases` returns, in order (for test ids).
MUTATION_KEYS = (
    "add_new_level",
    "add_existing_level",
    "execute_partial",
    "cancel_partial",
    "delete_level_survives",
    "delete_level_vanishes",
    "replace",
)
READ_KEYS = ("bbo", "depth10", "queue_position_random", "queue_position_back_of_touch", "add_new_level_then_bbo")
OP_CASE_IDS: tuple[tuple[str, str], ...] = (
    *((k, via) for k in MUTATION_KEYS for via in ("OrderBook", "apply_ops")),
    *((k, "OrderBook") for k in READ_KEYS),
)


def op_cases(n: int = DEFAULT_OPS, spec: DeepBookSpec = DEEP_BOOK) -> list[Case]:
    """Every book operation on a fresh deep book, via OrderBook methods and via apply_ops batches.

    Each case's ``count`` is the number of operations (ITCH messages) per
    round; a replace is one message (two op records).  Reads (bbo, depth,
    queue_position) only exist as OrderBook methods.
    """
    deep = deep_book(spec)
    locate = spec.locate
    cases: list[Case] = []

    def fresh() -> _OpState:
        builder, book = deep.build()
        return _OpState(builder, book, (len(book.bids), len(book.asks)), book.order_count())

    described = deep.describe()
    for key, (name, items, check_items) in _mutation_workloads(deep, n).items():
        kind = items[0][0]
        by_method = _method_runner(kind)
        words = _as_words(items, locate)

        def run_method(state: _OpState, items: list[tuple] = items, by_method: Any = by_method) -> _OpState:
            by_method(state, items)
            return state

        def run_ops(state: _OpState, words: list[int] = words) -> _OpState:
            state.builder.apply_ops(words)
            return state

        def check(state: _OpState, items: list[tuple] = items, check_items: Any = check_items) -> None:
            check_items(state, items)
            stats = state.builder.stats
            assert stats.dropped == 0 and stats.over_execution == 0 and stats.over_cancel == 0, f"refused: {stats}"
            state.book._check()

        for via, run in (("OrderBook", run_method), ("apply_ops", run_ops)):
            cases.append(
                Case(name, "op", len(items), "op", run, fresh, check, via=via, info={"deep_book": described}, key=key)
            )

    cases += _read_cases(deep, n, fresh)
    assert tuple((c.key, c.via) for c in cases) == OP_CASE_IDS
    return cases


#: Reads that can walk a level (depth's first read of a level, the back of the
#: touch queue) cost O(orders there): time 1/SLOW_READ_DIVISOR of the ops per
#: round so a round stays around 10-50 ms.
SLOW_READ_DIVISOR = 50


def _read_cases(deep: DeepBook, n: int, fresh: Callable[[], _OpState]) -> list[Case]:
    spec = deep.spec
    n_slow = max(1, n // SLOW_READ_DIVISOR)
    rng = random.Random(spec.seed + 2)
    best_bid, best_ask = deep.bid_prices[0], deep.ask_prices[0]
    bid_queue, ask_queue = deep.levels[(BUY, best_bid)], deep.levels[(SELL, best_ask)]
    want_bbo = (
        best_bid, sum(s for _, s in bid_queue), len(bid_queue),
        best_ask, sum(s for _, s in ask_queue), len(ask_queue),
    )  # fmt: skip

    def level_view(side: str, price: int) -> tuple[int, int, int]:
        q = deep.levels[(side, price)]
        return price, sum(s for _, s in q), len(q)

    want_depth = (
        [level_view(BUY, p) for p in deep.bid_prices[:10]],
        [level_view(SELL, p) for p in deep.ask_prices[:10]],
    )
    refs = sorted(deep.order_at)
    random_refs = [rng.choice(refs) for _ in range(n)]
    back_of_touch = bid_queue[-1][0]

    def queue_expect(ref: int) -> tuple[int, ...]:
        side, price, _ = deep.order_at[ref]
        q = deep.levels[(side, price)]
        i = [r for r, _ in q].index(ref)
        return ref, price, i, sum(s for _, s in q[:i]), len(q), sum(s for _, s in q)

    def run_bbo(state: _OpState) -> _OpState:
        bbo = state.book.bbo
        for _ in range(n_slow):
            out = bbo()
        state.out = out
        return state

    def run_depth(state: _OpState) -> _OpState:
        depth = state.book.depth
        for _ in range(n_slow):
            out = depth(10)
        state.out = out
        return state

    def run_queue_random(state: _OpState) -> _OpState:
        qp = state.book.queue_position
        state.out = [qp(ref) for ref in random_refs]
        return state

    def run_queue_back(state: _OpState) -> _OpState:
        qp = state.book.queue_position
        for _ in range(n_slow):
            out = qp(back_of_touch)
        state.out = out
        return state

    # Reads made right after each change: what a strategy on a changing book pays
    # (the lazy price index is reconciled by the read, one level at a time).
    gaps = [p - spec.tick for p in deep.bid_prices]
    picks = rng.sample(gaps, min(n_slow, len(gaps)))
    new_level_items = [(deep.next_ref + i, p, 100, deep.next_seq + i) for i, p in enumerate(picks)]

    def run_add_bbo(state: _OpState) -> _OpState:
        book = state.book
        add, bbo = book.add, book.bbo
        for ref, price, shares, seq in new_level_items:
            add(ref, BUY, price, shares, seq)
            bbo()
        return state

    def check_bbo(state: _OpState) -> None:
        assert tuple(state.out) == want_bbo, f"bbo {state.out} != {want_bbo}"

    def check_depth(state: _OpState) -> None:
        got = ([tuple(v) for v in state.out.bids], [tuple(v) for v in state.out.asks])
        assert got == want_depth, "depth(10) differs from the spec's top levels"

    def check_queue_random(state: _OpState) -> None:
        for ref, got in zip(random_refs[:200], state.out[:200], strict=True):  # spot-check; exact, not sampled stats
            assert tuple(got) == queue_expect(ref), f"queue_position({ref})"
        assert len(state.out) == n

    def check_queue_back(state: _OpState) -> None:
        assert tuple(state.out) == queue_expect(back_of_touch)

    def check_add_bbo(state: _OpState) -> None:
        book = state.book
        assert len(book.bids) == len(deep.bid_prices) + len(new_level_items)
        assert book.bbo().bid_price == max(best_bid, max(p for _, p, _, _ in new_level_items))
        book._check()

    info = {"deep_book": deep.describe()}
    touch = len(bid_queue)
    return [
        Case("bbo()", "op", n_slow, "op", run_bbo, fresh, check_bbo, via="OrderBook", info=info, key="bbo"),
        Case("depth(10)", "op", n_slow, "op", run_depth, fresh, check_depth, via="OrderBook", info=info,
             key="depth10"),
        Case("queue_position, random order", "op", n, "op", run_queue_random, fresh, check_queue_random,
             via="OrderBook", info=info, key="queue_position_random"),
        Case(f"queue_position, back of touch ({touch - 1:,} ahead)", "op", n_slow, "op", run_queue_back, fresh,
             check_queue_back, via="OrderBook", info=info, key="queue_position_back_of_touch"),
        Case("add, new level + bbo() after each", "op", len(new_level_items), "op", run_add_bbo, fresh,
             check_add_bbo, via="OrderBook", info=info, key="add_new_level_then_bbo"),
    ]  # fmt: skip
