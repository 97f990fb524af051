"""Drivers: where a strategy's events come from and where its orders go.

* :func:`run_replay` - an ITCH file (BinaryFILE, plain or gzip), its bytes,
  or a pcap/pcapng capture of MoldUDP64; orders are filled by
  :class:`~efsdk.strategy.replay_fills.ReplayFillGateway`: the simulator's
  matching engine mirroring the replayed book; the clock is feed time.
* :func:`run_live` - frame sources through a MoldUDP64 session
  (:class:`~efsdk.live.LiveFeed`) and an order gateway such as a SoupBinTCP
  session (:class:`~efsdk.orders.gateway.SoupGateway`); the clock is wall
  time.
* :func:`run_sim` - :func:`run_live` against the embedded exchange started
  in a child process, returning the exchange's record to reconcile with.

All of them run the same :class:`~efsdk.strategy.runtime.StrategyRuntime`.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from efsdk.pipeline import FeedHandler, FeedStats
from efsdk.strategy.base import Strategy
from efsdk.strategy.replay_fills import ReplayFillGateway
from efsdk.strategy.runtime import PollingGateway, StrategyRuntime, wall_ns_since_midnight

__all__ = ["RunResult", "SimRunResult", "run_live", "run_replay", "run_sim"]


@dataclass
class RunResult:
    runtime: StrategyRuntime
    stats: FeedStats
    seconds: float
    capture: Any = None  # CaptureReplay of a pcap replay

    @property
    def feed(self) -> FeedHandler:
        return self.runtime.feed

    @property
    def book_events(self) -> int:
        return self.runtime.events

    def summary(self) -> dict:
        out = self.runtime.summary()
        out["seconds"] = round(self.seconds, 3)
        return out


def _is_capture(source: Any) -> bool:
    if not isinstance(source, str | os.PathLike):
        return False
    from efsdk.capture import capture_format  # noqa: PLC0415

    return capture_format(source) is not None


def run_replay(
    strategy: Strategy,
    source: str | os.PathLike[str] | BinaryIO | bytes,
    *,
    fills: bool = True,
    progress: Callable[[int], None] | None = None,
    on_feed: Callable[[FeedHandler], None] | None = None,
) -> RunResult:
    """Replay ``source`` into ``strategy``; with ``fills`` its orders trade against the replayed book.

    Only the strategy's symbols are built (the native filter drops the rest
    before Python sees them).  Open orders are canceled after ``on_stop``.
    ``on_feed(feed)`` sees the feed handler before the first message.
    """
    gateway = ReplayFillGateway() if fills else None
    runtime = StrategyRuntime(strategy, gateway)
    if on_feed is not None:  # e.g. a ZeroMQ publisher attaching to the books
        on_feed(runtime.feed)
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(source)
    started = time.perf_counter()
    capture = None
    runtime.start()
    try:
        if _is_capture(source):
            from efsdk.capture import replay_pcap  # noqa: PLC0415

            capture = replay_pcap(source, runtime.feed)  # type: ignore[arg-type]
            stats = runtime.feed.stats
        else:
            stats = runtime.feed.replay(source, progress=progress)  # type: ignore[arg-type]
    finally:
        runtime.stop()
    return RunResult(runtime, stats, time.perf_counter() - started, capture)


def run_live(
    strategy: Strategy,
    lines: dict[str, Any],
    *,
    gateway: PollingGateway | None = None,
    requester_for: Callable[[Any], Any] | None = None,
    start_sequence: int | None = 1,
    duration: float | None = None,
    on_status: Callable[[StrategyRuntime], None] | None = None,
    status_every: float = 1.0,
    stop_when: Callable[[StrategyRuntime], bool] | None = None,
    token_prefix: str = "EF",
    first_token: int = 1,
    on_feed: Callable[[FeedHandler], None] | None = None,
    idle: Callable[[], object] | None = None,
) -> RunResult:
    """Run ``strategy`` on a live MoldUDP64 feed (``lines``: open frame sources by line name).

    ``gateway`` pumps its responses once per loop turn.  Stops at end of
    session, after ``duration`` s, when ``stop_when(runtime)`` is true, or on
    Ctrl-C; open orders are then canceled and their confirmations awaited
    briefly.  ``on_feed(feed)`` sees the feed handler before the first
    message; ``idle()`` runs once per loop turn (e.g. a publisher's poll).
    """
    from efsdk.live import LiveFeed  # noqa: PLC0415

    runtime = StrategyRuntime(strategy, gateway, clock=wall_ns_since_midnight, schedule_clock=time.monotonic_ns,
                              token_prefix=token_prefix, first_token=first_token)  # fmt: skip
    if on_feed is not None:
        on_feed(runtime.feed)
    tick, pump = runtime.tick, runtime.pump
    started = time.perf_counter()
    status_at = [time.monotonic() + status_every]

    class _Stop(Exception):
        pass

    def service() -> None:
        pump()
        if idle is not None:
            idle()
        tick()  # returns at once without a timer
        if stop_when is not None and stop_when(runtime):
            raise _Stop
        if on_status is not None:
            now = time.monotonic()
            if now >= status_at[0]:
                status_at[0] = now + status_every
                on_status(runtime)

    live = LiveFeed(lines, runtime.feed, requester_for=requester_for, start_sequence=start_sequence)
    runtime.live = live
    with live:
        runtime.start()
        try:
            live.run(duration, service=service)
        except _Stop:
            runtime.feed.refresh_stats()
        finally:
            runtime.stop()
            if gateway is not None:  # let the cancels' confirmations arrive
                deadline = time.monotonic() + 1.0
                while runtime.orders is not None and runtime.orders.open_orders() and time.monotonic() < deadline:
                    pump()
                    time.sleep(0.001)
    return RunResult(runtime, runtime.feed.stats, time.perf_counter() - started)


@dataclass
class SimRunResult:
    """A run against the embedded exchange, with the exchange's own record to reconcile against."""

    run: RunResult
    record: dict  # the simulator's JSON record (fills, positions, cash per account)
    account: str

    def summary(self) -> dict:
        """The run's summary plus whether it reconciles with the exchange's record (and how not)."""
        out = self.run.summary()
        problems = self.reconcile()
        out["reconciled_with_exchange"] = not problems
        out["reconcile_problems"] = problems
        return out

    def reconcile(self) -> list[str]:
        """Differences between the strategy's positions/cash/fills and the exchange's record ([] = identical)."""
        orders = self.run.runtime.orders
        mine = self.record.get("accounts", {}).get(self.account, {"cash": 0, "positions": {}, "fills": []})
        problems = []
        ours = {s: p.shares for s, p in orders.positions.items() if p.shares} if orders else {}
        if ours != mine["positions"]:
            problems.append(f"positions: strategy {ours} != exchange {mine['positions']}")
        cash = sum(p.cash for p in orders.positions.values()) if orders else 0
        if cash != mine["cash"]:
            problems.append(f"cash: strategy {cash} != exchange {mine['cash']}")
        fills = orders.stats.fills if orders else 0
        if fills != len(mine["fills"]):
            problems.append(f"fills: strategy saw {fills}, exchange recorded {len(mine['fills'])}")
        return problems


def run_sim(
    strategy: Strategy,
    *,
    duration: float = 10.0,
    flow_rate: float = 2000.0,
    seed: int = 1,
    symbols: tuple[str, ...] | None = None,
    on_status: Callable[[StrategyRuntime], None] | None = None,
    token_prefix: str = "EF",
    busy: bool = True,
    on_feed: Callable[[FeedHandler], None] | None = None,
    idle: Callable[[], object] | None = None,
) -> SimRunResult:
    """Trade ``strategy`` for ``duration`` s against the embedded exchange on loopback.

    The exchange runs in a child process (``efsdk sim``) trading the
    strategy's symbols (plus ``symbols``); the strategy gets its feed over
    UDP (MoldUDP64, re-requests on) and trades over SoupBinTCP, exactly as
    live.  ``busy`` spins on the feed socket instead of sleeping in the
    kernel (one core; wake-ups cost ~100 us on a VM).  Returns the run and the
    exchange's record.
    """
    from efsdk.moldudp64 import MoldRerequester  # noqa: PLC0415
    from efsdk.orders.gateway import SoupGateway  # noqa: PLC0415
    from efsdk.orders.soupbintcp.client import SoupCredentials  # noqa: PLC0415
    from efsdk.sim.process import SimProcess  # noqa: PLC0415
    from efsdk.sources import open_source  # noqa: PLC0415

    traded = tuple(dict.fromkeys((*strategy.config.symbols, *(symbols or ()))))
    user, password = "DEMO", "demo"  # a local, throwaway exchange
    with SimProcess(traded, user=user, password=password, seed=seed,
                    args=["--flow-rate", str(flow_rate)]) as sim:  # fmt: skip
        line = open_source("udp", group=sim.feed[0], port=sim.feed[1], busy=busy)
        try:
            gateway = SoupGateway(sim.orders, SoupCredentials(username=user, password=password))
        except BaseException:
            line.close()
            raise
        with gateway:
            # run_live owns the line from here on (LiveFeed closes it).
            run = run_live(
                strategy, {"A": line}, gateway=gateway, duration=duration, on_status=on_status,
                requester_for=lambda s: MoldRerequester(s, sim.rerequest, bind=("127.0.0.1", 0)),
                token_prefix=token_prefix, on_feed=on_feed, idle=idle,
            )  # fmt: skip
        record = sim.stop()
    return SimRunResult(run, record, user)

