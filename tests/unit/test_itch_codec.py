"""ITCH 5.0 codec: hand-computed byte vectors, round trips of all 23 types, error paths."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from efsdk.errors import ProtocolError
from efsdk.itch import codec
from efsdk.itch.codec import (
    MESSAGE_CLASSES,
    decode,
    encode,
    encode_fields,
    frame,
    make_message,
    price_from_decimal,
    price_to_decimal,
    price_to_float,
)
from efsdk.itch.layouts import LAYOUTS, MWCB_PRICE_SCALE, TIMESTAMP_MAX

TYPES = [t.decode("ascii") for t in LAYOUTS]


# ---------------------------------------------------------------------------
# Known vectors.  The hex is written out by hand from NASDAQ's field order
# (PROTOCOLS.md), one group per field, so a wrong table (order, width, type
# code) fails here even though every other test derives from the table.

VECTORS = {
    "A": (
        dict(stock_locate=1, tracking_number=2, timestamp=34_200_000_000_123,
             order_reference_number=0x0102030405060708, side="B", shares=100,
             stock="AAPL", price=1_502_500),
        # type locate tracking timestamp    order ref        side shares   stock            price
        "41 0001 0002 1f1aced9f07b 0102030405060708 42 00000064 4141504c20202020 0016ed24",
    ),
    "E": (
        dict(stock_locate=0x1234, tracking_number=0, timestamp=1,
             order_reference_number=0x0102030405060708, executed_shares=0xFFFFFFFF,
             match_number=0x1122334455667788),
        # type locate tracking timestamp    order ref        executed match
        "45 1234 0000 000000000001 0102030405060708 ffffffff 1122334455667788",
    ),
    "U": (
        dict(stock_locate=7, tracking_number=8, timestamp=TIMESTAMP_MAX,
             original_order_reference_number=1, new_order_reference_number=2,
             shares=300, price=99_999_999),
        # type locate tracking timestamp    original ref     new ref          shares   price
        "55 0007 0008 ffffffffffff 0000000000000001 0000000000000002 0000012c 05f5e0ff",
    ),
    "P": (
        dict(stock_locate=0x0102, tracking_number=0x0304, timestamp=0x000102030405,
             order_reference_number=0, side="S", shares=1, stock="MSFT",
             price=4_299_900, match_number=0xDEADBEEF),
        # type locate tracking timestamp    order ref        side shares   stock            price    match
        "50 0102 0304 000102030405 0000000000000000 53 00000001 4d53465420202020 00419c7c 00000000deadbeef",
    ),
    "Q": (
        dict(stock_locate=0, tracking_number=0, timestamp=0, shares=(1 << 40) + 5,
             stock="ZVZZT", cross_price=100_000, match_number=42, cross_type="O"),
        # type locate tracking timestamp    shares (8 bytes) stock            price    match            cross type
        "51 0000 0000 000000000000 0000010000000005 5a565a5a54202020 000186a0 000000000000002a 4f",
    ),
    "V": (
        # MWCB levels are 8-byte prices with 8 decimals: 3000.12345678 etc.
        dict(stock_locate=0, tracking_number=0, timestamp=0,
             level1=300_012_345_678, level2=215_011_111_111, level3=150_000_000_000),
        "56 0000 0000 000000000000 00000045da21194e 000000320fa930c7 00000022ecb25c00",
    ),
    "R": (
        dict(stock_locate=1, tracking_number=0, timestamp=0, stock="AAPL",
             market_category="Q", financial_status="N", round_lot_size=100,
             round_lots_only="N", issue_classification="C", issue_subtype="Z",
             authenticity="P", short_sale_threshold="N", ipo_flag=" ",
             luld_reference_price_tier="1", etp_flag="N", etp_leverage_factor=0,
             inverse_indicator="N"),
        # type locate tracking timestamp    stock            cat fin lot      only cls sub  auth ssh ipo luld etp lev      inv
        "52 0001 0000 000000000000 4141504c20202020 51 4e 00000064 4e 43 5a20 50 4e 20 31 4e 00000000 4e",
    ),
}  # fmt: skip


@pytest.mark.parametrize("type_char", sorted(VECTORS))
def test_known_vector_encodes_byte_for_byte(type_char: str) -> None:
    fields, hex_ = VECTORS[type_char]
    expected = bytes.fromhex(hex_)
    assert encode_fields(type_char, **fields) == expected


@pytest.mark.parametrize("type_char", sorted(VECTORS))
def test_known_vector_decodes_to_its_fields(type_char: str) -> None:
    fields, hex_ = VECTORS[type_char]
    msg = decode(bytes.fromhex(hex_))
    assert msg.type == type_char
    assert msg._asdict() == {"type": type_char, **fields}


def test_mwcb_level_reads_as_8_decimal_price() -> None:
    msg = decode(bytes.fromhex(VECTORS["V"][1]))
    assert price_to_decimal(msg.level1, MWCB_PRICE_SCALE) == Decimal("3000.12345678")


# ---------------------------------------------------------------------------
# Generated classes


def test_one_class_per_type_named_after_the_layout() -> None:
    assert len(MESSAGE_CLASSES) == 23
    assert MESSAGE_CLASSES["A"] is codec.AddOrder  # type: ignore[attr-defined]
    assert MESSAGE_CLASSES["E"].__name__ == "OrderExecuted"
    assert MESSAGE_CLASSES["F"].__name__ == "AddOrderMpid"
    assert MESSAGE_CLASSES["O"].__name__ == "DlcrPriceDiscovery"
    for type_char, cls in MESSAGE_CLASSES.items():
        layout = LAYOUTS[type_char.encode()]
        assert cls._fields == ("type", "stock_locate", "tracking_number", "timestamp") + tuple(
            name for name, _ in layout.body
        )
        assert getattr(codec, cls.__name__) is cls
        assert cls.__name__ in codec.__all__


# ---------------------------------------------------------------------------
# Round trips, every type, full ranges


def _field_strategy(code: str) -> st.SearchStrategy[object]:
    if code == "c":
        return st.characters(min_codepoint=0, max_codepoint=0xFF)
    if code.endswith("s"):
        # Decoding strips trailing spaces, so only such values round-trip as fields
        # (raw bytes with trailing spaces are covered by the byte-level test).
        return st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=int(code[:-1])).map(
            lambda s: s.rstrip(" ")
        )
    top = (1 << (8 * struct.calcsize(">" + code))) - 1
    return st.integers(0, top) | st.sampled_from([0, top])


def _message_strategy(type_char: str) -> st.SearchStrategy[object]:
    layout = LAYOUTS[type_char.encode()]
    u16 = st.integers(0, 0xFFFF)
    return st.builds(
        MESSAGE_CLASSES[type_char],
        st.just(type_char),
        u16,
        u16,
        st.integers(0, TIMESTAMP_MAX) | st.sampled_from([0, TIMESTAMP_MAX]),
        *(_field_strategy(code) for _, code in layout.body),
    )


@pytest.mark.parametrize("type_char", TYPES)
@given(data=st.data())
def test_fields_round_trip_encode_decode_encode(type_char: str, data: st.DataObject) -> None:
    msg = data.draw(_message_strategy(type_char))
    wire = encode(msg)
    assert len(wire) == LAYOUTS[type_char.encode()].size
    back = decode(wire)
    assert back == msg
    assert type(back) is type(msg)
    assert encode(back) == wire


@pytest.mark.parametrize("type_char", TYPES)
@given(data=st.data())
def test_any_wire_bytes_round_trip_decode_encode(type_char: str, data: st.DataObject) -> None:
    size = LAYOUTS[type_char.encode()].size
    wire = type_char.encode() + data.draw(st.binary(min_size=size - 1, max_size=size - 1))
    assert encode(decode(wire)) == wire


@pytest.mark.parametrize("type_char", TYPES)
def test_extreme_values_round_trip(type_char: str) -> None:
    layout = LAYOUTS[type_char.encode()]
    values: dict[str, object] = {"stock_locate": 0xFFFF, "tracking_number": 0xFFFF, "timestamp": TIMESTAMP_MAX}
    for name, code in layout.body:
        if code == "c":
            values[name] = "\xff"
        elif code.endswith("s"):
            values[name] = "\xff" * int(code[:-1])
        else:
            values[name] = (1 << (8 * struct.calcsize(">" + code))) - 1
    wire = encode_fields(type_char, **values)
    assert wire[1:] == b"\xff" * (layout.size - 1)
    assert decode(wire)._asdict() == {"type": type_char, **values}


def test_alpha_strips_only_trailing_spaces() -> None:
    wire = bytearray(encode_fields("Y", timestamp=0, stock="X", reg_sho_action="0"))
    wire[11:19] = b" A B    "
    assert decode(bytes(wire)).stock == " A B"
    assert encode(decode(bytes(wire))) == bytes(wire)


def test_code_field_keeps_space() -> None:
    msg = decode(encode_fields("K", timestamp=5, stock="IPO", ipo_quotation_release_time=36000,
                               ipo_quotation_release_qualifier=" ", ipo_price=100_000))
    assert msg.ipo_quotation_release_qualifier == " "


def test_decode_in_place_at_offset_from_any_buffer() -> None:
    a = encode_fields("D", timestamp=7, order_reference_number=99)
    b = encode_fields("B", timestamp=8, match_number=12345)
    blob = b"junk" + a + b + b"tail"
    for buf in (blob, bytearray(blob), memoryview(blob)):
        assert decode(buf, 4).order_reference_number == 99
        assert decode(buf, 4 + len(a)).match_number == 12345


# ---------------------------------------------------------------------------
# Errors


def test_decode_unknown_type_names_type_and_offset() -> None:
    with pytest.raises(ProtocolError, match=r"unknown ITCH 5.0 message type 'Z' \(0x5a\) at offset 3"):
        decode(b"\x00\x00\x00Z" + bytes(30), 3)


@pytest.mark.parametrize("type_char", TYPES)
def test_decode_short_buffer_says_expected_and_actual(type_char: str) -> None:
    size = LAYOUTS[type_char.encode()].size
    wire = type_char.encode() + bytes(size - 1)
    pattern = rf"short ITCH '{type_char}' .* offset 0: expected {size} bytes, got {size - 1}"
    with pytest.raises(ProtocolError, match=pattern):
        decode(wire[:-1])
    decode(wire)  # exactly the size is enough


def test_decode_empty_or_past_end() -> None:
    with pytest.raises(ProtocolError, match="no ITCH message at offset 0"):
        decode(b"")
    with pytest.raises(ProtocolError, match="offset 5"):
        decode(b"abc", 5)


def test_protocol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode(b"Z")


def _add(**over: object) -> dict[str, object]:
    fields: dict[str, object] = dict(timestamp=1, order_reference_number=1, side="B", shares=1, stock="AAPL", price=1)
    fields.update(over)
    return fields


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        (dict(shares=1 << 32), r"AddOrder\.shares = 4294967296 does not fit .*0\.\.4294967295"),
        (dict(shares=-1), r"AddOrder\.shares = -1 does not fit"),
        (dict(order_reference_number=1 << 64), r"AddOrder\.order_reference_number"),
        (dict(price=1.5), r"AddOrder\.price needs an int"),
        (dict(timestamp=TIMESTAMP_MAX + 1), r"AddOrder\.timestamp = 281474976710656 does not fit the 6-byte"),
        (dict(timestamp=-1), r"AddOrder\.timestamp = -1"),
        (dict(timestamp="now"), r"AddOrder\.timestamp needs an int"),
        (dict(stock="TOOLONGSYM"), r"AddOrder\.stock: 'TOOLONGSYM' is 10 bytes, the field holds 8"),
        (dict(stock="\u20ac"), r"AddOrder\.stock: .* not latin-1"),
        (dict(stock=5), r"AddOrder\.stock: needs str"),
        (dict(side="BS"), r"AddOrder\.side: needs exactly one"),
        (dict(side=""), r"AddOrder\.side: needs exactly one"),
        (dict(stock_locate=70000), r"AddOrder\.stock_locate = 70000 does not fit"),
    ],
)
def test_encode_rejects_values_that_do_not_fit(over: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        encode_fields("A", **_add(**over))


def test_encode_accepts_bytes_for_alpha_and_code_fields() -> None:
    assert encode_fields("A", **_add(stock=b"AAPL", side=b"B")) == encode_fields("A", **_add())


def test_make_message_errors() -> None:
    with pytest.raises(ValueError, match="unknown ITCH 5.0 message type 'z'"):
        make_message("z", timestamp=0)
    with pytest.raises(ValueError, match=r"AddOrder: missing shares; unknown volume"):
        make_message("A", **{k: v for k, v in _add(volume=5).items() if k != "shares"})
    with pytest.raises(ValueError, match="disagrees"):
        make_message("A", type="E", **_add())
    assert make_message(b"A", type="A", **_add()) == make_message("A", **_add())
    assert make_message("A", **_add()).stock_locate == 0


def test_encode_rejects_foreign_objects_and_mismatched_type() -> None:
    with pytest.raises(TypeError, match="encode_fields"):
        encode(("A", 0, 0, 0, 1, "B", 1, "AAPL", 1))  # a plain tuple
    msg = make_message("A", **_add())._replace(type="F")
    with pytest.raises(ValueError, match="AddOrder message has type 'F'"):
        encode(msg)


def test_frame_prefixes_big_endian_length() -> None:
    msg = encode_fields("D", timestamp=0, order_reference_number=1)
    assert frame(msg) == b"\x00\x13" + msg
    assert frame(b"x" * 0x1234)[:2] == b"\x12\x34"
    assert len(frame(b"x" * 0xFFFF)) == 0x10001
    with pytest.raises(ValueError, match="0-byte"):
        frame(b"")
    with pytest.raises(ValueError, match="65536-byte"):
        frame(b"x" * 0x10000)


# ---------------------------------------------------------------------------
# Prices


def test_price_helpers() -> None:
    assert price_to_decimal(1_502_500) == Decimal("150.25")
    assert price_to_decimal(1) == Decimal("0.0001")
    assert price_to_decimal(0xFFFFFFFF) == Decimal("429496.7295")
    assert price_to_float(1_502_500) == 150.25
    assert price_from_decimal("150.25") == 1_502_500
    assert price_from_decimal(Decimal("0.0001")) == 1
    assert price_from_decimal(0.1) == 1000
    assert price_from_decimal(7) == 70_000
    assert price_from_decimal("3000.12345678", MWCB_PRICE_SCALE) == 300_012_345_678
    with pytest.raises(ValueError, match="more decimals"):
        price_from_decimal("1.00001")


@given(st.integers(0, (1 << 64) - 1))
def test_price_decimal_round_trip_is_exact(raw: int) -> None:
    assert price_from_decimal(price_to_decimal(raw)) == raw
    assert price_from_decimal(price_to_decimal(raw, MWCB_PRICE_SCALE), MWCB_PRICE_SCALE) == raw
