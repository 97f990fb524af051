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


def test_reader_rejects_pcapng_with_a_clear_message() -> None:
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    with pytest.raises(ProtocolError, match="pcapng"):
        PcapReader(io.BytesIO(shb))


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
