"""Kernel UDP frame source: one socket, ``recvmmsg`` batches, software timestamps.

The portable path, and the one Onload accelerates transparently (run the
process under ``onload``): only the standard socket API is used.  Datagrams
land in ``batch`` pre-allocated buffers of ``buf_size`` bytes; a datagram
longer than its buffer is counted in ``stats.truncated`` and skipped (or
delivered with :data:`~efsdk.sources.base.FLAG_TRUNCATED` when
``keep_truncated=True``).  Socket-queue overflows are counted from
``SO_RXQ_OVFL`` in ``stats.kernel_drops``.
"""

from __future__ import annotations

import ipaddress

from efsdk.errors import ConfigError
from efsdk.sources.base import (
    CFG_BUSY_POLL,
    CFG_KEEP_TRUNCATED,
    NativeFrameSource,
    require_native,
)

__all__ = ["DEFAULT_BATCH", "DEFAULT_BUF_SIZE", "DEFAULT_RCVBUF", "UdpSource", "open_udp"]

# 64 datagrams per recvmmsg: past ~32 the per-call saving flattens out and a
# larger batch only adds latency to the first frame of a burst.
DEFAULT_BATCH = 64
# 2 KiB per buffer holds any datagram of a 1500-byte MTU feed (MoldUDP64
# publishers stay under ~1,400 bytes) and keeps each buffer inside one 4 KiB page.
DEFAULT_BUF_SIZE = 2048
# 8 MiB of socket queue absorbs an open/close burst of a busy feed (~5 ms at 10 Gb/s).
DEFAULT_RCVBUF = 8 << 20


def _addr_be(addr: str | None, what: str) -> int:
    """IPv4 text -> u32 in network byte order as the C side reads it (0 for None)."""
    if addr is None:
        return 0
    try:
        packed = ipaddress.IPv4Address(addr).packed
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return int.from_bytes(packed, "little")


class UdpSource(NativeFrameSource):
    """A bound UDP socket (multicast group or unicast address) read with ``recvmmsg``."""

    kind = "udp"


def open_udp(
    group: str | None = None,
    port: int = 0,
    iface_addr: str | None = None,
    *,
    batch: int = DEFAULT_BATCH,
    buf_size: int = DEFAULT_BUF_SIZE,
    rcvbuf: int = DEFAULT_RCVBUF,
    busy: bool = False,
    busy_poll_us: int = 0,
    keep_truncated: bool = False,
) -> UdpSource:
    """Open a kernel UDP source on ``group:port``.

    ``group`` is a multicast group (joined on the interface owning
    ``iface_addr``; the kernel picks one when it is None), a local unicast
    address, or None for every local address.  ``busy=True`` spins instead of
    sleeping while ``poll`` waits; ``busy_poll_us`` sets ``SO_BUSY_POLL``
    (driver-level busy polling; needs a NIC driver with NAPI busy-poll).
    Raises :class:`~efsdk.errors.ConfigError` for bad arguments,
    :class:`~efsdk.sources.base.SourceError` when the socket cannot be set up.
    """
    ffi, _ = require_native("udp")
    if not 0 < port <= 0xFFFF:
        raise ConfigError(f"UDP port must be 1..65535, got {port}")
    if not 1 <= batch <= 1024:  # recvmmsg handles at most UIO_MAXIOV (1024) per call
        raise ConfigError(f"batch must be 1..1024 datagrams, got {batch}")
    if not 64 <= buf_size <= 65536:
        raise ConfigError(f"buf_size must be 64..65536 bytes, got {buf_size}")
    cfg = ffi.new("efsdk_source_config *")
    cfg.backend = 1  # EFSDK_BACKEND_UDP
    cfg.flags = (CFG_BUSY_POLL if busy else 0) | (CFG_KEEP_TRUNCATED if keep_truncated else 0)
    cfg.rcvbuf = int(rcvbuf)
    cfg.busy_poll_us = int(busy_poll_us)
    cfg.bind_addr = _addr_be(group, "group")
    cfg.iface_addr = _addr_be(iface_addr, "iface_addr")
    cfg.port = port
    cfg.batch = batch
    cfg.buf_size = buf_size
    where = f"{group or '0.0.0.0'}:{port}" + (f" via {iface_addr}" if iface_addr else "")
    return UdpSource(cfg, batch, f"udp {where}")
