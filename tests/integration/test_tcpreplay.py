"""An independent sender: tcpreplay plays a capture written by dpkt onto the veth.

Neither the frames nor the sender come from efsdk: dpkt builds Ethernet /
IPv4 / UDP frames (with their checksums) and writes the pcap, tcpreplay puts
it on the wire at a bounded rate, and every backend must receive each
datagram complete and byte-identical, none lost.
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from efsdk.sources import native_available
from tests.integration.netns import netns_skip_reason, payload, size_of, start_in_ns, veth_pair

dpkt = pytest.importorskip("dpkt")

GROUP, PORT = "239.1.1.31", 26431
SIZES = [20, 64, 400, 1000, 1472]
COUNT = 3000
RATE_PPS = 20_000  # bounded: 3,000 frames in ~0.15 s
RECEIVE = "tests.integration.netns:receive"

pytestmark = pytest.mark.root


def _dpkt_frames(src_ip: str, src_mac: bytes) -> list[bytes]:
    group = socket.inet_aton(GROUP)
    dst_mac = bytes([0x01, 0x00, 0x5E, group[1] & 0x7F, group[2], group[3]])
    frames = []
    for seq in range(1, COUNT + 1):
        udp = dpkt.udp.UDP(sport=40000, dport=PORT, data=payload(seq, size_of(seq, SIZES)))
        udp.ulen = len(udp)
        ip = dpkt.ip.IP(src=socket.inet_aton(src_ip), dst=group, p=dpkt.ip.IP_PROTO_UDP, ttl=1, id=seq & 0xFFFF,
                        data=udp)  # fmt: skip
        ip.len = len(ip)
        eth = dpkt.ethernet.Ethernet(src=src_mac, dst=dst_mac, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        frames.append(bytes(eth))  # bytes() fills in the IPv4 and UDP checksums
    return frames


@pytest.mark.parametrize("backend", ["udp", "afpacket"])
def test_tcpreplay_of_a_dpkt_capture_arrives_byte_identical(tmp_path, backend):
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("tcpreplay") is None:
        pytest.skip("tcpreplay is not installed (apt-get install tcpreplay; .ci/run does)")
    if not native_available():
        pytest.skip("efsdk._native_sources is not built")
    with veth_pair(subnet=31) as pair:
        capture = tmp_path / "feed.pcap"
        with capture.open("wb") as f:
            writer = dpkt.pcap.Writer(f, snaplen=65535, nano=True)  # dpkt defaults to 1500: would cut frames
            for i, frame in enumerate(_dpkt_frames(pair.tx_addr, pair.mac("tx"))):
                writer.writepkt(frame, ts=1_700_000_000 + i * 1e-5)
        if backend == "udp":
            open_kwargs = {"group": GROUP, "port": PORT, "iface_addr": pair.rx_addr}
        else:
            open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT]], "version": 2}
        with start_in_ns(pair.rx_ns, RECEIVE, backend=backend, open_kwargs=open_kwargs, expect=COUNT,
                         sizes=SIZES) as rx:  # fmt: skip
            rx.wait_ready()
            sent = subprocess.run(
                ["ip", "netns", "exec", pair.tx_ns, "tcpreplay", "-q", "-i", pair.tx_if, "--pps", str(RATE_PPS),
                 str(capture)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
            res = rx.result()
    assert res["bad"] == 0 and res["dupes"] == 0
    missing = sorted(set(range(1, COUNT + 1)) - set(res["seqs"]))
    assert res["good"] == COUNT, (res["stats"], {size_of(s, SIZES) for s in missing})
    assert res["seqs"] == list(range(1, COUNT + 1))
    assert res["stats"]["kernel_drops"] == 0
