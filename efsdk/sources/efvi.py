"""ef_vi frame source: kernel bypass on Solarflare/AMD NICs (EF10: X2/SFN8000; X3 untested).

::

    with open_source("efvi", iface="eth2", feeds=[("239.1.1.1", 26400)], hw_timestamps=True) as src:
        batch = src.poll(max=64, timeout=0.1)

The NIC steers each feed's (group, port) straight into a virtual interface
(VI) of this process: no kernel, no syscall per packet.  Frames are parsed in
C (Ethernet, 802.1Q, IPv4, UDP) exactly as for AF_PACKET, and checked against
``feeds`` again in software (a NIC filter can be shared).  Multicast groups are
joined through an ordinary kernel socket, because ef_vi filters send no IGMP.

Needs the optional module ``efsdk._native_efvi``, built only when the Onload
headers and libciul are found at install time (``EFSDK_ONLOAD_PREFIX``), and
at run time the Solarflare/AMD driver (``/dev/sfc_char``).  Options:

* ``busy=True``: spin on the event queue (lowest latency, one core at 100 %);
  otherwise an empty poll sleeps in the driver (``ef_eventq_wait``).
* ``hw_timestamps=True``: NIC receive timestamps (``ts_kind == "hw"``); the VI
  needs a few hundred ms to seconds after open to sync with the adapter clock:
  until then frames carry no timestamp and ``efvi_stats["ts_errors"]`` counts.
* ``event_merge=True``: ``EF_VI_RX_EVENT_MERGE`` from the start (opening
  retries with it anyway when the NIC refuses a plain VI with EPERM).
* ``rxq_size`` / ``evq_size`` (-1: driver default 512), ``n_bufs`` (2 KiB
  packet buffers; default ring capacity + 512): a caller holding frames keeps
  their buffers off the ring.
* ``pd_flags``: names from :data:`PD_FLAGS` (``"vf"``, ``"phys"``, ``"mcast_loop"``).
* ``datapath``: ``"auto"`` (the express datapath where the interface offers
  it, ``EF_VI_CAP_EXTRA_DATAPATHS``, as Onload's examples do), ``"express"``
  (or fail) or ``"enterprise"``; ``efvi_stats["express"]`` says which.
* Further NIC filters: ``macs=["00:0f:53:..."]`` (eth_local, any VLAN; up to
  8) and ``multicast_all=True``.  With them ``feeds`` may be empty; frames are
  still parsed as UDP and checked against ``feeds`` when there are any.

Hardware timestamps carry the adapter clock's state in the frame flags:
:data:`~efsdk.sources.base.FLAG_TS_CLOCK_SET` once it was ever set,
:data:`~efsdk.sources.base.FLAG_TS_IN_SYNC` while it is in sync (sfptpd).

Frames larger than one 2 KiB buffer (jumbos) are not reassembled: counted in
``truncated`` and ``efvi_stats["jumbo"]``.  No software timestamps: without
``hw_timestamps`` frames have ``ts_kind == "none"``.  After a NIC reset every
poll raises :class:`SourceError` (ENETRESET): close and reopen.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from efsdk.errors import ConfigError, NativeError
from efsdk.sources import base as _base
from efsdk.sources.base import (
    CFG_BUSY_POLL,
    CFG_HW_TIMESTAMPS,
    FLAG_TS_CLOCK_SET,
    FLAG_TS_IN_SYNC,
    POLL_RELEASE,
    NativeFrameSource,
    SourceError,
    SourceStats,
)
from efsdk.sources.udp import _addr_be

__all__ = [
    "DEFAULT_BATCH",
    "EXPECTED_EFVI_VERSION",
    "NATIVE_EFVI",
    "NOT_BUILT",
    "PD_FLAGS",
    "EfviConfig",
    "EfviSource",
    "capabilities",
    "efvi_available",
    "efvi_error",
    "make_config",
    "open_efvi",
]

NATIVE_EFVI = "efsdk._native_efvi"
#: EFSDK_EFVI_VERSION * 1000 + EFSDK_SOURCES_VERSION, as efsdk_efvi_version() returns it.
EXPECTED_EFVI_VERSION = 3 * 1000 + _base.EXPECTED_NATIVE_VERSION
NOT_BUILT = (
    "ef_vi support not built: install Onload headers+libciul, "
    "set EFSDK_ONLOAD_PREFIX=<prefix>, reinstall (pip install .)"
)
DEFAULT_BATCH = 64

# Open stages (EFSDK_EFVI_STAGE_* in native/src_efvi.c; checked at import).
STAGE_CONFIG, STAGE_DRIVER, STAGE_PD, STAGE_VI, STAGE_MEM = 1, 2, 3, 4, 5
STAGE_MEMREG, STAGE_POST, STAGE_FILTER, STAGE_JOIN = 6, 7, 8, 9
_STAGE_NAMES = {
    STAGE_CONFIG: "checking the configuration",
    STAGE_DRIVER: "opening the driver (ef_driver_open)",
    STAGE_PD: "allocating a protection domain (ef_pd_alloc_by_name)",
    STAGE_VI: "allocating a virtual interface (ef_vi_alloc_from_pd)",
    STAGE_MEM: "allocating packet buffers",
    STAGE_MEMREG: "registering packet buffers (ef_memreg_alloc)",
    STAGE_POST: "posting receive buffers",
    STAGE_FILTER: "adding a NIC filter (ef_vi_filter_add)",
    STAGE_JOIN: "joining a multicast group (IP_ADD_MEMBERSHIP)",
}
# (stage or None for any, errno) -> what to do.  Most specific first.
_HINTS: dict[tuple[int | None, int], str] = {
    (STAGE_DRIVER, errno.ENOENT): "no Solarflare/AMD driver (/dev/sfc_char missing): load it with "
    "`onload_tool reload` or `modprobe sfc_char`",
    (STAGE_DRIVER, errno.EACCES): "no permission on /dev/sfc_char: run as root or adjust its mode/group",
    (STAGE_PD, errno.ENODEV): "not a Solarflare/AMD interface (use the physical port, not a bond or VLAN)",
    (STAGE_PD, errno.ENOENT): "no such interface, or not driven by sfc",
    (STAGE_PD, errno.EPERM): "not permitted: run as root (or CAP_NET_ADMIN / the onload group)",
    (STAGE_PD, errno.EOPNOTSUPP): "this interface offers no express datapath (EF_VI_CAP_EXTRA_DATAPATHS): "
    "use datapath='auto' or 'enterprise'",
    (STAGE_VI, errno.EPERM): "the NIC refused the VI even with EF_VI_RX_EVENT_MERGE "
    "(event_merge=True); check firmware variant / licensing (sfboot)",
    (STAGE_VI, errno.EBUSY): "no free VIs on this NIC (other ef_vi / Onload users hold them)",
    (STAGE_VI, errno.ENOMEM): "out of VI / queue resources: try smaller rxq_size / txq_size / evq_size",
    (STAGE_MEM, errno.ENOMEM): "could not allocate packet buffer memory: reserve huge pages "
    "(vm.nr_hugepages) or lower n_bufs",
    (STAGE_MEMREG, errno.ENOMEM): "could not pin/map packet buffers: raise RLIMIT_MEMLOCK (ulimit -l) "
    "or reserve huge pages",
    (STAGE_MEMREG, errno.EINVAL): "the NIC needs larger buffer mappings (EF_VI_CAP_MIN_BUFFER_MODE_SIZE): "
    "reserve 2 MiB huge pages",
    (STAGE_FILTER, errno.EBUSY): "another VI or Onload stack already owns this group:port filter",
    (STAGE_FILTER, errno.EEXIST): "another VI or Onload stack already owns this group:port filter",
    (STAGE_FILTER, errno.EPERM): "filter insertion not permitted: run as root / check firmware filter mode",
    (STAGE_FILTER, errno.ENOSPC): "the NIC's filter table is full",
    (STAGE_JOIN, errno.ENODEV): "the interface has no IPv4 address for the multicast join: pass iface_addr",
    (None, errno.EBADF): "the source is closed",
    (None, errno.ENOBUFS): "every buffer is held by unreleased frames: release() before polling again",
    (None, errno.ENETRESET): "the NIC was reset and the VI is gone: close and reopen the source",
    (None, errno.EMSGSIZE): "a frame must fit one 2 KiB transmit buffer (at most 1984 bytes)",
    (None, errno.EINVAL): "invalid parameter",
    (None, errno.ENODEV): "no such interface, or not a Solarflare/AMD one",
}

#: ``pd_flags`` names -> EF_PD_* (ef_vi pd.h; checked against the build at import).
PD_FLAGS = {"vf": 0x1, "phys": 0x2, "mcast_loop": 0x10}

# efsdk_efvi_config.efvi_flags
_EFVI_EVENT_MERGE, _EFVI_NO_JOIN, _EFVI_NO_SW_FILTER, _EFVI_MULTICAST_ALL = 0x1, 0x2, 0x4, 0x8
#: ``datapath`` names -> EFSDK_EFVI_DATAPATH_* (in efvi_flags, and in the sender's flags):
#: "auto" takes the express datapath where EF_VI_CAP_EXTRA_DATAPATHS offers it.
DATAPATHS = {"auto": 0, "enterprise": 0x10, "express": 0x20}
MAX_MACS = 8  # EFVI_MAX_MACS
#: EF_EVENT_RX_DISCARD_* subtypes, in order (ef_vi.h).
DISCARD_NAMES = ("csum_bad", "mcast_mismatch", "crc_bad", "trunc", "rights", "ev_error", "other", "inner_csum_bad")


def efvi_error(rc: int, stage: int | None, what: str) -> SourceError:
    """The :class:`SourceError` for ``rc`` (-errno) failing at open ``stage`` (None: after open)."""
    return _base.stage_error(rc, stage, what, _HINTS, _STAGE_NAMES)


# --------------------------------------------------------------------------- the native module

_ffi, _lib, _IMPORT_ERROR = _base.load_optional_module(
    NATIVE_EFVI, "efsdk_efvi_version", EXPECTED_EFVI_VERSION,
    "EFSDK_ONLOAD_PREFIX=<prefix> python native/build_efvi.py, or pip install .",
    {
        "EFSDK_EFVI_STAGE_DRIVER": STAGE_DRIVER,
        "EFSDK_EFVI_STAGE_FILTER": STAGE_FILTER,
        "EFSDK_EFVI_EVENT_MERGE": _EFVI_EVENT_MERGE,
        "EFSDK_EFVI_MULTICAST_ALL": _EFVI_MULTICAST_ALL,
        "EFSDK_EFVI_DATAPATH_ENTERPRISE": DATAPATHS["enterprise"],
        "EFSDK_EFVI_DATAPATH_EXPRESS": DATAPATHS["express"],
        "EFVI_MAX_MACS": MAX_MACS,
        "EF_PD_VF": PD_FLAGS["vf"],
        "EF_PD_PHYS_MODE": PD_FLAGS["phys"],
        "EF_PD_MCAST_LOOP": PD_FLAGS["mcast_loop"],
        "EFSDK_POLL_RELEASE": POLL_RELEASE,
        "EFSDK_FRAME_TS_CLOCK_SET": FLAG_TS_CLOCK_SET,
        "EFSDK_FRAME_TS_IN_SYNC": FLAG_TS_IN_SYNC,
    },
)


def efvi_available() -> bool:
    """True when ``efsdk._native_efvi`` was built and imported (says nothing about the driver)."""
    return _lib is not None


def libciul_version() -> str | None:
    """``ef_vi_version_str()`` of the libciul linked in, or None when not built."""
    return None if _lib is None else _ffi.string(_lib.efsdk_efvi_libciul_version()).decode()


#: What :func:`capabilities` reports, by name (EF_VI_CAP_* in capabilities.h).
CAPABILITY_NAMES = (
    "hw_rx_timestamping", "hw_tx_timestamping", "ctpio", "ctpio_only", "rx_ref", "rx_poll", "rx_merge",
    "rx_force_event_merging", "extra_datapaths", "min_buffer_mode_size", "hw_multicast_loopback",
    "rx_filter_type_udp_local", "rx_fw_variant", "tx_fw_variant",
)  # fmt: skip


def capabilities(iface: str) -> dict[str, int | None]:
    """The ef_vi capabilities of ``iface`` (``ef_vi_capabilities_get``), ``None`` where the NIC lacks one.

    E.g. ``ctpio``, ``rx_ref`` (the X3 receive model), ``extra_datapaths``
    (bit 0: express).  Raises :class:`SourceError` without the driver (ENOENT,
    with what to do) or for an interface it does not know (ENODEV).
    """
    check_iface(iface)
    if _lib is None:
        raise NativeError(f"{NOT_BUILT} [{_IMPORT_ERROR}]")
    n = len(CAPABILITY_NAMES)
    caps = _ffi.new("int[]", [getattr(_lib, f"EF_VI_CAP_{name.upper()}") for name in CAPABILITY_NAMES])
    values, rcs = _ffi.new("unsigned long[]", n), _ffi.new("int[]", n)
    rc = _lib.efsdk_efvi_capabilities(iface.encode("ascii"), caps, n, values, rcs)
    if rc < 0:
        raise efvi_error(rc, STAGE_DRIVER if rc in (-errno.ENOENT, -errno.EACCES) else None,
                         f"reading the capabilities of {iface}")  # fmt: skip
    out: dict[str, int | None] = {}
    for i, name in enumerate(CAPABILITY_NAMES):
        if rcs[i] in (-errno.EOPNOTSUPP, -errno.ENOSYS):
            out[name] = None
        elif rcs[i] < 0:
            raise efvi_error(rcs[i], None, f"reading capability {name} of {iface}")
        else:
            out[name] = int(values[i])
    return out


def probe_driver() -> int:
    """``ef_driver_open`` + close: 0 if ef_vi reaches the driver, else -errno (-ENOENT: no driver)."""
    if _lib is None:
        raise NativeError(NOT_BUILT)
    return int(_lib.efsdk_efvi_probe_driver())


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class EfviConfig:
    """A validated ef_vi source configuration (pure Python: no native module needed)."""

    iface: str
    feeds: tuple[tuple[str, int], ...]
    busy: bool = False
    hw_timestamps: bool = False
    event_merge: bool = False
    join: bool = True
    sw_filter: bool = True
    rxq_size: int = -1
    evq_size: int = -1
    n_bufs: int = 0
    iface_addr: str | None = None
    pd_flags: int = 0
    batch: int = DEFAULT_BATCH
    macs: tuple[bytes, ...] = ()  # eth_local NIC filters (6 bytes each)
    multicast_all: bool = False  # a multicast-all NIC filter
    datapath: str = "auto"

    @property
    def feeds_be(self) -> list[tuple[int, int]]:
        """(address as the C side reads it: network order u32, port host order) per feed."""
        return [(_addr_be(a, "feed address"), p) for a, p in self.feeds]

    def describe(self) -> str:
        filters = [f"{a}:{p}" for a, p in self.feeds] + [f"mac {m.hex(':')}" for m in self.macs]
        if self.multicast_all:
            filters.append("multicast-all")
        return f"efvi {self.iface} [{', '.join(filters)}]"


def check_iface(iface: str) -> None:
    """An interface name ef_vi can take (1..15 ASCII characters), else :class:`ConfigError`."""
    name = iface.encode("ascii", "replace") if isinstance(iface, str) else b""
    if not 0 < len(name) < 16:
        raise ConfigError(f"interface name must be 1..15 characters, got {iface!r}")


def pd_flag_bits(names: Sequence[str]) -> int:
    """EF_PD_* bits of ``pd_flags`` names (:data:`PD_FLAGS`), else :class:`ConfigError`."""
    unknown = [f for f in names if f not in PD_FLAGS]
    if unknown:
        raise ConfigError(f"unknown pd_flags {unknown}; known: {sorted(PD_FLAGS)}")
    bits = 0
    for f in names:
        bits |= PD_FLAGS[f]
    return bits


def check_datapath(datapath: str) -> str:
    """A ``datapath`` name of :data:`DATAPATHS`, else :class:`ConfigError`."""
    if datapath not in DATAPATHS:
        raise ConfigError(f"datapath must be one of {sorted(DATAPATHS)}, got {datapath!r}")
    return datapath


def parse_mac(mac: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (or ``-`` separated) as 6 bytes, else :class:`ConfigError`."""
    parts = str(mac).replace("-", ":").split(":")
    try:
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ConfigError(f"a MAC filter is aa:bb:cc:dd:ee:ff, got {mac!r}") from None


def queue_size(v: int, what: str) -> int:
    v = int(v)
    if v != -1 and not (v > 0 and v & (v - 1) == 0 and 512 <= v <= 16384):
        raise ConfigError(f"{what} must be -1 (driver default) or a power of two 512..16384, got {v}")
    return v


def make_config(
    iface: str,
    *,
    feeds: Sequence[tuple[str, int]],
    busy: bool = False,
    hw_timestamps: bool = False,
    event_merge: bool = False,
    join: bool = True,
    sw_filter: bool = True,
    rxq_size: int = -1,
    evq_size: int = -1,
    n_bufs: int = 0,
    iface_addr: str | None = None,
    pd_flags: Sequence[str] = (),
    batch: int = DEFAULT_BATCH,
    macs: Sequence[str] = (),
    multicast_all: bool = False,
    datapath: str = "auto",
) -> EfviConfig:
    """Validate the options of :func:`open_efvi` (raises :class:`ConfigError`)."""
    check_iface(iface)
    feeds = list(feeds or ())
    mac_bytes = tuple(parse_mac(m) for m in macs)
    if not feeds and not mac_bytes and not multicast_all:
        raise ConfigError("ef_vi needs a NIC filter: feeds (group or address, port), macs, or multicast_all; "
                          "the NIC delivers nothing unfiltered")  # fmt: skip
    if len(mac_bytes) > MAX_MACS or len(set(mac_bytes)) != len(mac_bytes):
        raise ConfigError(f"at most {MAX_MACS} distinct MAC filters, got {list(macs)}")
    if len(feeds) > 64:  # EFSDK_MAX_FEEDS
        raise ConfigError(f"at most 64 feeds per source, got {len(feeds)}")
    clean = []
    for feed in feeds:
        try:
            addr, port = feed
            port = int(port)
        except (TypeError, ValueError):
            raise ConfigError(f"a feed is (address, port), got {feed!r}") from None
        if not 1 <= port <= 0xFFFF:
            raise ConfigError(f"feed port must be 1..65535 (NIC filters need a port), got {port}")
        if _addr_be(addr, "feed address") == 0:
            raise ConfigError(f"feed address must be a group or local address, not {addr!r} (NIC filters need one)")
        clean.append((str(addr), port))
    if len(set(clean)) != len(clean):
        raise ConfigError(f"duplicate feeds: {clean}")
    if iface_addr is not None:
        _addr_be(iface_addr, "iface_addr")
    pdf = pd_flag_bits(pd_flags)
    n_bufs = int(n_bufs)
    if n_bufs and not 64 <= n_bufs <= 1 << 20:
        raise ConfigError(f"n_bufs must be 0 (automatic) or 64..1048576 2 KiB buffers, got {n_bufs}")
    if not 1 <= int(batch) <= 65536:
        raise ConfigError(f"batch must be 1..65536 frames, got {batch}")
    return EfviConfig(
        iface=iface,
        feeds=tuple(clean),
        busy=bool(busy),
        hw_timestamps=bool(hw_timestamps),
        event_merge=bool(event_merge),
        join=bool(join),
        sw_filter=bool(sw_filter),
        rxq_size=queue_size(rxq_size, "rxq_size"),
        evq_size=queue_size(evq_size, "evq_size"),
        n_bufs=n_bufs,
        iface_addr=iface_addr,
        pd_flags=pdf,
        batch=int(batch),
        macs=mac_bytes,
        multicast_all=bool(multicast_all),
        datapath=check_datapath(datapath),
    )


# --------------------------------------------------------------------------- the source


class EfviSource(NativeFrameSource):
    """One ef_vi VI receiving the feeds of an :class:`EfviConfig` (see the module doc)."""

    kind = "efvi"

    def __init__(self, config: EfviConfig) -> None:  # noqa: D107 - replaces the base open
        if _lib is None:
            raise NativeError(f"{NOT_BUILT} [{_IMPORT_ERROR}]")
        if _base._ffi is None:  # FrameBatch builds its memoryviews through efsdk._native_sources' ffi
            _base.require_native(self.kind)
        ffi, lib = _ffi, _lib
        self._h = None
        self._config = config
        self._describe = config.describe()
        feeds = config.feeds_be
        c_feeds = ffi.new("efsdk_feed[]", len(feeds))
        for i, (addr, port) in enumerate(feeds):
            c_feeds[i].addr = addr
            c_feeds[i].port = port
        cfg = ffi.new("efsdk_efvi_config *")
        cfg.iface = config.iface.encode("ascii")
        cfg.flags = (CFG_BUSY_POLL if config.busy else 0) | (CFG_HW_TIMESTAMPS if config.hw_timestamps else 0)
        cfg.efvi_flags = (
            (_EFVI_EVENT_MERGE if config.event_merge else 0)
            | (0 if config.join else _EFVI_NO_JOIN)
            | (0 if config.sw_filter else _EFVI_NO_SW_FILTER)
            | (_EFVI_MULTICAST_ALL if config.multicast_all else 0)
            | DATAPATHS[config.datapath]
        )
        c_macs = ffi.new("uint8_t[]", b"".join(config.macs) or b"\0")
        cfg.n_macs = len(config.macs)
        cfg.macs = c_macs
        cfg.pd_flags = config.pd_flags
        cfg.rxq_size = config.rxq_size
        cfg.evq_size = config.evq_size
        cfg.n_bufs = config.n_bufs
        cfg.iface_addr = _addr_be(config.iface_addr, "iface_addr")
        cfg.n_feeds = len(feeds)
        cfg.feeds = c_feeds
        out = ffi.new("efsdk_source **")
        stage = ffi.new("int *")
        rc = lib.efsdk_efvi_open(cfg, out, stage)
        if rc < 0:
            raise efvi_error(rc, stage[0], f"opening {self._describe}")
        self._h = out[0]
        self._opened()
        self._lib = lib
        self._poll_fn = lib.efsdk_source_poll
        self._batch = config.batch
        self._frames = ffi.new("efsdk_frame[]", config.batch)
        self._stats_buf = ffi.new("efsdk_source_stats *")
        self._xstats_buf = ffi.new("efsdk_efvi_stats *")
        self._final_stats: SourceStats | None = None
        self._final_xstats: dict[str, Any] | None = None
        self._gen = 0
        self._keepalive = (c_feeds, c_macs, cfg)

    def _raise(self, rc: int, what: str) -> None:
        """Errors carry ef_vi hints."""
        raise efvi_error(rc, None, what)

    @property
    def efvi_stats(self) -> dict[str, Any]:
        """ef_vi counters: RX discards by subtype, overflows, jumbos, timestamp errors, resets, fill level."""
        if self._h is None:
            return self._final_xstats or {}
        rc = self._lib.efsdk_efvi_get_stats(self._h, self._xstats_buf)
        if rc < 0:
            raise efvi_error(rc, None, f"stats of {self._describe}")
        x = self._xstats_buf
        out: dict[str, Any] = {
            "discard": {name: int(x.discard[i]) for i, name in enumerate(DISCARD_NAMES)},
        }
        for name in ("no_desc_trunc", "oflow", "jumbo", "ts_errors", "resets", "unknown_events",
                     "fill_level", "prefix_len", "n_bufs"):  # fmt: skip
            out[name] = int(getattr(x, name))
        out["rx_ref"] = bool(x.rx_ref)
        out["express"] = bool(x.express)
        return out

    def _release(self) -> None:
        try:
            self._final_xstats = self.efvi_stats
        except SourceError:
            self._final_xstats = None
        super()._release()


def open_efvi(iface: str, **options: Any) -> EfviSource:
    """Open an ef_vi source on ``iface`` for ``feeds=[(group, port), ...]`` (see the module doc).

    Raises :class:`ConfigError` for bad options, :class:`NativeError` when
    ``efsdk._native_efvi`` is not built, :class:`SourceError` (errno + what to
    do) when the driver / NIC refuses, e.g. ENOENT without ``/dev/sfc_char``.
    """
    if _lib is None:  # the main problem first, whatever the options say
        raise NativeError(f"{NOT_BUILT} [{_IMPORT_ERROR}]")
    return EfviSource(make_config(iface, **options))
