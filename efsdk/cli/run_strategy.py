"""``efsdk run STRATEGY.py``: one strategy class, the driver chosen by flags."""

from __future__ import annotations

import argparse
import os

from rich.live import Live

from efsdk.cli._format import console, reconciliation, strategy_status, strategy_table, write_json
from efsdk.cli.replay import parse_symbols
from efsdk.errors import ConfigError
from efsdk.publish.attach import publisher_from_args


def run_strategy(args: argparse.Namespace) -> int:
    from efsdk.strategy import make_strategy  # noqa: PLC0415

    drivers = [name for name, on in (("--replay", args.replay), ("--sim", args.sim), ("--feed", args.feed)) if on]
    if len(drivers) != 1:
        raise ConfigError(
            "choose one driver: --replay FILE, --sim, or --feed GROUP:PORT (with --orders HOST:PORT to trade)"
            + (f"; got {' and '.join(drivers)}" if drivers else "")
        )
    symbols = parse_symbols(args.symbols)
    strategy = make_strategy(args.strategy, args.config, args.class_name, symbols=tuple(symbols) if symbols else None)
    out = console()
    out.print(f"[bold]efsdk run[/]: {type(strategy).__name__}({', '.join(strategy.config.symbols)}) on {drivers[0].lstrip('-')}")
    exit_code = 0
    with publisher_from_args(args) as hooks:
        summary, exit_code = _drive(args, strategy, out, hooks)
    out.print(strategy_table(summary, f"{type(strategy).__name__} on {drivers[0].lstrip('-')}"))
    if "reconciled_with_exchange" in summary:
        out.print(reconciliation(summary))
    if args.json:
        write_json(args.json, summary)
    return exit_code


def _drive(args: argparse.Namespace, strategy, out, hooks: dict) -> tuple[dict, int]:  # noqa: ANN001
    """Run ``strategy`` on the driver the flags chose; ``hooks`` (on_feed, idle) attach a publisher."""
    exit_code = 0
    if args.replay:
        from efsdk.strategy import run_replay  # noqa: PLC0415

        with out.status(f"replaying {args.replay}"):
            result = run_replay(strategy, args.replay, on_feed=hooks.get("on_feed"))
        summary = result.summary()
    elif args.sim:
        from efsdk.strategy import run_sim  # noqa: PLC0415

        sim = _with_status(out, lambda status: run_sim(strategy, duration=args.duration or 10.0, on_status=status,
                                                       token_prefix=args.token_prefix, **hooks))  # fmt: skip
        summary = sim.summary()
        if summary["reconcile_problems"]:
            exit_code = 4
    else:
        summary = _run_live(args, strategy, out, hooks)
    return summary, exit_code


def _with_status(out, run):  # noqa: ANN001, ANN202
    """Run ``run(on_status)`` under a live status line when on a terminal."""
    if not out.is_terminal:
        return run(None)
    with Live(console=out, refresh_per_second=4, transient=True) as screen:
        return run(lambda runtime: screen.update(strategy_status(runtime)))


def _run_live(args: argparse.Namespace, strategy, out, hooks: dict) -> dict:  # noqa: ANN001
    from efsdk.cli.run import open_line, parse_endpoint  # noqa: PLC0415
    from efsdk.moldudp64 import MoldRerequester  # noqa: PLC0415
    from efsdk.strategy import run_live  # noqa: PLC0415

    feeds = [parse_endpoint(part.strip(), "--feed") for part in args.feed.split(",")]
    if len(feeds) > 2:
        raise ConfigError("--feed takes one or two lines (A,B)")
    server = parse_endpoint(args.rerequest, "--rerequest") if args.rerequest else None
    gateway = None
    if args.orders:
        from efsdk.orders.gateway import SoupGateway  # noqa: PLC0415
        from efsdk.orders.soupbintcp.client import SoupCredentials  # noqa: PLC0415

        password = os.environ.get(args.password_env)
        if password is None:
            raise ConfigError(f"set the order-entry password in ${args.password_env} (it is never taken on the "
                              "command line, where other users could read it)")  # fmt: skip
        gateway = SoupGateway(parse_endpoint(args.orders, "--orders"),
                              SoupCredentials(username=args.user, password=password))  # fmt: skip
    lines = {}
    try:
        for name, (group, port) in zip("AB", feeds, strict=False):
            lines[name] = open_line(args.source, group, port, args.iface_addr)
        requester_for = None
        if server is not None:
            requester_for = lambda session: MoldRerequester(session, server, bind=("0.0.0.0", 0))  # noqa: E731
        result = _with_status(out, lambda status: run_live(
            strategy, lines, gateway=gateway, requester_for=requester_for, duration=args.duration,
            start_sequence=None if args.join_late else 1, on_status=status, token_prefix=args.token_prefix,
            first_token=args.first_token,
            **hooks))  # fmt: skip
    finally:
        if gateway is not None:
            gateway.close()
    return result.summary()
