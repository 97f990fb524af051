"""AF_XDP frame source: an XDP filter steers the feed's UDP flows into a UMEM shared with user space.

::

    with open_source("afxdp", iface="eth1", feeds=[("239.1.1.1", 26400)], queue=0) as src:
        batch = src.poll(max=64, timeout=0.1)

At open, efsdk assembles a small XDP program from ``feeds`` (no clang, no
object file) and attaches it to ``iface`` through a BPF link: Ethernet, up to
two 802.1Q/802.1ad tags, IPv4, not a fragment, UDP, destination (address,
port) equal to a feed -> redirected to this socket; everything else (ARP,
ICMP, other ports, fragments) is passed to the kernel untouched and counted
(``non_udp``, ``fragments``, ``malformed``, ``filtered``).  Closing the source
(or the process dying) detaches the program.

Frames are parsed in C exactly as for AF_PACKET and handed out as zero-copy
memoryviews into the UMEM; ``release()`` (or the next ``poll``) returns their
chunks to the fill ring in one batch.  Options:

* ``queue``: the rx queue to bind.  The socket sees only frames the NIC puts
  on that queue; feed frames on other queues are passed to the kernel and
  counted in ``kernel_drops`` (``xdp_stats["prog"]["other_queue"]``): steer the
  feed with ``ethtool -N`` or use a single-queue interface.
* ``bind_mode``: ``"auto"`` (the kernel tries zero-copy, falls back to copy),
  ``"copy"``, ``"zerocopy"`` (refused with a clear error where the driver cannot,
  e.g. veth).  ``bind_mode_used`` says what the kernel chose.
* ``xdp_mode``: ``"auto"`` (native, else skb), ``"native"`` (in the driver),
  ``"skb"`` (generic, after the skb is built; works everywhere, slower).
* ``need_wakeup`` (default on): the kernel sets a flag when it needs a syscall
  to make progress, otherwise the receive path makes none.
* ``frame_size`` (2048 or 4096) and ``umem_size``: the UMEM holds
  ``umem_size / frame_size`` chunks; ``fill_size`` / ``rx_size`` default to that
  count rounded up to a power of two.  Frames larger than a chunk
  (``frame_size - 256`` bytes in copy mode) are cut by the program and counted
  ``truncated`` (delivered flagged with ``keep_truncated=True``).
* ``busy=True`` spins on the rx ring; otherwise an empty poll sleeps in
  ``poll(2)`` on the socket.  ``busy_poll_us`` sets ``SO_BUSY_POLL`` +
  ``SO_PREFER_BUSY_POLL`` (useful with zero-copy drivers).
* Multicast feeds are joined through a kernel UDP socket on ``iface`` (the
  XDP path sends no IGMP).

Timestamps (``ts_kind == "sw"``): taken by the XDP program when the frame
enters XDP (``bpf_ktime_get_tai_ns``, converted to CLOCK_REALTIME exactly;
``bpf_ktime_get_ns`` on kernels < 6.1), before the kernel stack.  AF_XDP has
no NIC timestamps on veth; the XDP hints kfunc for NIC time is not used.

Needs the optional module ``efsdk._native_afxdp`` (libxdp + libbpf at build
time), root (CAP_NET_ADMIN + CAP_BPF + CAP_NET_RAW) and Linux >= 5.18.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from efsdk.errors import ConfigError, NativeError
from efsdk.sources import base as _base
from efsdk.sources.base import CFG_BUSY_POLL, CFG_KEEP_TRUNCATED, POLL_RELEASE, NativeFrameSource, SourceError
from efsdk.sources.udp import _addr_be

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_FRAME_SIZE",
    "DEFAULT_UMEM_SIZE",
    "EXPECTED_AFXDP_VERSION",
    "NATIVE_AFXDP",
    "NOT_BUILT",
    "PROG_COUNTERS",
    "AfXdpConfig",
    "AfXdpSource",
    "afxdp_available",
    "afxdp_error",
    "make_config",
    "open_afxdp",
]

NATIVE_AFXDP = "efsdk._native_afxdp"
#: EFSDK_AFXDP_VERSION * 1000 + EFSDK_SOURCES_VERSION, as efsdk_afxdp_version() returns it.
EXPECTED_AFXDP_VERSION = 1 * 1000 + _base.EXPECTED_NATIVE_VERSION
NOT_BUILT = (
    "AF_XDP support not built (efsdk._native_afxdp): install libxdp-dev libbpf-dev pkg-config, "
    "then rebuild (python native/build_afxdp.py, or pip install .)"
)
DEFAULT_BATCH = 256
# 2 KiB chunks: two per 4 KiB page, room for the 256-byte XDP headroom plus a
# 1500-byte MTU frame and its tags.
DEFAULT_FRAME_SIZE = 2048
# 16 MiB = 8192 chunks: ~8 ms of a 1 Mpps feed when the consumer stalls.
DEFAULT_UMEM_SIZE = 16 << 20
# Completion ring: transmit only; the kernel insists on one. Smallest sensible.
_COMP_SIZE = 64
_MAX_QUEUE = 4095
_ERRBUF = 512

# Open stages (EFSDK_AFXDP_STAGE_* in native/src_afxdp.c; checked at import).
STAGE_CONFIG, STAGE_IFACE, STAGE_MEM, STAGE_UMEM, STAGE_MAPS, STAGE_PROG = 1, 2, 3, 4, 5, 6
STAGE_SOCKET, STAGE_XSKMAP, STAGE_ATTACH, STAGE_SOCKOPT, STAGE_JOIN = 7, 8, 9, 10, 11
_STAGE_NAMES = {
    STAGE_CONFIG: "checking the configuration",
    STAGE_IFACE: "looking up the interface",
    STAGE_MEM: "allocating the UMEM",
    STAGE_UMEM: "registering the UMEM and its fill/completion rings (xsk_umem__create)",
    STAGE_MAPS: "creating the BPF maps (bpf_map_create)",
    STAGE_PROG: "loading the XDP program (bpf_prog_load)",
    STAGE_SOCKET: "binding the AF_XDP socket (xsk_socket__create)",
    STAGE_XSKMAP: "inserting the socket into xsks_map",
    STAGE_ATTACH: "attaching the XDP program (bpf_link_create)",
    STAGE_SOCKOPT: "setting SO_BUSY_POLL",
    STAGE_JOIN: "joining a multicast group (IP_ADD_MEMBERSHIP)",
}
_ROOT = "needs root (CAP_NET_ADMIN + CAP_BPF + CAP_NET_RAW)"
# (stage or None for any, errno) -> what to do.  Most specific first.
_HINTS: dict[tuple[int | None, int], str] = {
    (STAGE_IFACE, errno.ENODEV): "no such network interface in this network namespace",
    (STAGE_MEM, errno.ENOMEM): "could not allocate the UMEM: lower umem_size",
    (STAGE_UMEM, errno.EAFNOSUPPORT): "this kernel has no AF_XDP (CONFIG_XDP_SOCKETS)",
    (STAGE_UMEM, errno.ENOMEM): "could not pin the UMEM: raise RLIMIT_MEMLOCK (ulimit -l) or lower umem_size",
    (STAGE_UMEM, errno.EPERM): _ROOT,
    (STAGE_UMEM, errno.EINVAL): "the kernel refused the UMEM geometry (frame_size, umem_size, ring sizes)",
    (STAGE_MAPS, errno.EPERM): _ROOT,
    (STAGE_PROG, errno.EPERM): _ROOT,
    (STAGE_PROG, errno.EINVAL): "the kernel's verifier refused the XDP program (needs Linux >= 5.18)",
    (STAGE_PROG, errno.EACCES): "the kernel's verifier refused the XDP program (needs Linux >= 5.18)",
    (STAGE_SOCKET, errno.EOPNOTSUPP): "zero-copy refused: the driver cannot do AF_XDP zero-copy (veth and most "
    "virtual NICs do copy mode only); use bind_mode='auto' or 'copy'",
    (STAGE_SOCKET, errno.EBUSY): "another AF_XDP socket is bound to this interface queue",
    (STAGE_SOCKET, errno.EINVAL): "bind refused: the queue id is beyond the interface's rx queues "
    "(see `ethtool -l`), or a ring size is invalid",
    (STAGE_SOCKET, errno.EPERM): _ROOT,
    (STAGE_ATTACH, errno.EBUSY): "the interface already has an XDP program (see `ip link show`): detach it "
    "or use another interface",
    (STAGE_ATTACH, errno.EEXIST): "the interface already has an XDP program (see `ip link show`): detach it "
    "or use another interface",
    (STAGE_ATTACH, errno.EOPNOTSUPP): "the driver has no native XDP: use xdp_mode='auto' or 'skb'",
    (STAGE_ATTACH, errno.EINVAL): "native XDP refused by the driver: use xdp_mode='auto' or 'skb'",
    (STAGE_ATTACH, errno.ERANGE): "the MTU is too large for native XDP on this driver: lower it or use "
    "xdp_mode='skb'",
    (STAGE_JOIN, errno.ENODEV): "the interface has no IPv4 address for the multicast join",
    (None, errno.EPERM): _ROOT,
    (None, errno.EBADF): "the source is closed",
    (None, errno.ENETDOWN): "the interface went down",
    (None, errno.EINVAL): "invalid parameter",
}

#: Counters of the XDP program, in EFSDK_AFXDP_CNT_* order (checked at import).
PROG_COUNTERS = ("non_udp", "fragment", "short", "filtered", "other_queue", "truncated", "trunc_fail",
                 "meta_fail", "no_socket")  # fmt: skip
_BIND_MODES = {"auto": 0, "copy": 1, "zerocopy": 2}
_XDP_MODES = {"auto": 0, "native": 1, "skb": 2}
_XDP_MODE_NAMES = {1: "native", 2: "skb"}


def afxdp_error(rc: int, stage: int | None, what: str, detail: str = "") -> SourceError:
    """The :class:`SourceError` for ``rc`` (-errno) failing at open ``stage`` (None: after open)."""
    return _base.stage_error(rc, stage, what, _HINTS, _STAGE_NAMES, detail)


# --------------------------------------------------------------------------- the native module

_ffi, _lib, _IMPORT_ERROR = _base.load_optional_module(
    NATIVE_AFXDP, "efsdk_afxdp_version", EXPECTED_AFXDP_VERSION, "python native/build_afxdp.py, or pip install .",
    {
        "EFSDK_AFXDP_STAGE_SOCKET": STAGE_SOCKET,
        "EFSDK_AFXDP_STAGE_JOIN": STAGE_JOIN,
        "EFSDK_AFXDP_BIND_ZEROCOPY": _BIND_MODES["zerocopy"],
        "EFSDK_AFXDP_XDP_SKB": _XDP_MODES["skb"],
        "EFSDK_AFXDP_N_COUNTERS": len(PROG_COUNTERS),
        "EFSDK_AFXDP_CNT_NO_SOCKET": PROG_COUNTERS.index("no_socket"),
        "EFSDK_POLL_RELEASE": POLL_RELEASE,
        "EFSDK_CFG_KEEP_TRUNCATED": CFG_KEEP_TRUNCATED,
    },
)


def afxdp_available() -> bool:
    """True when ``efsdk._native_afxdp`` was built and imported (says nothing about the kernel)."""
    return _lib is not None


def libbpf_version() -> str | None:
    """The libbpf version linked in, or None when not built."""
    return None if _lib is None else _ffi.string(_lib.efsdk_afxdp_libbpf_version()).decode()


# --------------------------------------------------------------------------- config


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class AfXdpConfig(BaseModel):
    """A validated AF_XDP source configuration (pure Python: no native module needed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iface: str
    feeds: tuple[tuple[str, int], ...] = Field(min_length=1, max_length=64)  # EFSDK_MAX_FEEDS
    queue: int = Field(0, ge=0, le=_MAX_QUEUE)
    bind_mode: Literal["auto", "copy", "zerocopy"] = "auto"
    xdp_mode: Literal["auto", "native", "skb"] = "auto"
    need_wakeup: bool = True
    frame_size: Literal[2048, 4096] = DEFAULT_FRAME_SIZE
    umem_size: int = Field(DEFAULT_UMEM_SIZE, gt=0)
    fill_size: int | None = None
    rx_size: int | None = None
    batch: int = Field(DEFAULT_BATCH, ge=1, le=65536)
    busy: bool = False
    busy_poll_us: int = Field(0, ge=0, le=1_000_000)
    keep_truncated: bool = False

    @field_validator("iface")
    @classmethod
    def _iface(cls, v: str) -> str:
        if not 0 < len(v.encode("ascii", "replace")) < 16:
            raise ValueError(f"interface name must be 1..15 characters, got {v!r}")
        return v

    @field_validator("feeds", mode="before")
    @classmethod
    def _feeds(cls, v: Any) -> tuple[tuple[str, int], ...]:
        if not v:
            raise ValueError("at least one feed (address, port) is needed: the XDP program redirects only feeds")
        out = []
        for feed in v:
            try:
                addr, port = feed
                port = int(port)
            except (TypeError, ValueError):
                raise ValueError(f"a feed is (address, port), got {feed!r}") from None
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"feed port must be 0..65535, got {port}")
            try:
                be = _addr_be(addr, "feed address")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if be == 0 and port == 0:
                raise ValueError(
                    "a feed needs a destination address or a port: (0.0.0.0, 0) would steal all UDP from the kernel"
                )
            out.append((str(addr), port))
        if len(set(out)) != len(out):
            raise ValueError(f"duplicate feeds: {out}")
        return tuple(out)

    @model_validator(mode="after")
    def _geometry(self) -> AfXdpConfig:
        if self.umem_size % self.frame_size:
            raise ValueError(f"umem_size ({self.umem_size}) must be a multiple of frame_size ({self.frame_size})")
        if not 64 <= self.n_frames <= 1 << 22:
            raise ValueError(f"the UMEM must hold 64..4194304 frames, got {self.n_frames}")
        for name in ("fill_size", "rx_size"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and v & (v - 1) == 0 and 64 <= v <= 1 << 22):
                raise ValueError(f"{name} must be a power of two 64..4194304, got {v}")
        return self

    @property
    def n_frames(self) -> int:
        """UMEM chunks."""
        return self.umem_size // self.frame_size

    @property
    def fill_entries(self) -> int:
        """Fill ring entries (default: the chunk count rounded up to a power of two)."""
        return self.fill_size or _pow2_at_least(self.n_frames)

    @property
    def rx_entries(self) -> int:
        """Rx ring entries (default: the chunk count rounded up to a power of two)."""
        return self.rx_size or _pow2_at_least(self.n_frames)

    def describe(self) -> str:
        feeds = ", ".join(f"{a}:{p}" for a, p in self.feeds)
        return f"afxdp {self.iface} queue {self.queue} [{feeds}]"


def make_config(iface: str, *, feeds: Sequence[tuple[str, int]] = (), **options: Any) -> AfXdpConfig:
    """Validate the options of :func:`open_afxdp`; raises :class:`ConfigError` naming what is wrong."""
    try:
        return AfXdpConfig(iface=iface, feeds=feeds, **options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid AF_XDP source options: {problems}") from None


# --------------------------------------------------------------------------- the source


class AfXdpSource(NativeFrameSource):
    """One AF_XDP socket on ``config.queue`` of ``config.iface`` behind efsdk's XDP filter (see the module doc)."""

    kind = "afxdp"

    def __init__(self, config: AfXdpConfig) -> None:  # noqa: D107 - replaces the base open
        if _lib is None:
            raise NativeError(f"{NOT_BUILT} [{_IMPORT_ERROR}]")
        if _base._ffi is None:  # FrameBatch builds its memoryviews through efsdk._native_sources' ffi
            _base.require_native(self.kind)
        ffi, lib = _ffi, _lib
        self._h = None
        self._config = config
        self._describe = config.describe()
        c_feeds = ffi.new("efsdk_feed[]", len(config.feeds))
        for i, (addr, port) in enumerate(config.feeds):
            c_feeds[i].addr = _addr_be(addr, "feed address")
            c_feeds[i].port = port
        errbuf = ffi.new("char[]", _ERRBUF)
        cfg = ffi.new("efsdk_afxdp_config *")
        cfg.iface = config.iface.encode("ascii")
        cfg.flags = (CFG_BUSY_POLL if config.busy else 0) | (CFG_KEEP_TRUNCATED if config.keep_truncated else 0)
        cfg.queue_id = config.queue
        cfg.bind_mode = _BIND_MODES[config.bind_mode]
        cfg.xdp_mode = _XDP_MODES[config.xdp_mode]
        cfg.need_wakeup = int(config.need_wakeup)
        cfg.frame_size = config.frame_size
        cfg.n_frames = config.n_frames
        cfg.fill_size = config.fill_entries
        cfg.comp_size = _COMP_SIZE
        cfg.rx_size = config.rx_entries
        cfg.busy_poll_us = config.busy_poll_us
        cfg.batch = config.batch
        cfg.n_feeds = len(config.feeds)
        cfg.feeds = c_feeds
        cfg.errbuf = errbuf
        cfg.errbuf_len = _ERRBUF
        out = ffi.new("efsdk_source **")
        stage = ffi.new("int *")
        rc = lib.efsdk_afxdp_open(cfg, out, stage)
        if rc < 0:
            detail = ffi.string(errbuf).decode("utf-8", "replace").strip()
            raise afxdp_error(rc, stage[0], f"opening {self._describe}", detail)
        self._h = out[0]
        self._opened()
        self._lib = lib
        self._poll_fn = lib.efsdk_source_poll
        self._batch = config.batch
        self._frames = ffi.new("efsdk_frame[]", config.batch)
        self._stats_buf = ffi.new("efsdk_source_stats *")
        self._xstats_buf = ffi.new("efsdk_afxdp_stats *")
        self._final_stats: _base.SourceStats | None = None
        self._final_xstats: dict[str, Any] | None = None
        self._gen = 0
        self._keepalive = (c_feeds, cfg, errbuf)
        x = self.xdp_stats
        self.bind_mode_used: str = "zerocopy" if x["zerocopy"] else "copy"
        self.xdp_mode_used: str = x["xdp_mode"]
        self.prog_id: int = x["prog_id"]

    @property
    def config(self) -> AfXdpConfig:
        """The validated configuration this source was opened with."""
        return self._config

    def _raise(self, rc: int, what: str) -> None:
        """Errors carry AF_XDP hints."""
        raise afxdp_error(rc, None, what)

    @property
    def xdp_stats(self) -> dict[str, Any]:
        """AF_XDP detail: XDP_STATISTICS, the program's pass/redirect counters, modes, ring fill level."""
        if self._h is None:
            return self._final_xstats or {}
        rc = self._lib.efsdk_afxdp_get_stats(self._h, self._xstats_buf)
        if rc < 0:
            raise afxdp_error(rc, None, f"stats of {self._describe}")
        x = self._xstats_buf
        out: dict[str, Any] = {name: int(getattr(x, name)) for name in (
            "rx_dropped", "rx_invalid_descs", "rx_ring_full", "rx_fill_ring_empty_descs", "descs", "wakeups",
            "no_meta", "queue_id", "frame_size", "n_frames", "fill_level", "prog_id", "prog_insns")}  # fmt: skip
        out["prog"] = {name: int(x.prog[i]) for i, name in enumerate(PROG_COUNTERS)}
        out["zerocopy"] = bool(x.zerocopy)
        out["need_wakeup"] = bool(x.need_wakeup)
        out["xdp_mode"] = _XDP_MODE_NAMES.get(int(x.xdp_mode), "?")
        out["clock"] = "tai" if x.tai_clock else "monotonic"
        return out

    def _release(self) -> None:
        try:
            self._final_xstats = self.xdp_stats
        except SourceError:
            self._final_xstats = None
        super()._release()

    def __repr__(self) -> str:
        if self._h is None:
            return f"<AfXdpSource {self._describe} closed>"
        return (f"<AfXdpSource {self._describe} {self.bind_mode_used}/{self.xdp_mode_used} "
                f"open pending={self.pending}>")  # fmt: skip


def open_afxdp(iface: str, **options: Any) -> AfXdpSource:
    """Open an AF_XDP source on ``iface`` for ``feeds=[(group or address, port), ...]`` (see the module doc).

    Raises :class:`ConfigError` for bad options, :class:`NativeError` when
    ``efsdk._native_afxdp`` is not built, :class:`SourceError` (errno + the
    failing step + what to do) when the kernel refuses, e.g. EOPNOTSUPP for
    ``bind_mode="zerocopy"`` on a driver without zero-copy.
    """
    if _lib is None:  # the main problem first, whatever the options say
        raise NativeError(f"{NOT_BUILT} [{_IMPORT_ERROR}]")
    return AfXdpSource(make_config(iface, **options))
