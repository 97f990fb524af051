"""``efsdk run``: build books live from a MoldUDP64 / ITCH 5.0 feed."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import time

from rich.live import Live
from rich.table import Table

from efsdk.cli._format import console, depth_table, rate
from efsdk.cli.replay import parse_symbols
from efsdk.errors import ConfigError

_SOURCES = "udp | afpacket:IFACE | afpacket2:IFACE (TPACKET_V2: per-frame, lowest latency)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="build order books live from a MoldUDP64 ITCH 5.0 feed (A/B lines, gap re-requests)",
        description="Receive a MoldUDP64 session of ITCH 5.0 on one or two lines through a frame source, "
        "recover gaps from the other line or a request server, build the books and show a live status line. "
        "Stops at end of session, after --duration, or on Ctrl-C.",
    )
    p.add_argument("--source", default="udp", help=f"frame source: {_SOURCES} (default udp)")
    p.add_argument("--feed", required=True, help="GROUP:PORT of line A, optionally ,GROUP:PORT of line B")
    p.add_argument("--iface-addr", help="local IPv4 address of the interface to join multicast on (udp source)")
    p.add_argument("--rerequest", metavar="HOST:PORT", help="MoldUDP64 request server for gap fill")
    p.add_argument("--symbols", help="comma-separated symbols to build (default: all)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--join-late", action="store_true", help="start at the first packet seen instead of sequence 1")
    p.add_argument("--depth", type=int, default=5, help="levels per side in the final books (default 5)")
    p.add_argument("--json", metavar="OUT", help="write the final summary as JSON ('-' for stdout)")
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
    raise ConfigError(f"unknown --source {source!r}; one of: {_SOURCES}")


def run(args: argparse.Namespace) -> int:
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
    with LiveFeed(lines, feed, requester_for=requester_for, start_sequence=None if args.join_late else 1) as live:
        if out.is_terminal:
            with Live(console=out, refresh_per_second=4, transient=True) as screen:
                live.run(args.duration, on_status=lambda lf: screen.update(_status(lf)))
        else:
            live.run(args.duration)
        summary = _summary(live)
        out.print(_summary_table(summary))
        books = [feed.builder.book(s) for s in symbols] if symbols else sorted(
            feed.builder.books(), key=lambda b: -b.order_count())[:3]  # fmt: skip
        for book in books:
            if book is not None:
                out.print(depth_table(book, args.depth))
        if args.json:
            text = json.dumps(summary, indent=2)
            if args.json == "-":
                print(text)
            else:
                with open(args.json, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
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
