"""``efsdk demo``: the main job on an embedded default, with no arguments.

The default is the whole trading loop on this machine: the embedded exchange
(``efsdk sim``, a child process) publishes ITCH 5.0 over MoldUDP64 on
loopback UDP; the feed handler builds the books; the example market maker
quotes on them and sends OUCH 4.2 orders over SoupBinTCP; its fills come
back and move its position.  A status line runs while it trades; the summary
gives messages, fills, P&L, tick-to-trade latency (frame timestamp -> order
bytes handed to the socket) and reconciles the strategy's positions with the
exchange's own record.

``--offline`` instead replays a generated ITCH day through the example
imbalance observer (no sockets).
"""

from __future__ import annotations

import argparse

from rich.table import Table

from efsdk.cli._format import book_json, console, depth_table, price, rate
from efsdk.cli.run import add_cpu_option, pin_cpu
from efsdk.errors import ConfigError
from efsdk.publish.attach import add_publish_option, publisher_from_args

_HOUR_NS = 3_600_000_000_000
_STRATEGIES = ("maker", "taker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole trading loop on this machine: simulator, UDP feed, books, strategy, OUCH orders",
        description="Start the embedded exchange, receive its ITCH/MoldUDP64 feed over UDP, build the books, run the "
        "example market maker (or --strategy taker) and trade over OUCH/SoupBinTCP for --duration seconds, then "
        "print messages, fills, P&L, tick-to-trade latency and the reconciliation with the exchange's record. "
        "--offline replays a generated ITCH day instead (no sockets).",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds of trading (default 10)")
    p.add_argument("--strategy", choices=_STRATEGIES, default="maker", help="example strategy (default maker)")
    p.add_argument("--symbols", default="AAPL,MSFT,NVDA,AMZN",
                   help="symbols traded (default %(default)s; --offline: a count, default 20)")  # fmt: skip
    p.add_argument("--flow-rate", type=float, default=2000.0, help="exchange background actions/s (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="simulator / generator seed (default 1)")
    p.add_argument("--offline", action="store_true", help="replay a generated ITCH day through an observer instead")
    p.add_argument("--messages", type=int, default=300_000, help="--offline: messages in the day (default 300,000)")
    p.add_argument("--watch", type=int, default=4, help="--offline: symbols the observer watches (default 4)")
    p.add_argument("--json", metavar="OUT", help="write the final summary as JSON ('-' for stdout)")
    add_cpu_option(p)
    add_publish_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pin_cpu(args.cpu)
    if args.offline:
        return run_offline(args)
    from efsdk.cli._format import reconciliation, strategy_table, write_json  # noqa: PLC0415
    from efsdk.cli.run_strategy import _with_status  # noqa: PLC0415
    from efsdk.strategy import run_sim  # noqa: PLC0415

    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    if not symbols:
        raise ConfigError("--symbols needs at least one symbol")
    if args.duration <= 0:
        raise ConfigError("--duration must be > 0")
    if args.strategy == "maker":
        from strategies.market_maker import MarketMaker, MarketMakerConfig  # noqa: PLC0415

        strategy = MarketMaker(MarketMakerConfig(symbols=symbols))
    else:
        from strategies.imbalance_taker import ImbalanceTaker, ImbalanceTakerConfig  # noqa: PLC0415

        strategy = ImbalanceTaker(ImbalanceTakerConfig(symbols=symbols))
    out = console()
    out.print(
        f"[bold]efsdk demo[/]: exchange simulator ({', '.join(symbols)}) -> ITCH 5.0 / MoldUDP64 over UDP -> "
        f"native decode -> pure-Python books -> {type(strategy).__name__} -> OUCH 4.2 / SoupBinTCP -> exchange; "
        f"{args.duration:g} s"
    )
    with publisher_from_args(args) as hooks:
        sim = _with_status(out, lambda status: run_sim(strategy, duration=args.duration, flow_rate=args.flow_rate,
                                                       seed=args.seed, on_status=status, **hooks))  # fmt: skip
    result = sim.run
    summary = sim.summary()
    problems = summary["reconcile_problems"]
    exchange = sim.record.get("stats", {})
    out.print(strategy_table(summary, f"{type(strategy).__name__} against the embedded exchange"))
    lat = summary["feed_latency_us"]
    out.print(
        f"feed: {summary['feed_messages']:,} ITCH messages of {exchange.get('itch_messages', 0):,} published "
        f"(gaps {summary['feed_gaps']['detected']}, lost {summary['feed_gaps']['lost']}); frame ts -> books "
        f"p50 {lat.get('p50_us', 0):.0f} us p99 {lat.get('p99_us', 0):.0f} us; exchange handled "
        f"{exchange.get('requests', 0):,} OUCH requests"
    )
    summary["books"] = {s: book_json(b, 10) for s in symbols if (b := result.feed.builder.book(s)) is not None}
    for symbol in symbols[:2]:
        book = result.feed.builder.book(symbol)
        if book is not None:
            out.print(depth_table(book, 5))
    out.print(reconciliation(summary))
    if args.json:
        write_json(args.json, summary)
    return 0 if not problems else 4


def run_offline(args: argparse.Namespace) -> int:
    from efsdk.itch.codec import frame  # noqa: PLC0415 - keeps `efsdk --help` fast
    from efsdk.itch.generator import SessionGenerator  # noqa: PLC0415
    from efsdk.strategy import run_replay  # noqa: PLC0415
    from strategies.imbalance_observer import ImbalanceConfig, ImbalanceObserver  # noqa: PLC0415

    try:
        n_symbols = int(args.symbols) if args.symbols != "AAPL,MSFT,NVDA,AMZN" else 20
    except ValueError:
        raise ConfigError("--offline takes --symbols as a count of generated symbols") from None

    if args.watch < 1:
        raise ConfigError("--watch must be >= 1")
    out = console()
    gen = SessionGenerator(n_symbols, args.messages, args.seed)
    with out.status(f"generating {args.messages:,} messages for {n_symbols} symbols (seed {args.seed})"):
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
