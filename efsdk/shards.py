"""Replay one ITCH feed with its instruments split over processes.

One core builds a full feed's books at ~1 M messages/s in pure Python, and
the book loop is ~70% of that time (README, Benchmarks).  A host with more
cores gives each a share of the instruments: every shard reads the whole
feed, the native decoder drops the other shards' messages by stock locate
(~100 M msg/s), and the shard's book loop sees only its own instruments.

Books never cross a process boundary.  Each lives in its shard and is read
there (:meth:`ShardedReplay.map`, :meth:`ShardedReplay.snapshot`), where a
strategy for those instruments would run.  A strategy that needs every
instrument in one process runs unsharded.

:meth:`ShardPlan.balanced` splits instruments by their message counts,
largest first onto the least-loaded shard; :func:`count_by_locate` takes the
counts natively ahead of a replay (~3 ms per million messages of a plain
file).  One shard also takes every locate the plan does not name, so a plan
made from an earlier day's counts never leaves a new instrument unbuilt.
"""

from __future__ import annotations

import gc
import mmap
import os
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from book import BookSnapshot
from book.stats import BookStats
from efsdk.errors import ConfigError, EfsdkError
from efsdk.itch.files import is_gzip, open_binary
from efsdk.itch.records import DEFAULT_CHUNK_SIZE
from efsdk.pipeline import FeedHandler, FeedStats

__all__ = ["ShardError", "ShardPlan", "ShardResult", "ShardedReplay", "ShardedStats", "count_by_locate"]

MAX_LOCATE = 65535
#: How long start() waits for a shard process to import and say so.
START_TIMEOUT_S = 60.0
#: How long close() waits for a shard to stop before killing it.
STOP_TIMEOUT_S = 5.0


class ShardError(EfsdkError, RuntimeError):
    """A shard process failed or died; the message names the shard and why."""


def count_by_locate(source: str | os.PathLike[str], chunk_size: int = DEFAULT_CHUNK_SIZE) -> Counter[int]:
    """Messages per stock locate in a BinaryFILE ITCH capture (plain or gzip).

    A plain file is mapped and counted in one native call (~3 ms per million
    messages); gzip is decompressed in chunks first.  A truncated tail is left
    uncounted: the replay reports it as an anomaly.
    """
    from efsdk._native_itch import ffi, lib

    counts = ffi.new("uint64_t[65536]")
    used = ffi.new("size_t *")

    def count(buf: Any) -> int:
        if lib.efsdk_itch_count_locates(ffi.from_buffer(buf), len(buf), used, counts) < 0:
            raise RuntimeError("efsdk_itch_count_locates refused its arguments")  # pragma: no cover - a bug
        return int(used[0])

    if is_gzip(source):
        carry = b""
        with open_binary(source) as f:
            while chunk := f.read(chunk_size):
                buf = carry + chunk if carry else chunk
                carry = buf[count(buf) :]
    elif os.path.getsize(source):
        with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            count(mapped)
    return Counter({loc: n for loc, n in enumerate(ffi.unpack(counts, MAX_LOCATE + 1)) if n})


@dataclass(frozen=True)
class ShardPlan:
    """Which stock locates each shard builds; shard ``rest`` also builds every locate not named."""

    locates: tuple[tuple[int, ...], ...]
    loads: tuple[int, ...] = ()  # messages each shard was planned to apply (informational)
    rest: int = 0

    def __post_init__(self) -> None:
        if not self.locates:
            raise ConfigError("a shard plan needs at least one shard")
        if not 0 <= self.rest < len(self.locates):
            raise ConfigError(f"shard plan: rest shard {self.rest} is not one of the {len(self.locates)} shards")
        seen: set[int] = set()
        for shard in self.locates:
            bad = [loc for loc in shard if not 0 < loc <= MAX_LOCATE or loc in seen]
            if bad:
                raise ConfigError(f"shard plan: locates {bad[:5]} are out of 1..{MAX_LOCATE} or in two shards")
            seen.update(shard)

    @property
    def shards(self) -> int:
        return len(self.locates)

    @classmethod
    def balanced(cls, counts: Mapping[int, int], shards: int) -> ShardPlan:
        """Split locates over ``shards`` by message count: largest first, onto the least loaded.

        Locate 0 carries system-wide messages, which every shard applies; it
        is not planned.
        """
        if shards < 1:
            raise ConfigError(f"shards must be >= 1, got {shards}")
        plan: list[list[int]] = [[] for _ in range(shards)]
        loads = [0] * shards
        for n, loc in sorted(((n, loc) for loc, n in counts.items() if loc), reverse=True):
            least = loads.index(min(loads))
            plan[least].append(loc)
            loads[least] += n
        return cls(tuple(tuple(sorted(p)) for p in plan), tuple(loads), rest=loads.index(min(loads)))

    def filter_for(self, shard: int) -> tuple[int, ...]:
        """The locate filter of ``shard``: its own locates, plus every unnamed one for the rest shard."""
        if shard != self.rest:
            return self.locates[shard]
        others = {loc for i, p in enumerate(self.locates) if i != shard for loc in p}
        return tuple(loc for loc in range(1, MAX_LOCATE + 1) if loc not in others)


@dataclass
class ShardResult:
    """One shard's replay: its feed and book counters and the books it holds."""

    shard: int
    pid: int
    seconds: float
    feed: FeedStats
    book: BookStats
    live_orders: int
    symbols: tuple[str, ...]  # the books it holds that have a symbol


@dataclass
class ShardedStats:
    """A sharded replay, added up: every shard frames every message, so feed counts are one shard's."""

    messages: int
    bytes: int
    records: int  # book records applied, over all shards
    live_orders: int
    seconds: float  # wall clock, planning included
    plan_seconds: float
    plan: ShardPlan
    shards: list[ShardResult] = field(default_factory=list)

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def anomalies_by_kind(self) -> dict[str, int]:
        # Anomalies pass every shard's filter, so each shard saw all of them: take one shard's.
        return dict(self.shards[0].feed.anomalies_by_kind) if self.shards else {}

    @property
    def book(self) -> BookStats:
        """Book counters summed over shards (each counts only its own instruments)."""
        total = BookStats()
        for r in self.shards:
            for name, value in r.book.as_dict().items():
                if name not in ("anomalies", "other_messages"):  # every shard sees these: one shard's
                    setattr(total, name, getattr(total, name) + value)
        if self.shards:
            total.anomalies = self.shards[0].book.anomalies
            total.other_messages = self.shards[0].book.other_messages
        return total


class ShardedReplay:
    """A pool of shard processes that replay ITCH files into books, each its share of the instruments.

    Start it once (processes import the SDK: ~0.3 s each), replay as many
    files as needed, close it.  Each replay replaces the books of the last.
    ``cpus`` pins shard ``i`` to ``cpus[i]``.
    """

    def __init__(self, shards: int = 2, *, cpus: Sequence[int] | None = None) -> None:
        if shards < 1:
            raise ConfigError(f"shards must be >= 1, got {shards}")
        if cpus is not None and len(cpus) != shards:
            raise ConfigError(f"cpus names {len(cpus)} CPUs for {shards} shards: give one per shard")
        self.shards = shards
        self._cpus = tuple(cpus) if cpus is not None else None
        self._procs: list[subprocess.Popen] = []
        self._conns: list[Connection] = []
        self._owner: dict[str, int] = {}
        self._broken: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ShardedReplay:
        """Start the shard processes and wait until each has imported the SDK."""
        if self._procs:
            return self
        try:
            for i in range(self.shards):
                ours, theirs = socket.socketpair()
                cpu = "-" if self._cpus is None else str(self._cpus[i])
                # A fresh interpreter, not multiprocessing's spawn: that re-imports the
                # caller's __main__, which fails from a script without a main guard.
                proc = subprocess.Popen(
                    [sys.executable, "-m", "efsdk.shard_main", str(theirs.fileno()), str(i), cpu],
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # a Ctrl-C is the parent's to handle; it stops the shards
                )
                theirs.close()
                self._procs.append(proc)
                self._conns.append(Connection(ours.detach()))
            self._gather(range(self.shards), "start", timeout=START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every shard; ones that do not stop within a few seconds are killed."""
        for conn in self._conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass  # already gone
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            conn.close()
        self._procs, self._conns, self._owner = [], [], {}

    def __enter__(self) -> ShardedReplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    # ------------------------------------------------------------------ work
    def plan(self, source: str | os.PathLike[str]) -> ShardPlan:
        """A balanced plan for ``source``, from its own message counts."""
        return ShardPlan.balanced(count_by_locate(source), self.shards)

    def replay(
        self, source: str | os.PathLike[str], plan: ShardPlan | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ShardedStats:
        """Build books from a BinaryFILE ITCH capture (plain or gzip), each shard its share.

        Every shard reads the whole file (a gzip file is decompressed by each).

        Without ``plan``, one is made from the file's own counts (timed, in
        ``plan_seconds``).  Malformed input is counted as in
        :meth:`FeedHandler.replay <efsdk.pipeline.FeedHandler.replay>`.
        """
        self._require_started()
        started = time.perf_counter()
        if plan is None:
            plan = self.plan(source)
        elif plan.shards != self.shards:
            raise ConfigError(f"the plan has {plan.shards} shards, this pool {self.shards}")
        planned = time.perf_counter()
        path = os.path.abspath(source)  # the shards' working directory may not be ours
        for i in range(self.shards):
            self._send(i, ("replay", path, plan.filter_for(i), chunk_size))
        results: list[ShardResult] = self._gather(range(self.shards), "replay")
        seconds = time.perf_counter() - started
        framed = {r.feed.messages for r in results}
        if len(framed) != 1:
            raise ShardError(f"shards framed different message counts {sorted(framed)}: did {path} change mid-replay?")
        self._owner = {s: r.shard for r in results for s in r.symbols}
        first = results[0].feed
        return ShardedStats(
            messages=first.messages,
            bytes=first.bytes,
            records=sum(r.book.records for r in results),
            live_orders=sum(r.live_orders for r in results),
            seconds=seconds,
            plan_seconds=planned - started,
            plan=plan,
            shards=results,
        )

    def map(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """``fn(handler, *args)`` in every shard, on its :class:`~efsdk.pipeline.FeedHandler`; results in shard order.

        ``fn`` runs in the shard process: it must be importable there (a
        module-level function) and its arguments and result picklable.
        """
        self._require_started()
        for i in range(self.shards):
            self._send(i, ("map", fn, args))
        return self._gather(range(self.shards), "map")

    def call(self, shard: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(handler, *args)`` in one shard (see :meth:`map`)."""
        self._require_started()
        self._send(shard, ("map", fn, args))
        return self._gather([shard], "call")[0]

    def owner(self, symbol: str) -> int:
        """The shard that holds ``symbol``'s book after the last replay."""
        try:
            return self._owner[symbol]
        except KeyError:
            raise KeyError(f"no shard holds a book for {symbol!r} (replay first; symbols come from R messages)") from None

    def symbols(self) -> dict[str, int]:
        """Every symbol with a book, and the shard holding it."""
        return dict(self._owner)

    def snapshot(self, symbol: str, depth: int | None = None) -> BookSnapshot:
        """A consistent snapshot of ``symbol``'s book, from the shard that holds it."""
        return self.call(self.owner(symbol), _snapshot, symbol, depth)

    def clear(self) -> None:
        """Release every shard's books (a replay does it too, inside its time)."""
        self._require_started()
        for i in range(self.shards):
            self._send(i, ("clear",))
        self._gather(range(self.shards), "clear")
        self._owner = {}

    # ------------------------------------------------------------------ plumbing
    def _require_started(self) -> None:
        if self._broken is not None:
            raise ShardError(f"the shard pool is broken: {self._broken}; close it and start a new one")
        if not self._procs:
            raise ShardError("the shard pool is not started: use `with ShardedReplay(n) as pool:` or call start()")

    def _send(self, shard: int, request: tuple) -> None:
        try:
            self._conns[shard].send(request)
        except OSError:
            self._fail(self._died(shard, f"before {request[0]}"))

    def _fail(self, why: str) -> None:
        self._broken = why
        raise ShardError(why)

    def _gather(self, shards: Sequence[int] | range, what: str, timeout: float | None = None) -> list[Any]:
        """One reply from each of ``shards``; a shard that dies first, or fails, raises ShardError."""
        replies: dict[int, Any] = {}
        errors: list[str] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = {self._conns[i]: i for i in shards}
        while waiting:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self._fail(f"shards {sorted(waiting.values())} did not answer {what} within {timeout:.0f} s")
            # A dead shard's socket reads EOF, so its connection alone tells replies from deaths.
            for conn in wait(list(waiting), left):
                i = waiting.pop(conn)  # type: ignore[call-overload]
                try:
                    status, payload = conn.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    self._fail(self._died(i, f"during {what}"))
                if status == "ok":
                    replies[i] = payload
                else:
                    errors.append(f"shard {i}: {payload}")
        if errors:
            raise ShardError(f"{what} failed: " + "; ".join(errors))
        return [replies[i] for i in shards]

    def _died(self, shard: int, when: str) -> str:
        proc = self._procs[shard]
        try:
            code: int | str = proc.wait(1.0)
        except subprocess.TimeoutExpired:
            code = "unknown (still exiting)"
        return f"shard {shard} (pid {proc.pid}) exited with code {code} {when}"


# ---------------------------------------------------------------------- in the shard process
def _snapshot(handler: FeedHandler, symbol: str, depth: int | None) -> BookSnapshot:
    book = handler.builder.book(symbol)
    if book is None:
        raise KeyError(f"no book for {symbol!r} in this shard")
    return book.snapshot(depth)


def serve_shard(conn: Connection, index: int, cpu: int | None) -> None:
    """A shard's loop (run by ``python -m efsdk.shard_main``): answer requests until told to stop or the parent goes."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    handler: FeedHandler | None = None
    conn.send(("ok", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        kind = request[0]
        try:
            if kind == "stop":
                return
            if kind == "replay":
                _, path, locates, chunk_size = request
                handler = None  # release the last books before building the next
                started = time.perf_counter()
                handler = FeedHandler(locates=locates)
                stats = handler.replay(path, chunk_size)
                builder = handler.builder
                symbols = tuple(b.symbol for b in builder.books() if b.symbol)
                reply: Any = ShardResult(
                    index, os.getpid(), time.perf_counter() - started, stats, builder.stats, builder.live_orders(), symbols
                )
            elif kind == "map":
                if handler is None:
                    raise RuntimeError("nothing replayed yet")
                _, fn, args = request
                reply = fn(handler, *args)
            elif kind == "clear":
                handler = None
                gc.collect()
                reply = None
            else:
                raise RuntimeError(f"unknown request {kind!r}")
        except Exception as exc:  # reported to the parent, which raises ShardError
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
            continue
        conn.send(("ok", reply))
