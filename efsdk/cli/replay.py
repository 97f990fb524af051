"""``efsdk replay``: build books from an ITCH file (BinaryFILE or MoldUDP64 pcap) and summarise them."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from efsdk.cli._format import book_json, console, depth_table, messages_table, rate, write_json
from efsdk.errors import ConfigError
from efsdk.itch.files import is_gzip
from efsdk.pipeline import FeedHandler, anomaly_name

# Files below this replay in well under a second: no progress bar flicker.
_PROGRESS_MIN_BYTES = 64 << 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="build order books from an ITCH 5.0 BinaryFILE (plain or gzip) or a MoldUDP64 pcap capture",
        description="Replay an ITCH 5.0 BinaryFILE, or a pcap or pcapng capture of MoldUDP64 ITCH "
        "(e.g. from `efsdk record` or Wireshark; detected by content), through the native decoder and the pure-Python book, "
        "then print messages by type, throughput, anomalies and the books. With --symbols only those "
        "instruments are built (the native filter drops the rest) and their depth is shown. A pcap is "
        "sequenced like a live feed without a request server: it joins at the lowest sequence captured, "
        "A/B lines fill each other's gaps, and whatever no line has is reported LOST (exit code 3).",
    )
    p.add_argument("file", help="ITCH 5.0 BinaryFILE (2-byte length + message, plain or gzip), pcap or pcapng")
    p.add_argument("--symbols", help="comma-separated symbols to build and show (default: build all, show the busiest)")
    p.add_argument("--depth", type=int, default=5, help="levels per side to show (default 5)")
    p.add_argument("--top", type=int, default=5, help="without --symbols: show this many of the deepest books")
    p.add_argument("--json", metavar="OUT", help="also write the summary as JSON to OUT ('-' for stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--feed", help="pcap: GROUP:PORT of line A, optionally ,GROUP:PORT of line B "
                   "(default: every flow of the capture's MoldUDP64 session)")  # fmt: skip
    p.add_argument("--paced", action="store_true", help="pcap: replay with the capture's timing")
    p.add_argument("--speed", type=float, default=1.0, help="pcap with --paced: timing divided by this (default 1)")
    p.add_argument("--shards", type=int, default=0, metavar="N",
                   help="BinaryFILE: build the books in N processes, instruments split by message count "
                   "(efsdk.shards; one per CPU is the useful most); default 0: in this process")  # fmt: skip
    p.set_defaults(func=run)


def parse_symbols(text: str | None) -> list[str] | None:
    if text is None:
        return None
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise ConfigError("--symbols needs at least one symbol, e.g. --symbols AAPL,MSFT")
    return symbols


def run(args: argparse.Namespace) -> int:
    if args.depth < 1:
        raise ConfigError("--depth must be >= 1")
    if not os.path.isfile(args.file):
        raise ConfigError(f"{args.file}: no such file")
    symbols = parse_symbols(args.symbols)
    out = console()
    if args.shards:
        return _run_sharded(args, out)
    feed = FeedHandler(symbols=symbols)
    size = os.path.getsize(args.file)
    show_progress = not args.no_progress and size >= _PROGRESS_MIN_BYTES and out.is_terminal
    capture = _replay_capture(args, feed)
    if capture is not None:
        stats = feed.stats
    elif show_progress:
        total = None if is_gzip(args.file) else size
        with Progress(
            TextColumn("replaying"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
            console=console(stderr=True), transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("replay", total=total)
            stats = feed.replay(args.file, progress=lambda done: progress.update(task, completed=done))
    else:
        stats = feed.replay(args.file)

    builder = feed.builder
    books = list(builder.books())
    if symbols:
        shown = [builder.book(s) for s in symbols]
        missing = [s for s, b in zip(symbols, shown, strict=True) if b is None]
        shown = [b for b in shown if b is not None]
    else:
        missing = []
        shown = sorted(books, key=lambda b: -b.order_count())[: args.top]

    rows = [
        ("messages", f"{stats.messages:,}"),
        ("filtered (not subscribed; unhandled types)", f"{stats.filtered:,}"),
        ("throughput", f"{rate(stats.messages_per_second)} ({stats.seconds:.2f} s)"),
        ("instruments", f"{len(books):,}"),
        ("live orders", f"{builder.live_orders():,}"),
        ("trades (P/Q)", f"{stats.trades:,}"),
        ("malformed input", _counts(stats.anomalies_by_kind)),
        ("book anomalies", _counts({k: v for k, v in builder.stats.as_dict().items() if k in _BOOK_ANOMALIES})),
        ("crossed books", f"{builder.stats.crossed_books:,}"),
    ]
    if capture is not None:
        rows += _capture_rows(capture)
    summary = _summary_table(args.file, rows)
    out.print(messages_table(stats.by_type))
    out.print(summary)
    for book in shown:
        out.print(depth_table(book, args.depth))
    for symbol in missing:
        out.print(f"[yellow]{symbol}: no stock directory (R) message in this file[/]")

    if args.json:
        doc: dict[str, Any] = {
            "file": args.file,
            "messages": stats.messages,
            "filtered": stats.filtered,
            "seconds": stats.seconds,
            "messages_per_second": stats.messages_per_second,
            "by_type": stats.by_type,
            "instruments": len(books),
            "live_orders": builder.live_orders(),
            "trades": stats.trades,
            "anomalies": stats.anomalies_by_kind,
            "anomaly_offsets": [[anomaly_name(a.kind), a.offset] for a in feed.anomalies[:100]],
            "book_stats": builder.stats.as_dict(),
            "books": [book_json(b, args.depth) for b in shown],
            "missing_symbols": missing,
        }
        if capture is not None:
            doc["capture"] = capture.as_dict()
        write_json(args.json, doc)
    if capture is not None and capture.lost_ranges:
        return 3  # like `efsdk run`: the books are missing messages
    return 0


def _summary_table(file: str, rows: list[tuple[str, str]]) -> Table:
    summary = Table(title=f"Replay of {file}", show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    for row in rows:
        summary.add_row(*row)
    return summary


def _run_sharded(args: argparse.Namespace, out: Any) -> int:
    """``--shards N``: the same summary, from books built in N shard processes."""
    from efsdk.capture import capture_format  # noqa: PLC0415
    from efsdk.shards import ShardedReplay  # noqa: PLC0415

    if args.shards < 1:
        raise ConfigError("--shards must be >= 1 (0, the default, replays in this process)")
    if args.symbols:
        raise ConfigError("--shards builds every instrument; with --symbols one process already skips the rest natively")
    if capture_format(args.file) is not None or args.feed or args.paced:
        raise ConfigError("--shards replays BinaryFILE ITCH only; a pcap capture replays in one process")
    with ShardedReplay(args.shards) as pool:
        stats = pool.replay(args.file)
        orders = {s: n for shard in pool.map(_order_counts) for s, n in shard.items()}
        shown = sorted(orders, key=lambda s: -orders[s])[: args.top]
        books = [pool.call(pool.owner(s), _book_json, s, args.depth) for s in shown]
    feed = stats.shards[0].feed  # every shard framed every message
    book_stats = stats.book
    rows = [
        ("messages", f"{stats.messages:,}"),
        ("shards (messages applied each)", ", ".join(f"{r.book.records:,}" for r in stats.shards)),
        ("throughput", f"{rate(stats.messages_per_second)} ({stats.seconds:.2f} s, planning {stats.plan_seconds:.2f} s)"),
        ("instruments", f"{len(orders):,}"),
        ("live orders", f"{stats.live_orders:,}"),
        ("trades (P/Q)", f"{sum(r.feed.trades for r in stats.shards):,}"),
        ("malformed input", _counts(stats.anomalies_by_kind)),
        ("book anomalies", _counts({k: v for k, v in book_stats.as_dict().items() if k in _BOOK_ANOMALIES})),
        ("crossed books", f"{book_stats.crossed_books:,}"),
    ]
    out.print(messages_table(feed.by_type))
    out.print(_summary_table(args.file, rows))
    for doc in books:
        out.print(depth_table(doc, args.depth))
    if args.json:
        write_json(args.json, {
            "file": args.file,
            "messages": stats.messages,
            "seconds": stats.seconds,
            "messages_per_second": stats.messages_per_second,
            "by_type": feed.by_type,
            "instruments": len(orders),
            "live_orders": stats.live_orders,
            "trades": sum(r.feed.trades for r in stats.shards),
            "anomalies": stats.anomalies_by_kind,
            "book_stats": book_stats.as_dict(),
            "books": books,
            "shards": [{"pid": r.pid, "seconds": r.seconds, "records": r.book.records, "live_orders": r.live_orders,
                        "instruments": len(r.symbols)} for r in stats.shards],
        })  # fmt: skip
    return 0


def _order_counts(feed: FeedHandler) -> dict[str, int]:
    """In a shard: live orders of each book it holds."""
    return {b.symbol: b.order_count() for b in feed.builder.books() if b.symbol}


def _book_json(feed: FeedHandler, symbol: str, depth: int) -> dict[str, Any]:
    """In a shard: one book as ``efsdk replay --json`` shows it."""
    return book_json(feed.builder.book(symbol), depth)  # type: ignore[arg-type]


def _replay_capture(args: argparse.Namespace, feed: FeedHandler):  # noqa: ANN202 - CaptureReplay | None
    """Replay ``args.file`` into ``feed`` if it is a pcap or pcapng capture; ``None`` for a BinaryFILE."""
    from efsdk.capture import capture_format, replay_pcap  # noqa: PLC0415
    from efsdk.cli.run import parse_endpoint  # noqa: PLC0415

    if capture_format(args.file) is None:
        if args.feed or args.paced:
            raise ConfigError("--feed and --paced apply to pcap captures only; this is a BinaryFILE")
        return None
    feeds = None
    if args.feed:
        feeds = [parse_endpoint(part.strip(), "--feed") for part in args.feed.split(",")]
        if len(feeds) > 2:
            raise ConfigError("--feed takes one or two lines (A,B)")
    if args.speed <= 0:
        raise ConfigError("--speed must be > 0")
    return replay_pcap(args.file, feed, feeds=feeds, paced=args.paced, speed=args.speed)


def _capture_rows(capture) -> list[tuple[str, str]]:  # noqa: ANN001
    c = capture.as_dict()
    gaps = c["gaps"]
    lines = ", ".join(f"{name} {v['flow']} {v['packets']:,} pkts" for name, v in c["lines"].items())
    rows = [
        ("capture packets (all / UDP)", f"{c['packets']:,} / {c['udp_packets']:,}"),
        ("MoldUDP64 session", f"{c['session']!r} from seq {c['start_sequence']}"),
        ("lines", lines),
        ("end of session reached", "yes" if c["complete"] else "no"),
        ("gaps detected / filled by a line / lost", f"{gaps['detected']} / {gaps['recovered']} / {gaps['lost']}"),
        ("duplicate packets dropped", f"{c['duplicate_packets']:,}"),
    ]
    if gaps["lost"]:
        shown = ", ".join(f"{a}-{a + n - 1}" for a, n in gaps["lost_ranges"][:8])
        more = " ..." if len(gaps["lost_ranges"]) > 8 else ""
        rows.append(("[bold red]LOST messages (not in the capture)[/]",
                     f"[bold red]{gaps['lost_messages']:,} in seq {shown}{more}[/]"))  # fmt: skip
    if c["malformed_packets"] or c["foreign_session_packets"]:
        rows.append(("malformed / other-session packets", f"{c['malformed_packets']} / {c['foreign_session_packets']}"))
    if c["ignored_flows"]:
        rows.append(("UDP flows ignored", ", ".join(c["ignored_flows"][:6])))
    return rows


_BOOK_ANOMALIES = ("unknown_ref", "duplicate_ref", "over_execution", "over_cancel", "bad_shares", "bad_op")


def _counts(counts: dict[str, int]) -> str:
    nonzero = {k: v for k, v in counts.items() if v}
    return ", ".join(f"{k} {v:,}" for k, v in nonzero.items()) if nonzero else "none"
