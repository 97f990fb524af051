"""pcap writer/reader and UDP framing, cross-checked against dpkt (an independent implementation)."""

from __future__ import annotations

import io
import struct
from decimal import Decimal

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from efsdk.cli.gen_itch import mold_packets
from efsdk.errors import ProtocolError
from efsdk.itch.generator import generate_session
from efsdk.moldudp64.codec import pack_end_of_session, unpack_packet
from efsdk.pcap import (
    DEFAULT_SOURCE_IP,
    PCAP_MAGIC_NS,
    PcapReader,
    PcapWriter,
    UdpFrameBuilder,
    internet_checksum,
    midnight_epoch_ns,
    multicast_mac,
    parse_udp_frame,
    read_pcap,
    udp_frame,
    write_moldudp64_pcap,
)

GROUP, PORT = "239.192.0.1", 26477
MIDNIGHT = 1_706_590_800 * 10**9  # 2024-01-30 00:00 America/New_York (EST, UTC-5)


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[bytes], list[bytes]]:
    msgs = list(generate_session(10, 20_000, 4))
    packets = list(mold_packets(msgs, "TESTSESS"))
    path = str(tmp_path_factory.mktemp("pcap") / "feed.pcap")
    summary = write_moldudp64_pcap(path, packets, GROUP, PORT)
    assert summary.packets == len(packets) and summary.messages == len(msgs)
    return path, msgs, packets


def test_dpkt_reads_our_pcap_with_identical_payloads(feed) -> None:
    path, msgs, packets = feed
    with open(path, "rb") as f:
        raw = f.read(4)
        f.seek(0)
        assert struct.unpack("<I", raw)[0] == PCAP_MAGIC_NS
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        records = list(reader)
    assert len(records) == len(packets)
    got_msgs = []
    for (_, buf), sent in zip(records, packets):
        eth = dpkt.ethernet.Ethernet(buf)
        ip, udp = eth.data, eth.data.data
        assert isinstance(ip, dpkt.ip.IP) and isinstance(udp, dpkt.udp.UDP)
        assert eth.dst == bytes.fromhex("01005e400001")  # 239.192.0.1 -> 01:00:5e + 0x400001
        assert dpkt.utils.inet_to_str(ip.dst) == GROUP and dpkt.utils.inet_to_str(ip.src) == DEFAULT_SOURCE_IP
        assert udp.dport == PORT and udp.ulen == 8 + len(sent)
        assert bytes(udp.data) == sent
        got_msgs.extend(bytes(b) for b in unpack_packet(udp.data)[1])
    assert got_msgs == msgs
    assert unpack_packet(records[-1][1][42:])[0].is_end_of_session


def test_checksums_match_dpkt_recomputation(feed) -> None:
    path, _, _ = feed
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            ours_ip, ours_udp = ip.sum, ip.data.sum
            assert ours_udp != 0, "UDP checksum must be filled in"
            ip.sum = 0
            ip.data.sum = 0
            bytes(ip)  # dpkt recomputes both when zeroed
            assert (ip.sum, ip.data.sum) == (ours_ip, ours_udp)


def test_ns_timestamps_follow_itch_times(feed) -> None:
    path, _, packets = feed
    with open(path, "rb") as f:
        stamps = [ts for ts, _ in dpkt.pcap.Reader(f)]
    assert all(isinstance(ts, Decimal) for ts in stamps), "dpkt reads ns pcaps exactly"
    ns = [int(ts * 10**9) for ts in stamps]
    assert ns == sorted(ns)
    last = MIDNIGHT
    for t, pkt in zip(ns, packets):
        blocks = unpack_packet(pkt)[1]
        if blocks:
            last = max(last, MIDNIGHT + int.from_bytes(bytes(blocks[-1][5:11]), "big"))
        assert t == last
    # Our reader agrees with dpkt to the nanosecond.
    assert [p.ts_ns for p in read_pcap(path)] == ns
    assert sum(1 for t in ns if t % 1000) > len(ns) // 2, "sub-microsecond digits survive"


def test_midnight_in_new_york() -> None:
    import datetime as dt

    assert midnight_epoch_ns(dt.date(2024, 1, 30)) == MIDNIGHT
    assert midnight_epoch_ns(dt.date(2024, 7, 1)) == 1_719_806_400 * 10**9  # EDT, UTC-4


# -- reader ----------------------------------------------------------------------


def test_reader_reads_dpkt_microsecond_pcap() -> None:
    buf = io.BytesIO()
    w = dpkt.pcap.Writer(buf, linktype=dpkt.pcap.DLT_EN10MB)
    w.writepkt(b"frame-one", ts=1_700_000_000.123456)
    w.writepkt(b"frame-two!", ts=1_700_000_001.5)
    buf.seek(0)
    r = PcapReader(buf)
    assert not r.nanosecond and r.linktype == 1
    pkts = list(r)
    assert [p.data for p in pkts] == [b"frame-one", b"frame-two!"]
    assert [p.ts_ns for p in pkts] == [1_700_000_000_123_456_000, 1_700_000_001_500_000_000]


def test_reader_reads_dpkt_nanosecond_pcap() -> None:
    buf = io.BytesIO()
    w = dpkt.pcap.Writer(buf, nano=True)
    w.writepkt(b"x" * 60, ts=Decimal("1700000000.000000007"))
    buf.seek(0)
    [p] = list(PcapReader(buf))
    assert p.ts_ns == 1_700_000_000_000_000_007 and p.orig_len == 60


@pytest.mark.parametrize("magic", [0xA1B2C3D4, 0xA1B23C4D])
def test_reader_big_endian(magic: int) -> None:
    frac = 250_000 if magic == 0xA1B2C3D4 else 250_000_000
    data = struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 65535, 1) + struct.pack(">IIII", 10, frac, 3, 64) + b"abc"
    r = PcapReader(io.BytesIO(data))
    assert r.byte_order == "big"
    [p] = list(r)
    assert (p.ts_ns, p.data, p.orig_len) == (10_250_000_000, b"abc", 64)


# -- pcapng ------------------------------------------------------------------------
# dpkt's pcapng block classes (an independent implementation) write the files;
# dpkt.pcapng.Reader cross-checks them.  Blocks dpkt lacks (Simple Packet,
# unknown types) are built by hand from the spec.

NS_T0 = 1_700_000_000_123_456_789


def _blocks(order: str):
    """dpkt's (SHB, IDB, EPB, option) classes for byte order ``order`` ('<' or '>')."""
    sfx = "LE" if order == "<" else ""
    names = ("SectionHeaderBlock", "InterfaceDescriptionBlock", "EnhancedPacketBlock", "PcapngOption")
    return tuple(getattr(dpkt.pcapng, n + sfx) for n in names)


def _idb(order: str, linktype: int = 1, snaplen: int = 65535, tsresol: int | None = None, tsoffset: int = 0) -> bytes:
    _, idb, _, opt = _blocks(order)
    opts = [opt(code=2, data=b"eth0")]  # if_name: an option the reader does not use
    if tsresol is not None:
        opts.append(opt(code=9, data=bytes([tsresol])))
    if tsoffset:
        opts.append(opt(code=14, data=struct.pack(order + "q", tsoffset)))
    return bytes(idb(linktype=linktype, snaplen=snaplen, opts=[*opts, opt(code=0)]))


def _epb(order: str, ticks: int, data: bytes, iface: int = 0, comment: bool = False) -> bytes:
    _, _, epb, opt = _blocks(order)
    opts = [opt(code=1, data=b"a packet comment"), opt(code=0)] if comment else []
    return bytes(epb(iface_id=iface, ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF, pkt_data=data, opts=opts))


def _shb(order: str) -> bytes:
    shb, _, _, opt = _blocks(order)
    return bytes(shb(opts=[opt(code=4, data=b"test writer"), opt(code=0)]))


def _raw_block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def _spb(order: str, data: bytes, orig_len: int | None = None) -> bytes:
    return _raw_block(order, 3, struct.pack(order + "I", len(data) if orig_len is None else orig_len) + data)


def test_pcapng_from_dpkt_writer_microseconds_by_default() -> None:
    buf = io.BytesIO()
    w = dpkt.pcapng.Writer(buf)  # no if_tsresol: microseconds
    w.writepkt(b"frame-one", ts=1_700_000_000.123456)
    w.writepkt(b"frame-two!", ts=1_700_000_001.5)
    buf.seek(0)
    with PcapReader(buf) as r:
        assert (r.format, r.linktype, r.nanosecond, r.version) == ("pcapng", 1, False, (1, 0))
        pkts = list(r)
    assert [p.data for p in pkts] == [b"frame-one", b"frame-two!"]
    assert [p.ts_ns for p in pkts] == [1_700_000_000_123_456_000, 1_700_000_001_500_000_000]
    assert [p.orig_len for p in pkts] == [9, 10]
    buf.seek(0)
    assert [int(round(ts * 1e6)) * 1000 for ts, _ in dpkt.pcapng.Reader(buf)] == [p.ts_ns for p in pkts]


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_nanoseconds_both_byte_orders(order: str) -> None:
    frames = [bytes([i]) * (1 + i * 13 % 97) for i in range(20)]  # every padding length
    data = _shb(order) + _idb(order, tsresol=9) + b"".join(
        _epb(order, NS_T0 + i * 1_001, f, comment=i % 3 == 0) for i, f in enumerate(frames)
    )
    with PcapReader(io.BytesIO(data)) as r:
        assert r.byte_order == ("little" if order == "<" else "big") and r.nanosecond and r.snaplen == 65535
        pkts = list(r)
    assert [p.data for p in pkts] == frames and [p.orig_len for p in pkts] == [len(f) for f in frames]
    assert [p.ts_ns for p in pkts] == [NS_T0 + i * 1_001 for i in range(20)]
    # dpkt's reader sees the same packets (its float timestamps only approximately)
    theirs = list(dpkt.pcapng.Reader(io.BytesIO(data)))
    assert [bytes(b) for _, b in theirs] == frames
    assert all(abs(ts * 1e9 - p.ts_ns) < 1e3 for (ts, _), p in zip(theirs, pkts))


def test_pcapng_interfaces_with_their_own_resolution_and_offset() -> None:
    o = "<"
    data = (
        _shb(o)
        + _idb(o)  # 0: µs
        + _idb(o, tsresol=0x80 | 20, tsoffset=-3)  # 1: 2**-20 s, 3 s earlier
        + _idb(o, tsresol=12, tsoffset=1_000)  # 2: picoseconds (truncated to ns), 1000 s later
        + _epb(o, 1_700_000_000_000_001, b"a", iface=0)
        + _epb(o, (5 << 20) + (1 << 19), b"b", iface=1)  # 5.5 s
        + _epb(o, 7_000_000_000_123_999, b"c", iface=2)  # 7000.000000123999 s
        + _epb(o, 2, b"d", iface=1)
    )
    with PcapReader(io.BytesIO(data)) as r:
        pkts = list(r)
        assert len(r.interfaces) == 3 and r.linktype == 1 and not r.nanosecond
    assert [p.data for p in pkts] == [b"a", b"b", b"c", b"d"]
    assert [p.ts_ns for p in pkts] == [
        1_700_000_000_000_001_000,
        5_500_000_000 - 3 * 10**9,
        (7_000 + 1_000) * 10**9 + 123,
        2 * 10**9 // 2**20 - 3 * 10**9,  # 1907.3 ns, floored
    ]


def test_pcapng_skips_unknown_blocks_and_reads_every_section() -> None:
    le, be = "<", ">"
    nrb = _raw_block(le, 4, struct.pack("<HH4s", 1, 8, bytes([10, 0, 0, 1])) + b"host\x00\x00\x00\x00" + bytes(4))
    isb = _raw_block(le, 5, struct.pack("<III", 0, 1, 2))
    custom = _raw_block(le, 0x00000BAD, struct.pack("<I", 32473) + b"vendor stuff")
    dsb = _raw_block(le, 0x0000000A, struct.pack("<II", 0x544C534B, 5) + b"keys!")
    data = (
        _shb(le) + nrb + _idb(le, tsresol=9) + _epb(le, 10, b"one") + isb + custom + dsb + _epb(le, 20, b"two")
        # a second section, big-endian: its interfaces start again at id 0
        + _shb(be) + _idb(be) + _epb(be, 30, b"three") + _raw_block(be, 0x40000001, b"x")
    )
    with PcapReader(io.BytesIO(data)) as r:
        pkts = list(r)
        assert r.byte_order == "little"  # of the first section
    assert [(p.ts_ns, p.data) for p in pkts] == [(10, b"one"), (20, b"two"), (30_000, b"three")]
    # dpkt agrees on the first section's packets (it stops at a second section)
    assert [bytes(b) for _, b in dpkt.pcapng.Reader(io.BytesIO(data[: data.index(_shb(be))]))] == [b"one", b"two"]


def test_pcapng_simple_packet_blocks_take_the_previous_time() -> None:
    o = "<"
    data = (
        _shb(o) + _idb(o, snaplen=4, tsresol=9)
        + _spb(o, b"s0")  # no packet before: ts 0
        + _epb(o, 777, b"e1")
        + _spb(o, b"s2__", orig_len=9)  # snapped to 4 of 9 bytes
    )
    assert [tuple(p) for p in read_pcap(io.BytesIO(data))] == [(0, b"s0", 2), (777, b"e1", 2), (777, b"s2__", 9)]


def test_pcapng_captured_shorter_than_original_and_obsolete_packet_block() -> None:
    o = ">"
    body = struct.pack(o + "IIIII", 0, 0, 1_000, 3, 1514) + b"abc\x00"
    pb = struct.pack(o + "HHIIII", 0, 0, 0, 2_000, 2, 60) + b"xy\x00\x00"
    data = _shb(o) + _idb(o) + _raw_block(o, 6, body) + _raw_block(o, 2, pb)
    assert [tuple(p) for p in read_pcap(io.BytesIO(data))] == [(1_000_000, b"abc", 1514), (2_000_000, b"xy", 60)]


def test_pcapng_path_linktype_and_empty_file(tmp_path) -> None:
    path = tmp_path / "sll.pcapng"
    path.write_bytes(_shb("<") + _idb("<", linktype=113) + _epb("<", 5, b"cooked"))
    with PcapReader(path) as r:
        assert r.linktype == 113 and "pcapng" in repr(r)
        assert [p.data for p in r] == [b"cooked"]
    assert r.closed
    with PcapReader(io.BytesIO(_shb(">"))) as r:  # a section without interfaces: no packets
        assert r.linktype == 1 and list(r) == []
    # an empty section (a name-resolution block only) before the one with the packets
    data = _shb(">") + _raw_block(">", 4, bytes(4)) + _shb("<") + _idb("<", linktype=101) + _epb("<", 5, b"raw ip")
    with PcapReader(io.BytesIO(data)) as r:
        assert (r.linktype, r.byte_order) == (101, "big") and [p.ts_ns for p in r] == [5000]


def test_pcapng_truncated() -> None:
    o = "<"
    head = _shb(o) + _idb(o, tsresol=9)
    last = _epb(o, 2, b"second packet")
    good = head + _epb(o, 1, b"first packet") + last
    cut = good[:-5]
    it = iter(PcapReader(io.BytesIO(cut)))
    assert next(it).data == b"first packet"  # whole packets before the cut are read, like classic pcap
    with pytest.raises(ProtocolError, match=rf"block at offset {len(good) - len(last)} truncated .* after packet 1"):
        next(it)
    with pytest.raises(ProtocolError, match="truncated pcapng block header"):
        list(PcapReader(io.BytesIO(good + b"\x06\x00\x00")))
    with pytest.raises(ProtocolError, match="truncated pcapng Section Header Block"):
        PcapReader(io.BytesIO(head[:20]))


def test_pcapng_malformed_input_names_the_offset() -> None:
    o = "<"
    shb, idb = _shb(o), _idb(o)
    epb = _epb(o, 1, b"data")
    bad_trailer = epb[:-4] + struct.pack("<I", len(epb) + 4)
    cases = {
        "block lengths": shb + idb + bad_trailer,
        "length 13": shb + idb + struct.pack("<II", 6, 13) + bytes(5),
        "before any Interface": shb + epb,
        "interface 1": shb + idb + _epb(o, 1, b"x", iface=1),
        "link type 113": shb + idb + _idb(o, linktype=113) + _epb(o, 1, b"x", iface=1),
        "overruns": shb + idb + _raw_block(o, 6, struct.pack("<IIIII", 0, 0, 0, 99, 99) + b"abcd"),
        "if_tsresol of 2 bytes": shb + _raw_block(o, 1, struct.pack("<HHIHH", 1, 0, 0, 9, 2) + b"\x09\x09"),
    }
    for what, data in cases.items():
        with pytest.raises(ProtocolError, match="offset") as info:
            list(PcapReader(io.BytesIO(data)))
        assert what in str(info.value), (what, info.value)
    offset = len(shb) + len(idb)
    with pytest.raises(ProtocolError, match=f"malformed pcapng at offset {offset}: block lengths"):
        list(PcapReader(io.BytesIO(shb + idb + bad_trailer)))
    with pytest.raises(ProtocolError, match="byte-order magic"):
        PcapReader(io.BytesIO(shb[:8] + b"\x00" * 4 + shb[12:]))
    with pytest.raises(ProtocolError, match="version 2.0"):
        PcapReader(io.BytesIO(shb[:12] + struct.pack("<H", 2) + shb[14:]))


def test_reader_errors() -> None:
    with pytest.raises(ProtocolError, match="unknown pcap magic"):
        PcapReader(io.BytesIO(b"\x00" * 24))
    with pytest.raises(ProtocolError, match="too short"):
        PcapReader(io.BytesIO(b"\xd4\xc3\xb2\xa1"))
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        w.write(5, b"0123456789")
    with pytest.raises(ProtocolError, match="truncated"):
        list(PcapReader(io.BytesIO(buf.getvalue()[:-1])))
    with pytest.raises(ProtocolError, match="truncated record header"):
        list(PcapReader(io.BytesIO(buf.getvalue() + b"\x00" * 7)))


def test_writer_snaplen_and_close_twice(tmp_path) -> None:
    path = tmp_path / "x.pcap"
    w = PcapWriter(path, snaplen=8)
    w.write(1, b"0123456789ABCDEF")
    w.close()
    w.close()
    with open(path, "rb") as f:
        [(ts, data)] = list(dpkt.pcap.Reader(f))
    assert data == b"01234567"
    [p] = list(read_pcap(path))
    assert p.orig_len == 16 and p.ts_ns == 1


# -- checksums and frames -----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_internet_checksum_matches_dpkt(data: bytes) -> None:
    assert internet_checksum(data) == dpkt.in_cksum(data)


def test_multicast_mac() -> None:
    assert multicast_mac("239.192.0.1") == bytes.fromhex("01005e400001")
    assert multicast_mac("224.0.0.251") == bytes.fromhex("01005e0000fb")  # mDNS
    # Only 23 bits survive: 224.128.1.1 and 224.0.1.1 share a MAC.
    assert multicast_mac("224.128.1.1") == multicast_mac("224.0.1.1")
    with pytest.raises(ValueError):
        multicast_mac("10.0.0.1")


def test_udp_frame_zero_checksum_is_sent_as_ffff() -> None:
    # Choose the payload's last word so the one's-complement sum is all ones:
    # the computed checksum is then 0, which RFC 768 transmits as 0xFFFF.
    base = b"moldudp64!" + b"\x00\x00"
    c0 = dpkt.ethernet.Ethernet(udp_frame(base, GROUP, PORT)).data.data.sum
    frame = udp_frame(b"moldudp64!" + c0.to_bytes(2, "big"), GROUP, PORT)
    ip = dpkt.ethernet.Ethernet(frame).data
    assert ip.data.sum == 0xFFFF
    ip.sum = 0
    ip.data.sum = 0
    bytes(ip)
    assert ip.data.sum == 0xFFFF


def test_udp_frame_options_and_errors() -> None:
    frame = udp_frame(b"hi", "10.1.2.3", 9000, src_ip="10.0.0.9", src_port=1234, dst_mac=b"\xaa" * 6, ip_id=7)
    eth = dpkt.ethernet.Ethernet(frame)
    assert eth.dst == b"\xaa" * 6 and eth.data.id == 7 and eth.data.data.sport == 1234
    with pytest.raises(ValueError, match="dst_mac is required"):
        udp_frame(b"hi", "10.1.2.3", 9000)
    with pytest.raises(ValueError, match="does not fit"):
        UdpFrameBuilder(GROUP, PORT).build(b"\x00" * 65508)


def test_parse_udp_frame_ours_dpkt_and_vlan() -> None:
    frame = udp_frame(b"payload", GROUP, PORT, ip_id=3)
    d = parse_udp_frame(frame)
    assert d is not None
    assert (d.src_ip, d.dst_ip, d.src_port, d.dst_port, d.payload) == (DEFAULT_SOURCE_IP, GROUP, PORT, PORT, b"payload")
    # A frame built by dpkt, padded to the 60-byte Ethernet minimum as NICs do.
    udp = dpkt.udp.UDP(sport=1, dport=2, data=b"xy")
    udp.ulen = 10
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=17, data=udp)
    eth = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))
    padded = eth + b"\x00" * (60 - len(eth))
    d = parse_udp_frame(padded)
    assert d is not None and d.payload == b"xy" and d.dst_ip == "10.0.0.2"
    # One 802.1Q tag between the MACs and the ethertype.
    tagged = frame[:12] + b"\x81\x00\x00\x64" + frame[12:]
    d = parse_udp_frame(tagged)
    assert d is not None and d.payload == b"payload"
    # Not UDP / not IPv4 / fragments.
    assert parse_udp_frame(frame[:12] + b"\x86\xdd" + frame[14:]) is None
    frag = bytearray(frame)
    frag[14 + 6] |= 0x20  # more fragments
    assert parse_udp_frame(bytes(frag)) is None
    assert parse_udp_frame(b"short") is None


def test_end_of_session_packets_keep_the_last_time(tmp_path) -> None:
    msgs = list(generate_session(4, 3_000, 2))
    packets = list(mold_packets(msgs, "S"))
    assert packets[-1] == pack_end_of_session("S", len(msgs) + 1)
    path = tmp_path / "f.pcap"
    summary = write_moldudp64_pcap(path, packets, GROUP, PORT, epoch_midnight_ns=0)
    stamps = [p.ts_ns for p in read_pcap(path)]
    last_msg_ts = int.from_bytes(msgs[-1][5:11], "big")
    assert stamps[-1] == stamps[-2] == last_msg_ts == summary.last_ts_ns
