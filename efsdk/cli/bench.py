"""``efsdk bench book``: how fast the feed builds books, against the issue's targets and two baselines.

All measuring and checking lives in :mod:`efsdk.bench` (shared with
``tests/bench``); this module only parses arguments and prints tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from typing import Any

from efsdk import bench
from efsdk.errors import ConfigError

_BOOK_DESCRIPTION = f"""\
Replay a generated ITCH 5.0 session into order books and report messages/s (median
of --rounds after --warmup untimed rounds), ns per message, the spread over rounds
and the ratio to a straightforward struct + SortedDict Python book; then time each
book operation on an AAPL-like deep book (ns/op via OrderBook methods and via
BookBuilder.apply_ops batches). Every round's result is checked (books equal the
generator's summary and reference L3 digests); a wrong answer fails the command.

The session (default {bench.DEFAULT_MESSAGES:,} messages, {bench.DEFAULT_SYMBOLS} symbols: the issue's size) is
generated the first time, which takes a few seconds (~4 s per million messages),
and cached in --cache-dir (default $EFSDK_BENCH_CACHE_DIR or ~/.cache/efsdk/bench).
The full run takes about a minute at the default size. Timings on a shared VM vary
by 20-30% from run to run: compare medians over several rounds, never single runs.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmarks of the feed path and the order book")
    sub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    b = sub.add_parser(
        "book",
        help="replay a generated session into books; msgs/s vs targets and baselines, ns per book operation",
        description=_BOOK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--messages", type=int, default=bench.DEFAULT_MESSAGES, help="session length (default %(default)s)")
    b.add_argument("--symbols", type=int, default=bench.DEFAULT_SYMBOLS, help="symbols (default %(default)s)")
    b.add_argument("--seed", type=int, default=bench.DEFAULT_SEED, help="generator seed (default %(default)s)")
    b.add_argument(
        "--rounds", type=int, default=bench.DEFAULT_ROUNDS, help="timed rounds per case (default %(default)s)"
    )
    b.add_argument(
        "--warmup", type=int, default=bench.DEFAULT_WARMUP, help="untimed rounds first (default %(default)s)"
    )
    b.add_argument("--json", metavar="OUT", help="also write every result (all rounds) as JSON to OUT")
    b.add_argument("--cache-dir", metavar="D", help="where generated sessions are kept")
    b.add_argument(
        "--ops",
        type=int,
        default=bench.DEFAULT_OPS,
        help="operations per round in the per-op table; 0 skips it (default %(default)s)",
    )
    b.add_argument(
        "--meatpy-messages",
        type=int,
        default=bench.DEFAULT_MEATPY_MESSAGES,
        help="session prefix MeatPy replays (its rate is extrapolated); 0 skips it (default %(default)s)",
    )
    b.add_argument(
        "--deep-scale",
        type=float,
        default=1.0,
        help="size of the per-op deep book relative to AAPL-like (2,900 levels/side, ~46k orders) (default 1)",
    )
    b.add_argument(
        "--shards",
        type=int,
        default=min(2, len(os.sched_getaffinity(0))),
        help="also replay with the instruments split over this many processes (efsdk.shards); "
        "0 skips it (default: 2 when 2 CPUs are usable, %(default)s here)",
    )
    b.set_defaults(func=run_book)
    _register_publish(sub)
    _register_wire(sub)

    def no_subcommand(_: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_subcommand)


def _validate(args: argparse.Namespace) -> None:
    if args.rounds < 1 or args.warmup < 0:
        raise ConfigError("--rounds must be >= 1 and --warmup >= 0")
    if args.ops < 0 or args.meatpy_messages < 0 or args.shards < 0:
        raise ConfigError("--ops, --meatpy-messages and --shards must be >= 0")
    if not 0 < args.deep_scale <= 10:
        raise ConfigError("--deep-scale must be in (0, 10]")
    from efsdk.itch.generator import min_messages

    if args.symbols < 2 or args.messages < min_messages(args.symbols):
        raise ConfigError(
            f"--symbols must be >= 2 and --messages >= {min_messages(max(2, args.symbols)):,} for that many symbols"
        )


def _consoles() -> tuple[Any, Any]:
    """(stdout console for the tables, stderr console for progress)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or captured: rich would wrap the tables at 80 columns
        console.width = max(console.width, 132)
    return console, Console(stderr=True)


def run_book(args: argparse.Namespace) -> int:
    _validate(args)
    console, err = _consoles()

    with err.status(f"session {args.messages:,} msgs / {args.symbols} symbols (generated on first use)..."):
        sess = bench.session(args.symbols, args.messages, args.seed, args.cache_dir)
        sess.reference_digests()
    subs = bench.pick_subscriptions(sess.summary)

    feed_cases: list[Callable[[], bench.Case]] = [lambda: bench.full_replay_case(sess)]
    for label, names in subs.items():
        feed_cases.append(lambda label=label, names=names: bench.subscribed_case(sess, names, label))
    feed_cases.append(lambda: bench.straightforward_case(sess))
    meatpy_note = ""
    if args.meatpy_messages:
        if bench.meatpy_available():
            feed_cases.append(lambda: bench.meatpy_case(sess, min(args.meatpy_messages, sess.messages)))
        else:
            meatpy_note = "MeatPy not installed (pip install meatpy): its row is skipped."

    try:
        feed = [_measure(err, make(), args) for make in feed_cases]
        if args.shards:
            from efsdk.shards import ShardedReplay

            pool = ShardedReplay(args.shards)
            with err.status(f"starting {args.shards} shard processes..."):
                pool.start()
            with pool:
                feed.insert(1, _measure(err, bench.sharded_replay_case(sess, pool), args))
        ops: list[bench.Result] = []
        deep_info: dict[str, Any] = {}
        if args.ops:
            spec = bench.DEEP_BOOK.scaled(args.deep_scale)
            with err.status("building the deep book..."):
                cases = bench.op_cases(args.ops, spec)
            deep_info = cases[0].info["deep_book"]
            ops = [_measure(err, case, args) for case in cases]
    except AssertionError as exc:  # a benchmark produced a wrong book: never print its speed
        err.print(f"[bold red]efsdk bench book: WRONG RESULT[/]: {exc}")
        return 1

    baseline = next((r for r in feed if r.info.get("baseline") == "straightforward"), None)
    _print_feed(console, sess, feed, baseline, args)
    console.print("subscriptions: " + "; ".join(f"{label}: {', '.join(n)}" for label, n in subs.items()))
    if meatpy_note:
        console.print(meatpy_note)
    console.print(
        "every round checked: per-book orders and levels equal the generator's summary, L3 digests equal "
        "an independent implementation's (MeatPy: equal to the SDK's books on the same prefix)"
    )
    if ops:
        _print_ops(console, ops, deep_info, args)
    if args.json:
        _write_json(args, sess, subs, feed, ops, deep_info)
        console.print(f"results written to [bold]{args.json}[/]")
    return 0


def _measure(err: Any, case: bench.Case, args: argparse.Namespace) -> bench.Result:
    label = case.name if not case.via or case.group == "feed" else f"{case.name} via {case.via}"
    with err.status(f"{label}: {args.warmup} + {args.rounds} rounds..."):
        return bench.measure(case, args.rounds, args.warmup)


def _m(rate: float) -> str:
    return f"{rate / 1e6:.2f} M" if rate >= 1e5 else f"{rate / 1e3:.1f} k"


def _range(lo: float, hi: float) -> str:
    if hi >= 1e5:
        return f"{lo / 1e6:.2f}-{hi / 1e6:.2f} M"
    return f"{lo / 1e3:.1f}-{hi / 1e3:.1f} k"


def _print_feed(console: Any, sess: bench.Session, feed: list[bench.Result], baseline: Any, args: Any) -> None:
    from rich.table import Table

    s = sess.summary
    table = Table(
        title=f"Book build: {s.messages:,} msgs, {s.symbols} symbols, seed {s.seed} "
        f"(median of {args.rounds} rounds after {args.warmup} warm-up)",
        show_edge=False,
    )
    table.add_column("scenario")
    table.add_column("msgs/s", justify="right")
    table.add_column("ns/msg", justify="right")
    table.add_column("rounds", justify="right")
    table.add_column("p10-p90 (max-min)", justify="right")
    table.add_column("target", justify="right")
    table.add_column("vs baseline", justify="right")
    for r in feed:
        p10, p90 = r.rate_quantiles()
        if r.target is not None:
            ok = r.rate >= r.target
            target = f"[{'green' if ok else 'red'}]>= {_m(r.target)} {'ok' if ok else 'MISS'}[/]"
        else:
            target = f"[dim]ref {_m(r.info['reference_per_s'])}[/]"
        ratio = f"{r.rate / baseline.rate:.2f}x" if baseline is not None else "-"
        name = r.name + ("*" if "extrapolated_from_messages" in r.info else "")
        table.add_row(
            name,
            _m(r.rate),
            f"{r.ns_per_unit:,.0f}",
            str(len(r.seconds)),
            f"{_range(p10, p90)} ({100 * r.spread:.0f}%)",
            target,
            ratio,
        )
    console.print(table)
    if any("extrapolated_from_messages" in r.info for r in feed):
        console.print(
            "* MeatPy replays only a prefix of the session (early books are shallow, and its list-of-levels "
            "book slows down as they deepen): its msgs/s is an optimistic extrapolation."
        )


def _print_ops(console: Any, ops: list[bench.Result], deep: dict[str, Any], args: Any) -> None:
    from rich.table import Table

    table = Table(
        title=f"Per operation on an AAPL-like deep book: {deep.get('orders', 0):,} orders, "
        f"{deep.get('bid_levels', 0):,} x {deep.get('ask_levels', 0):,} levels, "
        f"{deep.get('touch_orders', 0):,} orders at each touch (ns/op, median of {args.rounds} rounds)",
        show_edge=False,
    )
    table.add_column("operation")
    table.add_column("ops/round", justify="right")
    table.add_column("OrderBook method", justify="right")
    table.add_column("apply_ops batch", justify="right")
    rows: dict[str, dict[str, bench.Result]] = {}
    for r in ops:
        rows.setdefault(r.name, {})[r.via] = r

    def cell(r: bench.Result | None) -> str:
        if r is None:
            return "[dim]-[/]"
        return f"{r.ns_per_unit:,.0f} [dim]±{50 * r.spread:.0f}%[/]"

    for name, by in rows.items():
        count = next(iter(by.values())).count
        table.add_row(name, f"{count:,}", cell(by.get("OrderBook")), cell(by.get("apply_ops")))
    console.print(table)
    console.print(
        "ns/op include the Python loop that drives the book (OrderBook) or the record iteration (apply_ops); "
        "± is half the max-min spread over rounds."
    )


def _write_json(args: Any, sess: bench.Session, subs: Any, feed: Any, ops: Any, deep: Any) -> None:
    doc = {
        "session": sess.describe(),
        "subscriptions": {k: list(v) for k, v in subs.items()},
        "rounds": args.rounds,
        "warmup": args.warmup,
        "targets": {"full_replay_per_s": bench.TARGET_FULL_REPLAY, "subscribed_per_s": bench.TARGET_SUBSCRIBED},
        "machine": {
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "feed": [r.as_dict() for r in feed],
        "deep_book": deep,
        "ops": [r.as_dict() for r in ops],
    }
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------- bench publish


def _register_publish(sub: Any) -> None:
    from efsdk import bench_publish

    p = sub.add_parser(
        "publish",
        help="the ZeroMQ fan-out's cost on the feed path: every level vs depth windows, interleaved rounds",
        description=bench_publish.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--messages", type=int, default=bench.DEFAULT_MESSAGES, help="session length (default %(default)s)")
    p.add_argument("--symbols", type=int, default=bench.DEFAULT_SYMBOLS, help="symbols (default %(default)s)")
    p.add_argument("--seed", type=int, default=bench.DEFAULT_SEED, help="generator seed (default %(default)s)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds after one warm-up (default %(default)s)")
    p.add_argument("--depths", default=",".join(map(str, bench_publish.DEFAULT_DEPTHS)),
                   help="publisher modes: 0 = every changed level, N = top-N window (default %(default)s)")  # fmt: skip
    p.add_argument("--no-sidecar", action="store_true",
                   help="measure only in-process publishers (default: each depth also from a publisher sidecar)")  # fmt: skip
    p.add_argument("--no-sustained", action="store_true",
                   help="leave out the sidecar modes with one-chunk queues (which show the feed throttled to the sidecar)")  # fmt: skip
    p.add_argument("--cache-dir", metavar="D", help="where generated sessions are kept")
    p.add_argument("--json", metavar="OUT", help="also write every round as JSON to OUT")
    p.set_defaults(func=run_publish)


def run_publish(args: argparse.Namespace) -> int:
    from rich.table import Table

    from efsdk import bench_publish
    from efsdk.cli._format import write_json
    from efsdk.publish.encoding import DEPTH_WINDOW_MAX

    try:
        depths = [int(d) for d in args.depths.split(",") if d.strip()]
    except ValueError:
        raise ConfigError(f"--depths must be comma-separated integers, not {args.depths!r}") from None
    top = DEPTH_WINDOW_MAX
    if not depths or any(not 0 <= d <= top for d in depths) or len(set(depths)) != len(depths) or args.rounds < 1:
        raise ConfigError(f"--depths must name distinct values 0..{top} (0: every level) and --rounds must be >= 1")
    console, err = _consoles()
    with err.status("session (generated on first use)...") as status:
        sess = bench.session(args.symbols, args.messages, args.seed, args.cache_dir)
        sess.reference_digests()
        modes = bench_publish.measure_overhead(sess, depths, args.rounds, progress=status.update,
                                               sidecar=not args.no_sidecar, sustained=not args.no_sustained)  # fmt: skip
    table = Table(title=f"Publish cost on a full-rate replay: {sess.messages:,} msgs, {sess.symbols} symbols, "
                        f"{args.rounds} interleaved rounds (medians)", show_edge=False)  # fmt: skip
    for name in ("mode", "replay s", "added", "sustained", "own s", "sidecar done", "deltas", "levels sent",
                 "goal"):  # fmt: skip
        table.add_column(name, justify="left" if name == "mode" else "right", no_wrap=name == "mode")
    goal = bench_publish.GOAL_OVERHEAD
    for m in modes:
        median = statistics.median(m.seconds)
        if m.depth is None:
            table.add_row(m.label, f"{median:.3f}", "", "", "", "", "", "", "")
            continue
        # At full rate means sustained: a sidecar's queue only defers its pace.
        verdict = _verdict(max(m.overhead, m.sustained_overhead) < goal, f"< {goal:.0%}")
        done = f"+{statistics.median(m.finish_seconds):.3f} s" if m.finish_seconds else ""
        table.add_row(m.label, f"{median:.3f}", f"{m.overhead:+.0%}", f"{m.sustained_overhead:+.0%}",
                      f"{statistics.median(m.publisher_seconds):.3f}", done, f"{m.deltas:,}", f"{m.levels:,}",
                      verdict)  # fmt: skip
    console.print(table)
    console.print("added = median over rounds of (replay with the publisher / plain replay of the same round) - 1; "
                  "sustained = the same with the sidecar's own time (feed + sidecar done), the pace a day longer "
                  "than its queue runs at (in process: = added); goal: both under it; own s = the publisher's "
                  "own time (its stats)")  # fmt: skip
    if any(m.sidecar for m in modes):
        console.print("from a sidecar, the feed only forwards the ITCH bytes and the publisher's own time is spent "
                      "on another core; 'sidecar done' is how long after the feed's last byte the sidecar had "
                      "published everything; with 'queue 1' (one chunk each side) the feed already waits for the "
                      "sidecar for the last part of this day (blocked_seconds in the JSON)")  # fmt: skip
    if args.json:
        write_json(args.json, {"session": sess.describe(), "modes": [m.as_dict() for m in modes]})
    return 0


# --------------------------------------------------------------------------- bench wire


def _register_wire(sub: Any) -> None:
    from efsdk import bench_wire

    w = sub.add_parser(
        "wire",
        help="frame sources on a real veth pair: latency (HDR p50/p99/p99.9) and frames/s per backend (root)",
        description=bench_wire.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("--seconds", type=float, default=bench_wire.DEFAULT_SECONDS,
                   help="length of each phase per backend (default %(default)s)")  # fmt: skip
    w.add_argument("--rate", type=int, default=bench_wire.DEFAULT_RATE,
                   help="paced sender rate of the latency phase, datagrams/s (default %(default)s)")  # fmt: skip
    w.add_argument("--senders", type=int, help="sender processes of the throughput phase (default: spare CPUs, <= 4)")
    w.add_argument("--sender", choices=list(bench_wire.SENDERS), default="xdp",
                   help="how the throughput phase sends: " + "; ".join(f"{k}: {v}" for k, v in bench_wire.SENDERS.items())
                   + " (default %(default)s)")  # fmt: skip
    w.add_argument("--steer", choices=list(bench_wire.STEERING), default="sender",
                   help="where the kernel's receive work runs: " + "; ".join(
                       f"{k}: {v}" for k, v in bench_wire.STEERING.items()) + " (default %(default)s)")  # fmt: skip
    w.add_argument("--busy", action="store_true", help="receivers spin instead of sleeping in poll (one core at 100%%)")
    w.add_argument("--json", metavar="OUT", help="also write every result (with HDR histograms) as JSON to OUT")
    w.set_defaults(func=run_wire)


def run_wire(args: argparse.Namespace) -> int:
    from efsdk import bench_wire

    if not 0 < args.seconds <= 600 or not 1 <= args.rate <= 2_000_000:
        raise ConfigError("--seconds must be in (0, 600] and --rate in 1..2,000,000")
    if args.senders is not None and not 1 <= args.senders <= 64:
        raise ConfigError("--senders must be 1..64")
    reason = bench_wire.skip_reason()
    if reason:
        raise ConfigError(reason)
    console, err = _consoles()
    with err.status("creating namespaces...") as status:
        doc = bench_wire.run(args.seconds, args.rate, senders=args.senders, sender=args.sender, steer=args.steer,
                             busy=args.busy,
                             progress=lambda text: status.update(text))  # fmt: skip
    _print_wire(console, doc)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        console.print(f"results written to [bold]{args.json}[/]")
    return 0


STEERING_SHORT = {"sender": "on the sender's CPU", "receiver": "on the receiver's CPU (RPS)"}


def _wire_sender(results: dict[str, Any]) -> str:
    from efsdk.bench_wire import SENDERS

    used = sorted({r["throughput"].get("sender", "?") for r in results.values()})
    return ", ".join(SENDERS.get(u, u) for u in used)


def _verdict(v: bool | None, text: str) -> str:
    if v is None:
        return f"[dim]{text}[/]"
    return f"[{'green' if v else 'red'}]{text} {'ok' if v else 'MISS'}[/]"


def _print_wire(console: Any, doc: dict[str, Any]) -> None:
    from rich.table import Table

    cfg, tg, res, ver = doc["config"], doc["targets"], doc["backends"], doc["verdicts"]
    lat = Table(
        title=f"Latency: kernel rx timestamp -> in Python, {cfg['rate']:,} pps x {cfg['seconds']:g} s, "
        f"{cfg['payload_bytes']} B datagrams, {'busy' if cfg['busy'] else 'blocking'} poll (HDR, us)",
        show_edge=False,
    )
    for col in ("backend", "recorded/sent", "p50", "p99", "p99.9", "max", "p50 target", "p99 target", "p99 vs loop"):
        lat.add_column(col, justify="left" if col == "backend" else "right")
    loop_p99 = res.get("python-loop", {}).get("latency", {}).get("latency", {}).get("p99_us")
    for b, r in res.items():
        q, v = r["latency"]["latency"], ver[b]
        ratio = f"{loop_p99 / q['p99_us']:.1f}x" if loop_p99 and q["p99_us"] else "-"
        lat.add_row(
            b,
            f"{q['count']:,}/{r['latency']['sent']:,}",
            f"{q['p50_us']:,.1f}",
            f"{q['p99_us']:,.1f}",
            f"{q['p99_9_us']:,.1f}",
            f"{q['max_us']:,.1f}",
            _verdict(v["p50"], f"<= {tg['p50_us']:g}") if v["p50"] is not None else "[dim]-[/]",
            _verdict(v["p99"], f"<= {tg['p99_us']:g}") if v["p99"] is not None else "[dim]-[/]",
            _verdict(v["p99_vs_loop"], f">= {tg['p99_vs_loop']:g}x: {ratio}") if v["p99_vs_loop"] is not None
            else f"[dim]{ratio}[/]",
        )  # fmt: skip
    console.print(lat)
    thr = Table(
        title=f"Throughput: {cfg['senders']} sender process(es) flat out x {cfg['seconds']:g} s, "
        f"{cfg['payload_bytes']} B datagrams, sent by {_wire_sender(res)}; kernel receive work "
        f"{STEERING_SHORT.get(cfg.get('steer', 'sender'), '?')}",
        show_edge=False,
    )
    for col in ("backend", "offered/s", "received/s", "frames", "batches", "kernel drops", "lost before socket",
                "target"):  # fmt: skip
        thr.add_column(col, justify="left" if col == "backend" else "right")
    for b, r in res.items():
        t, v = r["throughput"], ver[b]
        target = _verdict(v["throughput"], f">= {_m(tg['throughput_fps'])}, 0 drops")
        if v["sender_bound"]:
            target += " [yellow](sender-bound)[/]"
        elif not v["no_drops"]:
            target += " [red](receiver-bound)[/]"
        thr.add_row(
            b,
            _m(t["offered_per_s"]),
            _m(t["frames_per_s"]),
            f"{t['frames']:,}",
            f"{t['batches']:,}",
            f"{int(t['stats'].get('kernel_drops', 0)):,}",
            f"{t['lost_before_socket']:,}",
            target,
        )
    console.print(thr)
    if any(v["sender_bound"] for v in ver.values()):
        console.print(
            "[yellow]sender-bound[/]: the senders offered less than the target, so received/s measures the "
            "sender, not the receiver's ceiling (on a veth the sender's CPU also runs the receive stack; with no "
            "receiver at all one core here sends 1.1-1.5 M frames/s with xdp, ~0.65 M raw, ~0.37 M through UDP "
            "sockets); "
            "receiver-bound: the kernel dropped what the receiver did not take in time."
        )
    console.print(
        f"latency: time.time_ns() when the batch (python-loop: the datagram) is in Python minus the kernel's "
        f"software rx timestamp, first {cfg['warmup_frames']} frames not recorded; targets (p50/p99) apply to "
        "AF_PACKET and AF_XDP; 'lost before socket' = sent - received - kernel drops (the veth backlog, and "
        "with the xdp sender the rx veth's XDP queue)."
    )
    if cfg.get("sender_fallback"):
        console.print(f"[yellow]{cfg['sender_fallback']}[/]")
