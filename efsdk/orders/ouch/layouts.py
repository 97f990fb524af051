"""The one table of NASDAQ OUCH 4.2 message layouts.

Every OUCH codec in efsdk (encoder, decoders, the exchange simulator's order
gateway, the tests) is derived from :data:`INBOUND` and :data:`OUTBOUND`; there
is no second copy of the protocol.  Two tables, because the type byte ``U``
means *Replace Order* from client to exchange and *Replaced* from exchange to
client: the direction, not the byte, tells them apart.

Layouts follow NASDAQ's OUCH 4.2 specification, cross-checked against
Wireshark's ``packet-ouch.c`` and the Open Markets Initiative OUCH 4.2
dissector: big-endian, ALPHA fields ASCII left-justified and space padded,
prices u32 in 1/10000 dollars, outbound timestamps u64 nanoseconds since
midnight.  Field kinds (``struct`` codes):

``c``  one byte code (decoded as a 1-character ``str``)
``Ns`` ALPHA of N bytes (decoded as ``str``, trailing spaces stripped)
``I``/``Q``  unsigned 4/8-byte integers
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "INBOUND",
    "INBOUND_SIZE_BY_TYPE",
    "MessageLayout",
    "OUTBOUND",
    "OUTBOUND_SIZE_BY_TYPE",
    "PRICE_SCALE",
    "TOKEN_SIZE",
]

PRICE_SCALE = 10_000  # Price(4): 4 implied decimals
TOKEN_SIZE = 14  # order token: 14 ALPHA, unique per account and day


@dataclass(frozen=True)
class MessageLayout:
    """Layout of one OUCH message type: every field, the type byte first."""

    type: bytes  # one byte, e.g. b"O"
    name: str  # snake_case message name; the class name is its CamelCase
    direction: str  # "inbound" (client -> exchange) or "outbound"
    fields: tuple[tuple[str, str], ...]  # (field name, struct code), type byte included

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @property
    def struct(self) -> struct.Struct:
        return _STRUCTS[(self.direction, self.type)]

    @property
    def size(self) -> int:
        return self.struct.size


def _layout(direction: str, type_: str, name: str, *body: tuple[str, str]) -> MessageLayout:
    return MessageLayout(type_.encode("ascii"), name, direction, (("type", "c"),) + tuple(body))


_TOKEN = ("token", "14s")
_TS = ("timestamp", "Q")
_SIDE = ("side", "c")
_SHARES = ("shares", "I")
_STOCK = ("stock", "8s")
_PRICE = ("price", "I")
_TIF = ("time_in_force", "I")
_FIRM = ("firm", "4s")
_DISPLAY = ("display", "c")
_CAPACITY = ("capacity", "c")
_ISO = ("intermarket_sweep", "c")
_MIN_QTY = ("minimum_quantity", "I")
_CROSS = ("cross_type", "c")
_ORDER_REF = ("order_reference", "Q")
_ORDER_STATE = ("order_state", "c")
_BBO_WEIGHT = ("bbo_weight_indicator", "c")


def _inbound(type_: str, name: str, *body: tuple[str, str]) -> MessageLayout:
    return _layout("inbound", type_, name, *body)


def _outbound(type_: str, name: str, *body: tuple[str, str]) -> MessageLayout:
    return _layout("outbound", type_, name, *body)


#: Client -> exchange messages (carried in SoupBinTCP Unsequenced Data packets).
INBOUND: dict[bytes, MessageLayout] = {
    m.type: m
    for m in (
        _inbound(
            "O", "enter_order",
            _TOKEN, _SIDE, _SHARES, _STOCK, _PRICE, _TIF, _FIRM, _DISPLAY, _CAPACITY, _ISO, _MIN_QTY,
            _CROSS, ("customer_type", "c"),
        ),
        _inbound(
            "U", "replace_order",
            ("existing_token", "14s"), ("replacement_token", "14s"), _SHARES, _PRICE, _TIF, _DISPLAY,
            _ISO, _MIN_QTY,
        ),
        _inbound("X", "cancel_order", _TOKEN, _SHARES),
        _inbound("M", "modify_order", _TOKEN, _SIDE, _SHARES),
    )
}  # fmt: skip

#: Exchange -> client messages (carried in SoupBinTCP Sequenced Data packets).
OUTBOUND: dict[bytes, MessageLayout] = {
    m.type: m
    for m in (
        _outbound("S", "system_event", _TS, ("event_code", "c")),
        _outbound(
            "A", "accepted",
            _TS, _TOKEN, _SIDE, _SHARES, _STOCK, _PRICE, _TIF, _FIRM, _DISPLAY, _ORDER_REF, _CAPACITY,
            _ISO, _MIN_QTY, _CROSS, _ORDER_STATE, _BBO_WEIGHT,
        ),
        # previous_token comes *before* the BBO weight indicator: OUCH 4.2 appended
        # the indicator to the 4.1 Replaced (79 bytes), as Wireshark's dissector
        # (length 80 adds it after previous_token) and the OMI dissector both read it.
        _outbound(
            "U", "replaced",
            _TS, ("replacement_token", "14s"), _SIDE, _SHARES, _STOCK, _PRICE, _TIF, _FIRM, _DISPLAY,
            _ORDER_REF, _CAPACITY, _ISO, _MIN_QTY, _CROSS, _ORDER_STATE, ("previous_token", "14s"),
            _BBO_WEIGHT,
        ),
        _outbound("C", "canceled", _TS, _TOKEN, ("decrement_shares", "I"), ("reason", "c")),
        _outbound(
            "D", "aiq_canceled",
            _TS, _TOKEN, ("decrement_shares", "I"), ("reason", "c"), ("quantity_prevented", "I"),
            ("execution_price", "I"), ("liquidity_flag", "c"),
        ),
        _outbound(
            "E", "executed",
            _TS, _TOKEN, ("executed_shares", "I"), ("execution_price", "I"), ("liquidity_flag", "c"),
            ("match_number", "Q"),
        ),
        _outbound("B", "broken_trade", _TS, _TOKEN, ("match_number", "Q"), ("reason", "c")),
        _outbound(
            "K", "price_correction",
            _TS, _TOKEN, ("match_number", "Q"), ("new_execution_price", "I"), ("reason", "c"),
        ),
        _outbound("J", "rejected", _TS, _TOKEN, ("reason", "c")),
        _outbound("P", "cancel_pending", _TS, _TOKEN),
        _outbound("I", "cancel_reject", _TS, _TOKEN),
        # The answer to a Modify Order (4.2 only); not in Wireshark's dissector,
        # layout from the OMI NASDAQ OUCH 4.2 dissector.
        _outbound("M", "order_modified", _TS, _TOKEN, _SIDE, _SHARES),
    )
}  # fmt: skip

_STRUCTS: dict[tuple[str, bytes], struct.Struct] = {
    (m.direction, t): struct.Struct(">" + "".join(code for _, code in m.fields))
    for table in (INBOUND, OUTBOUND)
    for t, m in table.items()
}

# Sizes from the specification (type byte included); checked at import so a
# typo in the tables can never ship.
_SPEC_SIZES = {
    "inbound": {b"O": 49, b"U": 47, b"X": 19, b"M": 20},
    "outbound": {
        b"S": 10, b"A": 66, b"U": 80, b"C": 28, b"D": 37, b"E": 40, b"B": 32, b"K": 36,
        b"J": 24, b"P": 23, b"I": 23, b"M": 28,
    },
}  # fmt: skip
for _direction, _table in (("inbound", INBOUND), ("outbound", OUTBOUND)):
    if set(_SPEC_SIZES[_direction]) != set(_table):  # pragma: no cover - guards the table itself
        raise AssertionError(f"OUCH {_direction} layout table and spec size list disagree on message types")
    for _t, _size in _SPEC_SIZES[_direction].items():
        if _STRUCTS[(_direction, _t)].size != _size:  # pragma: no cover
            raise AssertionError(
                f"OUCH {_direction} layout {_t!r} is {_STRUCTS[(_direction, _t)].size} bytes, spec says {_size}"
            )
del _direction, _table, _t, _size

#: Message size by type byte value (int), for framing checks.
INBOUND_SIZE_BY_TYPE: dict[int, int] = {t[0]: m.size for t, m in INBOUND.items()}
OUTBOUND_SIZE_BY_TYPE: dict[int, int] = {t[0]: m.size for t, m in OUTBOUND.items()}
