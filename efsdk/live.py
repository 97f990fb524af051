"""The live feed: frame sources -> MoldUDP64 session -> books.

One loop, one thread: poll every line's frame source for a batch, feed each
datagram to the :class:`~efsdk.moldudp64.MoldSession` (which arbitrates the A
and B lines, buffers ahead of gaps and asks the request server to fill
them), and apply whatever it releases in sequence through
:meth:`~efsdk.pipeline.FeedHandler.process`.  Latency is measured from each
frame's kernel (or NIC) timestamp to the moment its messages are in the
books.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from efsdk.moldudp64 import MoldRerequester, MoldSession
from efsdk.pipeline import FeedHandler
from efsdk.resource import Resource
from efsdk.sources.base import FrameSourceProtocol

__all__ = ["LiveFeed", "LiveStats"]

#: Poll timeout per line when idle: short enough for re-request timers and a
#: responsive stop, long enough not to spin a core on a quiet feed.
IDLE_POLL_S = 0.001
#: Frames taken per poll: one FFI call per batch.
BATCH = 256
#: Latency histogram range: 1 ns to 10 s at 3 significant digits (fixed memory).
LATENCY_MAX_NS = 10_000_000_000


@dataclass
class LiveStats:
    frames: int = 0
    bytes: int = 0
    latency_ns: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, LATENCY_MAX_NS, 3))  # per batch
    started: float = field(default_factory=time.monotonic)


class LiveFeed(Resource):
    """Books built live from one MoldUDP64 session on one or two lines.

    ``lines`` maps a line name (``"A"``, ``"B"``) to an open frame source; the
    feed owns them and the optional ``requester`` from here on.
    """

    def __init__(
        self,
        lines: dict[str, FrameSourceProtocol],
        feed: FeedHandler,
        *,
        requester_for: Callable[[MoldSession], MoldRerequester] | None = None,
        start_sequence: int | None = 1,
    ) -> None:
        self.lines = lines
        self.feed = feed
        self.stats = LiveStats()
        self.lost: list[tuple[int, int]] = []
        self._batch_ts: list[int] = []
        self.session = MoldSession(
            self._on_payload,
            on_lost=self._on_lost,
            rerequest=requester_for is not None,
            start_sequence=start_sequence,
        )
        self.requester = requester_for(self.session) if requester_for is not None else None
        self._opened()

    def _on_payload(self, first_seq: int, count: int, payload: memoryview) -> None:
        self.feed.process(payload)

    def _on_lost(self, first_seq: int, count: int) -> None:
        self.lost.append((first_seq, count))  # the session has logged it; books may be stale

    def run(self, duration: float | None = None, on_status: Callable[[LiveFeed], None] | None = None,
            status_every: float = 1.0, service: Callable[[], None] | None = None) -> LiveStats:  # fmt: skip
        """Run until the session completes (end of session, every gap closed), ``duration`` s pass,
        or KeyboardInterrupt; call ``on_status`` every ``status_every`` s.

        ``service()`` runs once per loop turn, after the lines are polled: the
        strategy driver pumps its order session and timer there, on this thread.
        """
        session, feed_packet = self.session, self.session.feed
        feed = self.feed
        requester = self.requester
        stats = self.stats
        latency = stats.latency_ns
        lines = list(self.lines.items())
        timeout = IDLE_POLL_S / len(lines)
        deadline = None if duration is None else time.monotonic() + duration
        next_status = time.monotonic() + status_every
        try:
            while not session.complete:
                for line, source in lines:
                    batch = source.poll(max=BATCH, timeout=timeout)
                    if not len(batch):
                        continue
                    now = time.monotonic()
                    last_ts = 0
                    for payload, ts_ns, _flags in batch:
                        stats.frames += 1
                        stats.bytes += len(payload)
                        feed.frame_ts = ts_ns  # what a strategy's tick-to-trade is measured from
                        feed_packet(payload, now, line)
                        last_ts = ts_ns
                    if last_ts:  # one sample per batch: its newest frame (clamped into range)
                        latency.record_value(min(max(1, time.time_ns() - last_ts), LATENCY_MAX_NS))
                    batch.release()
                if service is not None:
                    service()
                now = time.monotonic()
                if requester is not None:
                    requester.receive(now)
                    requester.poll(now)
                else:
                    session.poll(now)
                if deadline is not None and now >= deadline:
                    break
                if on_status is not None and now >= next_status:
                    on_status(self)
                    next_status = now + status_every
        except KeyboardInterrupt:
            pass
        self.feed.refresh_stats()
        return stats

    def latency_summary(self) -> dict[str, float]:
        """Frame timestamp -> books: p50/p99/p99.9/max/mean in microseconds ({} before any sample)."""
        hist = self.stats.latency_ns
        if not hist.get_total_count():
            return {}
        out = {f"p{p:g}_us": hist.get_value_at_percentile(p) / 1000 for p in (50, 99, 99.9)}
        out["max_us"] = hist.get_max_value() / 1000
        out["mean_us"] = hist.get_mean_value() / 1000
        out["samples"] = hist.get_total_count()
        return out

    def _release(self) -> None:
        for source in self.lines.values():
            source.close()
        if self.requester is not None:
            self.requester.close()

    def __repr__(self) -> str:
        return f"<LiveFeed lines={sorted(self.lines)} frames={self.stats.frames} session={self.session.session!r}>"
