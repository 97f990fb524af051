"""What the ZeroMQ fan-out adds to the feed path: ``efsdk bench publish``.

The same generated session is replayed at full rate (decoder-sized batches)
into fresh books, once plainly and once per publisher mode, with a
:class:`~efsdk.publish.BookPublisher` bound on ipc:// and no subscriber (so
the figure is the feed thread's own cost).  The modes run **interleaved**,
round after round, each in a fresh process, and the overhead is the median
of each round's ratio to the plain replay beside it: on a shared VM whose
speed drifts by 20-30% between runs, only pairs measured close together
compare.  Every round's
books are checked against the generator's summary and reference digests.

Modes: every changed level (``depth`` 0, the default product) and depth
windows (the top N levels per side), each in the feed's process and in a
:class:`~efsdk.publish.sidecar.PublisherSidecar` (the feed thread only
forwards the ITCH bytes; another core builds and publishes).  For a sidecar,
the replay time is the feed's (until ``finish()`` is called) and "sidecar
done" is how much later the sidecar had published everything: on a
full-rate replay it runs behind the feed by that much, and feed time plus
"sidecar done" is the sidecar's own pace: what a day longer than its queue
would hold the feed to ("sustained").  With one-chunk
queues (the ``sustained`` modes) the feed cannot run ahead and waits for
the sidecar: the figure a day longer than the default queue would see.  The
issue's goal is a publish cost under 10% of the book build at full rate.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from efsdk import bench

__all__ = ["DEFAULT_DEPTHS", "GOAL_OVERHEAD", "SUSTAINED_QUEUE", "ModeResult", "measure_overhead"]

DEFAULT_DEPTHS = (0, 10)  # every level; the top 10 (a typical L2 product)
GOAL_OVERHEAD = 0.10
#: Chunks queued each side in the sustained sidecar modes (a chunk is one replay decode batch, ~1.5 MB of
#: ITCH): a 1M-message day is ~21 chunks, so the feed waits for the sidecar through most of it.
SUSTAINED_QUEUE = 1


@dataclass
class ModeResult:
    """One publisher mode (``depth`` None: no publisher) over every round."""

    depth: int | None
    sidecar: bool = False  # published from a PublisherSidecar (another process)
    queue: int | None = None  # sidecar: chunks queued each side (None: the defaults)
    seconds: list[float] = field(default_factory=list)
    publisher_seconds: list[float] = field(default_factory=list)  # the publisher's own time (its stats)
    ratios: list[float] = field(default_factory=list)  # this round / the plain replay of the same round
    # sidecar: (feed time + sidecar done) / the plain replay: the sidecar's own pace, which a
    # day longer than the queue would hold the feed to
    sustained_ratios: list[float] = field(default_factory=list)
    finish_seconds: list[float] = field(default_factory=list)  # sidecar: finish() wait after the feed ended
    blocked_seconds: list[float] = field(default_factory=list)  # sidecar: the feed's waits on a full queue
    deltas: int = 0
    levels: int = 0

    @property
    def label(self) -> str:
        if self.depth is None:
            return "replay, no publisher"
        what = "publish every changed level" if self.depth == 0 else f"publish top {self.depth} levels"
        if not self.sidecar:
            return what
        return f"sidecar, queue {self.queue}: {what}" if self.queue else f"sidecar: {what}"

    @property
    def key(self) -> tuple[int | None, bool, int | None]:
        return self.depth, self.sidecar, self.queue

    @property
    def overhead(self) -> float:
        """Median over rounds of (time with this publisher / time without) - 1."""
        return statistics.median(self.ratios) - 1.0 if self.ratios else 0.0

    @property
    def sustained_overhead(self) -> float:
        """What the feed pays at a sustained full rate: for a sidecar its own pace, else :attr:`overhead`."""
        return statistics.median(self.sustained_ratios) - 1.0 if self.sustained_ratios else self.overhead

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.label,
            "depth": self.depth,
            "sidecar": self.sidecar,
            "queue": self.queue,
            "seconds": self.seconds,
            "finish_seconds": self.finish_seconds,
            "blocked_seconds": self.blocked_seconds,
            "publisher_seconds": self.publisher_seconds,
            "ratios": self.ratios,
            "median_s": statistics.median(self.seconds),
            "overhead": self.overhead,
            "sustained_ratios": self.sustained_ratios,
            "sustained_overhead": self.sustained_overhead,
            "deltas": self.deltas,
            "levels": self.levels,
        }


def measure_overhead(
    sess: bench.Session,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    rounds: int = 7,
    progress: Callable[[str], None] | None = None,
    sidecar: bool = True,
    sustained: bool = True,
) -> list[ModeResult]:
    """Interleaved rounds of the plain replay and each publisher mode; the plain one first in the result.

    Each replay runs in a fresh process: in one process, a replay runs
    faster or slower depending on which left the allocator's arenas behind
    (measured: the same mode +13% or +32% by its place in the order).  The
    order of the modes also rotates from round to round.

    ``sustained`` adds sidecar modes whose queues hold one chunk a side
    (:data:`SUSTAINED_QUEUE`): the feed then waits for the sidecar for most
    of the day, as it would all through a day longer than the default queue.
    """
    modes = [ModeResult(None), *(ModeResult(d) for d in depths)]
    if sidecar:
        modes += [ModeResult(d, sidecar=True) for d in depths]
        if sustained:
            modes += [ModeResult(d, sidecar=True, queue=SUSTAINED_QUEUE) for d in depths]
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="efsdk-bench-pub-") as tmp, \
         ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:  # fmt: skip
        for r in range(rounds + 1):  # round 0 warms the page cache and is not kept
            times: dict[tuple[int | None, bool, int | None], float] = {}
            shift = r % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                if progress is not None:
                    progress(f"round {r}/{rounds}: {mode.label}")
                elapsed, stats = pool.submit(_replay_once, sess, mode.depth, f"ipc://{tmp}/s", mode.sidecar,
                                             mode.queue).result()  # fmt: skip
                if r == 0:
                    continue
                times[mode.key] = elapsed
                mode.seconds.append(elapsed)
                if stats is not None:
                    mode.publisher_seconds.append(stats["publish_seconds"])
                    mode.deltas, mode.levels = stats["deltas"], stats["levels"]
                    if mode.sidecar:
                        mode.finish_seconds.append(stats["finish_seconds"])
                        mode.blocked_seconds.append(stats["blocked_seconds"])
            if r:
                plain = times[None, False, None]
                for mode in modes[1:]:
                    mode.ratios.append(times[mode.key] / plain)
                    if mode.sidecar:
                        mode.sustained_ratios.append((times[mode.key] + mode.finish_seconds[-1]) / plain)
    return modes


def _replay_once(sess: bench.Session, depth: int | None, endpoint: str, sidecar: bool = False,
                 queue: int | None = None) -> tuple[float, dict[str, Any] | None]:  # fmt: skip
    """One checked full-rate replay, with a publisher of ``depth`` unless None (runs in a worker process).

    In-process, the time includes ``finish()`` (final snapshots, on the feed
    thread); with a sidecar it ends when the feed has forwarded its last
    byte, and ``finish_seconds`` is the wait for the sidecar after that.
    """
    from efsdk.pipeline import FeedHandler  # noqa: PLC0415
    from efsdk.publish import BookPublisher, PublisherConfig, PublisherSidecar  # noqa: PLC0415

    feed = FeedHandler()
    pub: Any = None
    if depth is not None:
        config = PublisherConfig(endpoint=endpoint, snapshot_interval_s=0, depth=depth)
        if sidecar:
            queues = {} if queue is None else {"forward_hwm": queue, "sidecar_rcvhwm": queue}
            pub = PublisherSidecar(config, **queues)
        else:
            pub = BookPublisher(config)
        pub.attach(feed)
    try:
        started = time.perf_counter()
        feed.replay(os.fspath(sess.path))
        if sidecar:
            pub.flush()  # the feed's last byte is on its way; the rest is the sidecar's time
        elif pub is not None:
            pub.finish()  # final snapshots: the feed thread's work in process
        elapsed = time.perf_counter() - started
        if sidecar:
            pub.finish()
        bench.check_feed_handler(feed, sess)
        if pub is None:
            return elapsed, None
        stats = pub.stats
        if stats.deltas == 0 or stats.send_drops:
            raise AssertionError(f"depth {depth}: published {stats.deltas} deltas, {stats.send_drops} drops")
        if sidecar:
            _check_sidecar_books(feed, pub)
            return elapsed, {**stats.as_dict(), "finish_seconds": pub.sidecar_stats.finish_seconds,
                             "blocked_seconds": pub.sidecar_stats.blocked_seconds}  # fmt: skip
        return elapsed, stats.as_dict()
    finally:
        if pub is not None:
            pub.close()


def _check_sidecar_books(feed: Any, sidecar: Any) -> None:
    """The sidecar published exactly the feed's books (its top ``depth`` levels in window mode)."""
    from efsdk.publish.publisher import published_l2  # noqa: PLC0415

    expected = sidecar.expected_l2()
    assert expected, "the sidecar published no book"
    for symbol, got in expected.items():
        want = {"seq": got["seq"], **published_l2(feed.builder.book(symbol), sidecar.config.depth)}
        assert got == want, f"sidecar's {symbol} differs from the feed's book"
