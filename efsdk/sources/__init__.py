"""Frame sources: one protocol, thin wrappers over each native backend.

:func:`open_source` picks a backend by name::

    open_source("udp", group="239.1.1.1", port=26400, iface_addr="198.18.0.2")
    open_source("afpacket", iface="eth1", version=3, feeds=[("239.1.1.1", 26400)])
    open_source("efvi", iface="eth2", feeds=[("239.1.1.1", 26400)])   # needs Onload's ef_vi
    open_source("afxdp", iface="eth1", feeds=[("239.1.1.1", 26400)])  # needs libxdp/libbpf at build

and returns a :class:`~efsdk.sources.base.FrameSource`: ``poll(max, timeout)``
-> :class:`~efsdk.sources.base.FrameBatch` of zero-copy ``(payload, ts_ns,
flags)``, ``release()``, ``stats``, ``close()``; see :mod:`efsdk.sources.base`.
"""

from __future__ import annotations

from typing import Any

from efsdk.errors import ConfigError
from efsdk.sources.base import (
    FLAG_MULTICAST,
    FLAG_RAW,
    FLAG_TS_CLOCK_SET,
    FLAG_TS_IN_SYNC,
    FLAG_TRUNCATED,
    FLAG_VLAN,
    TS_HW,
    TS_NONE,
    TS_SW,
    FrameBatch,
    FrameInfo,
    FrameSource,
    FrameSourceProtocol,
    SourceError,
    SourceStats,
    native_available,
)

__all__ = [
    "BACKENDS",
    "FLAG_MULTICAST",
    "FLAG_RAW",
    "FLAG_TS_CLOCK_SET",
    "FLAG_TS_IN_SYNC",
    "FLAG_TRUNCATED",
    "FLAG_VLAN",
    "TS_HW",
    "TS_NONE",
    "TS_SW",
    "FrameBatch",
    "FrameInfo",
    "FrameSource",
    "FrameSourceProtocol",
    "SourceError",
    "SourceStats",
    "native_available",
    "open_source",
]

#: Backend name -> "module:function"; imported on first use.
BACKENDS = {
    "udp": "efsdk.sources.udp:open_udp",
    "afpacket": "efsdk.sources.afpacket:open_afpacket",
    # Optional native modules: without them open_source raises NativeError saying how to build them.
    "efvi": "efsdk.sources.efvi:open_efvi",
    "afxdp": "efsdk.sources.afxdp:open_afxdp",
}
#: Other spellings of a backend: one canonical name, a clear error for the rest.
_SPELLINGS = {"af_xdp": "afxdp", "xdp": "afxdp"}
#: Named in issue 3, not implemented yet: say so instead of "unknown".
_PLANNED = {"pcap": "pcap replay"}


def open_source(kind: str, **kwargs: Any) -> FrameSource:
    """Open a frame source of backend ``kind`` (one of :data:`BACKENDS`) with its keyword arguments.

    Raises :class:`~efsdk.errors.ConfigError` for an unknown or not yet
    available backend, :class:`~efsdk.errors.NativeError` when the native
    module is missing (``efvi``: Onload headers + libciul were not found at
    install time; ``afxdp``: libxdp/libbpf were not found), :class:`SourceError`
    when the kernel refuses.
    """
    import importlib

    target = BACKENDS.get(kind)
    if target is None:
        if kind in _SPELLINGS:
            raise ConfigError(
                f"frame source {kind!r} (AF_XDP) is not available under that name: use {_SPELLINGS[kind]!r}"
            )
        if kind in _PLANNED:
            raise ConfigError(
                f"frame source {kind!r} ({_PLANNED[kind]}) is not available in this build; "
                f"available: {', '.join(sorted(BACKENDS))}"
            )
        raise ConfigError(f"unknown frame source {kind!r}; available: {', '.join(sorted(BACKENDS))}")
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(**kwargs)
