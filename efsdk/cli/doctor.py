"""``efsdk doctor``: is this host ready for kernel bypass?  Each check: pass/warn/fail and the fix."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check NICs, ef_vi, Onload, huge pages, CPU isolation, busy-poll, IRQs, rp_filter",
        description=(
            "Check this host for low-latency market data: Solarflare/AMD NICs, ef_vi, Onload, huge pages, "
            "isolated CPUs, CPU governor, busy-poll sysctls, NIC IRQ affinity and rp_filter. Every check says "
            "how to fix it. Exit code 1 if any check fails (an inconsistent setup, e.g. Onload installed but "
            "its drivers not loaded), 0 otherwise: missing acceleration on a dev box is only a warning."
        ),
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (stable schema, see efsdk.doctor)")
    p.add_argument("--root", default="/", help="read /sys, /dev, /proc under DIR (default /)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efsdk import doctor

    report = doctor.run_checks(root=args.root)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        from rich.table import Table

        from efsdk.cli._format import console

        colour = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        t = Table(title="efsdk doctor")
        for col in ("check", "status", "detail", "fix"):
            t.add_column(col, overflow="fold")
        for c in report.checks:
            t.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", c.detail, c.fix or "")
        out = console()
        if not out.is_terminal:
            out.width = max(out.width, 160)
        out.print(t)
        s = report.summary()
        out.print(f"{s['pass']} pass, {s['warn']} warn, {s['fail']} fail")
    return 1 if report.failed else 0
