"""``efsdk sim``: the embedded exchange on this machine (ITCH over MoldUDP64 out, OUCH over SoupBinTCP in)."""

from __future__ import annotations

import argparse
import os

from pydantic import SecretStr, ValidationError

from efsdk.cli._format import console, write_json
from efsdk.cli._signals import stop_on_signals
from efsdk.errors import ConfigError

#: Environment variable with the simulator's order-entry password (argv is readable by every local user).
PASSWORD_ENV = "EFSDK_SIM_PASSWORD"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="run the embedded exchange simulator (ITCH/MoldUDP64 feed, OUCH/SoupBinTCP orders)",
        description="A price-time matching engine per symbol with background order flow. Publishes TotalView-ITCH "
        "5.0 over MoldUDP64 (unicast or multicast) with a re-request server, and accepts OUCH 4.2 orders over "
        "SoupBinTCP. Runs until --duration or Ctrl-C, then ends the session.",
    )
    p.add_argument("--symbols", default="AAPL,MSFT,NVDA,AMZN", help="comma-separated symbols (default %(default)s)")
    p.add_argument("--feed", default="127.0.0.1:26400", help="feed HOST:PORT, unicast or 239.x group (default %(default)s)")
    p.add_argument("--feed-interface", help="local IPv4 to send multicast from")
    p.add_argument("--rerequest", default="127.0.0.1:26401", help="re-request server bind HOST:PORT (default %(default)s)")
    p.add_argument("--orders", default="127.0.0.1:26402", help="SoupBinTCP bind HOST:PORT (default %(default)s)")
    p.add_argument("--user", action="append", metavar="NAME",
                   help="order-entry login name (repeatable; default DEMO); the password is read from "
                        "$EFSDK_SIM_PASSWORD (default 'demo'), never from the command line")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="background flow seed (default 1)")
    p.add_argument("--flow-rate", type=float, default=2000.0, help="background actions per second (default 2000)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", metavar="OUT", help="write the final record (fills, positions) as JSON ('-' = stdout)")
    p.set_defaults(func=run)


def _endpoint(text: str, what: str) -> tuple[str, int]:
    from efsdk.cli.run import parse_endpoint  # noqa: PLC0415

    return parse_endpoint(text, what)


def build_config(args: argparse.Namespace):  # noqa: ANN201 - ExchangeConfig
    from efsdk.sim.exchange import ExchangeConfig  # noqa: PLC0415

    feed = _endpoint(args.feed, "--feed")
    rereq = _endpoint(args.rerequest, "--rerequest")
    orders = _endpoint(args.orders, "--orders")
    password = SecretStr(os.environ.get(PASSWORD_ENV, "demo"))
    users = {}
    for name in args.user or ["DEMO"]:
        if not name or ":" in name:
            raise ConfigError(f"--user takes a login name; the password comes from ${PASSWORD_ENV}")
        users[name] = password
    try:
        return ExchangeConfig(
            symbols=tuple(s.strip() for s in args.symbols.split(",") if s.strip()),
            feed_host=feed[0], feed_port=feed[1], feed_interface=args.feed_interface,
            rerequest_host=rereq[0], rerequest_port=rereq[1], order_host=orders[0], order_port=orders[1],
            users=users, seed=args.seed, flow_rate=args.flow_rate,
        )  # fmt: skip
    except ValidationError as exc:
        raise ConfigError(f"invalid simulator settings: {exc}") from None


def record(exchange) -> dict:  # noqa: ANN001
    """The exchange's record of participants' trading (what tests and users reconcile against)."""
    engine = exchange.engine
    accounts = [a for a in engine.accounts() if a != exchange.flow.account]
    return {
        "session": exchange.config.session,
        "stats": {k: v for k, v in vars(exchange.stats).items() if k != "started"},
        "accounts": {
            a: {
                "cash": engine.cash(a),
                "positions": {s: engine.position(a, s) for s in engine.symbols if engine.position(a, s)},
                "fills": [f._asdict() for f in engine.fills if f.account == a],
            }
            for a in accounts
        },
    }


def run(args: argparse.Namespace) -> int:
    from efsdk.sim.exchange import Exchange  # noqa: PLC0415

    out = console()
    config = build_config(args)
    with Exchange(config) as exchange:
        host, port = exchange.order_address
        out.print(
            f"[bold]efsdk sim[/]: {', '.join(config.symbols)}; ITCH/MoldUDP64 to {config.feed_host}:{config.feed_port}, "
            f"re-requests at {config.rerequest_host}:{exchange.rerequest_address[1]}, OUCH/SoupBinTCP at {host}:{port}"
        )
        with stop_on_signals(exchange.stop):
            exchange.run(args.duration)
        result = record(exchange)
    out.print(
        f"{result['stats']['itch_messages']:,} ITCH messages, {result['stats']['requests']:,} OUCH requests, "
        f"{sum(len(a['fills']) for a in result['accounts'].values()):,} participant fills"
    )
    if args.json:
        write_json(args.json, result)
    return 0
