"""``efsdk subscribe``: rebuild L2 books from an ``efsdk publish`` stream and show the top of each."""

from __future__ import annotations

import argparse
from typing import Any

from rich.live import Live
from rich.table import Table

from efsdk.cli._format import console, price, write_json
from efsdk.cli.publish import DEFAULT_BIND
from efsdk.cli.replay import parse_symbols
from efsdk.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe",
        help="rebuild L2 books from an `efsdk publish` ZeroMQ stream and show a live top-of-book table",
        description="Subscribe to some symbols of an `efsdk publish` stream, synchronise each book from a snapshot, "
        "apply L2 deltas, detect loss by per-symbol sequence numbers and resynchronise, and show a live "
        "top-of-book table with the gap and resync counters. Stops after --duration, at the end of the "
        "publisher's stream with --until-final, or on Ctrl-C.",
    )
    p.add_argument("--symbols", required=True, help="comma-separated symbols, e.g. AAPL,MSFT")
    p.add_argument("--endpoint", default=DEFAULT_BIND, help=f"publisher stream endpoint (default {DEFAULT_BIND})")
    p.add_argument("--snapshot-endpoint", help="publisher snapshot server (default: the stream's port + 1, or ipc PATH.snap)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--until-final", action="store_true", help="stop once every book has seen the publisher's final snapshot")
    p.add_argument("--depth", type=int, default=5, help="levels per side in --json (default 5; 0: all)")
    p.add_argument("--rcvhwm", type=int, help="receive high-water mark in messages (default 100000)")
    p.add_argument("--json", metavar="OUT", help="write the final books and counters as JSON ('-' for stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efsdk.publish import BookSubscriber, SubscriberConfig  # noqa: PLC0415

    symbols = parse_symbols(args.symbols)
    if args.depth < 0:
        raise ConfigError("--depth must be >= 0")
    options: dict[str, Any] = {"endpoint": args.endpoint, "symbols": tuple(symbols or ()),
                               "snapshot_endpoint": args.snapshot_endpoint}  # fmt: skip
    if args.rcvhwm is not None:
        options["rcvhwm"] = args.rcvhwm
    try:
        config = SubscriberConfig(**options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out = console()
    with BookSubscriber(config) as sub:
        try:
            if out.is_terminal:
                with Live(top_table(sub), console=out, refresh_per_second=4, transient=False) as screen:
                    sub.run(args.duration, args.until_final, on_tick=lambda s: screen.update(top_table(s)))
            else:
                sub.run(args.duration, args.until_final)
        except KeyboardInterrupt:
            pass
        if not out.is_terminal:
            out.print(top_table(sub))
        if args.json:
            write_json(args.json, summary(sub, args.depth))
        return 0 if sub.synced else 3


def top_table(sub: Any) -> Table:
    """One row per subscribed symbol: state, seq, BBO, levels, volume; counters in the caption."""
    table = Table(title=f"efsdk subscribe {sub.config.endpoint}")
    for col in ("symbol", "state", "seq", "bid size", "bid", "ask", "ask size", "levels", "volume"):
        table.add_column(col, justify="left" if col in ("symbol", "state") else "right")
    for symbol, book in sub.books.items():
        bbo = book.bbo()
        state = "final" if book.final else ("live" if book.synced else "[yellow]syncing[/]")
        table.add_row(
            symbol, state, f"{book.seq:,}",
            f"{bbo.bid_shares:,}" if bbo.bid_price is not None else "", price(bbo.bid_price),
            price(bbo.ask_price), f"{bbo.ask_shares:,}" if bbo.ask_price is not None else "",
            f"{len(book.bids)}x{len(book.asks)}", f"{book.volume:,}",
        )  # fmt: skip
    s = sub.stats
    table.caption = (
        f"messages {s.messages:,}  gaps {s.gaps:,} (lost {s.lost_messages:,})  resyncs {s.resyncs:,}  "
        f"snapshot checks {s.snapshot_checks:,} mismatches {s.snapshot_mismatches:,}  decode errors {s.decode_errors:,}"
    )
    return table


def summary(sub: Any, depth: int) -> dict[str, Any]:
    """Final books (``depth`` levels a side, 0: all) and every counter, as JSON-ready data."""
    books = {}
    for symbol, book in sub.books.items():
        n = depth or max(len(book.bids), len(book.asks), 1)
        d = book.depth(n)
        books[symbol] = {
            "seq": book.seq,
            "synced": book.synced,
            "final": book.final,
            "bids": [list(level) for level in d.bids],
            "asks": [list(level) for level in d.asks],
            "volume": book.volume,
        }
    return {"endpoint": sub.config.endpoint, "books": books, "stats": sub.stats.as_dict()}
