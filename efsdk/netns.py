"""Network namespaces + veth pairs for tests and ``efsdk bench wire``: real interfaces, nothing leaks.

:func:`veth_pair` creates two fresh namespaces joined by a veth pair, both
ends inside the namespaces (the host's own interfaces are never touched),
addressed in the RFC 2544 benchmarking range 198.18.0.0/15, and deletes them
on exit even when the caller fails.  :func:`start_in_ns` / :func:`run_in_ns`
run ``module:function(ready=..., **kwargs)`` inside a namespace (``ip netns
exec``, a fresh interpreter) and hand back its JSON result; the function calls
the ``ready()`` it gets to tell the parent it is listening.

Only root with iproute2 can do this: :func:`netns_skip_reason` says why not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PKG_ROOT",
    "NetnsPair",
    "Worker",
    "ip",
    "netns_skip_reason",
    "run_in_ns",
    "start_in_ns",
    "veth_pair",
]

#: The directory holding the ``efsdk`` package: children import this efsdk from there.
PKG_ROOT = str(Path(__file__).resolve().parents[1])
# Namespaces and interfaces carry a prefix plus our pid, so parallel runs
# never collide and a crashed run's leftovers are recognisable.
PREFIX = "efsdkt"
_READY = "__READY__"
_RESULT = "__RESULT__ "


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip args...``; raise RuntimeError with ip's own message on failure when ``check``."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


_skip_reason: str | None | bool = False  # False = not probed yet


def netns_skip_reason() -> str | None:
    """Why namespaces cannot be created here (None if they can); probed once by creating one."""
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
    queues: int | None = None  # rx/tx queues per veth end (None: the kernel's default, one per CPU)

    def mac(self, side: str) -> bytes:
        """MAC address of the ``"tx"`` or ``"rx"`` veth end."""
        ns, ifname = (self.tx_ns, self.tx_if) if side == "tx" else (self.rx_ns, self.rx_if)
        out = ip("-n", ns, "-j", "link", "show", ifname).stdout
        return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-able."""
        return asdict(self)


_counter = 0


@contextlib.contextmanager
def veth_pair(
    subnet: int = 0,
    mtu: int = 1500,
    ipv6: bool = False,
    *,
    queues: int | None = None,
    prefix: str = PREFIX,
    if_prefix: str = "et",
) -> Iterator[NetnsPair]:
    """Create ``tx``/``rx`` namespaces + veth pair 198.18.``subnet``.1/24 <-> .2/24; delete on exit.

    IPv6 is off by default so the only unsolicited frames are ARP and IGMP.
    ``queues=1`` gives each end a single rx/tx queue: an AF_XDP socket binds
    one queue, and a multi-queue veth spreads flows over all of them.
    """
    global _counter
    _counter += 1
    if not 0 <= subnet <= 255:
        raise ValueError("subnet selects 198.18.<subnet>.0/24: 0..255")
    if queues is not None and not 1 <= queues <= 64:
        raise ValueError("queues must be 1..64 or None")
    tag = f"{os.getpid() % 100000}{_counter}"
    pair = NetnsPair(
        tx_ns=f"{prefix}{tag}tx",
        rx_ns=f"{prefix}{tag}rx",
        tx_if=f"{if_prefix}{tag}t"[:15],
        rx_if=f"{if_prefix}{tag}r"[:15],
        tx_addr=f"198.18.{subnet}.1",
        rx_addr=f"198.18.{subnet}.2",
        prefixlen=24,
        mtu=mtu,
        queues=queues,
    )
    q = [] if queues is None else ["numtxqueues", str(queues), "numrxqueues", str(queues)]
    try:
        for ns in (pair.tx_ns, pair.rx_ns):
            ip("netns", "del", ns, check=False)  # leftovers of a crashed run with our pid
            ip("netns", "add", ns)
        # Both ends are created directly inside the namespaces: nothing ever
        # appears in the caller's namespace.
        ip("link", "add", pair.tx_if, "netns", pair.tx_ns, "mtu", str(mtu), *q, "type", "veth",
           "peer", "name", pair.rx_if, "netns", pair.rx_ns, "mtu", str(mtu), *q)  # fmt: skip
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
import importlib, json, signal, sys
sys.path[:0] = json.loads(sys.argv[2])
signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent owns Ctrl-C: die quietly
mod, func = sys.argv[1].split(":")
kwargs = json.loads(sys.stdin.readline())  # stdin: arguments can exceed one argv string's 128 KiB
def ready():
    print({_READY!r}, flush=True)
result = getattr(importlib.import_module(mod), func)(ready=ready, **kwargs)
print({_RESULT!r} + json.dumps(result), flush=True)
"""


class Worker:
    """``module:function(ready=..., **kwargs)`` running in a namespace; :meth:`wait_ready` then :meth:`result`.

    ``paths`` go in front of ``sys.path`` (after :data:`PKG_ROOT`); ``dev``
    runs the child with ``-X dev`` (tests: warnings and debug hooks on;
    benchmarks: off, it slows the interpreter).
    """

    def __init__(self, ns: str, target: str, kwargs: dict[str, Any], paths: Sequence[str] = (),
                 dev: bool = False) -> None:  # fmt: skip
        self.target = target
        path = [PKG_ROOT, *(p for p in paths if p != PKG_ROOT)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                   PYTHONUNBUFFERED="1")  # fmt: skip
        argv = ["ip", "netns", "exec", ns, sys.executable, *(["-X", "dev"] if dev else []), "-c", _BOOT, target,
                json.dumps(path)]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(kwargs) + "\n")
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not touch it again
        self._lines: list[str] = []

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until the function called ``ready()``; raise RuntimeError with its stderr if it died."""
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
        """The function's JSON-decoded return value; raise RuntimeError with stderr if it failed."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.target} did not finish in {timeout:.0f} s: {self._stderr()}") from None
        lines = self._lines + out.splitlines()
        for line in reversed(lines):
            if line.startswith(_RESULT):
                return json.loads(line[len(_RESULT):])
        raise RuntimeError(f"{self.target} failed (rc={self.proc.returncode}):\n{err.strip()}")

    def _stderr(self) -> str:
        try:
            _, err = self.proc.communicate(timeout=2)
        except (subprocess.TimeoutExpired, ValueError):
            return "(no stderr)"
        return (err or "").strip() or "(no stderr)"

    def kill(self) -> None:
        """Kill the child if it still runs (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # a failing caller never leaves a child behind


def start_in_ns(ns: str, target: str, *, paths: Sequence[str] = (), dev: bool = False, **kwargs: Any) -> Worker:
    """Start ``module:function(ready=..., **kwargs)`` inside namespace ``ns``."""
    return Worker(ns, target, kwargs, paths=paths, dev=dev)


def run_in_ns(ns: str, target: str, timeout: float = 30.0, *, paths: Sequence[str] = (), dev: bool = False,
              **kwargs: Any) -> Any:  # fmt: skip
    """Run ``module:function(ready=..., **kwargs)`` inside ``ns`` to completion; its JSON result."""
    with Worker(ns, target, kwargs, paths=paths, dev=dev) as w:
        return w.result(timeout)
