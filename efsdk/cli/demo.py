"""``efsdk demo``: the main job on an embedded default, with no arguments.

Generates a synthetic ITCH 5.0 day in memory, replays it through the native
decoder and the pure-Python books into the example ImbalanceObserver
strategy, and prints what the strategy saw.  (The full trading loop with the
exchange simulator and order entry arrives with the Strategy/OUCH work.)
"""

from __future__ import annotations

import argparse

from rich.table import Table

from efsdk.cli._format import console, depth_table, price, rate
from efsdk.errors import ConfigError
from efsdk.itch.generator import SessionGenerator
from strategies.imbalance_observer import ImbalanceConfig, ImbalanceObserver

_HOUR_NS = 3_600_000_000_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole data path on a generated trading day (no arguments needed)",
        description="Generate a synthetic ITCH 5.0 day in memory, replay it through the native decoder and the "
        "order books into the example imbalance-observing strategy, and print what it saw.",
    )
    p.add_argument("--symbols", type=int, default=20, help="symbols in the generated day (default 20)")
    p.add_argument("--messages", type=int, default=300_000, help="messages in the generated day (default 300,000)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--watch", type=int, default=4, help="how many symbols the strategy watches (default 4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efsdk.itch.codec import frame  # noqa: PLC0415 - keeps `efsdk --help` fast
    from efsdk.strategy import run_replay  # noqa: PLC0415

    if args.watch < 1:
        raise ConfigError("--watch must be >= 1")
    out = console()
    gen = SessionGenerator(args.symbols, args.messages, args.seed)
    with out.status(f"generating {args.messages:,} messages for {args.symbols} symbols (seed {args.seed})"):
        day = b"".join(frame(m) for m in gen)
    summary = gen.summary
    # Watch the busiest deep names and one thin name: both behave differently.
    by_orders = [row[0] for row in summary.books]
    watched = by_orders[: max(1, args.watch - 1)] + by_orders[-1:] if args.watch > 1 else by_orders[:1]
    strategy = ImbalanceObserver(ImbalanceConfig(symbols=tuple(dict.fromkeys(watched)), levels=5))
    out.print(
        f"[bold]efsdk demo[/]: {len(day) / 1e6:.1f} MB ITCH day in memory -> native decode/filter -> "
        f"pure-Python L3 books -> {type(strategy).__name__}({', '.join(strategy.config.symbols)})"
    )
    with out.status("replaying"):
        result = run_replay(strategy, day)
    stats = result.stats

    table = Table(title="What the strategy saw (imbalance over the top 5 levels, -1 sell pressure .. +1 buy)")
    for col in ("symbol", "book updates", "samples", "mean imbalance", "last imbalance", "bid", "ask", "orders"):
        table.add_column(col, justify="right" if col != "symbol" else "left")
    for symbol, state in strategy.by_symbol.items():
        book = result.feed.builder.book(symbol)
        table.add_row(
            symbol,
            f"{state.updates:,}",
            f"{len(state.samples):,}",
            f"{state.mean:+.3f}",
            f"{state.last:+.3f}",
            price(book.best_bid() if book else None),
            price(book.best_ask() if book else None),
            f"{book.order_count():,}" if book else "-",
        )
    out.print(table)

    timeline = Table(title="Imbalance through the day (first sample of each hour)")
    timeline.add_column("time")
    for symbol in strategy.by_symbol:
        timeline.add_column(symbol, justify="right")
    hours = sorted({s[0] // _HOUR_NS for st in strategy.by_symbol.values() for s in st.samples})
    for hour in hours:
        cells = []
        for st in strategy.by_symbol.values():
            first = next((s for s in st.samples if s[0] // _HOUR_NS == hour), None)
            cells.append(f"{first[1]:+.2f}" if first else "")
        timeline.add_row(f"{hour:02d}:00", *cells)
    out.print(timeline)
    deepest = result.feed.builder.book(strategy.config.symbols[0])
    if deepest is not None:
        out.print(depth_table(deepest, 5))
    feed_rate = stats.messages / result.seconds if result.seconds else 0.0
    out.print(
        f"{stats.messages:,} feed messages scanned at {rate(feed_rate)}; {stats.filtered:,} dropped by the native "
        f"locate filter; {result.book_events:,} book events delivered to the strategy; "
        f"malformed input: {stats.anomalies}; unknown refs: {result.feed.builder.stats.unknown_ref}."
    )
    return 0
