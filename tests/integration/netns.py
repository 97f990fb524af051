"""Network-namespace helpers for integration tests: real interfaces, nothing leaks.

:func:`veth_pair` creates two fresh namespaces joined by a veth pair, both
ends inside the namespaces (the host's own interfaces are never touched),
addressed in the RFC 2544 benchmarking range 198.18.0.0/15, and deletes them
on exit even when the test fails.  :func:`run_in_ns` / :func:`start_in_ns`
run a Python function of an importable module inside a namespace (``ip netns
exec``) and hand back its JSON result; a function may call the ``ready()`` it
gets to tell the parent it is listening.

Only root with iproute2 can do this: :func:`netns_skip_reason` says why not,
for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# Namespaces and interfaces carry this prefix plus our pid, so parallel runs
# never collide and a crashed run's leftovers are recognisable.
PREFIX = "efsdkt"
_READY = "__READY__"
_RESULT = "__RESULT__ "


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip args...``; raise with ip's own message on failure when ``check``."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


_skip_reason: str | None | bool = False  # False = not probed yet


def netns_skip_reason() -> str | None:
    """Why namespace tests cannot run here (None if they can); probed once."""
    global _skip_reason
    if _skip_reason is not False:
        return _skip_reason  # type: ignore[return-value]
    reason = None
    if sys.platform != "linux":
        reason = "network namespaces need Linux"
    elif os.geteuid() != 0:
        reason = "needs root (creates network namespaces and veth pairs)"
    elif shutil.which("ip") is None:
        reason = "needs iproute2's `ip` command"
    else:
        probe = f"{PREFIX}{os.getpid()}probe"
        proc = ip("netns", "add", probe, check=False)
        if proc.returncode != 0:
            reason = f"cannot create a network namespace: {proc.stderr.strip()}"
        else:
            ip("netns", "del", probe, check=False)
    _skip_reason = reason
    return reason


@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces joined by a veth pair: the sender side ``tx`` and the receiver side ``rx``."""

    tx_ns: str
    rx_ns: str
    tx_if: str
    rx_if: str
    tx_addr: str  # 198.18.N.1
    rx_addr: str  # 198.18.N.2
    prefixlen: int
    mtu: int

    def mac(self, side: str) -> bytes:
        """MAC address of the ``"tx"`` or ``"rx"`` veth end."""
        ns, ifname = (self.tx_ns, self.tx_if) if side == "tx" else (self.rx_ns, self.rx_if)
        out = ip("-n", ns, "-j", "link", "show", ifname).stdout
        return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))


_counter = 0


@contextlib.contextmanager
def veth_pair(subnet: int = 0, mtu: int = 1500, ipv6: bool = False) -> Iterator[NetnsPair]:
    """Create ``tx``/``rx`` namespaces + veth pair 198.18.``subnet``.1/24 <-> .2/24; delete on exit.

    IPv6 is off by default so the only unsolicited frames are ARP and IGMP.
    """
    global _counter
    _counter += 1
    if not 0 <= subnet <= 255:
        raise ValueError("subnet selects 198.18.<subnet>.0/24: 0..255")
    tag = f"{os.getpid() % 100000}{_counter}"
    pair = NetnsPair(
        tx_ns=f"{PREFIX}{tag}tx",
        rx_ns=f"{PREFIX}{tag}rx",
        tx_if=f"et{tag}t"[:15],
        rx_if=f"et{tag}r"[:15],
        tx_addr=f"198.18.{subnet}.1",
        rx_addr=f"198.18.{subnet}.2",
        prefixlen=24,
        mtu=mtu,
    )
    try:
        for ns in (pair.tx_ns, pair.rx_ns):
            ip("netns", "del", ns, check=False)  # leftovers of a crashed run with our pid
            ip("netns", "add", ns)
        # Both ends are created directly inside the namespaces: nothing ever
        # appears in the caller's namespace.
        ip("link", "add", pair.tx_if, "netns", pair.tx_ns, "mtu", str(mtu), "type", "veth",
           "peer", "name", pair.rx_if, "netns", pair.rx_ns, "mtu", str(mtu))  # fmt: skip
        for ns, ifname, addr in ((pair.tx_ns, pair.tx_if, pair.tx_addr), (pair.rx_ns, pair.rx_if, pair.rx_addr)):
            if not ipv6:
                for key in ("all", "default", ifname):
                    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                    f"net.ipv6.conf.{key}.disable_ipv6=1"], capture_output=True)  # fmt: skip
            ip("-n", ns, "addr", "add", f"{addr}/{pair.prefixlen}", "dev", ifname)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", ifname, "up")
        yield pair
    finally:
        for ns in (pair.tx_ns, pair.rx_ns):  # the veth dies with its namespace
            ip("netns", "del", ns, check=False)


# --------------------------------------------------------------------------- running code inside


_BOOT = f"""
import importlib, json, sys
sys.path.insert(0, {str(ROOT)!r})
mod, func = sys.argv[1].split(":")
kwargs = json.loads(sys.stdin.readline())  # stdin: arguments can exceed one argv string's 128 KiB
def ready():
    print({_READY!r}, flush=True)
result = getattr(importlib.import_module(mod), func)(ready=ready, **kwargs)
print({_RESULT!r} + json.dumps(result), flush=True)
"""


def _argv(ns: str, target: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-X", "dev", "-c", _BOOT, target]


class Worker:
    """A function running in a namespace; :meth:`wait_ready` then :meth:`result`."""

    def __init__(self, ns: str, target: str, kwargs: dict[str, Any]) -> None:
        self.target = target
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            _argv(ns, target),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(kwargs) + "\n")
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not touch it again
        self._lines: list[str] = []

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until the function called ``ready()``; raise with its stderr if it died."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.strip() == _READY:
                return
            self._lines.append(line)
        self.kill()
        raise RuntimeError(f"{self.target} never became ready: {self._stderr()}")

    def result(self, timeout: float = 30.0) -> Any:
        """The function's JSON-decoded return value; raise with stderr if it failed."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.target} did not finish in {timeout} s: {self._stderr()}") from None
        lines = self._lines + out.splitlines()
        for line in reversed(lines):
            if line.startswith(_RESULT):
                return json.loads(line[len(_RESULT):])
        raise RuntimeError(f"{self.target} failed (rc={self.proc.returncode}):\n{err}")

    def _stderr(self) -> str:
        try:
            _, err = self.proc.communicate(timeout=2)
        except (subprocess.TimeoutExpired, ValueError):
            return "(no stderr)"
        return err or "(no stderr)"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # a failing test never leaves a child behind


def start_in_ns(ns: str, target: str, **kwargs: Any) -> Worker:
    """Start ``module:function(ready=..., **kwargs)`` inside namespace ``ns``."""
    return Worker(ns, target, kwargs)


def run_in_ns(ns: str, target: str, timeout: float = 30.0, **kwargs: Any) -> Any:
    """Run ``module:function(ready=..., **kwargs)`` inside ``ns`` to completion; its JSON result."""
    with Worker(ns, target, kwargs) as w:
        return w.result(timeout)


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
) -> dict[str, Any]:
    """Send ``payload(seq, size_of(seq))`` for each seq range ``[a, b)`` in ``seqs`` (pairs) to ``dst:port``.

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
            s.sendto(payload(seq, size_of(seq, sizes)), (dst, port))
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
        "lat_ms_median": sorted(lat)[len(lat) // 2] / 1e6 if lat else None,
    }
