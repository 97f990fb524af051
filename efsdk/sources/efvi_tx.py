"""ef_vi transmit: whole Ethernet frames straight to a Solarflare/AMD NIC.

::

    with open_efvi_sender("eth2", ctpio=True, timestamps=True) as tx:
        frame_id = tx.send(frame)      # None: every buffer / the ring is busy, even after reaping
        for stamp in tx.poll():        # reap completions; with timestamps, the NIC's send time per frame
            print(stamp.id, stamp.ts_ns, stamp.in_sync)

The transmit half of the ef_vi binding (``native/efvi_tx.c``, in the same
optional module as :mod:`efsdk.sources.efvi`).  A frame is copied into one of
``n_bufs`` registered 2 KiB buffers and handed to the NIC:

* **DMA** (``ctpio=False``, or a NIC without CTPIO): ``ef_vi_transmit``; the
  NIC reads the buffer.
* **CTPIO** (``ctpio=True`` where the NIC has it; always on CTPIO-only NICs
  such as X3): the frame is written through the NIC's BAR and starts on the
  wire after ``ctpio_threshold`` bytes (``"snf"``: store-and-forward, the
  whole frame first); the same bytes are posted as a DMA fallback under the
  same id, which the NIC uses only if the CTPIO write was unusable.  CTPIO
  frames must carry correct IPv4 and UDP checksums.

Completions return buffers; :meth:`EfviSender.send` reaps them by itself
when it runs short.  With ``timestamps=True`` every completion carries the
adapter's send time (``ts_ns``; ``in_sync`` once sfptpd has synchronised the
adapter clock).  A TX error re-initialises the queue; frames that had no
completion are counted in ``stats["failed"]`` (they may not have left).
After a NIC reset every call raises :class:`SourceError` (ENETRESET).

``datapath`` (``"auto"``, ``"express"``, ``"enterprise"``) picks the PD's
datapath as for the receive side.

Needs ``efsdk._native_efvi`` (built where the Onload headers and libciul
are found: ``EFSDK_ONLOAD_PREFIX``) and the driver (``/dev/sfc_char``); the
same hints as the receive side explain each failure.  Multicast sends need
no join; a frame's MAC addresses are the caller's.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from efsdk.errors import ConfigError, NativeError
from efsdk.resource import Resource
from efsdk.sources import efvi as _efvi
from efsdk.sources.base import check_constants
from efsdk.sources.efvi import DATAPATHS, NOT_BUILT, check_datapath, check_iface, efvi_error, pd_flag_bits, queue_size

__all__ = ["CTPIO_SNF", "EfviSender", "EfviSenderConfig", "TxStamp", "make_sender_config", "open_efvi_sender"]

#: ``ctpio_threshold`` of store-and-forward: the NIC sends once it has the whole frame.
CTPIO_SNF = 0xFFFF
#: Largest frame one buffer holds (a 2 KiB buffer less the DMA alignment offset).
MAX_FRAME = 2048 - 64
#: Timestamps send() reaps are kept for poll() up to this many; beyond, they are counted and dropped.
MAX_HELD_STAMPS = 1 << 16
_TX_CTPIO, _TX_TIMESTAMPS = 0x1, 0x2  # EFSDK_EFVI_TX_* (checked against the build at import)
_SYNC_CLOCK_SET, _SYNC_IN_SYNC = 0x1, 0x2  # EF_VI_SYNC_FLAG_*
_STAT_FIELDS = ("sent", "bytes", "ctpio", "completed", "timestamps", "busy", "too_big", "tx_errors", "failed",
                "resets", "unknown_events", "in_flight", "n_bufs")  # fmt: skip

if _efvi._lib is not None:
    check_constants(_efvi._lib, _efvi.NATIVE_EFVI, {
        "EFSDK_EFVI_TX_CTPIO": _TX_CTPIO,
        "EFSDK_EFVI_TX_TIMESTAMPS": _TX_TIMESTAMPS,
        "EF_VI_CTPIO_CT_THRESHOLD_SNF": CTPIO_SNF,
        "EF_VI_SYNC_FLAG_CLOCK_SET": _SYNC_CLOCK_SET,
        "EF_VI_SYNC_FLAG_CLOCK_IN_SYNC": _SYNC_IN_SYNC,
    })  # fmt: skip


class TxStamp(NamedTuple):
    """The hardware send time of one completed frame."""

    id: int  # what send() returned for the frame
    ts_ns: int  # adapter clock, ns (seconds * 1e9 + ns)
    clock_set: bool  # the adapter clock has been set
    in_sync: bool  # ... and is in sync (sfptpd): only then is ts_ns comparable with other clocks


@dataclass(frozen=True, slots=True)
class EfviSenderConfig:
    """A validated sender configuration (pure Python: no native module needed)."""

    iface: str
    ctpio: bool = True
    timestamps: bool = False
    ctpio_threshold: int = CTPIO_SNF
    txq_size: int = -1
    evq_size: int = -1
    n_bufs: int = 0
    pd_flags: int = 0
    datapath: str = "auto"

    def describe(self) -> str:
        mode = "ctpio" if self.ctpio else "dma"
        return f"efvi sender {self.iface} ({mode}{', tx timestamps' if self.timestamps else ''})"


def make_sender_config(
    iface: str,
    *,
    ctpio: bool = True,
    timestamps: bool = False,
    ctpio_threshold: int | str = "snf",
    txq_size: int = -1,
    evq_size: int = -1,
    n_bufs: int = 0,
    pd_flags: Sequence[str] = (),
    datapath: str = "auto",
) -> EfviSenderConfig:
    """Validate the options of :func:`open_efvi_sender` (raises :class:`ConfigError`)."""
    check_iface(iface)
    if ctpio_threshold == "snf":
        threshold = CTPIO_SNF
    else:
        try:
            threshold = int(ctpio_threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"ctpio_threshold must be 'snf' or bytes 64..65535, got {ctpio_threshold!r}") from None
        if not 64 <= threshold <= CTPIO_SNF:
            raise ConfigError(f"ctpio_threshold must be 'snf' or bytes 64..65535, got {threshold}")
    n_bufs = int(n_bufs)
    if n_bufs and not 16 <= n_bufs <= 1 << 16:  # more than the TX ring holds is cut to its capacity
        raise ConfigError(f"n_bufs must be 0 (the TX ring's capacity) or 16..65536 2 KiB buffers, got {n_bufs}")
    return EfviSenderConfig(
        iface=iface,
        ctpio=bool(ctpio),
        timestamps=bool(timestamps),
        ctpio_threshold=threshold,
        txq_size=queue_size(txq_size, "txq_size"),
        evq_size=queue_size(evq_size, "evq_size"),
        n_bufs=n_bufs,
        pd_flags=pd_flag_bits(pd_flags),
        datapath=check_datapath(datapath),
    )


class EfviSender(Resource):
    """One transmit-only ef_vi VI on an interface (see the module doc)."""

    def __init__(self, config: EfviSenderConfig) -> None:
        lib, ffi = _efvi._lib, _efvi._ffi
        if lib is None:
            raise NativeError(f"{NOT_BUILT} [{_efvi._IMPORT_ERROR}]")
        self.config = config
        self._describe = config.describe()
        cfg = ffi.new("efsdk_efvi_tx_config *")
        cfg.iface = config.iface.encode("ascii")
        cfg.flags = (
            (_TX_CTPIO if config.ctpio else 0) | (_TX_TIMESTAMPS if config.timestamps else 0) | DATAPATHS[config.datapath]
        )
        cfg.pd_flags = config.pd_flags
        cfg.txq_size = config.txq_size
        cfg.evq_size = config.evq_size
        cfg.n_bufs = config.n_bufs
        cfg.ctpio_threshold = config.ctpio_threshold
        out = ffi.new("efsdk_efvi_tx **")
        stage = ffi.new("int *")
        rc = lib.efsdk_efvi_tx_open(cfg, out, stage)
        if rc < 0:
            raise efvi_error(rc, stage[0], f"opening {self._describe}")
        self._h = out[0]
        self._lib, self._ffi = lib, ffi
        self._send = lib.efsdk_efvi_tx_send
        self._poll = lib.efsdk_efvi_tx_poll
        self._id = ffi.new("uint32_t *")
        self._stamps_cap = 64
        self._stamps = ffi.new("efsdk_tx_stamp[]", self._stamps_cap)
        self._stats_buf = ffi.new("efsdk_efvi_tx_stats *")
        self._held: list[TxStamp] = []  # stamps reaped by send(), for the next poll()
        self._stamps_dropped = 0  # stamps beyond MAX_HELD_STAMPS while nobody polled
        self._final_stats: dict[str, Any] = {}
        self._opened()  # last: from here on close() must release the handle

    def __repr__(self) -> str:
        return f"<EfviSender {'closed' if self.closed else 'open'} {self._describe}>"

    def send(self, frame: bytes | bytearray | memoryview) -> int | None:
        """Hand one whole Ethernet frame to the NIC; its id (for :class:`TxStamp`), or ``None`` when
        every buffer and ring slot is still in flight after reaping completions (counted as ``busy``).

        Raises :class:`SourceError` for a frame over :data:`MAX_FRAME` bytes (EMSGSIZE) or under
        an Ethernet header (EINVAL), a closed sender (EBADF) or a dead VI (ENETRESET).
        """
        if self._closed:
            raise efvi_error(-errno.EBADF, None, f"send on {self._describe}")
        with self._ffi.from_buffer("uint8_t[]", frame) as p:
            rc = self._send(self._h, p, len(p), self._id)
            if rc == -errno.EAGAIN:
                self._reap()  # completions free buffers; their stamps wait for poll()
                rc = self._send(self._h, p, len(p), self._id)
        if rc == -errno.EAGAIN:
            return None
        if rc < 0:
            raise efvi_error(rc, None, f"send {len(frame)} bytes on {self._describe}")
        return int(self._id[0])

    def poll(self) -> list[TxStamp]:
        """Reap completions (their buffers return to the pool); the hardware send time of each
        frame completed since the last call when ``timestamps`` is on, else ``[]``."""
        if self._closed:
            raise efvi_error(-errno.EBADF, None, f"poll on {self._describe}")
        self._reap()
        out, self._held = self._held, []
        return out

    def _reap(self) -> None:
        rc = self._poll(self._h, self._stamps, self._stamps_cap)
        if rc < 0:
            raise efvi_error(rc, None, f"reaping completions on {self._describe}")
        s = self._stamps
        held = self._held
        for i in range(rc):
            if len(held) >= MAX_HELD_STAMPS:
                self._stamps_dropped += rc - i
                break
            flags = s[i].ts_flags
            held.append(TxStamp(int(s[i].id), int(s[i].ts_ns), bool(flags & _SYNC_CLOCK_SET), bool(flags & _SYNC_IN_SYNC)))

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: sent, bytes, ctpio (frames written by CTPIO; the NIC may have sent the
        fallback instead), completed, timestamps, busy (send attempts refused for want of a
        buffer or ring slot: a send() that succeeds after reaping counts one), too_big,
        tx_errors, failed, resets, in_flight, stamps_dropped (beyond :data:`MAX_HELD_STAMPS`
        while nobody polled), and the modes chosen at open (ctpio_mode, ctpio_only, tx_timestamps, express)."""
        if self._closed:
            return dict(self._final_stats)
        return self._read_stats()

    def _read_stats(self) -> dict[str, Any]:
        rc = self._lib.efsdk_efvi_tx_get_stats(self._h, self._stats_buf)
        if rc < 0:
            raise efvi_error(rc, None, f"stats of {self._describe}")
        x = self._stats_buf
        out: dict[str, Any] = {name: int(getattr(x, name)) for name in _STAT_FIELDS}
        for name in ("ctpio_mode", "ctpio_only", "tx_timestamps", "express"):
            out[name] = bool(getattr(x, name))
        out["stamps_dropped"] = self._stamps_dropped
        return out

    def _release(self) -> None:
        self._final_stats = self._read_stats()
        h, self._h = self._h, None
        self._lib.efsdk_efvi_tx_close(h)


def open_efvi_sender(iface: str, **options: Any) -> EfviSender:
    """Open a transmit VI on ``iface`` (options: :func:`make_sender_config`).

    Raises :class:`ConfigError` for bad options, :class:`NativeError` when
    ``efsdk._native_efvi`` is not built, :class:`SourceError` (errno + what to
    do) when the driver or NIC refuses, e.g. ENOENT without ``/dev/sfc_char``.
    """
    if _efvi._lib is None:
        raise NativeError(f"{NOT_BUILT} [{_efvi._IMPORT_ERROR}]")
    return EfviSender(make_sender_config(iface, **options))

