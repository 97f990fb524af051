"""The frame-source protocol and the thin layer over ``efsdk._native_sources``.

Every source follows one life cycle::

    with open_source("udp", group="239.1.1.1", port=26400, iface_addr="198.18.0.2") as src:
        while running:
            batch = src.poll(max=64, timeout=0.1)   # one FFI call
            for payload, ts_ns, flags in batch:     # zero-copy memoryviews
                handle(payload)
            # the batch is released by the next poll (or batch.release())
        print(src.stats)

A batch's memoryviews point into the backend's own memory (socket receive
buffers, the AF_PACKET ring shared with the kernel).  They are valid until the
batch is released - explicitly, by the next ``poll`` or by ``close`` - and must
not be touched afterwards: copy (``bytes(view)``) what you keep.

``poll(timeout=None)`` blocks until data arrives, ``timeout=0`` never blocks,
``timeout=0.25`` waits up to 250 ms.  Opened with ``busy=True`` a source spins
(no sleeping in the kernel) while it waits: lowest latency, one core at 100 %.
"""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, Protocol, runtime_checkable

from efsdk.errors import ConfigError, NativeError
from efsdk.resource import Resource

__all__ = [
    "EXPECTED_NATIVE_VERSION",
    "FLAG_MULTICAST",
    "FLAG_RAW",
    "FLAG_TS_CLOCK_SET",
    "FLAG_TS_IN_SYNC",
    "FLAG_TRUNCATED",
    "FLAG_VLAN",
    "FrameBatch",
    "FrameInfo",
    "FrameSource",
    "FrameSourceProtocol",
    "NativeFrameSource",
    "SourceError",
    "SourceStats",
    "TS_HW",
    "TS_NONE",
    "TS_SW",
    "native_available",
]

#: Must equal ``EFSDK_SOURCES_VERSION`` compiled into ``efsdk._native_sources``.
EXPECTED_NATIVE_VERSION = 1
_FRAME_SIZE = 56  # sizeof(efsdk_frame): checked at import against the build

# Timestamp kinds and frame flags (values from native/frame_source.h, checked at import).
TS_NONE, TS_SW, TS_HW = 0, 1, 2
TS_KIND_NAMES = {TS_NONE: "none", TS_SW: "sw", TS_HW: "hw"}
FLAG_TRUNCATED = 0x1  # payload shorter than the datagram (keep_truncated=True only)
FLAG_VLAN = 0x2  # arrived 802.1Q tagged
FLAG_MULTICAST = 0x4  # destination was a multicast group
FLAG_RAW = 0x8  # the full Ethernet frame is available (FrameBatch.info(i).frame)
FLAG_TS_CLOCK_SET = 0x10  # hardware timestamp (ef_vi): the adapter clock has been set
FLAG_TS_IN_SYNC = 0x20  # hardware timestamp (ef_vi): the adapter clock is in sync (sfptpd)

# Config flags and the poll flag (native/frame_source.h).
CFG_BUSY_POLL, CFG_KEEP_TRUNCATED, CFG_HW_TIMESTAMPS, CFG_PROMISC = 0x1, 0x2, 0x4, 0x8
POLL_RELEASE = 0x1

_REBUILD = "build it with `python native/build_sources.py` (or reinstall efsdk with `pip install .`)"


class SourceError(OSError, NativeError):
    """A frame source call failed; ``errno`` is the native error, the message says what to do."""


_HINTS = {
    errno.EPERM: "needs CAP_NET_RAW / CAP_NET_ADMIN: run as root or grant the capability",
    errno.EACCES: "needs CAP_NET_RAW / CAP_NET_ADMIN: run as root or grant the capability",
    errno.ENODEV: "no such network interface in this network namespace",
    errno.EADDRINUSE: "address/port already bound without SO_REUSEADDR by another socket",
    errno.EADDRNOTAVAIL: "the address is not configured on any interface here",
    errno.EINVAL: "invalid parameter (ring geometry: block_size a power of two multiple of the page size, "
    "frame_size a multiple of 16 and <= block_size)",
    errno.EPROTONOSUPPORT: "backend/version not compiled into efsdk._native_sources",
    errno.ENOBUFS: "every buffer is held by unreleased frames: release() before polling again",
    errno.ENETDOWN: "the interface went down",
    errno.EBADF: "the source is closed",
}


def load_optional_module(name: str, version_fn: str, expected: int, rebuild: str,
                         constants: dict[str, int]) -> tuple[Any, Any, ImportError | None]:  # fmt: skip
    """``(ffi, lib, None)`` of an optional backend module, or ``(None, None, the ImportError)``
    when it was not built.

    A build that does not match this Python code (its ``version_fn()`` differs
    from ``expected``, its frame struct has another size, or one of
    ``constants`` -- C name -> the value the Python side uses -- differs)
    raises :class:`NativeError` saying how to ``rebuild`` it, instead of
    misreading memory later.
    """
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return None, None, exc
    ffi, lib = module.ffi, module.lib
    version = getattr(lib, version_fn)()
    if version != expected or ffi.sizeof("efsdk_frame") != _FRAME_SIZE:
        raise NativeError(f"{name} is stale (version {version}, expected {expected}): rebuild it ({rebuild})")
    check_constants(lib, name, constants, rebuild)
    return ffi, lib, None


def check_constants(lib: Any, name: str, constants: dict[str, int], rebuild: str = "pip install .") -> None:
    """Raise :class:`NativeError` when a C constant of ``lib`` differs from the value Python uses."""
    wrong = {c: getattr(lib, c) for c, v in constants.items() if getattr(lib, c) != v}
    if wrong:
        raise NativeError(f"{name} is stale: its constants {wrong} differ from this efsdk; rebuild it ({rebuild})")


def stage_error(
    rc: int,
    stage: int | None,
    what: str,
    hints: dict[tuple[int | None, int], str],
    stage_names: dict[int, str],
    detail: str = "",
) -> SourceError:
    """The :class:`SourceError` for ``rc`` (-errno) failing at open ``stage`` (None: after open).

    A backend's ``hints`` are keyed ``(stage, errno)``, with ``(None, errno)``
    for any stage; ``stage_names`` say where in the open it failed.
    """
    code = -rc if rc < 0 else rc
    hint = hints.get((stage, code)) or hints.get((None, code))
    where = stage_names.get(stage, "") if stage else ""
    msg = f"{what}: " + (f"{where}: " if where else "") + os.strerror(code) + (f" ({hint})" if hint else "")
    if detail:
        msg += f"; {detail}"
    return SourceError(code, msg)


def check_rc(rc: int, what: str) -> int:
    """Return ``rc`` if >= 0, else raise :class:`SourceError` for ``-rc`` with a hint."""
    if rc >= 0:
        return rc
    code = -rc
    hint = _HINTS.get(code)
    msg = f"{what}: {os.strerror(code)}" + (f" ({hint})" if hint else "")
    raise SourceError(code, msg)


try:
    from efsdk._native_sources import ffi as _ffi
    from efsdk._native_sources import lib as _lib
except ImportError as _exc:  # e.g. not Linux, or not built yet
    _ffi = _lib = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None
    _version = _lib.efsdk_sources_version()
    if _version != EXPECTED_NATIVE_VERSION or _ffi.sizeof("efsdk_frame") != _FRAME_SIZE:
        raise NativeError(
            f"efsdk._native_sources is stale: built from frame_source.h version {_version} "
            f"(efsdk_frame {_ffi.sizeof('efsdk_frame')} bytes), efsdk.sources expects version "
            f"{EXPECTED_NATIVE_VERSION} ({_FRAME_SIZE} bytes); {_REBUILD}"
        )
    if (_lib.EFSDK_TS_SW, _lib.EFSDK_TS_HW, _lib.EFSDK_FRAME_TRUNCATED, _lib.EFSDK_FRAME_VLAN,
            _lib.EFSDK_FRAME_MULTICAST, _lib.EFSDK_FRAME_RAW, _lib.EFSDK_POLL_RELEASE) != (
            TS_SW, TS_HW, FLAG_TRUNCATED, FLAG_VLAN, FLAG_MULTICAST, FLAG_RAW, POLL_RELEASE):  # fmt: skip
        raise NativeError(f"efsdk._native_sources is stale: its flag values differ; {_REBUILD}")


def native_available() -> bool:
    """True when ``efsdk._native_sources`` imported and matches this module."""
    return _lib is not None


def require_native(backend: str) -> tuple[Any, Any]:
    """``(ffi, lib)`` or :class:`NativeError` naming what is missing."""
    if _lib is None:
        raise NativeError(
            f"frame source {backend!r} needs the native module efsdk._native_sources, "
            f"which is not available ({_IMPORT_ERROR}); {_REBUILD}"
        )
    return _ffi, _lib


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters of one source (a snapshot; kernel counters are pulled when it is taken)."""

    polls: int = 0  # poll calls
    empty_polls: int = 0  # poll calls that returned no frame
    frames: int = 0  # frames delivered
    bytes: int = 0  # payload bytes delivered
    kernel_drops: int = 0  # socket / ring overflows reported by the kernel
    kernel_packets: int = 0  # AF_PACKET: packets the kernel offered the ring
    truncated: int = 0  # datagrams longer than the buffer / ring slot
    filtered: int = 0  # UDP not matching the feed list
    non_udp: int = 0  # raw: ARP, ICMP, TCP, IPv6, ...
    fragments: int = 0  # raw: IPv4 fragments (never reassembled)
    malformed: int = 0  # raw: inconsistent headers
    vlan: int = 0  # raw: frames that carried an 802.1Q tag
    freeze_q: int = 0  # TPACKET_V3: times the ring was full

    @classmethod
    def from_native(cls, st: Any) -> SourceStats:
        return cls(**{f.name: int(getattr(st, f.name)) for f in fields(cls)})


# --------------------------------------------------------------------------- batches


class FrameInfo(NamedTuple):
    """Everything known about one frame of a batch (the slow, complete view)."""

    payload: memoryview
    ts_ns: int
    ts_kind: str  # "sw" / "hw" / "none"
    flags: int
    orig_len: int  # UDP payload length on the wire (> len(payload) if truncated)
    src: tuple[str, int]
    dst: tuple[str, int]
    vlan_tci: int | None
    frame: memoryview | None  # the full Ethernet frame (raw backends)


def _ip(addr_be: int) -> str:
    return ".".join(str(b) for b in int(addr_be).to_bytes(4, "little"))


class FrameBatch:
    """The frames of one poll: iterate for ``(payload, ts_ns, flags)``.

    ``len(batch)`` frames; ``batch[i]`` is the payload memoryview, ``info(i)``
    the complete :class:`FrameInfo`.  Valid until released (``release()``, the
    source's next ``poll`` or ``close``); using it afterwards raises
    :class:`ValueError` (memoryviews already taken must not be used either).
    """

    __slots__ = ("_frames", "_n", "_source", "_gen")

    def __init__(self, source: NativeFrameSource, frames: Any, n: int, gen: int) -> None:
        self._source = source
        self._frames = frames
        self._n = n
        self._gen = gen

    def _check(self) -> None:
        if self._gen != self._source._gen:
            raise ValueError("this FrameBatch was released (next poll, release() or close())")

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Iterator[tuple[memoryview, int, int]]:
        self._check()
        buf = _ffi.buffer
        frames = self._frames
        for i in range(self._n):
            f = frames[i]
            yield memoryview(buf(f.data, f.len)), f.ts_ns, f.flags

    def __getitem__(self, i: int) -> memoryview:
        self._check()
        if not -self._n <= i < self._n:
            raise IndexError(i)
        f = self._frames[i % self._n]
        return memoryview(_ffi.buffer(f.data, f.len))

    def info(self, i: int) -> FrameInfo:
        """Complete description of frame ``i`` (addresses, VLAN, whole frame)."""
        self._check()
        if not -self._n <= i < self._n:
            raise IndexError(i)
        f = self._frames[i % self._n]
        return FrameInfo(
            payload=memoryview(_ffi.buffer(f.data, f.len)),
            ts_ns=f.ts_ns,
            ts_kind=TS_KIND_NAMES.get(f.ts_kind, str(f.ts_kind)),
            flags=f.flags,
            orig_len=f.orig_len,
            src=(_ip(f.src_addr), f.src_port),
            dst=(_ip(f.dst_addr), f.dst_port),
            vlan_tci=f.vlan_tci if f.flags & FLAG_VLAN else None,
            frame=memoryview(_ffi.buffer(f.frame, f.frame_len)) if f.flags & FLAG_RAW else None,
        )

    def timestamps(self) -> list[int]:
        """``ts_ns`` of every frame, in order."""
        self._check()
        frames = self._frames
        return [frames[i].ts_ns for i in range(self._n)]

    def release(self) -> None:
        """Hand this batch's memory back to the source now (idempotent)."""
        if self._gen == self._source._gen:
            self._source.release()

    def __repr__(self) -> str:
        state = "live" if self._gen == self._source._gen else "released"
        return f"<FrameBatch {self._n} frames {state}>"


# --------------------------------------------------------------------------- sources


@runtime_checkable
class FrameSourceProtocol(Protocol):
    """What the pipeline needs from any frame source (native, pcap replay, ...)."""

    def poll(self, max: int | None = None, timeout: float | None = None) -> FrameBatch: ...

    def release(self) -> None: ...

    def close(self) -> None: ...

    @property
    def stats(self) -> SourceStats: ...


def _timeout_ns(timeout: float | None) -> int:
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None (block), got {timeout}")
    return int(timeout * 1e9)


class NativeFrameSource(Resource):
    """A frame source backed by one ``efsdk_source`` handle of the native module.

    Not thread-safe: poll from one thread.  ``close()`` is idempotent; a source
    garbage-collected while open is closed with a :class:`ResourceWarning`.
    """

    kind = "native"

    def __init__(self, cfg: Any, batch: int, describe: str, keepalive: tuple[Any, ...] = ()) -> None:
        ffi, lib = require_native(self.kind)
        if not 1 <= batch <= 65536:
            raise ConfigError(f"batch must be 1..65536 frames, got {batch}")
        self._h = None
        self._describe = describe
        out = ffi.new("efsdk_source **")
        check_rc(lib.efsdk_source_open(cfg, out), f"opening {describe}")
        self._h = out[0]
        self._opened()
        self._lib = lib
        self._poll_fn = lib.efsdk_source_poll
        self._batch = batch
        self._frames = ffi.new("efsdk_frame[]", batch)
        self._stats_buf = ffi.new("efsdk_source_stats *")
        self._final_stats: SourceStats | None = None
        self._gen = 0  # bumped on every release: invalidates FrameBatch objects
        self._keepalive = keepalive  # cdata the config points to

    # -- receive

    def poll(self, max: int | None = None, timeout: float | None = None) -> FrameBatch:
        """Release the previous batch, then wait up to ``timeout`` s for up to ``max`` frames.

        ``timeout=None`` blocks until something arrives, ``0`` returns at once.
        Returns a possibly empty :class:`FrameBatch` (one FFI call).  Raises
        :class:`SourceError` if the source failed or is closed.
        """
        h = self._h
        if h is None:
            raise SourceError(errno.EBADF, f"{self._describe} is closed")
        n = self._batch if max is None else (max if max < self._batch else self._batch)
        self._gen += 1
        rc = self._poll_fn(h, self._frames, n, -1 if timeout is None else _timeout_ns(timeout), POLL_RELEASE)
        if rc < 0:
            self._raise(rc, f"polling {self._describe}")
        return FrameBatch(self, self._frames, rc, self._gen)

    def _raise(self, rc: int, what: str) -> None:
        """Raise the error for ``-errno`` ``rc``; backends override it to add their own hints."""
        check_rc(rc, what)

    def release(self) -> None:
        """Hand every delivered frame back to the backend (their memoryviews die)."""
        h = self._h
        if h is None:
            return
        self._gen += 1
        pending = self._lib.efsdk_source_pending(h)
        if pending:
            check_rc(self._lib.efsdk_source_release(h, pending), f"releasing frames of {self._describe}")

    @property
    def pending(self) -> int:
        """Frames delivered and not yet released."""
        return 0 if self._h is None else int(self._lib.efsdk_source_pending(self._h))

    @property
    def stats(self) -> SourceStats:
        """Counters now (kernel counters pulled); after close, the final ones."""
        if self._h is None:
            return self._final_stats or SourceStats()
        check_rc(self._lib.efsdk_source_get_stats(self._h, self._stats_buf), f"stats of {self._describe}")
        return SourceStats.from_native(self._stats_buf)

    # -- life cycle

    def _release(self) -> None:
        """Close the handle; every batch and memoryview dies with it."""
        h = self._h
        self._gen += 1
        self._lib.efsdk_source_close(h)
        self._lib.efsdk_source_get_stats(h, self._stats_buf)
        self._final_stats = SourceStats.from_native(self._stats_buf)
        self._h = None
        self._lib.efsdk_source_free(h)

    def __repr__(self) -> str:
        state = "closed" if self._h is None else f"open pending={self.pending}"
        return f"<{type(self).__name__} {self._describe} {state}>"


#: The concrete base every native backend wrapper derives from.
FrameSource = NativeFrameSource
