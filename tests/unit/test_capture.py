"""Recording to pcap and replaying pcaps into books: real sockets, real files, real subprocesses.

The replay oracle is independent of the code under test: `efsdk gen-itch
--pcap` writes the capture with its own MoldUDP64 packetizer and pcap writer,
and the books must equal those `efsdk replay` builds from the BinaryFILE.
dpkt (a third-party reader) checks what the recorder writes.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import dpkt
import pytest

from efsdk.capture import Recorder, capture_format, replay_pcap
from efsdk.errors import ProtocolError
from efsdk.pcap import internet_checksum, parse_udp_frame, read_pcap
from efsdk.pipeline import FeedHandler
from efsdk.sources import native_available, open_source


def efsdk(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "efsdk.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"efsdk {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A generated day as BinaryFILE + pcap (gen-itch's own writer) and the BinaryFILE replay's JSON."""
    d = tmp_path_factory.mktemp("capture")
    itch, pcap, ref = d / "day.itch", d / "day.pcap", d / "ref.json"
    efsdk("gen-itch", "--symbols", "8", "--messages", "30000", "--seed", "3", "-o", str(itch), "--pcap", str(pcap))
    efsdk("replay", str(itch), "--json", str(ref), "--no-progress")
    return itch, pcap, json.loads(ref.read_text())


_SAME = ("messages", "filtered", "by_type", "instruments", "live_orders", "trades", "anomalies",
         "anomaly_offsets", "book_stats", "books")  # fmt: skip


@pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")
def test_recorder_writes_a_pcap_dpkt_reads_back_byte_identically(tmp_path):
    port = free_udp_port()
    out = tmp_path / "rec.pcap"
    payloads = [bytes([i % 256]) * (1 + i * 7 % 1200) for i in range(300)]
    source = open_source("udp", group="127.0.0.1", port=port)
    with Recorder({"A": source}, out) as rec:
        before = time.time_ns()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.bind(("127.0.0.1", 0))
            sport = tx.getsockname()[1]
            for p in payloads:
                tx.sendto(p, ("127.0.0.1", port))
        stats = rec.run(duration=10, count=len(payloads))
        after = time.time_ns()
    assert stats.stopped_by == "count" and stats.frames == len(payloads)
    assert stats.lines["A"].frames == len(payloads) and stats.sources["A"]["frames"] == len(payloads)

    with open(out, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        got = []
        for _, buf in reader:
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            udp = ip.data
            assert isinstance(ip, dpkt.ip.IP) and isinstance(udp, dpkt.udp.UDP)
            assert (socket.inet_ntoa(ip.src), udp.sport) == ("127.0.0.1", sport)
            assert (socket.inet_ntoa(ip.dst), udp.dport) == ("127.0.0.1", port)
            assert ip.len == len(buf) - 14 and udp.ulen == 8 + len(udp.data)
            assert internet_checksum(buf[14:34]) == 0  # a valid IPv4 header checksum
            pseudo = buf[26:34] + bytes([0, 17]) + udp.ulen.to_bytes(2, "big")
            assert internet_checksum(pseudo + buf[34:]) == 0  # and UDP checksum: Wireshark shows no errors
            got.append(bytes(udp.data))
    assert got == payloads
    stamps = [pkt.ts_ns for pkt in read_pcap(out)]  # the ns themselves (dpkt gives floats)
    assert all(before <= t <= after for t in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) > 1


@pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")
def test_record_cli_summary_and_count(tmp_path):
    port = free_udp_port()
    out, js = tmp_path / "cli.pcap", tmp_path / "cli.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "efsdk.cli", "record", "--feed", f"127.0.0.1:{port}", "-o", str(out),
         "--count", "20", "--duration", "20", "--json", str(js)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            deadline = time.monotonic() + 15
            while proc.poll() is None and time.monotonic() < deadline:  # until it is bound and has 20
                tx.sendto(b"hello", ("127.0.0.1", port))
                time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    doc = json.loads(js.read_text())
    assert doc["stopped_by"] == "count" and doc["frames"] == 20 and doc["lines"]["A"]["frames"] == 20
    assert doc["drops"] == {"A": 0}
    assert "Recorded" in stdout
    assert sum(1 for _ in read_pcap(out)) == 20


@pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_record_stops_cleanly_on_ctrl_c_and_kill(tmp_path, sig):
    port = free_udp_port()
    out, js = tmp_path / "int.pcap", tmp_path / "int.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "efsdk.cli", "record", "--feed", f"127.0.0.1:{port}", "-o", str(out), "--json", str(js)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:  # a steady stream, interrupted mid-flow
                tx.sendto(b"x" * 900, ("127.0.0.1", port))
                time.sleep(0.001)
            proc.send_signal(sig)
            for _ in range(200):
                tx.sendto(b"x" * 900, ("127.0.0.1", port))
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    doc = json.loads(js.read_text())
    assert doc["stopped_by"] == "interrupted" and doc["frames"] > 0
    packets = list(read_pcap(out))  # every record whole: the reader raises on a cut one
    assert len(packets) == doc["frames"] and all(len(parse_udp_frame(p.data).payload) == 900 for p in packets)


def test_paced_replay_follows_the_capture_clock(tmp_path):
    from efsdk.moldudp64 import pack_end_of_session, pack_packet  # noqa: PLC0415
    from efsdk.pcap import PcapWriter, udp_frame  # noqa: PLC0415

    path = tmp_path / "paced.pcap"
    t0 = 1_700_000_000 * 10**9
    with PcapWriter(path) as w:
        for i in range(4):  # 4 one-message packets 0.15 s apart, then end of session
            w.write(t0 + i * 150_000_000, udp_frame(pack_packet("PACED", i + 1, [b"S" + bytes(11)]), "239.1.1.1", 9))
        w.write(t0 + 450_000_000, udp_frame(pack_end_of_session("PACED", 5), "239.1.1.1", 9))
    started = time.monotonic()
    result = replay_pcap(path, FeedHandler(), paced=True)
    assert time.monotonic() - started >= 0.44
    assert result.complete and result.session == "PACED"
    started = time.monotonic()
    replay_pcap(path, FeedHandler(), paced=True, speed=10)
    assert time.monotonic() - started < 0.3


def test_capture_format_by_content(day, tmp_path):
    itch, pcap, _ = day
    assert capture_format(pcap) == "pcap" and capture_format(itch) is None
    ng = tmp_path / "x.pcap"  # the name says pcap; the content decides
    ng.write_bytes(bytes.fromhex("0a0d0d0a1c0000004d3c2b1a") + bytes(16))
    assert capture_format(ng) == "pcapng"


def test_pcap_replay_builds_the_same_books_as_the_binaryfile(day, tmp_path):
    _, pcap, ref = day
    out = tmp_path / "pcap.json"
    proc = efsdk("replay", str(pcap), "--json", str(out), "--no-progress")
    doc = json.loads(out.read_text())
    for key in _SAME:
        assert doc[key] == ref[key], key
    cap = doc["capture"]
    assert cap["complete"] and cap["start_sequence"] == 1 and cap["session"] == "EFSDK00001"
    assert cap["gaps"]["detected"] == 0 and cap["gaps"]["lost"] == 0
    assert list(cap["lines"]) == ["A"] and cap["lines"]["A"]["flow"] == "239.192.0.1:26477"
    assert cap["lines"]["A"]["packets"] == cap["packets"]
    assert "MoldUDP64 session" in proc.stdout


def _rewrite(src, dst, keep) -> int:
    """Copy the records of ``src`` for which ``keep(index, frame)`` is true; return how many dropped."""
    dropped = 0
    with open(src, "rb") as f, open(dst, "wb") as g:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(g, nano=True)
        for i, (ts, buf) in enumerate(reader):
            if keep(i, buf):
                writer.writepkt(buf, ts)
            else:
                dropped += 1
    return dropped


def test_a_packet_missing_from_the_capture_is_reported_lost(day, tmp_path):
    _, pcap, ref = day
    holed, out = tmp_path / "holed.pcap", tmp_path / "holed.json"
    removed = {}

    def keep(i, buf):
        if i == 500:
            d = parse_udp_frame(buf)
            removed["seq"] = int.from_bytes(d.payload[10:18], "big")
            removed["count"] = int.from_bytes(d.payload[18:20], "big")
            return False
        return True

    _rewrite(pcap, holed, keep)
    proc = efsdk("replay", str(holed), "--json", str(out), "--no-progress", check=False)
    assert proc.returncode == 3, proc.stderr  # like `efsdk run`: books are missing messages
    cap = json.loads(out.read_text())["capture"]
    assert cap["gaps"]["lost"] == 1
    assert cap["gaps"]["lost_messages"] == removed["count"]
    assert cap["gaps"]["lost_ranges"] == [[removed["seq"], removed["count"]]]
    assert json.loads(out.read_text())["messages"] == ref["messages"] - removed["count"]
    assert "LOST" in proc.stdout and "LOST" in proc.stderr  # the table row and the session's error log


def test_a_and_b_lines_fill_each_others_gaps(day, tmp_path):
    """The same session on two groups, each missing different packets: nothing lost, books exact."""
    _, pcap, ref = day
    ab = tmp_path / "ab.pcap"
    packets = list(read_pcap(pcap))
    from efsdk.pcap import PcapWriter, UdpFrameBuilder  # noqa: PLC0415

    b_line = UdpFrameBuilder("239.192.0.2", 26478)
    with PcapWriter(ab) as w:
        lagging = None  # B runs one packet behind A, so A's holes are seen as gaps before B fills them
        for i, pkt in enumerate(packets):
            d = parse_udp_frame(pkt.data)
            if i % 7 != 3:
                w.write(pkt.ts_ns, pkt.data)
            if lagging is not None:
                w.write(*lagging)
                lagging = None
            if i % 7 != 5:
                lagging = (pkt.ts_ns + 1000, b_line.build(d.payload, i))
        if lagging is not None:
            w.write(*lagging)
        w.write(packets[-1].ts_ns + 5000, b"\x00" * 60)  # not IPv4: skipped
    feed = FeedHandler()
    result = replay_pcap(ab, feed)
    assert list(result.lines) == ["A", "B"] and result.complete and not result.lost_ranges
    assert result.session_stats["gaps_detected"] > 0
    assert result.session_stats["gaps_recovered"] == result.session_stats["gaps_detected"]
    assert feed.stats.messages == ref["messages"] and feed.builder.live_orders() == ref["live_orders"]
    # --feed keeps only the named flow: A alone has its gaps, lost
    only_a = replay_pcap(ab, FeedHandler(), feeds=[("239.192.0.1", 26477)])
    assert list(only_a.lines) == ["A"] and only_a.ignored_flows == ["239.192.0.2:26478"]
    assert only_a.session_stats["gaps_lost"] > 0 and only_a.lost_ranges


def test_late_join_starts_at_the_lowest_sequence_captured(day, tmp_path):
    _, pcap, ref = day
    late = tmp_path / "late.pcap"
    dropped = _rewrite(pcap, late, lambda i, buf: i >= 200)
    assert dropped == 200
    feed = FeedHandler()
    result = replay_pcap(late, feed)
    assert result.start_sequence > 1 and not result.lost_ranges and result.complete
    assert 0 < feed.stats.messages < ref["messages"]


def _to_pcapng(src, dst) -> int:
    """Convert classic pcap ``src`` to pcapng ``dst`` with dpkt's writer (ns if_tsresol, exact stamps)."""
    with open(src, "rb") as f:
        records = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    le = sys.byteorder == "little"  # dpkt's Writer insists on the host's byte order
    ng = dpkt.pcapng
    opt = ng.PcapngOptionLE if le else ng.PcapngOption
    idb = (ng.InterfaceDescriptionBlockLE if le else ng.InterfaceDescriptionBlock)(
        snaplen=262144, opts=[opt(code=9, data=b"\x09"), opt(code=0)]
    )
    epb = ng.EnhancedPacketBlockLE if le else ng.EnhancedPacketBlock
    with open(dst, "wb") as g:
        w = ng.Writer(g, idb=idb)
        for ts, buf in records:
            ticks = int(ts * 10**9)  # dpkt gives a Decimal for ns pcaps: exact
            w.writepkt(epb(ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF, pkt_data=buf))
    return len(records)


def test_pcapng_replays_into_the_same_books_as_the_classic_pcap(day, tmp_path):
    _, pcap, ref = day
    ng, out_ng, out_pcap = tmp_path / "day.pcapng", tmp_path / "ng.json", tmp_path / "pcap.json"
    n = _to_pcapng(pcap, ng)
    assert capture_format(ng) == "pcapng"
    efsdk("replay", str(pcap), "--json", str(out_pcap), "--no-progress")
    proc = efsdk("replay", str(ng), "--json", str(out_ng), "--no-progress")
    doc, classic = json.loads(out_ng.read_text()), json.loads(out_pcap.read_text())
    for key in _SAME:
        assert doc[key] == classic[key] == ref[key], key
    cap, cap_classic = doc.pop("capture"), classic.pop("capture")
    assert cap.pop("path") == str(ng) and cap_classic.pop("path") == str(pcap)
    assert cap == cap_classic  # packets, flows, session, gaps and first/last ns timestamps
    assert cap["packets"] == n and cap["complete"] and cap["gaps"]["lost"] == 0
    assert "MoldUDP64 session" in proc.stdout
    # the library path as well, and the same packets as the classic reader
    assert [tuple(p) for p in read_pcap(ng)] == [tuple(p) for p in read_pcap(pcap)]
    feed = FeedHandler()
    result = replay_pcap(ng, feed)
    assert result.complete and feed.stats.messages == ref["messages"]


def test_not_a_capture_is_refused_by_replay_pcap(day):
    itch, _, _ = day
    with pytest.raises(ProtocolError, match="not a pcap or pcapng file"):
        replay_pcap(itch, FeedHandler())


def test_pcap_options_refused_for_a_binaryfile(day):
    itch, _, _ = day
    proc = efsdk("replay", str(itch), "--feed", "239.1.1.1:1", check=False)
    assert proc.returncode == 1 and "pcap" in proc.stderr and "Traceback" not in proc.stderr


def test_capture_without_moldudp64_is_a_clear_error(tmp_path):
    from efsdk.pcap import PcapWriter, udp_frame  # noqa: PLC0415

    junk = tmp_path / "junk.pcap"
    with PcapWriter(junk) as w:
        w.write(1, udp_frame(b"not mold", "239.1.1.1", 5000))
    proc = efsdk("replay", str(junk), check=False)
    assert proc.returncode == 1 and "no MoldUDP64" in proc.stderr and "Traceback" not in proc.stderr


def test_fast_udp_parser_agrees_with_parse_udp_frame():
    from efsdk.capture import _udp  # noqa: PLC0415
    from efsdk.pcap import udp_frame  # noqa: PLC0415

    plain = udp_frame(b"payload!", "239.1.2.3", 4242, src_port=777)
    vlan = plain[:12] + b"\x81\x00\x00\x07" + plain[12:]
    fragment = bytearray(plain)
    fragment[20] |= 0x20  # more fragments
    padded = plain + bytes(20)  # Ethernet padding after the datagram
    for frame in (plain, vlan, bytes(fragment), padded, plain[:30], b"\x00" * 60):
        d, fast = parse_udp_frame(frame), _udp(frame)
        if d is None:
            assert fast is None
        else:
            assert fast == (bytes(map(int, d.dst_ip.split("."))) + d.dst_port.to_bytes(2, "big"), d.payload)


def test_linux_cooked_capture_replays(day, tmp_path):
    """`tcpdump -i any` writes Linux cooked (SLL) frames: the same books come out."""
    _, pcap, ref = day
    from efsdk.pcap import PcapWriter  # noqa: PLC0415

    sll = tmp_path / "sll.pcap"
    with PcapWriter(sll, linktype=113) as w:
        for pkt in read_pcap(pcap):
            w.write(pkt.ts_ns, b"\x00\x00\x00\x01\x00\x06" + pkt.data[6:12] + b"\x00\x00" + b"\x08\x00" + pkt.data[14:])
    feed = FeedHandler()
    result = replay_pcap(sll, feed)
    assert result.complete and not result.lost_ranges
    assert feed.stats.messages == ref["messages"] and feed.builder.live_orders() == ref["live_orders"]
