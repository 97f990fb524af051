"""The ``efsdk`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds an argparse parser whose ``func`` default runs the command and
returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from efsdk import __version__
from efsdk.errors import EfsdkError

# Module names under efsdk.cli, in the order `efsdk --help` lists them.
_COMMANDS = ("demo", "replay", "run", "sim", "publish", "subscribe", "record", "gen_itch", "bench", "onload", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efsdk",
        description="Kernel-bypass market data (ITCH 5.0 over MoldUDP64) into pure-Python order books and strategies, "
        "with OUCH 4.2 order entry, pre-trade risk, an embedded exchange simulator and ZeroMQ fan-out.",
    )
    parser.add_argument("--version", action="version", version=f"efsdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"efsdk.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (EfsdkError, OSError) as exc:  # user-facing errors: no traceback
        print(f"efsdk {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
