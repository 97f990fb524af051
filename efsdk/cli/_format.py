"""Rendering shared by the CLI commands (rich tables, prices, rates)."""

from __future__ import annotations

import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table

from book import OrderBook
from efsdk.itch.layouts import LAYOUTS, PRICE_SCALE

_NAMES = {t.decode(): layout.name for t, layout in LAYOUTS.items()}


def price(raw: int | None) -> str:
    """An ITCH Price(4) as dollars, or '-' for no price."""
    return "-" if raw is None else f"{raw / PRICE_SCALE:,.4f}"


def rate(per_second: float) -> str:
    return f"{per_second / 1e6:.2f} M/s" if per_second >= 1e5 else f"{per_second:,.0f}/s"


def messages_table(by_type: dict[str, int], title: str = "Messages by type") -> Table:
    table = Table(title=title)
    table.add_column("type")
    table.add_column("name")
    table.add_column("count", justify="right")
    table.add_column("%", justify="right")
    total = sum(by_type.values()) or 1
    for t, n in sorted(by_type.items(), key=lambda kv: -kv[1]):
        table.add_row(repr(t) if t not in _NAMES else t, _NAMES.get(t, "(not ITCH 5.0)"), f"{n:,}", f"{100 * n / total:.2f}")
    return table


def depth_table(book: OrderBook | dict[str, Any], levels: int) -> Table:
    """A book's top ``levels`` per side; ``book`` may be :func:`book_json`'s dict (from a shard process)."""
    doc = book if isinstance(book, dict) else book_json(book, levels)
    bid_levels, ask_levels = doc["levels"]
    title = f"{doc['symbol'] or doc['locate']}  orders {doc['orders']:,}  levels {bid_levels:,}x{ask_levels:,}"
    if doc["trading_state"]:
        title += f"  state {doc['trading_state']}"
    table = Table(title=title)
    for col in ("bid orders", "bid shares", "bid", "ask", "ask shares", "ask orders"):
        table.add_column(col, justify="right")
    bids, asks = doc["bids"][:levels], doc["asks"][:levels]
    for i in range(max(len(bids), len(asks), 1)):
        b = bids[i] if i < len(bids) else None  # [price, shares, orders]
        a = asks[i] if i < len(asks) else None
        table.add_row(
            f"{b[2]:,}" if b else "",
            f"{b[1]:,}" if b else "",
            price(b[0]) if b else "",
            price(a[0]) if a else "",
            f"{a[1]:,}" if a else "",
            f"{a[2]:,}" if a else "",
        )
    if doc["crossed"]:
        table.caption = "[bold red]book is crossed[/]"
    return table


def book_json(book: OrderBook, levels: int) -> dict[str, Any]:
    depth = book.depth(levels)
    return {
        "symbol": book.symbol,
        "locate": book.locate,
        "orders": book.order_count(),
        "levels": [len(book.bids), len(book.asks)],
        "trading_state": book.trading_state,
        "volume": book.volume,
        "crossed": book.is_crossed(),
        "bids": [list(level) for level in depth.bids],
        "asks": [list(level) for level in depth.asks],
    }


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def strategy_status(runtime: Any) -> str:
    """One status line for a running strategy (msgs, orders, fills, position, P&L, tick-to-trade)."""
    orders = runtime.orders
    line = f"events {runtime.events:,}"
    if orders is not None:
        realized, unrealized = runtime.ctx.pnl()
        position = ", ".join(f"{s} {p.shares:+,}" for s, p in orders.positions.items() if p.shares) or "flat"
        t2t = runtime.tick_to_trade_us()
        line += (
            f"  orders {sum(orders.stats.sent.values()):,}  fills {orders.stats.fills:,}  [{position}]"
            f"  P&L {realized + unrealized:+,.2f}"
        )
        if t2t:
            line += f"  tick-to-trade p50 {t2t['p50_us']:.0f} us p99 {t2t['p99_us']:.0f} us"
    return line


def strategy_table(summary: dict[str, Any], title: str) -> Table:
    """The final summary of a strategy run."""
    table = Table(title=title, show_header=False)
    table.add_column()
    table.add_column(justify="right")
    rows = [("book events / trades seen", f"{summary['book_events']:,} / {summary['trades_seen']:,}")]
    if "fills" in summary:
        t2t = summary.get("tick_to_trade_us") or {}
        rows += [
            ("orders sent (by OUCH type)", ", ".join(f"{k} {v:,}" for k, v in sorted(summary["orders_sent"].items()))
             or "none"),
            ("fills / shares", f"{summary['fills']:,} / {summary['filled_shares']:,}"),
            ("exchange rejects / risk blocks",
             f"{summary['exchange_rejected']:,} / {sum(summary['risk_rejected'].values()):,}"),
            ("positions", ", ".join(f"{s} {n:+,}" for s, n in summary["positions"].items() if n) or "flat"),
            ("realised / unrealised P&L", f"{summary['realized_pnl']:+,.2f} / {summary['unrealized_pnl']:+,.2f} $"),
            ("tick-to-trade p50 / p99 / p99.9 (frame ts -> order bytes to socket)",
             " / ".join(f"{t2t[k]:,.1f} us" for k in ("p50_us", "p99_us", "p99.9_us")) if t2t else "no samples"),
            ("unmatched / duplicate responses",
             f"{summary['unmatched_responses']} / {summary['duplicate_executions']}"),
        ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


def reconciliation(summary: dict[str, Any]) -> str:
    """The verdict of a run against the exchange's record (``SimRunResult.summary()``)."""
    problems = summary["reconcile_problems"]
    if not problems:
        return "[bold green]positions, cash and fills match the exchange's record[/]"
    return "[bold red]MISMATCH with the exchange:[/] " + "; ".join(problems)


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` ('-' = stdout); values JSON lacks become strings.

    The file appears whole (written aside, then renamed): another process
    polling for it never reads half a document.
    """
    text = json.dumps(data, indent=2, default=str)
    if path == "-":
        print(text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
