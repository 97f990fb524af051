"""The one table of NASDAQ TotalView-ITCH 5.0 message layouts.

Every ITCH codec in efsdk (Python decoder, encoder, generator, and the tests that
cross-check ``native/``) is derived from :data:`LAYOUTS`; there is no second copy
of the protocol.  Layouts follow NASDAQ's TotalView-ITCH 5.0 specification:
big-endian, ALPHA fields space-padded, prices u32 with 4 implied decimals (MWCB
levels u64 with 8), timestamps 6 bytes of nanoseconds since midnight.

The 6-byte timestamp has no struct code, so it is packed as two fields
(``timestamp_hi`` u16, ``timestamp_lo`` u32); :func:`split_timestamp` and
:func:`join_timestamp` convert.  Field kinds:

``c``  one ASCII byte (bytes of length 1)
``Ns`` ALPHA of N bytes (bytes, space padded)
``H``/``I``/``Q``  unsigned 2/4/8-byte integers (prices are ``I`` in 1/10000 units)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "HEADER_FIELDS",
    "LAYOUTS",
    "MessageLayout",
    "PRICE_SCALE",
    "MWCB_PRICE_SCALE",
    "TIMESTAMP_MAX",
    "join_timestamp",
    "split_timestamp",
]

PRICE_SCALE = 10_000  # Price(4): 4 implied decimals
MWCB_PRICE_SCALE = 100_000_000  # Price(8) in the V message
TIMESTAMP_MAX = (1 << 48) - 1

# Common header: type, stock locate, tracking number, 6-byte timestamp.
HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("type", "c"),
    ("stock_locate", "H"),
    ("tracking_number", "H"),
    ("timestamp_hi", "H"),
    ("timestamp_lo", "I"),
)


@dataclass(frozen=True)
class MessageLayout:
    """Layout of one ITCH message type: its fields after the 11-byte header."""

    type: bytes  # one byte, e.g. b"A"
    name: str  # snake_case message name
    body: tuple[tuple[str, str], ...]

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return HEADER_FIELDS + self.body

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @property
    def struct(self) -> struct.Struct:
        return _STRUCTS[self.type]

    @property
    def size(self) -> int:
        return _STRUCTS[self.type].size


def _layout(type_: str, name: str, *body: tuple[str, str]) -> MessageLayout:
    return MessageLayout(type_.encode("ascii"), name, tuple(body))


_STOCK = ("stock", "8s")

LAYOUTS: dict[bytes, MessageLayout] = {
    m.type: m
    for m in (
        _layout("S", "system_event", ("event_code", "c")),
        _layout(
            "R",
            "stock_directory",
            _STOCK,
            ("market_category", "c"),
            ("financial_status", "c"),
            ("round_lot_size", "I"),
            ("round_lots_only", "c"),
            ("issue_classification", "c"),
            ("issue_subtype", "2s"),
            ("authenticity", "c"),
            ("short_sale_threshold", "c"),
            ("ipo_flag", "c"),
            ("luld_reference_price_tier", "c"),
            ("etp_flag", "c"),
            ("etp_leverage_factor", "I"),
            ("inverse_indicator", "c"),
        ),
        _layout(
            "H",
            "stock_trading_action",
            _STOCK,
            ("trading_state", "c"),
            ("reserved", "c"),
            ("reason", "4s"),
        ),
        _layout("Y", "reg_sho_restriction", _STOCK, ("reg_sho_action", "c")),
        _layout(
            "L",
            "market_participant_position",
            ("mpid", "4s"),
            _STOCK,
            ("primary_market_maker", "c"),
            ("market_maker_mode", "c"),
            ("market_participant_state", "c"),
        ),
        _layout("V", "mwcb_decline_level", ("level1", "Q"), ("level2", "Q"), ("level3", "Q")),
        _layout("W", "mwcb_status", ("breached_level", "c")),
        _layout(
            "K",
            "ipo_quoting_period_update",
            _STOCK,
            ("ipo_quotation_release_time", "I"),
            ("ipo_quotation_release_qualifier", "c"),
            ("ipo_price", "I"),
        ),
        _layout(
            "J",
            "luld_auction_collar",
            _STOCK,
            ("auction_collar_reference_price", "I"),
            ("upper_auction_collar_price", "I"),
            ("lower_auction_collar_price", "I"),
            ("auction_collar_extension", "I"),
        ),
        _layout("h", "operational_halt", _STOCK, ("market_code", "c"), ("operational_halt_action", "c")),
        _layout(
            "A",
            "add_order",
            ("order_reference_number", "Q"),
            ("side", "c"),
            ("shares", "I"),
            _STOCK,
            ("price", "I"),
        ),
        _layout(
            "F",
            "add_order_mpid",
            ("order_reference_number", "Q"),
            ("side", "c"),
            ("shares", "I"),
            _STOCK,
            ("price", "I"),
            ("attribution", "4s"),
        ),
        _layout(
            "E",
            "order_executed",
            ("order_reference_number", "Q"),
            ("executed_shares", "I"),
            ("match_number", "Q"),
        ),
        _layout(
            "C",
            "order_executed_with_price",
            ("order_reference_number", "Q"),
            ("executed_shares", "I"),
            ("match_number", "Q"),
            ("printable", "c"),
            ("execution_price", "I"),
        ),
        _layout("X", "order_cancel", ("order_reference_number", "Q"), ("cancelled_shares", "I")),
        _layout("D", "order_delete", ("order_reference_number", "Q")),
        _layout(
            "U",
            "order_replace",
            ("original_order_reference_number", "Q"),
            ("new_order_reference_number", "Q"),
            ("shares", "I"),
            ("price", "I"),
        ),
        _layout(
            "P",
            "trade",
            ("order_reference_number", "Q"),
            ("side", "c"),
            ("shares", "I"),
            _STOCK,
            ("price", "I"),
            ("match_number", "Q"),
        ),
        _layout(
            "Q",
            "cross_trade",
            ("shares", "Q"),
            _STOCK,
            ("cross_price", "I"),
            ("match_number", "Q"),
            ("cross_type", "c"),
        ),
        _layout("B", "broken_trade", ("match_number", "Q")),
        _layout(
            "I",
            "noii",
            ("paired_shares", "Q"),
            ("imbalance_shares", "Q"),
            ("imbalance_direction", "c"),
            _STOCK,
            ("far_price", "I"),
            ("near_price", "I"),
            ("current_reference_price", "I"),
            ("cross_type", "c"),
            ("price_variation_indicator", "c"),
        ),
        _layout("N", "rpii", _STOCK, ("interest_flag", "c")),
        _layout(
            "O",
            "dlcr_price_discovery",
            _STOCK,
            ("open_eligibility_status", "c"),
            ("minimum_allowable_price", "I"),
            ("maximum_allowable_price", "I"),
            ("near_execution_price", "I"),
            ("near_execution_time", "Q"),
            ("lower_price_range_collar", "I"),
            ("upper_price_range_collar", "I"),
        ),
    )
}

_STRUCTS: dict[bytes, struct.Struct] = {
    t: struct.Struct(">" + "".join(code for _, code in m.fields)) for t, m in LAYOUTS.items()
}

# Sizes from the specification (type byte included); checked at import so a
# typo in the table can never ship.
_SPEC_SIZES = {
    b"S": 12, b"R": 39, b"H": 25, b"Y": 20, b"L": 26, b"V": 35, b"W": 12, b"K": 28,
    b"J": 35, b"h": 21, b"A": 36, b"F": 40, b"E": 31, b"C": 36, b"X": 23, b"D": 19,
    b"U": 35, b"P": 44, b"Q": 40, b"B": 19, b"I": 50, b"N": 20, b"O": 48,
}  # fmt: skip
for _t, _size in _SPEC_SIZES.items():
    if _STRUCTS[_t].size != _size:  # pragma: no cover - guards the table itself
        raise AssertionError(f"ITCH layout {_t!r} is {_STRUCTS[_t].size} bytes, spec says {_size}")
if set(_SPEC_SIZES) != set(LAYOUTS):  # pragma: no cover
    raise AssertionError("ITCH layout table and spec size list disagree on message types")

#: Message size by type byte value (int), for framing checks on the hot path.
SIZE_BY_TYPE: dict[int, int] = {t[0]: s.size for t, s in _STRUCTS.items()}


def split_timestamp(ns: int) -> tuple[int, int]:
    """Split nanoseconds since midnight into the (hi u16, lo u32) wire halves."""
    if not 0 <= ns <= TIMESTAMP_MAX:
        raise ValueError(f"ITCH timestamp {ns} does not fit in 6 bytes")
    return ns >> 32, ns & 0xFFFFFFFF


def join_timestamp(hi: int, lo: int) -> int:
    """Join the (hi u16, lo u32) wire halves into nanoseconds since midnight."""
    return (hi << 32) | lo
