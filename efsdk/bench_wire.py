"""``efsdk bench wire``: frame-source latency and throughput on a real veth pair.

Two network namespaces are created for the run (``efsdkbw<pid>…tx`` /
``efsdkbw<pid>…rx``, :mod:`efsdk.netns`) joined by a single-queue veth pair
addressed in the RFC 2544 range 198.18.0.0/15; the same multicast traffic
(239.255.77.1, TTL 1) is sent from the ``tx`` namespace to every backend in
the ``rx`` namespace, one backend at a time, each in a fresh receiver process:

* ``udp`` - the kernel UDP source (``recvmmsg`` batches);
* ``afpacket-v3`` - AF_PACKET TPACKET_V3 ring, 1 ms block retire timer;
* ``afpacket-v2`` - AF_PACKET TPACKET_V2 ring;
* ``afxdp`` - AF_XDP socket on rx queue 0 behind efsdk's XDP filter (veth:
  native XDP, copy mode; timestamps taken by the XDP program at XDP entry,
  so they include no more of the stack than the others' ``skb`` stamps);
  measured only when ``efsdk._native_afxdp`` is built;
* ``python-loop`` - the baseline: ``socket.recvmsg`` one datagram per call,
  kernel timestamp from ``SO_TIMESTAMPNS`` (the same software timestamp).

Two phases per backend:

* **latency** - a paced sender (``rate`` datagrams/s, spin-paced) for
  ``seconds``; per datagram, ``time.time_ns()`` when the batch (or the
  datagram) is in Python minus the frame's kernel receive timestamp (both
  CLOCK_REALTIME).  Recorded in an HDR histogram (1 ns .. 10 s, 3 significant
  digits); the first :data:`WARMUP_FRAMES` datagrams are not recorded.
* **throughput** - as many sender processes as spare CPUs (at most 4), each
  sending small datagrams flat out for ``seconds`` (:data:`SENDERS`: by
  default one prebuilt frame transmitted by the kernel itself through XDP's
  live-frames test mode, with an XDP_PASS program held on the rx veth so it
  takes them; or through an AF_PACKET socket that bypasses the qdisc,
  ``sendmmsg`` 256 a call in C; a Python ``sendto`` loop when the native
  module is missing); frames/s handed
  to Python (``len(batch)`` summed, batches consumed), ``kernel_drops`` from
  the source stats, and the offered rate the senders actually achieved.
  Frames lost before any socket or ring (the veth backlog queue,
  ``net.core.netdev_max_backlog``) show up only as sent minus received.

:func:`run` needs root and iproute2 (:func:`skip_reason` says why not) and
deletes its namespaces on every exit path, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from efsdk.netns import NetnsPair, Worker, run_in_ns, start_in_ns, veth_pair

__all__ = [
    "BACKENDS",
    "DEFAULT_RATE",
    "DEFAULT_SECONDS",
    "TARGETS",
    "run",
    "skip_reason",
]

DEFAULT_SECONDS = 3.0
DEFAULT_RATE = 10_000
GROUP = "239.255.77.1"
PORT = 26477
PAYLOAD_SIZE = 64
WARMUP_FRAMES = 100
#: Backend name -> description (the order of the tables).
BACKENDS = {
    "udp": "kernel UDP, recvmmsg",
    "afpacket-v3": "AF_PACKET TPACKET_V3, retire 1 ms",
    "afpacket-v2": "AF_PACKET TPACKET_V2",
    "afxdp": "AF_XDP, XDP filter + UMEM (veth: copy mode)",
    "python-loop": "socket.recvmsg loop (baseline)",
}
#: The issue's goals (reported against, never asserted).
TARGETS = {
    "throughput_fps": 1_000_000,  # frames/s into the ring without drops
    "p50_us": 5.0,  # AF_XDP / AF_PACKET
    "p99_us": 20.0,  # AF_XDP / AF_PACKET
    "p99_vs_loop": 3.0,  # p99 at least 3x better than the plain loop
}
#: A phase whose senders offered less than the target is sender-bound if the receiver lost at
#: most this share of what was sent (a start-up blip is not a receiver limit).
SENDER_BOUND_LOSS = 0.001
#: Throughput-phase senders, fastest first (a missing native module falls back to "python").
SENDERS = {
    # In the kernel: XDP's live-frames test mode runs an XDP_TX program over copies of one frame
    # (xdp-trafficgen's mechanism): no socket or skb on the sending side, >1 M frames/s from one
    # core here.  The rx veth needs an XDP program to take them: receivers attach XDP_PASS.
    # Probed first (XDP_DROP, nothing sent); Linux < 5.18 falls back to "raw".
    "xdp": "in-kernel XDP live frames (BPF_PROG_TEST_RUN, XDP_TX), one prebuilt frame",
    # The frame, built once (Ethernet/IPv4/UDP to the group's MAC), through an AF_PACKET socket with
    # PACKET_QDISC_BYPASS: skips the sender's UDP/IP/qdisc work, ~2.5x "udp" on this VM.
    "raw": "native sendmmsg of a prebuilt frame, AF_PACKET, qdisc bypass",
    "udp": "native sendmmsg, UDP socket",
    "python": "Python sendto() loop",
}
#: Where the rx veth's kernel receive work (IP/UDP, AF_PACKET tap) runs.
STEERING = {
    # A veth delivers in softirq on the sending CPU: like a NIC whose interrupts are on a
    # housekeeping core, the receiver's core runs only the receiver.
    "sender": "on the sender's CPU (veth default; like NIC interrupts on a housekeeping core)",
    # RPS to the receiver's CPU: like interrupts on the application core, and it frees the
    # sender's CPU to offer more (AF_XDP's XDP program still runs on the sender's CPU).
    "receiver": "on the receiver's CPU through RPS (like NIC interrupts on the application core)",
}
_SOL_PACKET, _PACKET_QDISC_BYPASS = 263, 20  # <linux/if_packet.h>; the socket module lacks them
_RING_BACKENDS = ("afpacket-v3", "afpacket-v2", "afxdp")
_ALLOWED = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("239.0.0.0/8"))


def _require_allowed(dst: str) -> None:
    if not any(ipaddress.ip_address(dst) in net for net in _ALLOWED):
        raise ValueError(f"refusing to send outside 198.18.0.0/15 and 239.0.0.0/8: {dst}")


# --------------------------------------------------------------------------- namespaces


def skip_reason() -> str | None:
    """Why the benchmark cannot run here (None if it can)."""
    if sys.platform != "linux":
        return "efsdk bench wire needs Linux (network namespaces, veth, AF_PACKET)"
    if os.geteuid() != 0:
        return "efsdk bench wire needs root and iproute2 (it creates two network namespaces and a veth pair)"
    if shutil.which("ip") is None:
        return "efsdk bench wire needs root and iproute2: the `ip` command was not found"
    return None


def available_backends() -> list[str]:
    """The backends this build can measure: all of :data:`BACKENDS` but ``afxdp`` when its module is not built."""
    from efsdk.sources.afxdp import afxdp_available

    return [b for b in BACKENDS if b != "afxdp" or afxdp_available()]


@contextlib.contextmanager
def veth_wire() -> Iterator[NetnsPair]:
    """Two fresh namespaces + a single-queue veth pair 198.18.X.1 <-> .2/24 inside them; deleted on exit.

    One queue per end: an AF_XDP socket binds one rx queue, and the sender's
    flows would otherwise spread over one queue per CPU.
    """
    subnet = 100 + os.getpid() % 100
    with veth_pair(subnet, queues=1, prefix="efsdkbw", if_prefix="bw") as w:
        yield w


# --------------------------------------------------------------------------- in the namespaces


def send(ready: Callable[[], None], dst: str, port: int, src_addr: str, seconds: float, rate: int,
         start_at: float, sender: str = "xdp", tx_if: str | None = None,
         cpu: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Send ``PAYLOAD_SIZE``-byte datagrams to ``dst:port`` for ``seconds``: paced at ``rate``/s, or flat out (0).

    Flat out, ``sender`` picks the tool (see :data:`SENDERS`); ``xdp`` and
    ``raw`` need ``tx_if``.  A sender the build or kernel lacks falls back to
    the next one (:func:`run` decides once, with :func:`choose_sender`); the
    result says which one ran (``"sender"``).  ``cpu`` pins the process.
    """
    import socket

    _pin(cpu)

    _require_allowed(dst)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src_addr, 0))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src_addr))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    data = bytes(PAYLOAD_SIZE)
    addr = (dst, port)
    sendto = s.sendto
    ready()
    clock = time.perf_counter
    yield_cpu = os.sched_yield
    while time.time() < start_at:  # every sender starts together
        time.sleep(0.001)
    sent = errors = 0
    if rate > 0:
        sender = "python"  # paced: one sendto() per datagram
    elif sender not in SENDERS:
        raise ValueError(f"unknown sender {sender!r}; one of {', '.join(SENDERS)}")
    elif sender != "python" and _native_blast() is None:
        sender = "python"
    if sender in ("xdp", "raw") and not tx_if:
        raise ValueError(f"the {sender} sender needs tx_if, the interface to send from")
    if sender == "xdp":
        xdp_frame = _frame(data, dst, port, src_addr, s.getsockname()[1], tx_if)  # type: ignore[arg-type]
        if not _xdp_live_frames(tx_if, xdp_frame):  # type: ignore[arg-type]
            sender = "raw"  # a kernel before 5.18: the next best sender
    raw = _raw_socket(tx_if) if sender == "raw" else None
    t0 = clock()
    end = t0 + seconds
    if rate > 0:
        gap = 1.0 / rate
        nxt = t0
        while True:
            now = clock()
            if now >= end:
                break
            if now < nxt:
                # Spin (sleep()'s ~60 us granularity would bunch the datagrams) but yield: the
                # veth delivers in softirq on this CPU, deferred to ksoftirqd under load.
                yield_cpu()
                continue
            try:
                sendto(data, addr)
                sent += 1
            except OSError:
                errors += 1
            nxt += gap
            if nxt < now - 0.01:  # fell > 10 ms behind (descheduled): do not burst to catch up
                nxt = now
    elif sender == "xdp":
        sent, errors = _xdp_blast(tx_if, xdp_frame, seconds)  # type: ignore[arg-type]
    elif sender in ("raw", "udp"):
        # sendmmsg in C, 256 datagrams a call: offers several times what a
        # Python sendto() loop can, so the receiver, not the sender, is measured.
        if raw is not None:
            fd = raw.fileno()
            data = _frame(data, dst, port, src_addr, s.getsockname()[1], tx_if)  # type: ignore[arg-type]
        else:
            s.connect(addr)
            fd = s.fileno()
        sent, errors = _native_blast()(fd, data, seconds, f"{sender} send to {dst}:{port}")  # type: ignore[misc]
    else:
        while True:
            for _ in range(256):
                try:
                    sendto(data, addr)
                    sent += 1
                except OSError:  # ENOBUFS: the qdisc/veth is full
                    errors += 1
            if clock() >= end:
                break
    elapsed = clock() - t0
    s.close()
    if raw is not None:
        raw.close()
    return {"sent": sent, "errors": errors, "elapsed": elapsed, "sender": sender}


def _frame(payload: bytes, dst: str, port: int, src_addr: str, src_port: int, tx_if: str) -> bytes:
    """The whole Ethernet/IPv4/UDP frame the kernel would send for ``payload`` (TTL 1, group MAC)."""
    from efsdk.pcap import udp_frame

    with open(f"/sys/class/net/{tx_if}/address") as f:
        mac = f.read().strip()
    return udp_frame(payload, dst, port, src_ip=src_addr, src_port=src_port,
                     src_mac=bytes.fromhex(mac.replace(":", "")), ttl=1)  # fmt: skip


def _native_lib() -> Any:
    from efsdk._native_sources import lib

    return lib


def _xdp_blast(tx_if: str, frame: bytes, seconds: float) -> tuple[int, int]:
    """``(frames XDP_TX took, 0)`` from the in-kernel sender out of ``tx_if`` (the 0 fills the send-error slot)."""
    import socket

    from efsdk._native_sources import ffi

    out_sent, out_calls = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    rc = _native_lib().efsdk_xdp_blast(socket.if_nametoindex(tx_if), frame, len(frame), int(seconds * 1e9),
                                       out_sent, out_calls)  # fmt: skip
    if rc < 0:
        raise OSError(-rc, f"XDP live-frames send out of {tx_if} failed (needs Linux >= 5.18 and root): "
                           f"{os.strerror(-rc)}; try --sender raw")  # fmt: skip
    return out_sent[0], 0


def _xdp_live_frames(tx_if: str, frame: bytes) -> bool:
    """Whether this kernel runs XDP live frames on ``tx_if`` (probed with XDP_DROP: nothing is sent)."""
    import socket

    lib = _native_lib()
    if not hasattr(lib, "efsdk_xdp_live_frames_probe"):
        return False
    return lib.efsdk_xdp_live_frames_probe(socket.if_nametoindex(tx_if), frame, len(frame)) == 0


def probe_xdp_sender(ready: Callable[[], None], tx_if: str, dst: str, port: int, src_addr: str) -> str | None:
    """In the sending namespace: why the ``xdp`` sender cannot run here, or None when it can."""
    ready()
    _require_allowed(dst)  # the probe's frame is dropped by its program, but never address one elsewhere
    if _native_blast() is None or not hasattr(_native_lib(), "efsdk_xdp_blast"):
        return "the native sources module lacks it (python native/build_sources.py)"
    if not _xdp_live_frames(tx_if, _frame(bytes(PAYLOAD_SIZE), dst, port, src_addr, PORT, tx_if)):
        return "this kernel does not run XDP live frames (Linux >= 5.18 and root)"
    return None


def probe_xdp_pass(ready: Callable[[], None], rx_if: str) -> str | None:
    """In the receiving namespace: why ``rx_if`` cannot hold the XDP_PASS program the xdp sender needs, or None."""
    ready()
    try:
        link = xdp_pass_link(rx_if)
    except OSError as exc:
        return f"{exc} (XDP through a BPF link needs Linux >= 5.9)"
    if link is None:
        return "the native sources module lacks efsdk_xdp_pass_attach (python native/build_sources.py)"
    os.close(link)
    return None


def choose_sender(w: NetnsPair, sender: str) -> tuple[str, str | None]:
    """``(the sender to use, why it is not the one asked for)``: decided once, before any phase.

    ``xdp`` needs XDP live frames on the sending end and an XDP program on the
    receiving end; where either is missing, ``raw`` runs instead and no phase
    attaches XDP_PASS (it would change the receive path for nothing).  Both
    native senders need the native sources module; without it ``python`` runs.
    """
    if sender in ("xdp", "raw") and _native_blast() is None:
        return "python", f"the {sender} sender needs efsdk._native_sources (python native/build_sources.py); " \
                         "the python sender ran instead"
    if sender != "xdp":
        return sender, None
    why = run_in_ns(w.tx_ns, f"{__name__}:probe_xdp_sender", tx_if=w.tx_if, dst=GROUP, port=PORT,
                    src_addr=w.tx_addr)  # fmt: skip
    if why is None:
        why = run_in_ns(w.rx_ns, f"{__name__}:probe_xdp_pass", rx_if=w.rx_if)
    if why is None:
        return "xdp", None
    return "raw", f"the xdp sender cannot run: {why}; the raw sender ran instead"


def xdp_pass_link(rx_if: str) -> int | None:
    """Attach XDP_PASS to ``rx_if`` so a veth takes XDP_TX frames from its peer; the link fd (close to detach).

    None when the native module lacks it.  Raises OSError if the kernel refuses.
    """
    import socket

    lib = _native_lib()
    if not hasattr(lib, "efsdk_xdp_pass_attach"):
        return None
    fd = lib.efsdk_xdp_pass_attach(socket.if_nametoindex(rx_if))
    if fd < 0:
        raise OSError(-fd, f"attaching XDP_PASS to {rx_if} failed: {os.strerror(-fd)}")
    return fd


def _native_blast() -> Callable[[int, bytes, float, str], tuple[int, int]] | None:
    """``blast(fd, data, seconds, what) -> (sent, errors)`` over the native sendmmsg loop; None if not built."""
    from efsdk.sources.base import native_available

    if not native_available():
        return None
    from efsdk._native_sources import ffi, lib

    if not hasattr(lib, "efsdk_udp_blast"):  # a build older than the sender (not part of the source contract)
        return None

    def blast(fd: int, data: bytes, seconds: float, what: str) -> tuple[int, int]:
        out_sent, out_errors = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        rc = lib.efsdk_udp_blast(fd, data, len(data), 256, int(seconds * 1e9), out_sent, out_errors)
        if rc < 0:
            raise OSError(-rc, f"{what} failed: {os.strerror(-rc)}")
        return out_sent[0], out_errors[0]

    return blast


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def cpu_plan(senders: int) -> tuple[int | None, list[int | None]]:
    """``(receiver_cpu, [sender_cpu, ...])``: the receiver alone on the last allowed CPU, senders on the others.

    Pinned so that every backend meets the same placement (and, with
    ``steer="receiver"``, the kernel's receive work joins the receiver); on
    one CPU nothing is pinned.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, [None] * senders
    rest = cpus[:-1]
    return cpus[-1], [rest[i % len(rest)] for i in range(senders)]


def cpu_mask(cpu: int) -> str:
    """``cpu`` as a sysfs cpumask: hex in comma-separated 32-bit groups (CPU 32 is ``1,00000000``)."""
    digits = format(1 << cpu, "x")
    groups = []
    while digits:
        digits, group = digits[:-8], digits[-8:]
        groups.append(group.rjust(8, "0") if digits else group)
    return ",".join(reversed(groups))


def _steer(w: NetnsPair, cpu: int | None) -> None:
    """Run the rx veth's receive processing (softirq) on ``cpu`` through RPS; ``None``: where it is sent."""
    mask = "0" if cpu is None else cpu_mask(cpu)
    path = f"/sys/class/net/{w.rx_if}/queues/rx-0/rps_cpus"
    # sysfs shows a namespace's own devices only inside it
    subprocess.run(["ip", "netns", "exec", w.rx_ns, "sh", "-c", f"echo {mask} > {path}"], check=True,
                   capture_output=True, timeout=10)  # fmt: skip


def _raw_socket(tx_if: str) -> Any:
    """An AF_PACKET socket on ``tx_if`` that hands whole frames to the driver (qdisc bypassed)."""
    import socket

    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: sends only, receives nothing
    try:
        raw.setsockopt(_SOL_PACKET, _PACKET_QDISC_BYPASS, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        raw.bind((tx_if, 0))
    except BaseException:
        raw.close()
        raise
    return raw


def receive(ready: Callable[[], None], backend: str, rx_if: str, rx_addr: str, mode: str, seconds: float,
            busy: bool, cpu: int | None = None, xdp_pass: bool = False) -> dict[str, Any]:  # fmt: skip
    """Receive on ``backend`` until the traffic stops; latency histogram (``mode="latency"``) or counts.

    ``xdp_pass``: hold an XDP_PASS program on ``rx_if`` meanwhile (the ``xdp`` sender needs one;
    AF_XDP brings its own).
    """
    _pin(cpu)
    link = xdp_pass_link(rx_if) if xdp_pass and backend != "afxdp" else None
    try:
        return _receive(ready, backend, rx_if, rx_addr, mode, seconds, busy)
    finally:
        if link is not None:
            os.close(link)


def _receive(ready: Callable[[], None], backend: str, rx_if: str, rx_addr: str, mode: str, seconds: float,
             busy: bool) -> dict[str, Any]:  # fmt: skip
    if backend == "python-loop":
        return _receive_loop(ready, rx_addr, mode, seconds, busy)
    import dataclasses

    from efsdk.sources import open_source

    if backend == "udp":
        src = open_source("udp", group=GROUP, port=PORT, iface_addr=rx_addr, busy=busy, batch=256)
    elif backend == "afxdp":
        src = open_source("afxdp", iface=rx_if, feeds=[(GROUP, PORT)], busy=busy, batch=256)
    else:
        version = 3 if backend == "afpacket-v3" else 2
        src = open_source("afpacket", iface=rx_if, version=version, feeds=[(GROUP, PORT)], retire_ms=1, busy=busy)
    tnow = time.time_ns
    clock = time.monotonic
    lat: list[int] = []
    frames = batches = 0
    t_first = t_last = 0.0
    deadline = clock() + seconds + 20
    idle = 0.5  # the traffic is over this long after the last frame
    with src:
        ready()
        poll = src.poll
        if mode == "latency":
            while True:
                batch = poll(256, 0.05)
                now = tnow()
                if batch:
                    lat.extend([now - ts for ts in batch.timestamps()])  # per frame, when the batch is in Python
                    frames += len(batch)
                    batches += 1
                    t_last = clock()
                elif (frames and clock() - t_last > idle) or clock() > deadline:
                    break
        else:
            while True:
                batch = poll(256, 0.05)
                n = len(batch)
                if n:
                    if not frames:
                        t_first = clock()
                    frames += n
                    batches += 1
                    t_last = clock()
                elif (frames and clock() - t_last > idle) or clock() > deadline:
                    break
        stats = dataclasses.asdict(src.stats)
    return _summary(mode, lat, frames, batches, t_first, t_last, stats)


def _receive_loop(ready: Callable[[], None], rx_addr: str, mode: str, seconds: float, busy: bool) -> dict[str, Any]:
    """The plain-Python baseline: one ``recvmsg`` per datagram, ``SO_TIMESTAMPNS`` for the kernel time."""
    import socket
    import struct

    so_timestampns = getattr(socket, "SO_TIMESTAMPNS", 35)
    so_rxq_ovfl = getattr(socket, "SO_RXQ_OVFL", 40)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, so_timestampns, 1)
    s.setsockopt(socket.SOL_SOCKET, so_rxq_ovfl, 1)
    s.bind((GROUP, PORT))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(GROUP) + socket.inet_aton(rx_addr))
    if busy:
        s.setblocking(False)
    else:
        s.settimeout(0.05)
    ts_unpack = struct.Struct("=qq").unpack_from
    cmsg_space = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4)
    recvmsg = s.recvmsg
    tnow = time.time_ns
    clock = time.monotonic
    lat: list[int] = []
    frames = 0
    drops = 0
    t_first = t_last = 0.0
    deadline = clock() + seconds + 20
    idle = 0.5
    blocked = (BlockingIOError, TimeoutError)
    ready()
    while True:
        try:
            data, anc, _flags, _addr = recvmsg(2048, cmsg_space)
        except blocked:
            if (frames and clock() - t_last > idle) or clock() > deadline:
                break
            continue
        now = tnow()
        ts = 0
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET:
                if kind == so_timestampns:
                    sec, nsec = ts_unpack(cdata)
                    ts = sec * 1_000_000_000 + nsec
                elif kind == so_rxq_ovfl:
                    drops = int.from_bytes(cdata[:4], sys.byteorder)
        if not frames:
            t_first = clock()
        frames += 1
        t_last = clock()
        if mode == "latency" and ts:
            lat.append(now - ts)
    s.close()
    stats = {"frames": frames, "kernel_drops": drops, "polls": frames, "bytes": frames * PAYLOAD_SIZE}
    return _summary(mode, lat, frames, frames, t_first, t_last, stats)


def _summary(mode: str, lat: list[int], frames: int, batches: int, t_first: float, t_last: float,
             stats: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"frames": frames, "batches": batches, "stats": stats}
    if mode == "latency":
        out["latency"] = _percentiles(lat[WARMUP_FRAMES:] if len(lat) > 2 * WARMUP_FRAMES else lat)
    else:
        span = t_last - t_first
        out["receive_seconds"] = span
        out["frames_per_s"] = frames / span if span > 0 else 0.0
    return out


def _percentiles(lat_ns: list[int]) -> dict[str, Any]:
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 10_000_000_000, 3)
    negative = 0
    for v in lat_ns:
        if v < 1:
            negative += 1  # clock stepped between the kernel stamp and now: cannot be a latency
            v = 1
        h.record_value(min(v, 10_000_000_000))
    us = 1e3
    return {
        "count": h.get_total_count(),
        "p50_us": h.get_value_at_percentile(50) / us,
        "p90_us": h.get_value_at_percentile(90) / us,
        "p99_us": h.get_value_at_percentile(99) / us,
        "p99_9_us": h.get_value_at_percentile(99.9) / us,
        "max_us": h.get_max_value() / us,
        "mean_us": h.get_mean_value() / us,
        "non_positive": negative,
        "hdr": h.encode().decode("ascii") if h.get_total_count() else "",
    }


# --------------------------------------------------------------------------- the run


def _phase(w: NetnsPair, backend: str, mode: str, seconds: float, rate: int, senders: int,
           busy: bool, sender: str = "xdp") -> dict[str, Any]:  # fmt: skip
    children: list[Worker] = []
    rx_cpu, tx_cpus = cpu_plan(senders)
    try:
        rx = start_in_ns(w.rx_ns, f"{__name__}:receive", backend=backend, rx_if=w.rx_if, rx_addr=w.rx_addr,
                         mode=mode, seconds=seconds, busy=busy, cpu=rx_cpu,
                         xdp_pass=mode == "throughput" and sender == "xdp")  # fmt: skip
        children.append(rx)
        rx.wait_ready()
        start_at = time.time() + 0.3 + 0.1 * senders
        txs = []
        for cpu in tx_cpus:
            tx = start_in_ns(w.tx_ns, f"{__name__}:send", dst=GROUP, port=PORT, src_addr=w.tx_addr,
                             seconds=seconds, rate=rate, start_at=start_at, sender=sender, tx_if=w.tx_if,
                             cpu=cpu)  # fmt: skip
            children.append(tx)
            txs.append(tx)
        for tx in txs:
            tx.wait_ready()
        sent = [tx.result(timeout=seconds + 30) for tx in txs]
        res = rx.result(timeout=seconds + 30)
    finally:
        for c in children:
            c.kill()
    total = sum(s["sent"] for s in sent)
    elapsed = max(s["elapsed"] for s in sent) or 1e-9
    res.update(
        sent=total,
        send_errors=sum(s["errors"] for s in sent),
        senders=senders,
        sender=sent[0]["sender"],
        offered_per_s=total / elapsed,
        lost_before_socket=max(0, total - res["frames"] - int(res["stats"].get("kernel_drops", 0))),
    )
    return res


def run(
    seconds: float = DEFAULT_SECONDS,
    rate: int = DEFAULT_RATE,
    *,
    backends: list[str] | None = None,
    senders: int | None = None,
    sender: str = "xdp",
    steer: str = "sender",
    busy: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Measure every backend (latency then throughput); the JSON-able results document.

    ``progress(text)`` is called before each phase.  Raises RuntimeError
    (needs root / iproute2, or a child failed); the namespaces are deleted on
    every path out, Ctrl-C and SIGTERM included.
    """
    reason = skip_reason()
    if reason:
        raise RuntimeError(reason)
    available = available_backends()
    backends = list(backends or available)
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r}; one of {', '.join(BACKENDS)}")
        if b not in available:
            from efsdk.sources.afxdp import NOT_BUILT

            raise RuntimeError(f"backend {b!r}: {NOT_BUILT}")
    if sender not in SENDERS:
        raise ValueError(f"unknown sender {sender!r}; one of {', '.join(SENDERS)}")
    if steer not in STEERING:
        raise ValueError(f"unknown steer {steer!r}; one of {', '.join(STEERING)}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if senders is None:
        senders = max(1, min(4, cpus - 1))
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    in_main = hasattr(signal, "SIGTERM") and _is_main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        results: dict[str, Any] = {}
        with veth_wire() as w:
            rx_cpu, tx_cpus = cpu_plan(senders)
            _steer(w, rx_cpu if steer == "receiver" else None)
            used, fallback = choose_sender(w, sender)
            if fallback and progress:
                progress(fallback)
            for b in backends:
                if progress:
                    progress(f"{b}: latency, {rate:,} pps for {seconds:g} s")
                lat = _phase(w, b, "latency", seconds, rate, 1, busy)
                if progress:
                    progress(f"{b}: throughput, {senders} sender(s) flat out for {seconds:g} s")
                thr = _phase(w, b, "throughput", seconds, 0, senders, busy, used)
                results[b] = {"description": BACKENDS[b], "latency": lat, "throughput": thr}
            wire = w.as_dict()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_term)
    return {
        "config": {
            "seconds": seconds,
            "rate": rate,
            "senders": senders,
            "sender": sender,
            "sender_used": used,  # differs from "sender" when the xdp sender cannot run here
            "sender_fallback": fallback,
            "steer": steer,
            "receiver_cpu": rx_cpu,
            "sender_cpus": tx_cpus,
            "busy": busy,
            "payload_bytes": PAYLOAD_SIZE,
            "group": f"{GROUP}:{PORT}",
            "warmup_frames": WARMUP_FRAMES,
            "cpus": cpus,
            "kernel": os.uname().release,
            "python": sys.version.split()[0],
        },
        "wire": wire,
        "targets": TARGETS,
        "backends": results,
        "verdicts": verdicts(results),
    }


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per backend: each target met (True), missed (False) or not applicable (None)."""
    loop_p99 = results.get("python-loop", {}).get("latency", {}).get("latency", {}).get("p99_us")
    out: dict[str, dict[str, Any]] = {}
    for b, r in results.items():
        lat = r["latency"]["latency"]
        thr = r["throughput"]
        ring = b in _RING_BACKENDS
        drops = int(thr["stats"].get("kernel_drops", 0))
        v: dict[str, Any] = {
            "throughput": thr["frames_per_s"] >= TARGETS["throughput_fps"] and drops == 0,
            "no_drops": drops == 0,
            "p50": lat["p50_us"] <= TARGETS["p50_us"] if ring else None,
            "p99": lat["p99_us"] <= TARGETS["p99_us"] if ring else None,
            "p99_vs_loop": (loop_p99 / lat["p99_us"] >= TARGETS["p99_vs_loop"]
                            if ring and loop_p99 and lat["p99_us"] else None),  # fmt: skip
            # the receiver cannot show 1 M/s when the senders offered less ... and it kept up
            # with what was offered (losses anywhere within SENDER_BOUND_LOSS of what was sent)
            "sender_bound": thr["offered_per_s"] < TARGETS["throughput_fps"]
            and drops + thr["lost_before_socket"] <= SENDER_BOUND_LOSS * thr["sent"],
        }
        out[b] = v
    return out
