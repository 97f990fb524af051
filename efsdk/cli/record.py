"""``efsdk record``: capture a live MoldUDP64 feed to a nanosecond pcap."""

from __future__ import annotations

import argparse
import signal

from rich.table import Table

from efsdk.cli._format import console, write_json
from efsdk.cli.run import _SOURCES, open_line, parse_endpoint
from efsdk.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record a live feed (one or two lines) to a nanosecond pcap that tcpdump/Wireshark open",
        description="Receive one or two lines through a frame source and write every frame with its ns "
        "timestamp to a classic ns pcap (linktype Ethernet). Raw backends write the real frame; the udp "
        "backend synthesizes Ethernet/IPv4/UDP around each datagram from its addresses and ports. Stops "
        "after --duration, --count frames, end of session on every line (--until-end) or Ctrl-C. "
        "Replay the capture into books with `efsdk replay OUT.pcap`.",
    )
    p.add_argument("--source", default="udp", help=f"frame source: {_SOURCES} (default udp)")
    p.add_argument("--feed", required=True, help="GROUP:PORT of line A, optionally ,GROUP:PORT of line B")
    p.add_argument("--iface-addr", help="local IPv4 address of the interface to join multicast on (udp source)")
    p.add_argument("-o", "--output", required=True, help="pcap file to write")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--count", type=int, help="stop after this many frames")
    p.add_argument("--until-end", action="store_true", help="stop once every line has sent end of session")
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON ('-' for stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efsdk.capture import Recorder  # noqa: PLC0415

    feeds = [parse_endpoint(part.strip(), "--feed") for part in args.feed.split(",")]
    if len(feeds) > 2:
        raise ConfigError("--feed takes one or two lines (A,B)")
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be >= 1")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be > 0")
    out = console()
    lines = {}
    try:
        for name, (group, port) in zip("AB", feeds, strict=False):
            lines[name] = open_line(args.source, group, port, args.iface_addr)
        recorder = Recorder(lines, args.output)
    except BaseException:
        for source in lines.values():
            source.close()
        raise
    # Ctrl-C and `kill` finish the batch in hand, so the pcap never ends in half a record.
    stop = lambda signum, frame: recorder.stop()  # noqa: E731
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with recorder:
            stats = recorder.run(args.duration, args.count, args.until_end)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = {
        "output": args.output,
        "source": args.source,
        "feeds": [f"{g}:{p}" for g, p in feeds],
        "stopped_by": stats.stopped_by,
        "seconds": stats.seconds,
        "frames": stats.frames,
        "bytes": stats.bytes,
        "lines": {name: vars(rec) for name, rec in stats.lines.items()},
        "drops": {name: s["kernel_drops"] for name, s in stats.sources.items()},
        "sources": stats.sources,
    }
    table = Table(title=f"Recorded {args.output}", show_header=False)
    table.add_column()
    table.add_column(justify="right")
    table.add_row("stopped by", stats.stopped_by)
    table.add_row("frames / bytes", f"{stats.frames:,} / {stats.bytes:,} ({stats.seconds:.1f} s)")
    for name, rec in stats.lines.items():
        src = stats.sources[name]
        table.add_row(
            f"line {name} {summary['feeds'][ord(name) - ord('A')]}",
            f"{rec.frames:,} frames, {rec.bytes:,} B, drops {src['kernel_drops']:,}, truncated {src['truncated']:,}"
            + (", end of session" if rec.end_of_session else ""),
        )
    out.print(table)
    if args.json:
        write_json(args.json, summary)
    return 0
