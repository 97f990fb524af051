"""Publishing from a sidecar process: the fan-out runs on another core, off the feed path.

In-process, a :class:`~efsdk.publish.BookPublisher` shares the feed thread:
its own work is 8-10% of the book build for top-10 windows and 80-100% for
every changed level, and reading every touched book after each batch also
slows the book loop itself (its caches).  :class:`PublisherSidecar` moves
all of it to a child process.  The feed handler only forwards the ITCH bytes
it consumes (:attr:`~efsdk.pipeline.FeedHandler.input_listeners`: one
``bytearray`` append per batch or packet, one ZeroMQ send per
:data:`FORWARD_BYTES` or per idle turn); the sidecar decodes them into its
own books (the same native decoder and ``book`` code, so the same books,
filtered to the publisher's symbols) and runs an ordinary ``BookPublisher``
on its own PUB and ROUTER sockets.  Subscribers cannot tell the difference.

The price is a second core and a second copy of the (published) books, and
the stream runs behind the feed by however long the sidecar takes.  It
suits a live feed, whose average rate is far below a full-rate replay, and
bursts up to the queue below; see there for a sustained full-rate replay.

Forwarding never drops while the sidecar lives: losing bytes would leave its
books wrong for the rest of the day.  The control socket holds up to
:data:`FORWARD_HWM` chunks on this side and :data:`SIDECAR_RCVHWM` on the
sidecar's (a chunk is :data:`FORWARD_BYTES` or one decode batch, whichever is
larger: ~40 MB to ~600 MB in flight); a sidecar that falls that far behind
makes the forwarder wait (counted in :attr:`SidecarStats.blocked_seconds`);
one that makes no progress for ``stall_timeout`` (alive but stopped, or
blocked without using the CPU), or lets nothing through for ``busy_timeout``
while using the CPU (spinning), is killed, counted in
:attr:`SidecarStats.killed_hung`, and treated as dead.  :meth:`finish` waits
for the sidecar's answer under the same rule.
So the feed runs free only while the sidecar keeps up on average: the
sidecar decodes and builds the books as well as publishing, so at a sustained
full replay rate it is the slower of the two, and a day longer than the
queue is throttled to its pace.
A sidecar that died never stops the feed: the forwarder logs it once, stops
forwarding and counts the bytes it could not send
(:attr:`SidecarStats.lost_bytes`); :meth:`PublisherSidecar.finish` then
raises :class:`~efsdk.errors.PublishError` with its exit code.

The queue lengths are parameters (``forward_hwm``, ``sidecar_rcvhwm``):
``efsdk bench publish`` shortens both to one chunk to show the sustained,
throttled figure on a day that fits the default queue.

Control protocol (a ZeroMQ PAIR over ipc:// in a private directory; one byte
of kind first): parent -> sidecar ``D`` + ITCH bytes, ``S`` (stats), ``F``
(finish), ``Q`` (quit), and first ``A`` + the feed's filters (JSON: symbols,
locates, message types), so the sidecar builds the same books; sidecar ->
parent ``R`` + JSON endpoints when bound (or ``E`` + the error), and
``S``/``F`` + JSON replies (a reply of another kind than the one awaited is a
late answer to a request that timed out, and is discarded).  ``D`` chunks hold
whole messages: a remainder is a truncated one, counted and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from efsdk.errors import ConfigError, PublishError
from efsdk.publish.publisher import PublisherConfig, PublisherStats
from efsdk.resource import Resource

__all__ = ["FORWARD_BYTES", "FORWARD_HWM", "PublisherSidecar", "SidecarStats"]

log = logging.getLogger(__name__)

#: Bytes of ITCH gathered before a send: ~8k messages, so a send costs the
#: feed ~1 ns a message; on a live feed the idle turn sends sooner.
FORWARD_BYTES = 256 << 10
#: Chunks queued on the parent's side before the forwarder waits, and on the
#: sidecar's.  A chunk is FORWARD_BYTES, or one whole decode batch when that is
#: larger (up to the 4 MiB replay chunk): at most ~(128 + 16) chunks are in flight.
FORWARD_HWM = 128
SIDECAR_RCVHWM = 16
#: How long start() waits for the sidecar to import, bind and say so.
START_TIMEOUT_S = 60.0
#: A sidecar that uses no CPU for this long while the queue is full is hung (alive but
#: stopped or deadlocked): it is killed and the feed runs on without it.  Progress is its
#: CPU time, not chunks taken, because a full queue frees space only once the sidecar has
#: worked through about half of it (ZeroMQ's low-water mark), which can take minutes.
STALL_TIMEOUT_S = 30.0
#: A sidecar that uses the CPU but lets no chunk through for this long is spinning
#: (a live lock): killed too, so a feed never waits without bound.  A slow sidecar
#: drains half its queue (the low-water mark) in seconds.
BUSY_TIMEOUT_S = 300.0
#: How long finish() waits for the sidecar to work through what it was sent.
FINISH_TIMEOUT_S = 600.0
#: While waiting on the sidecar, look at whether it is still alive this often.
LIVENESS_S = 0.1
#: The sidecar serves snapshot requests at least this often when the feed is quiet.
SIDECAR_IDLE_S = 0.005

# Control message kinds (first byte), shared with efsdk.publish.sidecar_main.
ATTACH, DATA, STATS, FINISH, QUIT = b"A", b"D", b"S", b"F", b"Q"
READY, ERROR = b"R", b"E"


@dataclass
class SidecarStats:
    """The forwarding side, in the feed's process (the publisher's own counters come from the sidecar)."""

    forwarded_bytes: int = 0
    forwarded_chunks: int = 0  # ZeroMQ messages sent to the sidecar
    blocked_seconds: float = 0.0  # time the feed waited because the sidecar was FORWARD_HWM chunks behind
    max_blocked_seconds: float = 0.0  # the longest of those waits (one send)
    lost_bytes: int = 0  # ITCH bytes not forwarded because the sidecar had died
    killed_hung: int = 0  # sidecars killed as hung: no CPU progress for stall_timeout, or busy_timeout spinning (0 or 1)
    finish_seconds: float = 0.0  # finish(): time until the sidecar had published everything it was sent

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PublisherSidecar(Resource):
    """A :class:`~efsdk.publish.BookPublisher` in a child process, fed the ITCH bytes of a feed handler.

    Same use as a ``BookPublisher``: construct (the sidecar starts and binds;
    bind errors raise :class:`~efsdk.errors.ConfigError`), :meth:`attach` to a
    feed handler before its first message, call :meth:`poll` when the feed
    is idle (sends what is gathered), :meth:`finish` at the end (waits until
    the sidecar has published everything, then its final snapshots),
    :meth:`close`.
    """

    def __init__(
        self,
        config: PublisherConfig,
        forward_bytes: int = FORWARD_BYTES,
        *,
        forward_hwm: int = FORWARD_HWM,
        sidecar_rcvhwm: int = SIDECAR_RCVHWM,
        stall_timeout: float = STALL_TIMEOUT_S,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        if min(forward_bytes, forward_hwm, sidecar_rcvhwm) < 1 or not 0 < stall_timeout <= busy_timeout:
            raise ConfigError(
                f"forward_bytes, forward_hwm and sidecar_rcvhwm must be >= 1 and 0 < stall_timeout <= busy_timeout, "
                f"got {forward_bytes}, {forward_hwm}, {sidecar_rcvhwm}, {stall_timeout}, {busy_timeout}"
            )
        self.config = config
        self.forward_bytes = forward_bytes
        self.stall_timeout = stall_timeout
        self.busy_timeout = busy_timeout
        self.sidecar_stats = SidecarStats()
        self.finished = False
        self._final: dict[str, Any] | None = None
        self._died: str | None = None  # why forwarding stopped (the sidecar exited)
        self._feed: Any = None
        self._pending = bytearray(DATA)
        self._dir = tempfile.mkdtemp(prefix="efsdk-sidecar-")
        self._ctx = zmq.Context()
        self._pair = self._ctx.socket(zmq.PAIR)
        self._pair.setsockopt(zmq.SNDHWM, forward_hwm)
        self._pair.setsockopt(zmq.LINGER, 0)
        control = f"ipc://{self._dir}/control"
        self._pair.bind(control)
        # A fresh interpreter running this module: no forked sockets or threads, and unlike
        # multiprocessing's spawn it never re-imports the caller's __main__.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "efsdk.publish.sidecar_main", control, config.model_dump_json(), str(os.getpid()),
             str(sidecar_rcvhwm)],  # fmt: skip
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # its log goes to our stderr
            start_new_session=True,  # Ctrl-C or a SIGTERM to our process group is ours to handle; then we stop it
        )
        self._opened()
        try:
            kind, body = self._reply(START_TIMEOUT_S, "start", READY, ERROR, watch=False)  # importing may wait on I/O
            if kind == ERROR:
                raise ConfigError(f"publisher sidecar: {body.decode(errors='replace')}")
        except BaseException:
            self.close()
            raise
        bound = json.loads(body)
        self.endpoint: str = bound["endpoint"]
        self.snapshot_endpoint: str = bound["snapshot_endpoint"]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pid {self._proc.pid}"
        return f"<PublisherSidecar {state} {getattr(self, 'endpoint', '?')} forwarded={self.sidecar_stats.forwarded_bytes}B>"

    # ------------------------------------------------------------------ feed side
    def attach(self, feed: Any) -> None:
        """Forward every byte ``feed`` (a :class:`~efsdk.pipeline.FeedHandler`) consumes from now on.

        The sidecar builds its books from those bytes alone, so attach before
        the feed's first message; to publish a feed already under way, use an
        in-process ``BookPublisher``.
        """
        if self._feed is not None:
            raise ConfigError("this sidecar is already attached to a feed handler")
        if feed.decoder.stats.messages:
            raise ConfigError(
                "a publisher sidecar rebuilds the books from the bytes it is forwarded: attach it before the "
                "feed handler's first message (an in-process BookPublisher can attach mid-feed)"
            )
        # The sidecar builds the books the feed builds: the same filters.
        filters = {
            "symbols": list(feed.symbols) or None,
            "locates": list(feed.locates) if feed.locates is not None else None,
            "message_types": list(feed.message_types),
        }
        self._send(ATTACH + json.dumps(filters).encode())
        self._feed = feed
        feed.input_listeners.append(self._forward)

    def detach(self) -> None:
        """Send what is gathered and stop forwarding (idempotent)."""
        if self._feed is None:
            return
        self.flush()
        if self._forward in self._feed.input_listeners:
            self._feed.input_listeners.remove(self._forward)
        self._feed = None

    def _forward(self, span: memoryview) -> None:
        if self._died is not None:
            self.sidecar_stats.lost_bytes += len(span)
            return
        pending = self._pending
        pending += span
        if len(pending) >= self.forward_bytes:
            self.flush()

    def flush(self) -> None:
        """Send the bytes gathered so far to the sidecar."""
        pending = self._pending
        if len(pending) <= 1:
            return
        self._pending = bytearray(DATA)
        st = self.sidecar_stats
        if self._died is None:
            try:
                self._send(pending)
                st.forwarded_bytes += len(pending) - 1
                st.forwarded_chunks += 1
                return
            except (PublishError, zmq.ZMQError) as exc:  # the feed goes on; finish() reports it
                self._died = str(exc)
                log.error("%s; no longer publishing (books keep building here)", exc)
        st.lost_bytes += len(pending) - 1

    def poll(self, timeout: float = 0.0) -> int:
        """Idle-turn hook: send what is gathered; wait ``timeout`` s (the sidecar serves requests itself)."""
        self.flush()
        if timeout > 0:
            time.sleep(timeout)
        return 0

    # ------------------------------------------------------------------ results
    @property
    def stats(self) -> PublisherStats:
        """The sidecar's publisher counters: final after :meth:`finish`, else fetched (one round trip)."""
        if self._final is not None:
            return PublisherStats(**self._final["stats"])
        self.flush()
        self._send(STATS)
        _, body = self._reply(FINISH_TIMEOUT_S, "stats", STATS)  # answered after the data sent before it
        return PublisherStats(**json.loads(body))

    def finish(self) -> int:
        """Send the rest, wait until the sidecar has published it all, then its final snapshots.

        Returns the number of final snapshots (as ``BookPublisher.finish``).
        """
        if self._final is None:
            started = time.perf_counter()
            self.detach()
            self._send(FINISH)
            _, body = self._reply(FINISH_TIMEOUT_S, "finish", FINISH)
            self._final = json.loads(body)
            self.sidecar_stats.finish_seconds = time.perf_counter() - started
            self.finished = True
        return int(self._final["final_snapshots"])

    def expected_l2(self) -> dict[str, dict[str, Any]]:
        """The sidecar's ``BookPublisher.expected_l2()`` at :meth:`finish` (books and topic seqs)."""
        if self._final is None:
            raise PublishError("expected_l2() is known once finish() has returned")
        return self._final["expected_l2"]

    @property
    def feed_summary(self) -> dict[str, Any]:
        """The sidecar's own feed counters at :meth:`finish` (messages, anomalies, unconsumed bytes)."""
        if self._final is None:
            raise PublishError("feed_summary is known once finish() has returned")
        return self._final["feed"]

    # ------------------------------------------------------------------ plumbing
    def _send(self, message: bytes | bytearray) -> None:
        if self.closed:
            raise PublishError("the publisher sidecar is closed")
        if self._died is not None:
            raise PublishError(self._died)
        try:
            self._pair.send(message, zmq.NOBLOCK, copy=False)
            return
        except zmq.Again:
            pass
        started = time.perf_counter()  # the queue is full: the sidecar is far behind
        try:
            self._wait_for(zmq.POLLOUT, "with its queue full", self.busy_timeout)
            self._pair.send(message, zmq.NOBLOCK, copy=False)
        finally:
            waited = time.perf_counter() - started
            st = self.sidecar_stats
            st.blocked_seconds += waited
            st.max_blocked_seconds = max(st.max_blocked_seconds, waited)

    def _wait_for(self, event: int, what: str, limit: float) -> None:
        """Wait until the control socket is ready for ``event``; kill a sidecar that is hung meanwhile.

        ZeroMQ frees queue space only after about half the queue has drained,
        so a slow sidecar can take many chunks, or long to answer, without the
        socket becoming ready: it is hung only if it also stopped using the CPU
        for ``stall_timeout`` (stopped by a signal, deadlocked, blocked).  One
        that uses the CPU for ``limit`` without getting there is spinning.
        """
        started = last_progress = time.perf_counter()
        progress = self._cpu_progress()
        while not self._pair.poll(int(LIVENESS_S * 1000), event):
            self._check_alive()
            now = time.perf_counter()
            seen = self._cpu_progress()
            if seen is not None and seen != progress:
                progress, last_progress = seen, now
            elif now - last_progress > self.stall_timeout:
                self._kill_hung(f"made no progress for {self.stall_timeout:g} s {what} (hung or stopped)")
            if now - started > limit:
                self._kill_hung(f"used the CPU for {limit:g} s {what} without getting through (spinning?)")

    def _kill_hung(self, why: str) -> None:
        self.sidecar_stats.killed_hung += 1
        self._proc.kill()  # alive but not working: waiting longer would stall the feed for good
        self._proc.wait()
        self._died = f"publisher sidecar {why}; killed it (pid {self._proc.pid})"
        raise PublishError(self._died)

    def _cpu_progress(self) -> int | None:
        """The sidecar's CPU ticks so far (user + system, all its threads), or None when not known.

        Read from /proc/PID/stat (fields 14 and 15: the 12th and 13th after the
        ``)`` closing the command name).  A stopped or blocked process's ticks stand still.
        """
        try:
            with open(f"/proc/{self._proc.pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):  # not Linux, or it just exited (_check_alive reports that)
            return None

    def _reply(self, timeout: float, what: str, *kinds: bytes, watch: bool = True) -> tuple[bytes, bytes]:
        """The next reply of one of ``kinds``; others are late answers to a request that timed out.

        With ``watch`` a sidecar that stops working meanwhile is killed after
        ``stall_timeout`` (see :meth:`_wait_for`), not waited for until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            if watch:
                self._wait_for(zmq.POLLIN, f"answering {what}", max(0.0, deadline - time.monotonic()))
            else:
                while not self._pair.poll(int(LIVENESS_S * 1000), zmq.POLLIN):
                    self._check_alive()
                    if time.monotonic() > deadline:
                        raise PublishError(f"publisher sidecar: no answer to {what} within {timeout:.0f} s")
            msg = self._pair.recv()
            if msg[:1] in kinds:
                return msg[:1], msg[1:]
            log.debug("publisher sidecar: discarded a late %r reply while waiting for %s", msg[:1], what)

    def _check_alive(self) -> None:
        if self._proc.poll() is not None:
            raise PublishError(
                f"publisher sidecar exited (code {self._proc.returncode}); its log is on this process's stderr"
            )

    def _release(self) -> None:
        if self._feed is not None and self._forward in self._feed.input_listeners:
            self._feed.input_listeners.remove(self._forward)
        self._feed = None
        try:
            if self._proc.poll() is None:
                try:
                    self._pair.send(QUIT, zmq.NOBLOCK)
                    self._proc.wait(5.0)
                except (zmq.ZMQError, subprocess.TimeoutExpired):
                    self._proc.kill()
                    self._proc.wait()
        finally:
            self._pair.close(0)
            self._ctx.term()
            shutil.rmtree(self._dir, ignore_errors=True)
