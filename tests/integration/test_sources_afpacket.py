"""AF_PACKET frame source (TPACKET_V2 and V3) on a real veth pair in two namespaces.

The receiver ring runs inside its namespace; the sender namespace sends the
feed (multicast and unicast) plus traffic that must be counted and skipped,
not delivered and not fatal: wrong ports, TCP, ICMP, IPv4 fragments of a
datagram larger than the MTU, a malformed IPv4 header, datagrams larger than
a ring slot.  802.1Q-tagged feed frames must be delivered, flagged, with
their tag.
"""

from __future__ import annotations

import struct

import pytest

from efsdk.errors import ConfigError
from efsdk.pcap import UdpFrameBuilder, internet_checksum, multicast_mac
from efsdk.sources import FLAG_MULTICAST, FLAG_RAW, FLAG_TRUNCATED, FLAG_VLAN, native_available, open_source
from tests.integration.netns import netns_skip_reason, payload, run_in_ns, start_in_ns, veth_pair

GROUP = "239.1.1.1"
PORT = 26400
MTU = 9000  # jumbo veth: lets one unfragmented datagram exceed a 2 KiB ring slot
VLAN_TCI = (3 << 13) | 100  # priority 3, VLAN 100
RECEIVE = "tests.integration.netns:receive"
SEND = "tests.integration.netns:send_udp"
SEND_RAW = "tests.integration.netns:send_raw"

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def pair():
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    if not native_available():
        pytest.skip("efsdk._native_sources is not built (python native/build_sources.py)")
    with veth_pair(subnet=2, mtu=MTU) as p:
        yield p


def _ipv4(proto: int, src: bytes, dst: bytes, body: bytes, total: int | None = None) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total or 20 + len(body), 7, 0, 64, proto, 0, src, dst)
    return hdr[:10] + internet_checksum(hdr).to_bytes(2, "big") + hdr[12:] + body


def _noise_frames(pair, tx_mac: bytes, rx_mac: bytes) -> tuple[list[str], list[str]]:
    """(non-UDP frames, malformed frames) as hex, addressed to the receiver."""
    src = bytes(map(int, pair.tx_addr.split(".")))
    dst = bytes(map(int, pair.rx_addr.split(".")))
    eth = rx_mac + tx_mac + b"\x08\x00"
    tcp_syn = struct.pack("!HHIIBBHHH", 40000, PORT, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    icmp = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"ping")
    icmp[2:4] = internet_checksum(bytes(icmp)).to_bytes(2, "big")
    non_udp = [eth + _ipv4(6, src, dst, tcp_syn), eth + _ipv4(1, src, dst, bytes(icmp))]
    # IPv4 total length claims 600 bytes, the frame carries 40.
    udp = struct.pack("!HHHH", PORT, PORT, 28, 0) + b"\x00" * 20
    malformed = [multicast_mac(GROUP) + tx_mac + b"\x08\x00" + _ipv4(17, src, bytes([239, 1, 1, 1]), udp, total=600)]
    return [f.hex() for f in non_udp], [f.hex() for f in malformed]


def _vlan_frames(pair, tx_mac: bytes, first: int, count: int, sizes: list[int]) -> list[str]:
    b = UdpFrameBuilder(GROUP, PORT, src_ip=pair.tx_addr, src_mac=tx_mac)
    out = []
    for seq in range(first, first + count):
        f = b.build(payload(seq, sizes[seq % len(sizes)]), ip_id=seq)
        out.append((f[:12] + b"\x81\x00" + VLAN_TCI.to_bytes(2, "big") + f[12:]).hex())
    return out


def _ring(version: int, **extra):
    # 32 MiB in 512 blocks: V3 retires a block per 1 ms timeout on a trickle,
    # so this survives a ~0.5 s stall of the (Python) consumer on a busy
    # machine; kernel drops then mean a bug, not load.
    kw = {"version": version, "block_size": 1 << 16, "block_count": 512}
    kw.update(extra)
    return kw


@pytest.mark.parametrize("version", [2, 3], ids=["v2", "v3"])
def test_feed_delivered_noise_counted(pair, version):
    sizes = [20, 200, 1000, 1472]
    n_mcast, n_ucast, n_vlan, n_wrong = 5000, 1000, 200, 300
    tx_mac, rx_mac = pair.mac("tx"), pair.mac("rx")
    non_udp, malformed = _noise_frames(pair, tx_mac, rx_mac)
    vlan = _vlan_frames(pair, tx_mac, 100_000, n_vlan, sizes)
    feeds = [[GROUP, PORT], [pair.rx_addr, PORT + 1]]
    open_kwargs = {"iface": pair.rx_if, "feeds": feeds, **_ring(version)}
    expect = n_mcast + n_ucast + n_vlan
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afpacket", open_kwargs=open_kwargs, expect=expect,
                     sizes=sizes) as rx:  # fmt: skip
        rx.wait_ready()
        tx = pair.tx_ns
        # Noise first: by the time the last feed frame is read, all of it went through the ring.
        run_in_ns(tx, SEND_RAW, iface=pair.tx_if, frames_hex=non_udp + malformed, repeat=50)
        run_in_ns(tx, SEND, dst=GROUP, port=PORT + 99, src_addr=pair.tx_addr, seqs=[0, n_wrong], sizes=sizes)
        # 12,000-byte datagrams > MTU 9000: the kernel sends each as 2 fragments.
        run_in_ns(tx, SEND, dst=GROUP, port=PORT, src_addr=pair.tx_addr, seqs=[200_000, 200_020], sizes=[12_000])
        run_in_ns(tx, SEND_RAW, iface=pair.tx_if, frames_hex=vlan)
        run_in_ns(tx, SEND, dst=GROUP, port=PORT, src_addr=pair.tx_addr, seqs=[1, 1 + n_mcast], sizes=sizes)
        run_in_ns(tx, SEND, dst=pair.rx_addr, port=PORT + 1, src_addr=pair.tx_addr,
                  seqs=[10_000, 10_000 + n_ucast], sizes=sizes)  # fmt: skip
        res = rx.result()
    assert res["bad"] == 0 and res["dupes"] == 0
    assert res["good"] == expect, res["stats"]
    assert res["seqs"] == [*range(1, 1 + n_mcast), *range(10_000, 10_000 + n_ucast), *range(100_000, 100_000 + n_vlan)]
    assert res["ts_back"] == 0, "ring timestamps went backwards"
    assert res["wall0"] <= res["ts_first"] <= res["ts_last"] <= res["wall1"]
    assert res["ts_kinds"] == {"sw": expect}  # veth has no hardware clock
    assert res["flags"] == {
        str(FLAG_RAW | FLAG_MULTICAST): n_mcast,
        str(FLAG_RAW): n_ucast,
        str(FLAG_RAW | FLAG_MULTICAST | FLAG_VLAN): n_vlan,
    }
    assert res["vlan_tcis"] == [VLAN_TCI]
    st = res["stats"]
    assert st["frames"] == expect and st["kernel_drops"] == 0
    assert st["filtered"] == n_wrong
    assert st["non_udp"] >= 100  # 50 TCP + 50 ICMP, plus ARP
    assert st["fragments"] == 40
    assert st["malformed"] == 50
    assert st["vlan"] == n_vlan
    assert st["truncated"] == 0
    assert st["kernel_packets"] >= expect + n_wrong + 40 + 100 + 50  # every frame the ring saw


# A slot (V2) or a block (V3) smaller than the 6,000-byte datagrams.
_SMALL = {2: {"frame_size": 2048}, 3: {"block_size": 4096, "block_count": 2048}}


@pytest.mark.parametrize("keep", [False, True], ids=["skip", "keep"])
@pytest.mark.parametrize("version", [2, 3], ids=["v2", "v3"])
def test_truncated(pair, version, keep):
    sizes = [200, 6000]  # odd seqs do not fit the ring slot
    open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 2]], "keep_truncated": keep,
                   **_ring(version, **_SMALL[version])}  # fmt: skip
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afpacket", open_kwargs=open_kwargs, expect=200,
                     sizes=sizes) as rx:  # fmt: skip
        rx.wait_ready()
        run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 2, src_addr=pair.tx_addr, seqs=[0, 400], sizes=sizes)
        res = rx.result()
    assert res["good"] == 200 and res["bad"] == 0, res["stats"]
    assert all(s % 2 == 0 for s in res["seqs"])
    assert res["stats"]["truncated"] == 200
    if keep:
        assert len(res["truncated"]) == 200
        assert all(length < orig == 6000 for length, orig in res["truncated"])
        assert res["flags"][str(FLAG_RAW | FLAG_MULTICAST | FLAG_TRUNCATED)] == 200
    else:
        assert res["truncated"] == []


def test_bad_config_is_clear():
    if not native_available():
        pytest.skip("efsdk._native_sources is not built")
    with pytest.raises(ConfigError, match="version"):
        open_source("afpacket", iface="lo", version=1)
    with pytest.raises(ConfigError, match="interface name"):
        open_source("afpacket", iface="x" * 20)


@pytest.mark.parametrize("version", [2, 3], ids=["v2", "v3"])
def test_ring_overflow_counted_as_kernel_drops(pair, version):
    """A stalled consumer on a small ring: PACKET_STATISTICS drops, nothing delivered twice."""
    n = 2000
    ring = {2: {"block_size": 4096, "block_count": 16}, 3: {"block_size": 4096, "block_count": 8}}[version]
    open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 3]], **_ring(version, **ring)}
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afpacket", open_kwargs=open_kwargs, expect=n,
                     sizes=[1000], timeout=1.0, start_delay=1.5) as rx:  # fmt: skip
        rx.wait_ready()
        run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 3, src_addr=pair.tx_addr, seqs=[0, n], sizes=[1000])
        res = rx.result()
    st = res["stats"]
    assert res["bad"] == 0 and res["dupes"] == 0 and 0 < res["good"] < n
    assert st["kernel_drops"] > 0
    assert res["good"] + st["kernel_drops"] >= n
    if version == 3:
        assert st["freeze_q"] > 0


def test_bpf_and_fanout(pair):
    """A classic BPF program runs before the ring (drop-all here); fanout groups open."""
    drop_all = [(0x06, 0, 0, 0)]  # BPF_RET | BPF_K, 0: keep 0 bytes
    open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 4]], "bpf": drop_all, "fanout": [77, "hash"],
                   **_ring(3)}  # fmt: skip
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afpacket", open_kwargs=open_kwargs, expect=1,
                     sizes=[100], timeout=1.0) as rx:  # fmt: skip
        rx.wait_ready()
        run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 4, src_addr=pair.tx_addr, seqs=[0, 50], sizes=[100])
        res = rx.result()
    assert res["good"] == 0
    assert res["stats"]["kernel_packets"] == 0 and res["stats"]["frames"] == 0


@pytest.mark.parametrize("mode", ["hash", "lb"])
def test_fanout_splits_a_feed_over_processes(pair, mode):
    """Two processes in one PACKET_FANOUT group share the feed: nothing lost, nothing twice.

    ``hash`` keeps each flow (here 16 destination ports) whole in one member,
    which is what a sequenced feed needs; ``lb`` deals packets round-robin.
    """
    flows, n = 16, 1600
    open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, 0]], "fanout": [78 + (mode == "lb"), mode], **_ring(3)}
    members = [
        start_in_ns(pair.rx_ns, RECEIVE, backend="afpacket", open_kwargs=open_kwargs, expect=n, sizes=[100],
                    timeout=3.0)  # fmt: skip
        for _ in range(2)
    ]
    try:
        for m in members:
            m.wait_ready()
        run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 6, src_addr=pair.tx_addr, seqs=[0, n], sizes=[100],
                  ports=flows)  # fmt: skip
        results = [m.result() for m in members]
    finally:
        for m in members:
            m.kill()  # no-op once finished; a failing test leaves no child behind
    seqs = [set(r["seqs"]) for r in results]
    assert all(r["bad"] == 0 and r["dupes"] == 0 for r in results)
    assert not seqs[0] & seqs[1], "a frame reached both members"
    assert seqs[0] | seqs[1] == set(range(n)), f"lost {n - len(seqs[0] | seqs[1])} frames"
    if mode == "hash":
        for flow in range(flows):
            owners = {i for i, got in enumerate(seqs) if any(s % flows == flow for s in got)}
            assert len(owners) == 1, f"flow {flow} split over members"
        assert all(seqs), "16 flows all hashed to one member (odds 2 in 65,536)"
    else:
        assert all(abs(len(got) - n / 2) < n / 10 for got in seqs), [len(got) for got in seqs]


def test_v3_retire_timeout_sets_quiet_feed_latency(pair):
    """On a quiet feed a V3 block is handed over only when its retire timer fires."""
    medians = {}
    for retire_ms in (1, 200):
        open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 5]], **_ring(3, retire_ms=retire_ms)}
        with start_in_ns(pair.rx_ns, RECEIVE, backend="afpacket", open_kwargs=open_kwargs, expect=15,
                         sizes=[100], linger=0.0) as rx:  # fmt: skip
            rx.wait_ready()
            run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 5, src_addr=pair.tx_addr, seqs=[0, 15],
                      sizes=[100], gap=0.09)  # fmt: skip
            res = rx.result()
        assert res["good"] == 15
        medians[retire_ms] = res["lat_ms_median"]
    # Loose bounds (shared CI machines): the 200 ms timer dominates, the 1 ms one does not.
    assert medians[200] > 20 > medians[1], medians
