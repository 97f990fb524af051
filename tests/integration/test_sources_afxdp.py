"""AF_XDP frame source on a real veth pair in two namespaces.

The receiver's socket and XDP program run inside its namespace; the sender
namespace sends the feed (multicast, unicast, 802.1Q-tagged) plus traffic the
program must pass to the kernel and count (other ports, TCP, ICMP, IPv4
fragments) or that reaches user space and is counted there (a malformed IPv4
length, datagrams larger than a UMEM chunk).  The kernel must keep getting
everything that is not the feed: ICMP echo and a kernel UDP socket on another
port are answered / served while the socket is bound.  The veth has one queue
per end: an AF_XDP socket binds one rx queue.
"""

from __future__ import annotations

import errno
import json
import struct
import subprocess
import time
from typing import Any

import pytest

from efsdk.pcap import UdpFrameBuilder, internet_checksum, multicast_mac
from efsdk.sources import FLAG_MULTICAST, FLAG_RAW, FLAG_TRUNCATED, FLAG_VLAN, native_available
from efsdk.sources.afxdp import afxdp_available
from tests.integration.netns import netns_skip_reason, payload, run_in_ns, start_in_ns, veth_pair

GROUP = "239.1.1.1"
PORT = 26500
# 3000: above a 2 KiB chunk's 1792 usable bytes (truncation), below veth's
# native-XDP limit (~3.5 KB: one page per frame without XDP frags).
MTU = 3000
VLAN_TCI = (3 << 13) | 100  # priority 3, VLAN 100
RECEIVE = "tests.integration.netns:receive"
SEND = "tests.integration.netns:send_udp"
SEND_RAW = "tests.integration.netns:send_raw"
HERE = "tests.integration.test_sources_afxdp"

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def pair():
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    if not native_available():
        pytest.skip("efsdk._native_sources is not built (python native/build_sources.py)")
    if not afxdp_available():
        pytest.skip("efsdk._native_afxdp is not built (install libxdp-dev libbpf-dev; python native/build_afxdp.py)")
    with veth_pair(subnet=3, mtu=MTU, queues=1) as p:
        yield p


def _xdp_attached(ns: str, ifname: str) -> dict[str, Any] | None:
    """The XDP program `ip link` shows on ``ifname`` (None if none)."""
    out = subprocess.run(["ip", "-n", ns, "-j", "-d", "link", "show", ifname], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return json.loads(out)[0].get("xdp")


# --------------------------------------------------------------------------- run inside the namespaces


def ping(ready: Any, dst: str, count: int = 3, timeout: float = 1.0) -> dict[str, Any]:
    """ICMP echo ``count`` times (a raw socket: no ping binary needed); replies received."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    replies = 0
    for seq in range(count):
        msg = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0xEF5D, seq) + b"efsdk-ping")
        msg[2:4] = internet_checksum(bytes(msg)).to_bytes(2, "big")
        s.sendto(bytes(msg), (dst, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, (src, _) = s.recvfrom(2048)
            except TimeoutError:
                break
            icmp = data[(data[0] & 0x0F) * 4 :]
            if src == dst and icmp[0] == 0 and struct.unpack_from("!HH", icmp, 4) == (0xEF5D, seq):
                replies += 1
                break
    s.close()
    return {"sent": count, "replies": replies}


def udp_listen(ready: Any, addr: str, port: int, expect: int, timeout: float = 10.0) -> dict[str, Any]:
    """A kernel UDP socket on ``addr:port``: datagrams it received (the kernel's own path)."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(0.2)
    ready()
    got = 0
    deadline = time.monotonic() + timeout
    while got < expect and time.monotonic() < deadline:
        try:
            s.recv(4096)
            got += 1
        except TimeoutError:
            continue
    s.close()
    return {"received": got}


def open_close(ready: Any, open_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Open a source, report what `ip link` shows, close twice, report again; poll after close must fail."""
    from efsdk.sources import SourceError, open_source

    src = open_source("afxdp", **open_kwargs)
    shown_open = _xdp_attached_here(open_kwargs["iface"])
    info = {"prog_id": src.prog_id, "bind_mode": src.bind_mode_used, "xdp_mode": src.xdp_mode_used,
            "repr_open": repr(src), "xdp": src.xdp_stats}  # fmt: skip
    src.close()
    src.close()  # idempotent
    try:
        src.poll(timeout=0)
        poll_after_close = None
    except SourceError as exc:
        poll_after_close = exc.errno
    info.update(shown_open=shown_open, shown_closed=_xdp_attached_here(open_kwargs["iface"]),
                repr_closed=repr(src), poll_after_close=poll_after_close, stats_after_close=src.stats.polls,
                xdp_after_close=src.xdp_stats)  # fmt: skip
    return info


def open_error(ready: Any, open_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Try to open; the error (errno, message) and whether an XDP program was left behind."""
    from efsdk.sources import SourceError, open_source

    try:
        src = open_source("afxdp", **open_kwargs)
    except SourceError as exc:
        return {"errno": exc.errno, "message": str(exc), "left": _xdp_attached_here(open_kwargs["iface"])}
    src.close()
    return {"errno": 0, "message": "", "left": None}


def _xdp_attached_here(ifname: str) -> dict[str, Any] | None:
    out = subprocess.run(["ip", "-j", "-d", "link", "show", ifname], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return json.loads(out)[0].get("xdp")


# --------------------------------------------------------------------------- frames


def _ipv4(proto: int, src: bytes, dst: bytes, body: bytes, total: int | None = None) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total or 20 + len(body), 7, 0, 64, proto, 0, src, dst)
    return hdr[:10] + internet_checksum(hdr).to_bytes(2, "big") + hdr[12:] + body


def _noise_frames(pair, tx_mac: bytes, rx_mac: bytes) -> tuple[list[str], list[str]]:
    """(non-UDP frames, malformed feed frames) as hex, addressed to the receiver."""
    src = bytes(map(int, pair.tx_addr.split(".")))
    dst = bytes(map(int, pair.rx_addr.split(".")))
    eth = rx_mac + tx_mac + b"\x08\x00"
    tcp_syn = struct.pack("!HHIIBBHHH", 40000, PORT, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    icmp = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"ping")
    icmp[2:4] = internet_checksum(bytes(icmp)).to_bytes(2, "big")
    non_udp = [eth + _ipv4(6, src, dst, tcp_syn), eth + _ipv4(1, src, dst, bytes(icmp))]
    # A feed datagram whose IPv4 total length claims 600 bytes; the frame carries 40:
    # the program redirects it (headers in place), user space counts it malformed.
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


# --------------------------------------------------------------------------- tests


MODES = {
    "native-blocking": {"xdp_mode": "native"},
    "skb-busy-nowakeup": {"xdp_mode": "skb", "busy": True, "need_wakeup": False},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_feed_delivered_noise_counted(pair, mode):
    """Feed frames arrive complete and byte-identical, none lost; everything else is counted, not fatal."""
    sizes = [20, 200, 1000, 1472]
    n_mcast, n_ucast, n_vlan, n_wrong, n_frag = 5000, 1000, 200, 300, 20
    tx_mac, rx_mac = pair.mac("tx"), pair.mac("rx")
    non_udp, malformed = _noise_frames(pair, tx_mac, rx_mac)
    vlan = _vlan_frames(pair, tx_mac, 100_000, n_vlan, sizes)
    feeds = [[GROUP, PORT], [pair.rx_addr, PORT + 1]]
    open_kwargs = {"iface": pair.rx_if, "feeds": feeds, **MODES[mode]}
    expect = n_mcast + n_ucast + n_vlan
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afxdp", open_kwargs=open_kwargs, expect=expect,
                     sizes=sizes) as rx:  # fmt: skip
        rx.wait_ready()
        tx = pair.tx_ns
        # Noise first: by the time the last feed frame is read, all of it went through the program.
        run_in_ns(tx, SEND_RAW, iface=pair.tx_if, frames_hex=non_udp + malformed, repeat=50)
        run_in_ns(tx, SEND, dst=GROUP, port=PORT + 99, src_addr=pair.tx_addr, seqs=[0, n_wrong], sizes=sizes)
        # 6,000-byte datagrams > MTU 3000: the kernel sends each as 3 fragments.
        run_in_ns(tx, SEND, dst=GROUP, port=PORT, src_addr=pair.tx_addr, seqs=[200_000, 200_000 + n_frag],
                  sizes=[6000])  # fmt: skip
        run_in_ns(tx, SEND_RAW, iface=pair.tx_if, frames_hex=vlan)
        run_in_ns(tx, SEND, dst=GROUP, port=PORT, src_addr=pair.tx_addr, seqs=[1, 1 + n_mcast], sizes=sizes)
        run_in_ns(tx, SEND, dst=pair.rx_addr, port=PORT + 1, src_addr=pair.tx_addr,
                  seqs=[10_000, 10_000 + n_ucast], sizes=sizes)  # fmt: skip
        res = rx.result()
    src = res["source"]
    assert src["xdp_mode"] == MODES[mode]["xdp_mode"] and src["bind_mode"] == "copy", src  # veth: copy only
    assert res["bad"] == 0 and res["dupes"] == 0
    assert res["good"] == expect, (res["stats"], src)
    assert res["seqs"] == [*range(1, 1 + n_mcast), *range(10_000, 10_000 + n_ucast), *range(100_000, 100_000 + n_vlan)]
    assert res["ts_back"] == 0, "XDP timestamps went backwards"
    assert res["wall0"] <= res["ts_first"] <= res["ts_last"] <= res["wall1"]
    assert res["ts_kinds"] == {"sw": expect}  # veth has no hardware clock
    assert res["flags"] == {
        str(FLAG_RAW | FLAG_MULTICAST): n_mcast,
        str(FLAG_RAW): n_ucast,
        str(FLAG_RAW | FLAG_MULTICAST | FLAG_VLAN): n_vlan,
    }
    assert res["vlan_tcis"] == [VLAN_TCI]
    st, x = res["stats"], src["xdp"]
    assert st["frames"] == expect and st["kernel_drops"] == 0
    assert st["filtered"] == n_wrong == x["prog"]["filtered"]
    assert st["non_udp"] >= 100 and x["prog"]["non_udp"] >= 100  # 50 TCP + 50 ICMP, plus ARP
    assert st["fragments"] == 3 * n_frag == x["prog"]["fragment"]
    assert st["malformed"] == 50  # redirected (feed address and port), refused by the C parser
    assert st["vlan"] == n_vlan
    assert st["truncated"] == 0
    assert x["no_meta"] == 0 and x["prog"]["meta_fail"] == 0  # every frame carried its XDP timestamp
    assert x["descs"] == expect + 50 and st["kernel_packets"] == expect + 50
    assert x["rx_dropped"] == x["rx_ring_full"] == x["prog"]["no_socket"] == x["prog"]["other_queue"] == 0
    assert x["clock"] == "tai"


def test_kernel_still_gets_other_traffic(pair):
    """While the socket is bound: ICMP echo is answered, a kernel UDP socket on another port is served."""
    feeds = [[GROUP, PORT + 10], [pair.rx_addr, PORT + 11]]
    open_kwargs = {"iface": pair.rx_if, "feeds": feeds}
    n = 100
    rx = start_in_ns(pair.rx_ns, RECEIVE, backend="afxdp", open_kwargs=open_kwargs, expect=n, sizes=[100],
                     timeout=15.0)  # fmt: skip
    kernel = start_in_ns(pair.rx_ns, f"{HERE}:udp_listen", addr=pair.rx_addr, port=PORT + 12, expect=n)
    with rx, kernel:
        rx.wait_ready()
        kernel.wait_ready()
        assert _xdp_attached(pair.rx_ns, pair.rx_if) is not None
        echo = run_in_ns(pair.tx_ns, f"{HERE}:ping", dst=pair.rx_addr, count=3)
        run_in_ns(pair.tx_ns, SEND, dst=pair.rx_addr, port=PORT + 12, src_addr=pair.tx_addr, seqs=[0, n], sizes=[100])
        run_in_ns(pair.tx_ns, SEND, dst=pair.rx_addr, port=PORT + 11, src_addr=pair.tx_addr, seqs=[0, n], sizes=[100])
        served = kernel.result()
        res = rx.result()
    assert echo == {"sent": 3, "replies": 3}
    assert served["received"] == n  # same address as a feed, other port: the kernel's
    assert res["good"] == n and res["bad"] == 0
    st = res["stats"]
    assert st["filtered"] == n  # ... and counted by the program as passed
    assert st["non_udp"] >= 3  # the echo requests (plus ARP)
    assert _xdp_attached(pair.rx_ns, pair.rx_if) is None  # detached on close


@pytest.mark.parametrize("keep", [False, True], ids=["skip", "keep"])
def test_truncated(pair, keep):
    """Datagrams larger than a 2 KiB chunk are cut by the program and counted; kept (flagged) on request."""
    sizes = [200, 2500]  # odd seqs do not fit a chunk (1792 usable bytes)
    open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 2]], "keep_truncated": keep}
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afxdp", open_kwargs=open_kwargs, expect=200,
                     sizes=sizes) as rx:  # fmt: skip
        rx.wait_ready()
        run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 2, src_addr=pair.tx_addr, seqs=[0, 400], sizes=sizes)
        res = rx.result()
    assert res["good"] == 200 and res["bad"] == 0, res["stats"]
    assert all(s % 2 == 0 for s in res["seqs"])
    assert res["stats"]["truncated"] == 200
    assert res["source"]["xdp"]["prog"]["truncated"] == 200 and res["source"]["xdp"]["rx_dropped"] == 0
    if keep:
        assert len(res["truncated"]) == 200
        assert all(length < orig == 2500 for length, orig in res["truncated"])
        assert res["flags"][str(FLAG_RAW | FLAG_MULTICAST | FLAG_TRUNCATED)] == 200
    else:
        assert res["truncated"] == []


def test_stalled_consumer_counted_as_kernel_drops(pair):
    """A small UMEM behind a stalled consumer: XDP_STATISTICS drops, nothing delivered twice or corrupted."""
    n = 2000
    open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 3]], "umem_size": 128 * 2048}
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afxdp", open_kwargs=open_kwargs, expect=n, sizes=[1000],
                     timeout=1.0, start_delay=1.5) as rx:  # fmt: skip
        rx.wait_ready()
        run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 3, src_addr=pair.tx_addr, seqs=[0, n], sizes=[1000])
        res = rx.result()
    st, x = res["stats"], res["source"]["xdp"]
    assert res["bad"] == 0 and res["dupes"] == 0 and 0 < res["good"] < n
    assert st["kernel_drops"] > 0 and st["kernel_drops"] == x["rx_dropped"] + x["rx_ring_full"]
    assert res["good"] + st["kernel_drops"] == n
    assert x["rx_fill_ring_empty_descs"] > 0


def test_close_twice_detaches_program(pair):
    """close() is idempotent, detaches the XDP program, keeps the final counters; poll afterwards is EBADF."""
    open_kwargs = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 4]]}
    info = run_in_ns(pair.rx_ns, f"{HERE}:open_close", open_kwargs=open_kwargs)
    assert info["shown_open"] is not None and info["shown_open"]["prog"]["id"] == info["prog_id"]
    assert info["shown_open"]["prog"]["name"] == "efsdk_xsk"
    assert info["shown_closed"] is None
    assert info["poll_after_close"] == errno.EBADF
    assert info["stats_after_close"] == 0
    assert info["xdp_after_close"]["prog_id"] == info["prog_id"]
    assert "closed" in info["repr_closed"] and "copy/native" in info["repr_open"]
    assert _xdp_attached(pair.rx_ns, pair.rx_if) is None


def test_zero_copy_refused_clearly_and_auto_falls_back(pair):
    """veth cannot do zero-copy: a clear error naming why, nothing left attached; auto binds in copy mode."""
    base = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 5]]}
    zc = run_in_ns(pair.rx_ns, f"{HERE}:open_error", open_kwargs={**base, "bind_mode": "zerocopy"})
    assert zc["errno"] in (errno.EOPNOTSUPP, errno.EINVAL), zc
    assert "zero-copy" in zc["message"] and "xsk_socket__create" in zc["message"], zc["message"]
    assert zc["left"] is None
    info = run_in_ns(pair.rx_ns, f"{HERE}:open_close", open_kwargs={**base, "bind_mode": "auto"})
    assert info["bind_mode"] == "copy" and info["xdp"]["zerocopy"] is False
    # A queue the interface does not have: the bind names the queue.
    bad_q = run_in_ns(pair.rx_ns, f"{HERE}:open_error", open_kwargs={**base, "queue": 5})
    assert bad_q["errno"] == errno.EINVAL and "queue" in bad_q["message"] and bad_q["left"] is None


def test_second_source_on_the_same_queue_refused(pair):
    """A second source on the same interface queue: EBUSY with the reason; the first keeps working."""
    first = {"iface": pair.rx_if, "feeds": [[GROUP, PORT + 6]]}
    with start_in_ns(pair.rx_ns, RECEIVE, backend="afxdp", open_kwargs=first, expect=50, sizes=[100],
                     timeout=10.0) as rx:  # fmt: skip
        rx.wait_ready()
        # One socket per queue (the bind says no), one XDP program per interface (the attach would).
        second = run_in_ns(pair.rx_ns, f"{HERE}:open_error", open_kwargs={**first, "feeds": [[GROUP, PORT + 7]]})
        run_in_ns(pair.tx_ns, SEND, dst=GROUP, port=PORT + 6, src_addr=pair.tx_addr, seqs=[0, 50], sizes=[100])
        res = rx.result()
    assert second["errno"] in (errno.EBUSY, errno.EEXIST), second
    assert "XDP program" in second["message"] or "AF_XDP socket" in second["message"], second["message"]
    assert res["good"] == 50


def test_native_refused_for_jumbo_mtu_auto_falls_back_to_skb():
    """veth runs native XDP only up to ~3.5 KB MTU: native names the reason, auto attaches in skb mode."""
    if netns_skip_reason() or not (native_available() and afxdp_available()):
        pytest.skip(netns_skip_reason() or "efsdk._native_afxdp / _native_sources not built")
    with veth_pair(subnet=4, mtu=9000, queues=1) as p:
        base = {"iface": p.rx_if, "feeds": [[GROUP, PORT]]}
        native = run_in_ns(p.rx_ns, f"{HERE}:open_error", open_kwargs={**base, "xdp_mode": "native"})
        auto = run_in_ns(p.rx_ns, f"{HERE}:open_close", open_kwargs=base)
    assert native["errno"] == errno.ERANGE and "MTU" in native["message"] and native["left"] is None, native
    assert auto["xdp_mode"] == "skb" and auto["shown_open"]["prog"]["id"] == auto["prog_id"]
    assert auto["shown_closed"] is None


def test_one_xdp_program_per_interface():
    """Two queues, two sources: the second's attach is refused (EBUSY) naming the program already there."""
    if netns_skip_reason() or not (native_available() and afxdp_available()):
        pytest.skip(netns_skip_reason() or "efsdk._native_afxdp / _native_sources not built")
    with veth_pair(subnet=5, queues=2) as p:
        first = {"iface": p.rx_if, "feeds": [[GROUP, PORT]], "queue": 0}
        with start_in_ns(p.rx_ns, RECEIVE, backend="afxdp", open_kwargs=first, expect=1, sizes=[100],
                         timeout=2.0) as rx:  # fmt: skip
            rx.wait_ready()
            second = run_in_ns(p.rx_ns, f"{HERE}:open_error", open_kwargs={**first, "queue": 1})
            rx.result()
    assert second["errno"] == errno.EBUSY and "already has an XDP program" in second["message"], second
    assert second["left"]["prog"]["name"] == "efsdk_xsk"  # the first source's, untouched
