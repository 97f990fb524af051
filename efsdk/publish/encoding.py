"""The fan-out wire format: one topic frame, one struct-packed body per event.

Every stream message is a two-frame ZeroMQ multipart ``[topic, body]``.

Topic
    ``symbol (ASCII, 1..8 chars) + b"\\x00"``.  The terminator makes ZeroMQ's
    prefix filter exact: ``SUBSCRIBE b"AAPL\\x00"`` never matches ``AAPLX``.

Body (all integers little-endian, no padding; the machines on both ends of a
loopback or LAN fan-out are x86/ARM, so native order costs nothing)::

    header  24 bytes  <BBHIQQ
        version   u8   WIRE_VERSION (1); a subscriber refuses other versions
        kind      u8   KIND_DELTA 'D' | KIND_BBO 'B' | KIND_TRADE 'T' | KIND_SNAPSHOT 'S'
        flags     u16  snapshots: FLAG_FINAL (end of stream), FLAG_REPLY (answer to a request);
                       high byte: the depth window N (0: every level; N: the publisher
                       streams only each side's top N levels, see below)
        count     u32  entries that follow (levels; 1 for BBO and TRADE)
        seq       u64  per-topic sequence number (see below)
        ts_ns     u64  feed time of the batch, ns since midnight (ITCH timestamp)

    KIND_DELTA     levels block (below): the new state of every level that changed.
                   Absolute, not increments: shares 0 (and orders 0) removes the
                   level.  Idempotent, so a delta that overlaps a snapshot is harmless.
    KIND_BBO       1 x               <IQIIQI  bid price, shares, orders, ask price, shares, orders
                   (price 0 with shares 0: that side is empty)
    KIND_TRADE     1 x               <IQQ  last price, shares traded since the topic's previous
                   TRADE, cumulative volume.  Prints are aggregated per feed batch
                   (one MoldUDP64 packet live, one decoder batch on replay).
    KIND_SNAPSHOT  fixed <QIB (volume u64, last price u32, trading state byte or 0),
                   then a levels block with every level of the book.

    levels block   <II  nb, na (bid and ask level counts; header count = nb + na), then
                   bid prices u32[nb], bid shares u64[nb], bid orders u32[nb],
                   ask prices u32[na], ask shares u64[na], ask orders u32[na].
                   Columns, not rows: both ends convert them with ``array`` at C
                   speed (measured ~4x cheaper than a struct per level), in no
                   particular price order.

Depth window: a publisher may stream only the top N levels per side.  Its
DELTAs then describe the window: a level that enters it is sent with its
state, one pushed out (or removed) is sent as ``(0, 0)``, and its snapshots hold
the window; the subscriber's rules are unchanged and it ends with exactly
the publisher's top N.

Prices are ITCH ``Price(4)``: integers in 1/10000 dollars, never converted.

Sequence numbers: each topic counts its DELTA, BBO and TRADE messages from 1.
A SNAPSHOT does not advance it: it carries the seq of the last stream message
it already reflects, so a subscriber applies a snapshot with seq ``S`` and then
every stream message with seq > ``S``.  A jump in seq is loss (a full
high-water mark somewhere between the feed and the subscriber).

Snapshot request (subscriber DEALER -> publisher ROUTER), frames after the
DEALER's empty delimiter:

    request   header kind KIND_REQUEST 'Q', count = number of symbols, seq = request id,
              then the symbols joined by b"\\x00"
    reply     header kind KIND_REPLY 'R', count = n, seq = request id, then n pairs of frames
              ``[topic, snapshot body]`` (a symbol the publisher has no book for gets an
              empty snapshot with seq 0)
    error     header kind KIND_ERROR 'X', seq = request id (0 if unreadable), then UTF-8 text
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from efsdk.errors import ProtocolError

__all__ = [
    "BBO_BODY",
    "FLAG_FINAL",
    "FLAG_REPLY",
    "HEADER",
    "KIND_BBO",
    "KIND_DELTA",
    "KIND_ERROR",
    "KIND_REPLY",
    "KIND_REQUEST",
    "KIND_SNAPSHOT",
    "KIND_TRADE",
    "LEVEL_COUNTS",
    "MAX_SYMBOL_LEN",
    "SNAPSHOT_FIXED",
    "TRADE_BODY",
    "WIRE_VERSION",
    "Header",
    "Snapshot",
    "DEPTH_WINDOW_MAX",
    "decode_bbo",
    "depth_window",
    "snapshot_flags",
    "decode_header",
    "decode_levels",
    "encode_levels",
    "decode_request",
    "decode_snapshot",
    "decode_trade",
    "encode_bbo",
    "encode_delta",
    "encode_error",
    "encode_reply_header",
    "encode_request",
    "encode_snapshot",
    "encode_trade",
    "symbol_of_topic",
    "topic_for",
]

WIRE_VERSION = 1

KIND_DELTA = ord("D")
KIND_BBO = ord("B")
KIND_TRADE = ord("T")
KIND_SNAPSHOT = ord("S")
KIND_REQUEST = ord("Q")
KIND_REPLY = ord("R")
KIND_ERROR = ord("X")
STREAM_KINDS = frozenset((KIND_DELTA, KIND_BBO, KIND_TRADE, KIND_SNAPSHOT))

FLAG_FINAL = 1  # the publisher's last snapshot of this topic: end of stream
FLAG_REPLY = 2  # sent as a request reply, not on the periodic schedule
DEPTH_WINDOW_SHIFT = 8  # a snapshot's flags carry the depth window in the high byte
DEPTH_WINDOW_MAX = 255

MAX_SYMBOL_LEN = 8  # ITCH Stock is ALPHA 8
TOPIC_END = b"\x00"

HEADER = struct.Struct("<BBHIQQ")
LEVEL_COUNTS = struct.Struct("<II")
BBO_BODY = struct.Struct("<IQIIQI")
TRADE_BODY = struct.Struct("<IQQ")
SNAPSHOT_FIXED = struct.Struct("<QIB")

_U32 = 0xFFFFFFFF
# Column types of a levels block; ``array`` is native-endian, the wire is little-endian.
_PRICE, _SHARES, _ORDERS = "I", "Q", "I"
assert array(_PRICE).itemsize == 4 and array(_SHARES).itemsize == 8, "unusual C int sizes"
_SWAP = sys.byteorder != "little"

#: One side of a levels block: price -> (shares, orders); (0, 0) in a delta removes the level.
Levels = Mapping[int, tuple[int, int]]


class Header(NamedTuple):
    version: int
    kind: int
    flags: int
    count: int
    seq: int
    ts_ns: int


class Snapshot(NamedTuple):
    """A decoded snapshot: every level of one book as of topic seq ``seq``."""

    seq: int
    ts_ns: int
    flags: int
    volume: int
    last_price: int
    trading_state: str | None
    bids: dict[int, tuple[int, int]]  # price -> (shares, orders)
    asks: dict[int, tuple[int, int]]


# ---------------------------------------------------------------- topics


def topic_for(symbol: str) -> bytes:
    """The topic frame of ``symbol``: its ASCII bytes and a NUL terminator."""
    if not symbol or len(symbol) > MAX_SYMBOL_LEN or not all(" " <= c <= "~" for c in symbol) or symbol != symbol.strip():
        raise ValueError(f"symbol must be 1..{MAX_SYMBOL_LEN} printable ASCII characters, not padded, got {symbol!r}")
    return symbol.encode("ascii") + TOPIC_END


def symbol_of_topic(topic: bytes) -> str:
    """Inverse of :func:`topic_for`; raises :class:`ProtocolError` on a malformed topic."""
    if len(topic) < 2 or topic[-1:] != TOPIC_END or len(topic) > MAX_SYMBOL_LEN + 1 or b"\x00" in topic[:-1]:
        raise ProtocolError(f"malformed topic frame {bytes(topic[:16])!r}")
    try:
        return topic[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"non-ASCII topic frame {bytes(topic[:16])!r}") from None


# ---------------------------------------------------------------- stream messages


def _column(code: str, values: Iterable[int]) -> bytes:
    col = array(code, values)
    if _SWAP:
        col.byteswap()
    return col.tobytes()


def encode_levels(bids: Levels, asks: Levels) -> bytes:
    """A levels block from two ``price -> (shares, orders)`` mappings."""
    nb, na = len(bids), len(asks)
    if nb <= _SMALL and na <= _SMALL and not _SWAP:  # one C call; arrays cost more below ~16 levels
        bs, bo = zip(*bids.values()) if nb else ((), ())
        as_, ao = zip(*asks.values()) if na else ((), ())
        return _small_block(nb, na).pack(nb, na, *bids, *bs, *bo, *asks, *as_, *ao)
    parts = [LEVEL_COUNTS.pack(nb, na)]
    for side in (bids, asks):
        if side:
            shares, orders = zip(*side.values())
            parts.append(_column(_PRICE, side.keys()))
            parts.append(_column(_SHARES, shares))
            parts.append(_column(_ORDERS, orders))
    return b"".join(parts)


_SMALL = 16
_SMALL_BLOCKS: dict[tuple[int, int], struct.Struct] = {}


def _small_block(nb: int, na: int) -> struct.Struct:
    block = _SMALL_BLOCKS.get((nb, na))
    if block is None:
        block = _SMALL_BLOCKS[(nb, na)] = struct.Struct(f"<II{nb}I{nb}Q{nb}I{na}I{na}Q{na}I")
    return block


def snapshot_flags(flags: int, depth_window: int) -> int:
    """A snapshot's flags field: ``FLAG_*`` bits and the depth window (0: every level)."""
    if not 0 <= depth_window <= DEPTH_WINDOW_MAX:
        raise ValueError(f"depth window must be 0..{DEPTH_WINDOW_MAX}, not {depth_window}")
    return flags | depth_window << DEPTH_WINDOW_SHIFT


def depth_window(flags: int) -> int:
    """The depth window a snapshot's flags carry (0: every level)."""
    return flags >> DEPTH_WINDOW_SHIFT


def encode_delta(seq: int, ts_ns: int, bids: Levels, asks: Levels) -> bytes:
    """A DELTA body: the new ``(shares, orders)`` of each changed level, ``(0, 0)`` for a removed one."""
    return HEADER.pack(WIRE_VERSION, KIND_DELTA, 0, len(bids) + len(asks), seq, ts_ns) + encode_levels(bids, asks)


def encode_bbo(seq: int, ts_ns: int, bbo: Sequence[int | None]) -> bytes:
    """A BBO body from a :class:`book.BBO`-shaped 6-tuple (``None`` price: empty side)."""
    bid, bid_shares, bid_orders, ask, ask_shares, ask_orders = bbo
    return HEADER.pack(WIRE_VERSION, KIND_BBO, 0, 1, seq, ts_ns) + BBO_BODY.pack(
        bid or 0, bid_shares, bid_orders, ask or 0, ask_shares, ask_orders
    )


def encode_trade(seq: int, ts_ns: int, last_price: int | None, shares: int, volume: int) -> bytes:
    """A TRADE body: last price, shares since the previous TRADE of the topic, cumulative volume."""
    return HEADER.pack(WIRE_VERSION, KIND_TRADE, 0, 1, seq, ts_ns) + TRADE_BODY.pack(last_price or 0, shares, volume)


def encode_snapshot(
    seq: int,
    ts_ns: int,
    bids: Levels,
    asks: Levels,
    *,
    flags: int = 0,
    volume: int = 0,
    last_price: int | None = None,
    trading_state: str | None = None,
) -> bytes:
    """A SNAPSHOT body: book totals then every level."""
    state = ord(trading_state[0]) if trading_state else 0
    return (
        HEADER.pack(WIRE_VERSION, KIND_SNAPSHOT, flags, len(bids) + len(asks), seq, ts_ns)
        + SNAPSHOT_FIXED.pack(volume, last_price or 0, state)
        + encode_levels(bids, asks)
    )


def decode_header(body: bytes | memoryview) -> Header:
    """The header of any body; raises :class:`ProtocolError` if short or of another version."""
    if len(body) < HEADER.size:
        raise ProtocolError(f"body of {len(body)} bytes is shorter than the {HEADER.size}-byte header")
    header = Header(*HEADER.unpack_from(body))
    if header.version != WIRE_VERSION:
        raise ProtocolError(f"wire version {header.version}, this efsdk speaks {WIRE_VERSION}: upgrade the older side")
    return header


def _read_column(code: str, body: memoryview, start: int, n: int) -> array:
    col = array(code)
    col.frombytes(body[start : start + n * col.itemsize])
    if _SWAP:
        col.byteswap()
    return col


def decode_levels(body: bytes | memoryview, count: int, offset: int) -> tuple[tuple[array, array, array], tuple[array, array, array]]:
    """The levels block at ``offset``: ``((prices, shares, orders) of bids, same of asks)`` as arrays.

    Raises :class:`ProtocolError` unless the block holds exactly ``count``
    levels and ends the body.
    """
    view = memoryview(body)
    if len(view) < offset + LEVEL_COUNTS.size:
        raise ProtocolError("body too short for its levels block")
    nb, na = LEVEL_COUNTS.unpack_from(view, offset)
    if nb + na != count or len(view) != offset + LEVEL_COUNTS.size + (nb + na) * 16:
        raise ProtocolError(f"levels block of {nb}+{na} levels (header says {count}) in {len(view) - offset} bytes")
    pos = offset + LEVEL_COUNTS.size
    sides = []
    for n in (nb, na):
        prices = _read_column(_PRICE, view, pos, n)
        pos += 4 * n
        shares = _read_column(_SHARES, view, pos, n)
        pos += 8 * n
        orders = _read_column(_ORDERS, view, pos, n)
        pos += 4 * n
        sides.append((prices, shares, orders))
    return sides[0], sides[1]


def decode_bbo(body: bytes | memoryview) -> tuple[int | None, int, int, int | None, int, int]:
    """The 6 fields of a BBO body (``None`` price for an empty side)."""
    if len(body) != HEADER.size + BBO_BODY.size:
        raise ProtocolError(f"BBO body of {len(body)} bytes, expected {HEADER.size + BBO_BODY.size}")
    bid, bs, bo, ask, as_, ao = BBO_BODY.unpack_from(body, HEADER.size)
    return (bid if bs else None, bs, bo, ask if as_ else None, as_, ao)


def decode_trade(body: bytes | memoryview) -> tuple[int | None, int, int]:
    """``(last price or None, shares, cumulative volume)`` of a TRADE body."""
    if len(body) != HEADER.size + TRADE_BODY.size:
        raise ProtocolError(f"TRADE body of {len(body)} bytes, expected {HEADER.size + TRADE_BODY.size}")
    price, shares, volume = TRADE_BODY.unpack_from(body, HEADER.size)
    return (price or None, shares, volume)


def decode_snapshot(body: bytes | memoryview, header: Header | None = None) -> Snapshot:
    """A SNAPSHOT body as a :class:`Snapshot`; raises :class:`ProtocolError` if malformed."""
    h = header if header is not None else decode_header(body)
    if h.kind != KIND_SNAPSHOT:
        raise ProtocolError(f"expected a snapshot, got kind {h.kind}")
    if len(body) < HEADER.size + SNAPSHOT_FIXED.size:
        raise ProtocolError("snapshot body too short for its fixed part")
    volume, last_price, state = SNAPSHOT_FIXED.unpack_from(body, HEADER.size)
    (bp, bs, bo), (ap, as_, ao) = decode_levels(body, h.count, HEADER.size + SNAPSHOT_FIXED.size)
    bids = dict(zip(bp, zip(bs, bo)))
    asks = dict(zip(ap, zip(as_, ao)))
    if len(bids) != len(bp) or len(asks) != len(ap) or 0 in bs or 0 in as_:
        raise ProtocolError("snapshot repeats a price or holds an empty level")
    return Snapshot(h.seq, h.ts_ns, h.flags, volume, last_price or 0, chr(state) if state else None, bids, asks)


# ---------------------------------------------------------------- snapshot requests


def encode_request(request_id: int, symbols: Iterable[str]) -> bytes:
    """A snapshot request for ``symbols`` (validated as topics)."""
    names = list(symbols)
    payload = b"\x00".join(topic_for(s)[:-1] for s in names)
    return HEADER.pack(WIRE_VERSION, KIND_REQUEST, 0, len(names), request_id & ((1 << 64) - 1), 0) + payload


def decode_request(body: bytes | memoryview) -> tuple[int, list[str]]:
    """``(request id, symbols)`` of a request; raises :class:`ProtocolError` if malformed."""
    h = decode_header(body)
    if h.kind != KIND_REQUEST:
        raise ProtocolError(f"expected a snapshot request, got kind {h.kind}")
    raw = bytes(body[HEADER.size :])
    names = raw.split(b"\x00") if raw else []
    if len(names) != h.count:
        raise ProtocolError(f"request declares {h.count} symbols, carries {len(names)}")
    try:
        symbols = [n.decode("ascii") for n in names]
    except UnicodeDecodeError:
        raise ProtocolError("non-ASCII symbol in snapshot request") from None
    for s in symbols:
        try:
            topic_for(s)
        except ValueError:
            raise ProtocolError(f"bad symbol {s!r} in snapshot request") from None
    return h.seq, symbols


def encode_reply_header(request_id: int, count: int) -> bytes:
    """The first frame of a reply carrying ``count`` ``[topic, snapshot]`` pairs."""
    return HEADER.pack(WIRE_VERSION, KIND_REPLY, 0, count & _U32, request_id, 0)


def encode_error(request_id: int, text: str) -> bytes:
    """An error reply: the request could not be read."""
    return HEADER.pack(WIRE_VERSION, KIND_ERROR, 0, 0, request_id, 0) + text.encode("utf-8", "replace")
