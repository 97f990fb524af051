"""``efsdk run``: build books live from a MoldUDP64 / ITCH 5.0 feed, or run a strategy on any driver.

Without a strategy file it builds (and shows) books.  With one, the driver
is chosen by flags and the strategy class does not change:

* ``--replay FILE``  an ITCH file or a pcap; fills from the simulator's engine mirroring the replayed book;
* ``--sim``          the embedded exchange started as a child process: live
                     feed over UDP and orders over SoupBinTCP on loopback;
* ``--feed ... --orders HOST:PORT``  a live feed and a live order session.
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import ipaddress
import time

from rich.live import Live
from rich.table import Table

from efsdk.cli._format import console, depth_table, rate, write_json
from efsdk.cli.replay import parse_symbols
from efsdk.errors import ConfigError
from efsdk.publish.attach import add_publish_option, publisher_from_args

_SOURCES = (
    "udp | afpacket:IFACE | afpacket2:IFACE (TPACKET_V2: per-frame, lowest latency) "
    "| afxdp:IFACE[@QUEUE] (AF_XDP; one source per interface)"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a strategy (live, replay or simulator), or build order books live from a MoldUDP64 feed",
        description="Without STRATEGY: receive a MoldUDP64 session of ITCH 5.0 on one or two lines through a frame "
        "source, recover gaps from the other line or a request server, build the books and show a live status line. "
        "With STRATEGY.py: run its Strategy class on the driver the flags choose: --replay FILE (ITCH file or pcap, "
        "fills from the simulator's matching engine mirroring the replayed book), --sim (the embedded exchange), "
        "or --feed with --orders (live). "
        "Stops at end of session, after --duration, or on Ctrl-C.",
    )
    p.add_argument("strategy", nargs="?", metavar="STRATEGY.py", help="file defining one Strategy subclass")
    p.add_argument("--config", metavar="FILE", help="strategy config, TOML or YAML (unknown keys are rejected)")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="which Strategy subclass, if the file has several")
    p.add_argument("--replay", metavar="FILE", help="driver: replay an ITCH file (plain/gzip) or a pcap/pcapng")
    p.add_argument("--sim", action="store_true", help="driver: start the embedded exchange and trade against it")
    p.add_argument("--orders", metavar="HOST:PORT", help="SoupBinTCP order session (live driver)")
    p.add_argument("--user", default="DEMO", help="order-entry username (default DEMO)")
    p.add_argument("--password-env", default="EFSDK_OUCH_PASSWORD", metavar="VAR",
                   help="environment variable holding the order-entry password (default EFSDK_OUCH_PASSWORD)")  # fmt: skip
    p.add_argument("--token-prefix", default="EF", help="order token prefix, unique per account (default EF)")
    p.add_argument("--first-token", type=int, default=1, metavar="N",
                   help="first order token counter; after a restart the same day pass the counter the last run "
                        "reported (tokens must be unique per day)")  # fmt: skip
    p.add_argument("--source", default="udp", help=f"frame source: {_SOURCES} (default udp)")
    p.add_argument("--feed", help="GROUP:PORT of line A, optionally ,GROUP:PORT of line B")
    p.add_argument("--iface-addr", help="local IPv4 address of the interface to join multicast on (udp source)")
    p.add_argument("--rerequest", metavar="HOST:PORT", help="MoldUDP64 request server for gap fill")
    p.add_argument("--symbols", help="comma-separated symbols to build (default: all)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--join-late", action="store_true", help="start at the first packet seen instead of sequence 1")
    p.add_argument("--depth", type=int, default=5, help="levels per side in the final books (default 5)")
    p.add_argument("--json", metavar="OUT", help="write the final summary as JSON ('-' for stdout)")
    add_cpu_option(p)
    add_publish_option(p)
    p.set_defaults(func=run)


def parse_endpoint(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        if not sep:
            raise ValueError
        ipaddress.IPv4Address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{what} must be IPV4:PORT, e.g. 239.1.1.1:26400, not {text!r}") from None
    return host, number


def open_line(source: str, group: str, port: int, iface_addr: str | None):  # noqa: ANN201 - FrameSource
    from efsdk.sources import open_source  # noqa: PLC0415 - keep `efsdk --help` light

    kind, _, iface = source.partition(":")
    if kind == "udp":
        return open_source("udp", group=group, port=port, iface_addr=iface_addr)
    if kind in ("afpacket", "afpacket2"):
        if not iface:
            raise ConfigError(f"--source {kind} needs an interface: {kind}:eth0")
        return open_source("afpacket", iface=iface, version=2 if kind == "afpacket2" else 3, feeds=[(group, port)])
    if kind == "afxdp":
        if not iface:
            raise ConfigError("--source afxdp needs an interface: afxdp:eth0 (or afxdp:eth0@2 for rx queue 2)")
        name, _, queue = iface.partition("@")
        try:
            queue_id = int(queue or 0)
        except ValueError:
            raise ConfigError(f"afxdp queue must be a number: afxdp:{name}@2, not {iface!r}") from None
        return open_source("afxdp", iface=name, queue=queue_id, feeds=[(group, port)])
    raise ConfigError(f"unknown --source {source!r}; one of: {_SOURCES}")


def add_cpu_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpu", type=int, metavar="N",
                        help="pin this process to CPU N (ideally an isolated core): no migrations, warm caches, "
                             "fewer latency spikes")  # fmt: skip


def pin_cpu(cpu: int | None) -> None:
    """Pin the calling process to ``cpu`` (``None``: leave it); a clear error if that CPU is not ours."""
    if cpu is None:
        return
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise ConfigError(f"--cpu {cpu}: this process may only run on CPUs {sorted(allowed)}")
    os.sched_setaffinity(0, {cpu})


def run(args: argparse.Namespace) -> int:
    pin_cpu(args.cpu)
    if args.strategy:
        from efsdk.cli.run_strategy import run_strategy  # noqa: PLC0415

        return run_strategy(args)
    if args.replay or args.sim or args.orders:
        raise ConfigError("--replay, --sim and --orders drive a strategy: give the STRATEGY.py file first")
    if not args.feed:
        raise ConfigError("efsdk run needs --feed GROUP:PORT (or a STRATEGY.py to run on --replay/--sim)")
    return run_books(args)


def run_books(args: argparse.Namespace) -> int:
    from efsdk.live import LiveFeed  # noqa: PLC0415
    from efsdk.moldudp64 import MoldRerequester  # noqa: PLC0415
    from efsdk.pipeline import FeedHandler  # noqa: PLC0415

    feeds = [parse_endpoint(part.strip(), "--feed") for part in args.feed.split(",")]
    if len(feeds) > 2:
        raise ConfigError("--feed takes one or two lines (A,B)")
    server = parse_endpoint(args.rerequest, "--rerequest") if args.rerequest else None
    symbols = parse_symbols(args.symbols)
    out = console()
    lines = {}
    try:
        for name, (group, port) in zip("AB", feeds, strict=False):
            lines[name] = open_line(args.source, group, port, args.iface_addr)
    except BaseException:
        for source in lines.values():
            source.close()
        raise
    requester_for = None
    if server is not None:
        requester_for = lambda session: MoldRerequester(session, server, bind=("0.0.0.0", 0))  # noqa: E731
    feed = FeedHandler(symbols=symbols)
    with publisher_from_args(args) as hooks, \
            LiveFeed(lines, feed, requester_for=requester_for, start_sequence=None if args.join_late else 1) as live:
        if hooks:
            hooks["on_feed"](feed)
        idle = hooks.get("idle")
        if out.is_terminal:
            with Live(console=out, refresh_per_second=4, transient=True) as screen:
                live.run(args.duration, on_status=lambda lf: screen.update(_status(lf)), service=idle)
        else:
            live.run(args.duration, service=idle)
        summary = _summary(live)
        out.print(_summary_table(summary))
        books = [feed.builder.book(s) for s in symbols] if symbols else sorted(
            feed.builder.books(), key=lambda b: -b.order_count())[:3]  # fmt: skip
        for book in books:
            if book is not None:
                out.print(depth_table(book, args.depth))
        if args.json:
            write_json(args.json, summary)
    return 0 if not live.lost else 3


def _status(live) -> str:  # noqa: ANN001
    s = live.session.stats
    elapsed = max(1e-9, time.monotonic() - live.stats.started)
    lat = live.latency_summary()
    return (
        f"msgs {live.feed.decoder.stats.messages:,}  {rate(live.feed.decoder.stats.messages / elapsed)}  "
        f"gaps {s.gaps_detected:,} recovered {s.gaps_recovered:,} lost {s.gaps_lost:,}  "
        f"dup pkts {s.duplicate_packets:,}  latency p50 {lat.get('p50_us', 0):.1f} us p99 {lat.get('p99_us', 0):.1f} us"
    )


def _summary(live) -> dict:  # noqa: ANN001
    feed = live.feed
    stats = feed.stats
    session = live.session.stats
    sources = {name: dataclasses.asdict(src.stats) for name, src in live.lines.items()}
    return {
        "session": (live.session.session or b"").decode("ascii", "replace").strip(),
        "complete": live.session.complete,
        "messages": stats.messages,
        "frames": live.stats.frames,
        "instruments": sum(1 for _ in feed.builder.books()),
        "live_orders": feed.builder.live_orders(),
        "gaps": {
            "detected": session.gaps_detected,
            "recovered": session.gaps_recovered,
            "lost": session.gaps_lost,
            "lost_messages": session.lost_messages,
            "lost_ranges": live.lost,
        },
        "duplicate_packets": session.duplicate_packets,
        "recovered_messages": session.recovered_messages,
        "anomalies": stats.anomalies_by_kind,
        "book_stats": feed.builder.stats.as_dict(),
        "latency_us": live.latency_summary(),
        "sources": sources,
    }


def _summary_table(summary: dict) -> Table:
    table = Table(title=f"Live session {summary['session']!r}", show_header=False)
    table.add_column()
    table.add_column(justify="right")
    gaps = summary["gaps"]
    lat = summary["latency_us"]
    for row in (
        ("complete", "yes" if summary["complete"] else "no (stopped early)"),
        ("messages", f"{summary['messages']:,}"),
        ("frames", f"{summary['frames']:,}"),
        ("instruments / live orders", f"{summary['instruments']:,} / {summary['live_orders']:,}"),
        ("gaps detected / recovered / lost", f"{gaps['detected']} / {gaps['recovered']} / {gaps['lost']}"),
        ("duplicate packets dropped", f"{summary['duplicate_packets']:,}"),
        ("malformed input", ", ".join(f"{k} {v}" for k, v in summary["anomalies"].items()) or "none"),
        ("frame ts -> books p50 / p99 / p99.9",
         " / ".join(f"{lat.get(k, 0):.1f} us" for k in ("p50_us", "p99_us", "p99.9_us"))),
    ):  # fmt: skip
        table.add_row(*row)
    return table
