"""Network-namespace helpers for integration tests: real interfaces, nothing leaks.

The namespace / veth / child-process machinery lives in :mod:`efsdk.netns`
(``efsdk bench wire`` uses it too); this module re-exports it with the test
defaults (children import ``tests`` from the project root and run with
``-X dev``) and adds the traffic functions the tests run inside the
namespaces: :func:`send_udp`, :func:`send_raw`, :func:`receive`.

Only root with iproute2 can do this: :func:`netns_skip_reason` says why not,
for ``pytest.skip``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from efsdk import netns as _netns
from efsdk.netns import NetnsPair, Worker, ip, netns_skip_reason, veth_pair

__all__ = [
    "NetnsPair",
    "ROOT",
    "Worker",
    "ip",
    "netns_skip_reason",
    "run_in_ns",
    "start_in_ns",
    "veth_pair",
]

ROOT = Path(__file__).resolve().parents[2]  # the project root: children import efsdk and tests from here


def start_in_ns(ns: str, target: str, **kwargs: Any) -> Worker:
    """Start ``module:function(ready=..., **kwargs)`` inside namespace ``ns`` (``tests`` importable, ``-X dev``)."""
    return _netns.start_in_ns(ns, target, paths=[str(ROOT)], dev=True, **kwargs)


def run_in_ns(ns: str, target: str, timeout: float = 30.0, **kwargs: Any) -> Any:
    """Run ``module:function(ready=..., **kwargs)`` inside ``ns`` to completion; its JSON result."""
    return _netns.run_in_ns(ns, target, timeout, paths=[str(ROOT)], dev=True, **kwargs)


# --------------------------------------------------------------------------- traffic
# Functions below run inside the namespaces (through run_in_ns / start_in_ns);
# they take `ready` and return JSON-able results.

_SESSION = b"EFSDKTEST "
_PATTERN = bytes(range(256)) * 300  # 76,800 bytes: slices of it give every payload known contents


def payload(seq: int, size: int) -> bytes:
    """The datagram numbered ``seq``: a MoldUDP64-shaped header then ``size - 20`` known bytes."""
    import struct

    if size < 20:
        raise ValueError("payloads are at least the 20-byte header")
    start = (seq * 7) % 256
    return struct.pack(">10sQH", _SESSION, seq, 1) + _PATTERN[start : start + size - 20]


def size_of(seq: int, sizes: list[int]) -> int:
    return sizes[seq % len(sizes)]


def send_udp(
    ready: Any,
    dst: str,
    port: int,
    src_addr: str,
    seqs: list[int],
    sizes: list[int],
    pause_every: int = 200,
    gap: float = 0.0,
    ports: int = 1,
) -> dict[str, Any]:
    """Send ``payload(seq, size_of(seq))`` for each seq range ``[a, b)`` in ``seqs`` (pairs) to ``dst:port``.

    ``ports`` > 1 spreads the datagrams over that many flows: seq goes to ``port + seq % ports``.

    Multicast leaves through the interface owning ``src_addr`` with TTL 1.
    A 1 ms pause every ``pause_every`` datagrams keeps bursts well inside the
    receiving CPU's backlog queue (net.core.netdev_max_backlog, 1000 by
    default), which drops silently before any socket or ring sees a frame.
    """
    import ipaddress
    import socket

    allowed = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("239.0.0.0/8"))
    if not any(ipaddress.ip_address(dst) in net for net in allowed):
        raise ValueError(f"refusing to send outside the test ranges: {dst}")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src_addr, 0))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src_addr))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    sent = 0
    for a, b in zip(seqs[::2], seqs[1::2], strict=True):
        for seq in range(a, b):
            s.sendto(payload(seq, size_of(seq, sizes)), (dst, port + seq % ports))
            sent += 1
            if gap:
                time.sleep(gap)  # a quiet feed: one datagram at a time
            elif sent % pause_every == 0:
                time.sleep(0.001)
    s.close()
    return {"sent": sent}


def send_raw(ready: Any, iface: str, frames_hex: list[str], repeat: int = 1) -> dict[str, Any]:
    """Transmit prebuilt Ethernet frames on ``iface`` with an AF_PACKET socket, ``repeat`` times each."""
    import socket

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    frames = [bytes.fromhex(h) for h in frames_hex]
    n = 0
    for _ in range(repeat):
        for f in frames:
            s.send(f)
            n += 1
        time.sleep(0.001)
    s.close()
    return {"sent": n}


def receive(
    ready: Any,
    backend: str,
    open_kwargs: dict[str, Any],
    expect: int,
    sizes: list[int],
    timeout: float = 20.0,
    linger: float = 0.3,
    max_batch: int = 256,
    start_delay: float = 0.0,
) -> dict[str, Any]:
    """Open a source, call ``ready()``, then check every frame until ``expect`` valid ones arrived.

    Stops ``linger`` s after the last expected frame (to count late extras and
    noise) or at ``timeout``.  ``start_delay`` s of not reading after
    ``ready()`` play a stalled consumer.  Returns counts, timestamp sanity and
    the stats.
    """
    import dataclasses
    import struct

    from efsdk.sources import FLAG_TRUNCATED, FLAG_VLAN, open_source

    unpack_seq = struct.Struct(">Q").unpack_from
    seen: dict[int, int] = {}
    bad = dupes = ts_back = good = 0
    ts_first = ts_last = 0
    kinds: dict[str, int] = {}
    flags_seen: dict[int, int] = {}
    vlan_tcis: set[int] = set()
    truncated: list[list[int]] = []
    lat: list[int] = []  # poll return (wall clock) - kernel receive timestamp, ns
    wall0 = time.time_ns()
    with open_source(backend, **open_kwargs) as src:
        ready()
        time.sleep(start_delay)
        deadline = time.monotonic() + timeout
        done_at = None
        while True:
            batch = src.poll(max=max_batch, timeout=0.05)
            now = time.monotonic()
            wall = time.time_ns()
            lat.extend(wall - ts for ts in batch.timestamps())
            for i, (mv, ts, flags) in enumerate(batch):
                flags_seen[flags] = flags_seen.get(flags, 0) + 1
                if ts < ts_last:
                    ts_back += 1
                ts_last = ts
                ts_first = ts_first or ts
                info = batch.info(i)
                kinds[info.ts_kind] = kinds.get(info.ts_kind, 0) + 1
                if flags & FLAG_VLAN:
                    vlan_tcis.add(info.vlan_tci)
                if flags & FLAG_TRUNCATED:
                    truncated.append([len(mv), info.orig_len])
                    continue
                if len(mv) < 20 or bytes(mv[:10]) != _SESSION:
                    bad += 1
                    continue
                seq = unpack_seq(mv, 10)[0]
                if mv != payload(seq, size_of(seq, sizes)):
                    bad += 1
                    continue
                if seq in seen:
                    dupes += 1
                else:
                    good += 1
                seen[seq] = seen.get(seq, 0) + 1
            if good >= expect and done_at is None:
                done_at = now
            if (done_at is not None and now - done_at >= linger) or now >= deadline:
                break
        stats = dataclasses.asdict(src.stats)
        # Backend detail (AF_XDP: XDP_STATISTICS, program counters, the modes the kernel chose).
        detail: dict[str, Any] = {"repr": repr(src)}
        if hasattr(src, "xdp_stats"):
            detail.update(xdp=src.xdp_stats, bind_mode=src.bind_mode_used, xdp_mode=src.xdp_mode_used)
    wall1 = time.time_ns()
    return {
        "good": good,
        "bad": bad,
        "dupes": dupes,
        "seqs": sorted(seen),
        "ts_back": ts_back,
        "ts_first": ts_first,
        "ts_last": ts_last,
        "wall0": wall0,
        "wall1": wall1,
        "ts_kinds": kinds,
        "flags": {str(k): v for k, v in flags_seen.items()},
        "vlan_tcis": sorted(vlan_tcis),
        "truncated": truncated,
        "stats": stats,
        "source": detail,
        "lat_ms_median": sorted(lat)[len(lat) // 2] / 1e6 if lat else None,
    }
