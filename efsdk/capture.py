"""Recording a live feed to pcap, and replaying a pcap capture into books.

:class:`Recorder` polls one or two frame sources (the lines of a feed) and
writes every frame received, with its nanosecond timestamp, to a classic ns
pcap (linktype Ethernet) that tcpdump, Wireshark and dpkt open.  Raw backends
(AF_PACKET) hand over the real Ethernet frame; the UDP backend only has the
datagram, so an Ethernet II / IPv4 / UDP frame is synthesized around it from
the datagram's source and destination address and port.

:func:`replay_pcap` is the other direction: parse Ethernet (or Linux cooked,
or raw IP) / IPv4 / UDP, pick the MoldUDP64 flows (given ones, or every flow
of the capture's busiest session), feed them as lines to a
:class:`~efsdk.moldudp64.MoldSession` on the capture's own clock (late join
at the lowest sequence seen, no re-requests: a gap the other line does not
fill is declared lost, loudly) and apply what it releases through
:meth:`~efsdk.pipeline.FeedHandler.process`.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from efsdk.errors import ProtocolError
from efsdk.moldudp64.codec import END_OF_SESSION_COUNT, HEADER, HEADER_SIZE, HEARTBEAT_COUNT
from efsdk.pcap import (
    LINKTYPE_ETHERNET,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PCAPNG_MAGIC,
    PcapReader,
    PcapWriter,
    UdpFrameBuilder,
)
from efsdk.resource import Resource

__all__ = [
    "CaptureReplay",
    "LineRecord",
    "RecordStats",
    "Recorder",
    "UNICAST_DST_MAC",
    "capture_format",
    "replay_pcap",
]

#: Destination MAC of synthesized frames to a unicast address (the UDP backend
#: never sees the real one): locally administered, recognisably not a NIC's.
UNICAST_DST_MAC = bytes.fromhex("020000000002")
#: Frames taken per poll.
BATCH = 256
IDLE_POLL_S = 0.002

LINKTYPE_RAW = 101  # raw IPv4/IPv6 (also 228 = IPv4 only)
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL = 113
_FAKE_ETH = b"\x00" * 12 + b"\x08\x00"


def capture_format(path: str | os.PathLike[str]) -> str | None:
    """``"pcap"``, ``"pcapng"`` or ``None`` (something else, e.g. a BinaryFILE), by the file's magic."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) < 4:
        return None
    le, be = int.from_bytes(head, "little"), int.from_bytes(head, "big")
    if le == PCAPNG_MAGIC:
        return "pcapng"
    if le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        return "pcap"
    return None


# --------------------------------------------------------------------------- recording


@dataclass
class LineRecord:
    """What one line contributed to a recording."""

    frames: int = 0
    bytes: int = 0  # frame bytes written
    payload_bytes: int = 0
    truncated: int = 0
    end_of_session: bool = False


@dataclass
class RecordStats:
    frames: int = 0
    bytes: int = 0  # frame bytes written (pcap record headers not included)
    lines: dict[str, LineRecord] = field(default_factory=dict)
    stopped_by: str = ""
    seconds: float = 0.0
    sources: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorder(Resource):
    """Write every frame of ``lines`` (name -> open frame source) to a ns pcap at ``output``.

    Owns the sources and the file from here on.
    """

    def __init__(self, lines: dict[str, Any], output: str | os.PathLike[str] | Any) -> None:
        self.lines = lines
        self.writer = PcapWriter(output, linktype=LINKTYPE_ETHERNET)
        self.stats = RecordStats(lines={name: LineRecord() for name in lines})
        self._builders: dict[tuple[str, int, str, int], list] = {}  # flow -> [builder, next ip id]
        self._stop = False
        self._opened()

    def stop(self) -> None:
        """Ask :meth:`run` to finish after the current batch (safe from a signal handler:
        no record is ever cut in half)."""
        self._stop = True

    def _synthesize(self, info: Any) -> bytes:
        key = (*info.src, *info.dst)
        entry = self._builders.get(key)
        if entry is None:
            dst_ip, dst_port = info.dst
            mac = None if ipaddress.IPv4Address(dst_ip).is_multicast else UNICAST_DST_MAC
            entry = self._builders[key] = [
                UdpFrameBuilder(dst_ip, dst_port, src_ip=info.src[0], src_port=info.src[1] or dst_port, dst_mac=mac),
                0,
            ]
        frame = entry[0].build(bytes(info.payload), entry[1])
        entry[1] = (entry[1] + 1) & 0xFFFF
        return frame

    def record_batch(self, line: str, batch: Any) -> int:
        """Write every frame of ``batch`` (received on ``line``); return how many."""
        write = self.writer.write
        rec = self.stats.lines[line]
        n = len(batch)
        for i in range(n):
            info = batch.info(i)
            ts = info.ts_ns or time.time_ns()
            if info.frame is not None:
                frame = bytes(info.frame)
                orig = len(frame)
            else:
                frame = self._synthesize(info)
                orig = len(frame) + max(0, info.orig_len - len(info.payload))
            if info.orig_len > len(info.payload):
                rec.truncated += 1
            write(ts, frame, orig)
            rec.frames += 1
            rec.bytes += len(frame)
            rec.payload_bytes += len(info.payload)
            payload = info.payload
            if len(payload) == HEADER_SIZE and HEADER.unpack_from(payload, 0)[2] == END_OF_SESSION_COUNT:
                rec.end_of_session = True
        self.stats.frames += n
        self.stats.bytes = sum(r.bytes for r in self.stats.lines.values())
        return n

    def run(
        self,
        duration: float | None = None,
        count: int | None = None,
        until_end: bool = False,
        on_status: Callable[[Recorder], None] | None = None,
        status_every: float = 1.0,
    ) -> RecordStats:
        """Record until ``duration`` s, ``count`` frames, end of session on every line
        (``until_end``) or KeyboardInterrupt; return the stats."""
        stats = self.stats
        lines = list(self.lines.items())
        timeout = IDLE_POLL_S / len(lines)
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        next_status = started + status_every
        try:
            while True:
                for line, source in lines:
                    want = BATCH if count is None else min(BATCH, count - stats.frames)
                    if want <= 0:
                        break
                    batch = source.poll(max=want, timeout=timeout)
                    if len(batch):
                        self.record_batch(line, batch)
                    batch.release()
                now = time.monotonic()
                if self._stop:
                    stats.stopped_by = "interrupted"
                    break
                if count is not None and stats.frames >= count:
                    stats.stopped_by = "count"
                    break
                if until_end and all(r.end_of_session for r in stats.lines.values()):
                    stats.stopped_by = "end of session"
                    break
                if deadline is not None and now >= deadline:
                    stats.stopped_by = "duration"
                    break
                if on_status is not None and now >= next_status:
                    on_status(self)
                    next_status = now + status_every
        except KeyboardInterrupt:
            stats.stopped_by = "interrupted"
        stats.seconds = time.monotonic() - started
        stats.sources = {name: asdict(src.stats) for name, src in lines}
        self.writer.close()
        return stats

    def _release(self) -> None:
        try:
            self.writer.close()
        finally:
            for source in self.lines.values():
                source.close()


# --------------------------------------------------------------------------- replay


_SESSION_OK = frozenset(range(0x20, 0x7F))


def _mold_header(payload: bytes) -> tuple[bytes, int, int] | None:
    """``(session, seq, count)`` if ``payload`` looks like a MoldUDP64 downstream packet."""
    n = len(payload)
    if n < HEADER_SIZE:
        return None
    session, seq, count = HEADER.unpack_from(payload, 0)
    if not _SESSION_OK.issuperset(session) or seq == 0:
        return None
    if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
        return (session, seq, count) if n == HEADER_SIZE else None
    if n < HEADER_SIZE + 2 * count:
        return None
    return session, seq, count


def _to_ethernet(linktype: int) -> Callable[[bytes], bytes | None]:
    if linktype == LINKTYPE_ETHERNET:
        return lambda data: data
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return lambda data: _FAKE_ETH + data
    if linktype == LINKTYPE_LINUX_SLL:
        return lambda data: _FAKE_ETH + data[16:] if data[14:16] == b"\x08\x00" else None
    raise ProtocolError(f"pcap link type {linktype} is not supported (Ethernet, Linux cooked or raw IP)")


Flow = tuple[str, int]


def _udp(frame: bytes) -> tuple[bytes, bytes] | None:
    """``(raw destination address + port, payload)`` of an Ethernet / IPv4 / UDP frame, else ``None``.

    The hot-path twin of :func:`efsdk.pcap.parse_udp_frame` (same rules: one
    optional 802.1Q tag, no fragments, lengths clipped to what was captured)
    without building address strings per packet.
    """
    ethertype = frame[12:14]
    off = 14
    if ethertype == b"\x81\x00":
        ethertype = frame[16:18]
        off = 18
    if ethertype != b"\x08\x00" or len(frame) < off + 20:
        return None
    vihl = frame[off]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or frame[off + 9] != 17 or frame[off + 6] & 0x3F or frame[off + 7]:
        return None
    u = off + ihl
    if len(frame) < u + 8:
        return None
    end = min(u + int.from_bytes(frame[u + 4 : u + 6], "big"), off + int.from_bytes(frame[off + 2 : off + 4], "big"))
    return frame[off + 16 : off + 20] + frame[u + 2 : u + 4], frame[u + 8 : end]


def _flow(raw: bytes, cache: dict[bytes, Flow]) -> Flow:
    flow = cache.get(raw)
    if flow is None:
        flow = cache[raw] = (str(ipaddress.IPv4Address(raw[:4])), int.from_bytes(raw[4:], "big"))
    return flow


@dataclass
class _FlowScan:
    packets: int = 0
    mold: int = 0
    sessions: dict[bytes, list[int]] = field(default_factory=dict)  # session -> [packets, min seq]


@dataclass
class CaptureReplay:
    """What :func:`replay_pcap` found and did."""

    path: str
    packets: int = 0  # records in the file
    udp_packets: int = 0
    session: str = ""
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {flow, packets}
    ignored_flows: list[str] = field(default_factory=list)
    start_sequence: int | None = None
    complete: bool = False
    lost_ranges: list[tuple[int, int]] = field(default_factory=list)
    session_stats: dict[str, Any] = field(default_factory=dict)
    first_ts_ns: int = 0
    last_ts_ns: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        s = self.session_stats
        return {
            "path": self.path,
            "packets": self.packets,
            "udp_packets": self.udp_packets,
            "session": self.session,
            "complete": self.complete,
            "start_sequence": self.start_sequence,
            "lines": self.lines,
            "ignored_flows": self.ignored_flows,
            "first_ts_ns": self.first_ts_ns,
            "last_ts_ns": self.last_ts_ns,
            "gaps": {
                "detected": s.get("gaps_detected", 0),
                "recovered": s.get("gaps_recovered", 0),
                "lost": s.get("gaps_lost", 0),
                "lost_messages": s.get("lost_messages", 0),
                "lost_ranges": [list(r) for r in self.lost_ranges],
            },
            "duplicate_packets": s.get("duplicate_packets", 0),
            "duplicate_messages": s.get("duplicate_messages", 0),
            "malformed_packets": s.get("malformed_packets", 0),
            "foreign_session_packets": s.get("foreign_session_packets", 0),
            "session_stats": s,
        }


def _scan(path: str, to_eth: Callable[[bytes], bytes | None]) -> tuple[dict[Flow, _FlowScan], int, int]:
    flows: dict[bytes, _FlowScan] = {}
    total = udp = 0
    with PcapReader(path) as reader:
        for pkt in reader:
            total += 1
            eth = to_eth(pkt.data)
            d = _udp(eth) if eth is not None else None
            if d is None:
                continue
            udp += 1
            raw, payload = d
            scan = flows.get(raw)
            if scan is None:
                scan = flows[raw] = _FlowScan()
            scan.packets += 1
            head = _mold_header(payload)
            if head is None:
                continue
            scan.mold += 1
            session, seq, _ = head
            entry = scan.sessions.get(session)
            if entry is None:
                scan.sessions[session] = [1, seq]
            else:
                entry[0] += 1
                if seq < entry[1]:
                    entry[1] = seq
    cache: dict[bytes, Flow] = {}
    return {_flow(raw, cache): scan for raw, scan in flows.items()}, total, udp


def replay_pcap(
    path: str | os.PathLike[str],
    feed: Any,
    *,
    feeds: Sequence[Flow] | None = None,
    paced: bool = False,
    speed: float = 1.0,
) -> CaptureReplay:
    """Build books in ``feed`` (a :class:`~efsdk.pipeline.FeedHandler`) from a pcap or pcapng capture.

    ``feeds``: the (group, port) flows to use as lines A, B, ...; ``None``
    takes every flow carrying MoldUDP64 of the capture's busiest session.
    ``paced`` sleeps to reproduce the capture's timing (divided by ``speed``).
    Gaps that no line fills within the session's loss timeout (capture time)
    or by the end of the capture are declared lost (see the result).
    """
    from efsdk.moldudp64 import MoldSession  # noqa: PLC0415

    path = os.fspath(path)
    if capture_format(path) is None:
        raise ProtocolError(f"{path} is not a pcap or pcapng file")
    with PcapReader(path) as reader:
        to_eth = _to_ethernet(reader.linktype)
    started = time.perf_counter()
    flows, total, udp = _scan(path, to_eth)
    result = CaptureReplay(path=path, packets=total, udp_packets=udp)

    if feeds is not None:
        chosen = list(feeds)
    else:
        chosen = [k for k, s in flows.items() if s.mold]
    # The session: the one with the most packets over the chosen flows.
    per_session: dict[bytes, list[int]] = {}
    for key in chosen:
        scan = flows.get(key)
        for session, (n, low) in (scan.sessions.items() if scan else ()):
            agg = per_session.setdefault(session, [0, low])
            agg[0] += n
            agg[1] = min(agg[1], low)
    if not per_session:
        where = ", ".join(f"{g}:{p}" for g, p in chosen) if feeds is not None else "any UDP flow"
        raise ProtocolError(f"{path}: no MoldUDP64 packets in {where} ({total} packets, {udp} UDP)")
    session_name, (_, start_seq) = max(per_session.items(), key=lambda kv: kv[1][0])
    if feeds is None:
        chosen = [k for k in chosen if session_name in flows[k].sessions]
    result.ignored_flows = [f"{g}:{p}" for (g, p), s in flows.items() if (g, p) not in chosen]
    names = [chr(ord("A") + i) if i < 26 else f"L{i}" for i in range(len(chosen))]
    line_of = dict(zip(chosen, names, strict=True))
    result.session = session_name.decode("ascii", "replace").strip()
    result.start_sequence = start_seq
    result.lines = {name: {"flow": f"{g}:{p}", "packets": 0} for (g, p), name in line_of.items()}

    now_s = 0.0
    offset = 0
    lost = result.lost_ranges

    def on_payload(first: int, count: int, payload: memoryview) -> None:
        nonlocal offset
        feed.process(payload, offset)
        offset += len(payload)

    session = MoldSession(
        on_payload,
        on_lost=lambda first, count: lost.append((first, count)),
        session=session_name,
        session_change="drop",
        start_sequence=start_seq,
        rerequest=False,
        clock=lambda: now_s,
    )
    feed_packet, poll = session.feed, session.poll
    line_packets = {name: 0 for name in names}
    flow_cache: dict[bytes, Flow] = {}
    line_by_raw: dict[bytes, str | None] = {}
    first_ts = last_ts = None
    wall0 = time.monotonic()
    with PcapReader(path) as reader:
        for pkt in reader:
            eth = to_eth(pkt.data)
            d = _udp(eth) if eth is not None else None
            if d is None:
                continue
            raw, payload = d
            line = line_by_raw.get(raw, "")
            if line == "":
                line = line_by_raw[raw] = line_of.get(_flow(raw, flow_cache))
            if line is None:
                continue
            ts = pkt.ts_ns
            if first_ts is None:
                first_ts = ts
            last_ts = ts
            if paced:
                delay = (ts - first_ts) / 1e9 / speed - (time.monotonic() - wall0)
                if delay > 0:
                    time.sleep(delay)
            now_s = ts / 1e9
            line_packets[line] += 1
            feed_packet(payload, now_s, line)
            poll(now_s)  # returns at once unless a gap is open
    if session.gaps:
        session.declare_lost("not in the capture")
    feed.refresh_stats()
    result.seconds = time.perf_counter() - started
    feed.stats.seconds = result.seconds
    for name, n in line_packets.items():
        result.lines[name]["packets"] = n
    result.complete = session.complete
    result.session_stats = session.stats.snapshot()
    result.first_ts_ns = first_ts or 0
    result.last_ts_ns = last_ts or 0
    return result
