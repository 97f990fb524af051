"""``efsdk publish``: replay an ITCH day (a file, or a generated one) and fan its books out over ZeroMQ."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from efsdk.cli._format import console, rate, write_json
from efsdk.cli._signals import StopRequest, stop_on_signals
from efsdk.cli.replay import parse_symbols
from efsdk.errors import ConfigError

#: Default stream endpoint (the snapshot server takes the next port).
DEFAULT_BIND = "tcp://127.0.0.1:5556"
#: Bytes handed to the feed handler per call at full speed: the replay path's own chunk.
FULL_SPEED_CHUNK = 4 << 20
#: After the last expected snapshot request, let the subscriptions reach the PUB socket.
SETTLE_S = 0.2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="replay an ITCH day into the books and publish them over ZeroMQ (L2 deltas, BBO, trades, snapshots)",
        description="Replay an ITCH 5.0 BinaryFILE (plain or gzip), or a generated day when no --itch is given, "
        "through the native decoder and the books, and publish every book change over a ZeroMQ PUB socket "
        "(topic = symbol + NUL; wire format in efsdk.publish.encoding), with periodic snapshots on the stream "
        "and a snapshot server (ROUTER) for late or lossy subscribers. Read it with `efsdk subscribe`.",
    )
    p.add_argument("--itch", metavar="FILE", help="ITCH 5.0 BinaryFILE to replay (default: generate a day in memory)")
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"stream endpoint, tcp://HOST:PORT or ipc://PATH (default {DEFAULT_BIND}; port 0: any)")
    p.add_argument("--snapshot-bind", help="snapshot server endpoint (default: the stream's port + 1, or ipc PATH.snap)")
    p.add_argument("--symbols", help="comma-separated symbols to build and publish (default: all)")
    p.add_argument("--rate", type=float, default=0.0, help="messages per second to replay at (default 0: as fast as possible)")
    p.add_argument("--batch-messages", type=int, default=0,
                   help="messages per feed batch (default: 32, about a MoldUDP64 packet, with --rate; decoder-sized batches without)")  # fmt: skip
    p.add_argument("--snapshot-interval", type=float, default=5.0, help="seconds between stream snapshots (default 5; 0: never)")
    p.add_argument("--conflate-bbo", type=float, default=0.0, metavar="S",
                   help="send at most one BBO per symbol every S seconds, the latest (default 0: every change)")  # fmt: skip
    p.add_argument("--publish-interval", type=float, default=0.0, metavar="S",
                   help="conflate feed batches and publish at most every S seconds (default 0: every batch)")  # fmt: skip
    p.add_argument("--depth", type=int, default=0, metavar="N",
                   help="publish only the top N levels per side, a depth window (default 0: every level; "
                        "a window costs the feed far less at full rate)")  # fmt: skip
    p.add_argument("--sidecar", action="store_true",
                   help="publish from a sidecar process: this one only forwards the ITCH bytes, another core "
                        "builds and publishes the books (see efsdk.publish.sidecar)")  # fmt: skip
    p.add_argument("--no-bbo", action="store_true", help="publish no BBO messages (subscribers derive it from depth)")
    p.add_argument("--no-trades", action="store_true", help="publish no TRADE messages")
    p.add_argument("--sndhwm", type=int, help="stream high-water mark, messages per subscriber (default 100000)")
    p.add_argument("--sndbuf", type=int, default=0, help="kernel send buffer per subscriber in bytes (default 0: OS default)")
    p.add_argument("--wait-requests", type=int, default=0, metavar="N",
                   help="before replaying, wait until N snapshot requests were answered (subscribers are ready)")  # fmt: skip
    p.add_argument("--hold", type=float, default=0.0, metavar="S",
                   help="after the end, keep serving snapshots for S seconds (-1: until interrupted)")  # fmt: skip
    p.add_argument("--endpoints-file", metavar="PATH", help="write the bound endpoints as JSON to PATH once listening")
    p.add_argument("--dump-final", metavar="PATH", help="write every published book's final L2 (and topic seq) as JSON")
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON to OUT ('-' for stdout)")
    p.add_argument("--gen-symbols", type=int, default=20, help="generated day: symbols (default 20)")
    p.add_argument("--gen-messages", type=int, default=300_000, help="generated day: messages (default 300,000)")
    p.add_argument("--seed", type=int, default=1, help="generated day: seed (default 1)")
    p.set_defaults(func=run)


def load_day(args: argparse.Namespace) -> tuple[bytes, str]:
    """The BinaryFILE bytes to replay and a description of where they came from."""
    if args.itch:
        from efsdk.itch.files import open_binary  # noqa: PLC0415

        if not os.path.isfile(args.itch):
            raise ConfigError(f"{args.itch}: no such file")
        with open_binary(args.itch) as f:
            return f.read(), args.itch
    from efsdk.itch.codec import frame  # noqa: PLC0415
    from efsdk.itch.generator import SessionGenerator  # noqa: PLC0415

    if args.gen_symbols < 1 or args.gen_messages < 1:
        raise ConfigError("--gen-symbols and --gen-messages must be >= 1")
    gen = SessionGenerator(args.gen_symbols, args.gen_messages, args.seed)
    return b"".join(frame(m) for m in gen), f"generated day ({args.gen_symbols} symbols, {args.gen_messages:,} messages, seed {args.seed})"


def batches(day: bytes, per_batch: int) -> list[tuple[int, int, int]]:
    """``(start, end, messages)`` slices of whole BinaryFILE messages, ``per_batch`` each."""
    out = []
    pos = start = count = 0
    n = len(day)
    while pos + 2 <= n:
        end = pos + 2 + int.from_bytes(day[pos : pos + 2], "big")
        if end > n:
            break  # truncated tail: the feed handler counts it
        pos = end
        count += 1
        if count == per_batch:
            out.append((start, pos, count))
            start, count = pos, 0
    if pos > start or pos < n:
        out.append((start, n, count))
    return out


def run(args: argparse.Namespace) -> int:
    from efsdk.pipeline import FeedHandler  # noqa: PLC0415
    from efsdk.publish import BookPublisher, PublisherConfig  # noqa: PLC0415
    from efsdk.publish.sidecar import PublisherSidecar  # noqa: PLC0415

    if args.rate < 0 or args.batch_messages < 0 or args.wait_requests < 0:
        raise ConfigError("--rate, --batch-messages and --wait-requests must be >= 0")
    symbols = parse_symbols(args.symbols)
    options: dict[str, Any] = {
        "endpoint": args.bind,
        "snapshot_endpoint": args.snapshot_bind,
        "symbols": tuple(symbols) if symbols else None,
        "snapshot_interval_s": args.snapshot_interval,
        "bbo": not args.no_bbo,
        "trades": not args.no_trades,
        "bbo_conflation_s": args.conflate_bbo,
        "publish_interval_s": args.publish_interval,
        "depth": args.depth,
    }
    if args.sndbuf:
        options["sndbuf"] = args.sndbuf
    if args.sndhwm is not None:
        options["sndhwm"] = args.sndhwm
    try:
        config = PublisherConfig(**options)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(str(exc)) from None
    err = console(stderr=True)
    day, origin = load_day(args)
    per_batch = args.batch_messages or (32 if args.rate else 0)
    feed = FeedHandler(symbols=symbols)
    stop = StopRequest()
    # Signals first: one during start-up (the sidecar takes a second to start) ends the day cleanly too.
    with stop_on_signals(stop.set), (PublisherSidecar(config) if args.sidecar else BookPublisher(config)) as publisher:
        publisher.attach(feed)
        if args.endpoints_file:
            write_json(args.endpoints_file, {"endpoint": publisher.endpoint, "snapshot_endpoint": publisher.snapshot_endpoint})
        where = " from a sidecar process" if args.sidecar else ""
        err.print(f"publishing {origin} on {publisher.endpoint} (snapshots {publisher.snapshot_endpoint}){where}")
        started = time.perf_counter()
        if args.wait_requests:
            while publisher.stats.requests < args.wait_requests and not stop.requested:
                publisher.poll(0.05)
            _serve_for(publisher, SETTLE_S, stop)
            started = time.perf_counter()
        _replay(feed, publisher, day, per_batch, args.rate, stop)
        interrupted = stop.requested
        elapsed = time.perf_counter() - started
        stats = feed.refresh_stats()
        publisher.finish()
        pub_stats = publisher.stats
        if args.dump_final:
            write_json(args.dump_final, publisher.expected_l2())
        summary = {
            "source": origin,
            "endpoint": publisher.endpoint,
            "snapshot_endpoint": publisher.snapshot_endpoint,
            "interrupted": interrupted,
            "messages": stats.messages,
            "seconds": elapsed,
            "messages_per_second": stats.messages / elapsed if elapsed else 0.0,
            "publisher": pub_stats.as_dict(),
        }
        if args.sidecar:
            summary["sidecar"] = publisher.sidecar_stats.as_dict()
        cost = (f"sidecar done {publisher.sidecar_stats.finish_seconds:.2f} s after the feed" if args.sidecar
                else f"publish cost {pub_stats.publish_seconds:.2f} s")  # fmt: skip
        err.print(
            f"replayed {stats.messages:,} messages in {elapsed:.2f} s ({rate(summary['messages_per_second'])}); "
            f"published {pub_stats.messages:,} messages ({pub_stats.levels:,} level updates), {cost}"
        )
        if args.json:
            write_json(args.json, summary)
        if not interrupted and args.hold:
            _serve_for(publisher, None if args.hold < 0 else args.hold, stop)
    return 0


def _replay(feed: Any, publisher: Any, day: bytes, per_batch: int, msgs_per_s: float, stop: StopRequest) -> None:
    """Feed ``day`` in batches (decoder-sized, or ``per_batch`` messages paced at ``msgs_per_s``) until done or stopped."""
    view = memoryview(day)
    poll = publisher.poll
    if not per_batch:  # full speed, decoder-sized batches
        pos = 0
        while pos < len(view) and not stop.requested:
            used = feed.process(view[pos : pos + FULL_SPEED_CHUNK])
            if not used:
                break
            pos += used
            poll()
        return
    clock = time.perf_counter
    t0 = clock()
    sent = 0
    process = feed.process
    for start, end, count in batches(day, per_batch):
        if stop.requested:
            return
        process(view[start:end])
        sent += count
        if msgs_per_s:
            due = t0 + sent / msgs_per_s
            while (wait := due - clock()) > 0.002 and not stop.requested:
                poll(min(wait, 0.05))  # serve snapshot requests while pacing
            if wait > 0:
                time.sleep(wait)


def _serve_for(publisher: Any, seconds: float | None, stop: StopRequest) -> None:
    deadline = None if seconds is None else time.monotonic() + seconds
    while (deadline is None or time.monotonic() < deadline) and not stop.requested:
        publisher.poll(0.05)


