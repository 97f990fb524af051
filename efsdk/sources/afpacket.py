"""AF_PACKET frame source: a ``PACKET_RX_RING`` shared with the kernel, parsed in C.

Two ring formats:

* ``version=3`` (TPACKET_V3): frames packed into blocks of ``block_size``
  bytes; the kernel hands a block over when it is full or when its retire
  timer (``retire_ms``) fires.  Memory-efficient and cheap per frame, but a
  quiet feed waits up to ``retire_ms`` for its block: the kernel default is
  about 8 ms, so this wrapper defaults to 1 ms.
* ``version=2`` (TPACKET_V2): one ``frame_size`` slot per frame, handed over
  frame by frame: the lowest latency, more memory per frame.

Frames are parsed in C (Ethernet, up to two 802.1Q tags, IPv4, UDP) and
filtered by destination ``feeds`` [(group or address, port), ...]; anything
else is counted (``non_udp``, ``fragments``, ``malformed``, ``truncated``,
``filtered``) and skipped.  Payload memoryviews point into the ring.
Multicast feeds are joined through a kernel UDP socket on ``iface`` (raw
receive paths send no IGMP).  Needs CAP_NET_RAW.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from efsdk.errors import ConfigError
from efsdk.sources.base import (
    CFG_BUSY_POLL,
    CFG_HW_TIMESTAMPS,
    CFG_KEEP_TRUNCATED,
    CFG_PROMISC,
    NativeFrameSource,
    require_native,
)
from efsdk.sources.udp import _addr_be

__all__ = [
    "DEFAULT_BLOCK_COUNT",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_FRAME_SIZE",
    "DEFAULT_RETIRE_MS",
    "FANOUT_MODES",
    "AfPacketSource",
    "open_afpacket",
]

# 128 KiB x 256 blocks = 32 MiB of ring.  Many small blocks rather than a few
# big ones: on a trickling feed the retire timer hands over one mostly empty
# block per `retire_ms`, so the number of blocks, not their size, bounds how
# long a stalled consumer survives (256 x 1 ms here; measured: 32 x 1 MiB
# blocks lost 56 % of a 0.6 MB trickle behind a 300 ms stall, 512 x 64 KiB
# lost nothing).  A full-rate feed fills 128 KiB in ~100 us at 10 Gb/s.
DEFAULT_BLOCK_SIZE = 128 << 10
DEFAULT_BLOCK_COUNT = 256
# 2 KiB V2 slots: header (~52 B) + a 1500-byte MTU frame + tags fit, and a
# slot never straddles a 4 KiB page.
DEFAULT_FRAME_SIZE = 2048
# V3 retire timeout: 1 ms instead of the kernel's ~8 ms default, which would
# hold a quiet feed's frames back that long.
DEFAULT_RETIRE_MS = 1
# Max frames per poll.
DEFAULT_BATCH = 256

# PACKET_FANOUT modes (linux/if_packet.h).
FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2, "rollover": 3, "rnd": 4, "qm": 5}
_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


class AfPacketSource(NativeFrameSource):
    """A PACKET_RX_RING (TPACKET_V2 or V3) on one interface."""

    kind = "afpacket"


def _bpf_bytes(bpf: bytes | Iterable[tuple[int, int, int, int]]) -> bytes:
    if isinstance(bpf, bytes | bytearray | memoryview):
        raw = bytes(bpf)
    else:
        raw = b"".join(_SOCK_FILTER.pack(*ins) for ins in bpf)
    if not raw or len(raw) % 8:
        raise ConfigError("bpf must be a non-empty list of (code, jt, jf, k) or 8-byte sock_filter records")
    return raw


def open_afpacket(
    iface: str,
    *,
    version: int = 3,
    feeds: Sequence[tuple[str, int]] = (),
    block_size: int = DEFAULT_BLOCK_SIZE,
    block_count: int = DEFAULT_BLOCK_COUNT,
    frame_size: int = DEFAULT_FRAME_SIZE,
    retire_ms: int = DEFAULT_RETIRE_MS,
    batch: int = DEFAULT_BATCH,
    busy: bool = False,
    keep_truncated: bool = False,
    promisc: bool = False,
    hw_timestamps: bool = False,
    fanout: tuple[int, str] | None = None,
    bpf: bytes | Iterable[tuple[int, int, int, int]] | None = None,
) -> AfPacketSource:
    """Open an AF_PACKET ring on ``iface``, delivering UDP payloads of ``feeds``.

    ``feeds`` lists (destination address, port) pairs; address ``"0.0.0.0"``
    or port 0 are wildcards, an empty list delivers all UDP.  ``fanout=(group
    id, mode)`` spreads one interface over several sources (mode one of
    :data:`FANOUT_MODES`); ``bpf`` attaches a classic BPF program before the
    ring (kernel-side pre-filter).  ``hw_timestamps`` asks for NIC
    timestamps (the NIC must be set up with SIOCSHWTSTAMP, e.g. ``hwstamp_ctl``);
    frames say which kind they got.  Raises ConfigError / SourceError.
    """
    ffi, lib = require_native("afpacket")
    if version not in (2, 3):
        raise ConfigError(f"TPACKET version must be 2 or 3, got {version}")
    name = iface.encode("ascii", "replace")
    if not 0 < len(name) < 16:
        raise ConfigError(f"interface name must be 1..15 characters, got {iface!r}")
    if len(feeds) > lib.EFSDK_MAX_FEEDS:
        raise ConfigError(f"at most {lib.EFSDK_MAX_FEEDS} feeds per source, got {len(feeds)}")
    c_feeds = ffi.new("efsdk_feed[]", max(1, len(feeds)))
    for i, (addr, port) in enumerate(feeds):
        if not 0 <= int(port) <= 0xFFFF:
            raise ConfigError(f"feed port must be 0..65535, got {port}")
        c_feeds[i].addr = _addr_be(addr, "feed address")
        c_feeds[i].port = int(port)
    cfg = ffi.new("efsdk_source_config *")
    cfg.backend = 2  # EFSDK_BACKEND_AFPACKET
    cfg.flags = (
        (CFG_BUSY_POLL if busy else 0)
        | (CFG_KEEP_TRUNCATED if keep_truncated else 0)
        | (CFG_PROMISC if promisc else 0)
        | (CFG_HW_TIMESTAMPS if hw_timestamps else 0)
    )
    cfg.iface = name
    cfg.tpacket_version = version
    cfg.block_size = block_size
    cfg.block_count = block_count
    cfg.frame_size = frame_size
    cfg.retire_ms = retire_ms
    cfg.n_feeds = len(feeds)
    cfg.feeds = c_feeds
    keep: list[object] = [c_feeds]
    if fanout is not None:
        group_id, mode = fanout
        if mode not in FANOUT_MODES or not 0 <= group_id <= 0xFFFF:
            raise ConfigError(f"fanout must be (group id 0..65535, one of {sorted(FANOUT_MODES)}), got {fanout}")
        cfg.fanout = (FANOUT_MODES[mode] << 16) | group_id
    if bpf is not None:
        raw = _bpf_bytes(bpf)
        c_bpf = ffi.new("uint8_t[]", raw)
        keep.append(c_bpf)
        cfg.bpf = c_bpf
        cfg.bpf_len = len(raw) // 8
    what = ", ".join(f"{a}:{p}" for a, p in feeds) or "all UDP"
    return AfPacketSource(cfg, batch, f"afpacket {iface} TPACKET_V{version} [{what}]", tuple(keep))
