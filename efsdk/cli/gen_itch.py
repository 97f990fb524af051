"""``efsdk gen-itch``: write a synthetic ITCH 5.0 day as BinaryFILE and optionally a MoldUDP64 pcap."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import time
from collections.abc import Iterable, Iterator

from efsdk.errors import ConfigError
from efsdk.itch.generator import BinaryFileWriter, SessionGenerator, SessionSummary
from efsdk.itch.layouts import LAYOUTS
from efsdk.moldudp64.codec import DEFAULT_MAX_PAYLOAD, encode_session, pack_end_of_session, packetize
from efsdk.pcap import DEFAULT_SOURCE_IP, DEFAULT_TRADING_DATE, PcapSummary, write_moldudp64_pcap

# Administratively scoped multicast (RFC 2365) so a replayed capture stays in
# the lab; 26477 is the port NASDAQ uses for TotalView-ITCH.
DEFAULT_GROUP = "239.192.0.1:26477"
DEFAULT_SESSION = "EFSDK00001"
# A publisher sends a packet as soon as it has nothing more to add; messages
# arriving more than this long after a packet's first message start a new one.
PACKET_WINDOW_NS = 50_000
# How many end-of-session packets to repeat (publishers repeat it for a while
# so late joiners and lossy receivers see the end).
END_OF_SESSION_REPEATS = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gen-itch",
        help="write a synthetic, deterministic ITCH 5.0 trading day (BinaryFILE, optional MoldUDP64 pcap)",
        description=(
            "Generate a realistic synthetic NASDAQ TotalView-ITCH 5.0 day: deep and thin names, consistent "
            "order lifecycles, a real day's message mix. Same arguments, same bytes."
        ),
    )
    p.add_argument("--symbols", type=int, default=50, help="number of symbols (default 50)")
    p.add_argument("--messages", type=int, default=1_000_000, help="exact number of messages (default 1,000,000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("-o", "--output", required=True, help="BinaryFILE to write (gzip if it ends in .gz)")
    p.add_argument("--pcap", help="also write the session as MoldUDP64 multicast packets in a ns pcap")
    p.add_argument("--group", default=DEFAULT_GROUP, help=f"multicast GROUP:PORT for --pcap (default {DEFAULT_GROUP})")
    p.add_argument(
        "--session", default=DEFAULT_SESSION, help=f"MoldUDP64 session name, <= 10 chars (default {DEFAULT_SESSION})"
    )
    p.add_argument(
        "--source", default=DEFAULT_SOURCE_IP, help=f"source IPv4 address for --pcap (default {DEFAULT_SOURCE_IP})"
    )
    p.add_argument(
        "--date",
        type=dt.date.fromisoformat,
        default=DEFAULT_TRADING_DATE,
        help=f"trading date for pcap timestamps, YYYY-MM-DD (default {DEFAULT_TRADING_DATE})",
    )
    p.add_argument(
        "--max-payload",
        type=int,
        default=DEFAULT_MAX_PAYLOAD,
        help=f"largest MoldUDP64 packet (UDP payload) in bytes (default {DEFAULT_MAX_PAYLOAD})",
    )
    p.set_defaults(func=run)


def parse_group(text: str) -> tuple[str, int]:
    """Parse ``A.B.C.D:PORT`` into (multicast group, port); raises :class:`ConfigError`."""
    host, sep, port_s = text.rpartition(":")
    if not sep:
        raise ConfigError(f"--group {text!r}: expected GROUP:PORT, e.g. {DEFAULT_GROUP}")
    try:
        addr = ipaddress.IPv4Address(host)
        port = int(port_s)
    except ValueError as exc:
        raise ConfigError(f"--group {text!r}: {exc}") from None
    if not addr.is_multicast:
        raise ConfigError(f"--group {text!r}: {addr} is not a multicast address (224.0.0.0/4)")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--group {text!r}: port must be 1..65535")
    return str(addr), port


def _time_batches(messages: Iterable[bytes], window_ns: int) -> Iterator[list[bytes]]:
    """Group consecutive ITCH messages whose timestamps lie within ``window_ns`` of the group's first."""
    batch: list[bytes] = []
    start = 0
    for msg in messages:
        ts = int.from_bytes(msg[5:11], "big")  # ITCH header: type 1, locate 2, tracking 2, timestamp 6
        if batch and ts - start > window_ns:
            yield batch
            batch = []
        if not batch:
            start = ts
        batch.append(msg)
    if batch:
        yield batch


def mold_packets(
    messages: Iterable[bytes],
    session: str,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    window_ns: int = PACKET_WINDOW_NS,
) -> Iterator[bytes]:
    """Downstream MoldUDP64 packets for ``messages``, then end-of-session packets."""
    seq = 1
    for batch in _time_batches(messages, window_ns):
        for _, packet in packetize(session, batch, first_seq=seq, max_payload=max_payload):
            yield packet
        seq += len(batch)
    for _ in range(END_OF_SESSION_REPEATS):
        yield pack_end_of_session(session, seq)


def run(args: argparse.Namespace) -> int:
    if args.pcap:
        group, port = parse_group(args.group)
    try:
        encode_session(args.session)
        gen = SessionGenerator(args.symbols, args.messages, args.seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.max_payload < 64 or args.max_payload > 65507:
        raise ConfigError("--max-payload must be between 64 and 65507 bytes (one UDP datagram)")

    started = time.perf_counter()
    pcap_summary: PcapSummary | None = None
    with BinaryFileWriter(args.output) as writer:
        if args.pcap:
            write = writer.write

            def tee() -> Iterator[bytes]:
                for msg in gen:
                    write(msg)
                    yield msg

            pcap_summary = write_moldudp64_pcap(
                args.pcap,
                mold_packets(tee(), args.session, max_payload=args.max_payload),
                group,
                port,
                src_ip=args.source,
                trading_date=args.date,
            )
        else:
            writer.write_all(gen)
    elapsed = time.perf_counter() - started
    summary = gen.summary
    summary.path = args.output
    summary.bytes_written = os.path.getsize(args.output)
    _print_summary(summary, pcap_summary, elapsed)
    return 0


def _print_summary(s: SessionSummary, pcap: PcapSummary | None, elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    names = {t.decode(): layout.name for t, layout in LAYOUTS.items()}
    table = Table(title=f"ITCH 5.0 session: {s.symbols} symbols, seed {s.seed}", show_edge=False)
    table.add_column("type")
    table.add_column("message")
    table.add_column("count", justify="right")
    table.add_column("%", justify="right")
    total = sum(s.counts.values())
    for t, n in sorted(s.counts.items(), key=lambda kv: -kv[1]):
        table.add_row(t, names.get(t, "?"), f"{n:,}", f"{100.0 * n / total:.2f}")
    console.print(table)
    bid_levels, ask_levels = s.max_levels
    console.print(
        f"messages {total:,} in {elapsed:.1f} s ({total / elapsed / 1e6:.2f} M msg/s), "
        f"live orders at end {s.live_orders:,}, most levels on a side {max(bid_levels, ask_levels):,}"
    )
    console.print(f"deep names: {', '.join(s.deep_symbols)}")
    kind = "BinaryFILE, gzip" if str(s.path).endswith(".gz") else "BinaryFILE"
    console.print(f"[bold]{s.path}[/]: {s.bytes_written:,} bytes ({kind})")
    if pcap is not None:
        console.print(
            f"[bold]{pcap.path}[/]: {pcap.bytes:,} bytes, {pcap.packets:,} packets "
            f"({pcap.messages / max(1, pcap.packets):.1f} messages/packet), ns pcap"
        )
