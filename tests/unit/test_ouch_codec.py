"""OUCH 4.2 codec: layouts and sizes, hand-computed bytes, round trips, bad input, tokens."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from efsdk.errors import OrderError, ProtocolError
from efsdk.orders import ouch
from efsdk.orders.ouch import codec
from efsdk.orders.ouch.layouts import INBOUND, OUTBOUND

# The contract other modules (order manager, exchange simulator) are written against.
CONTRACT = {
    ("inbound", "EnterOrder"): ("type token side shares stock price time_in_force firm display capacity "
                                "intermarket_sweep minimum_quantity cross_type customer_type", 49),
    ("inbound", "ReplaceOrder"): ("type existing_token replacement_token shares price time_in_force display "
                                  "intermarket_sweep minimum_quantity", 47),
    ("inbound", "CancelOrder"): ("type token shares", 19),
    ("inbound", "ModifyOrder"): ("type token side shares", 20),
    ("outbound", "SystemEvent"): ("type timestamp event_code", 10),
    ("outbound", "Accepted"): ("type timestamp token side shares stock price time_in_force firm display "
                               "order_reference capacity intermarket_sweep minimum_quantity cross_type "
                               "order_state bbo_weight_indicator", 66),
    ("outbound", "Replaced"): ("type timestamp replacement_token side shares stock price time_in_force firm "
                               "display order_reference capacity intermarket_sweep minimum_quantity cross_type "
                               "order_state previous_token bbo_weight_indicator", 80),
    ("outbound", "Canceled"): ("type timestamp token decrement_shares reason", 28),
    ("outbound", "AiqCanceled"): ("type timestamp token decrement_shares reason quantity_prevented "
                                  "execution_price liquidity_flag", 37),
    ("outbound", "Executed"): ("type timestamp token executed_shares execution_price liquidity_flag "
                               "match_number", 40),
    ("outbound", "BrokenTrade"): ("type timestamp token match_number reason", 32),
    ("outbound", "PriceCorrection"): ("type timestamp token match_number new_execution_price reason", 36),
    ("outbound", "Rejected"): ("type timestamp token reason", 24),
    ("outbound", "CancelPending"): ("type timestamp token", 23),
    ("outbound", "CancelReject"): ("type timestamp token", 23),
    ("outbound", "OrderModified"): ("type timestamp token side shares", 28),
}  # fmt: skip

ALL = [("inbound", t) for t in INBOUND] + [("outbound", t) for t in OUTBOUND]


def _table(direction: str) -> dict:
    return INBOUND if direction == "inbound" else OUTBOUND


def _decode(direction: str, buf: bytes) -> Any:
    return codec.decode_inbound(buf) if direction == "inbound" else codec.decode_outbound(buf)


def random_message(rng: random.Random, direction: str, type_: bytes) -> Any:
    """One message with full-range random values (edges included), built from the layout table."""
    layout = _table(direction)[type_]
    classes = codec.INBOUND_CLASSES if direction == "inbound" else codec.OUTBOUND_CLASSES
    values: list[Any] = [type_.decode()]
    for _, code in layout.fields[1:]:
        if code == "c":
            values.append(chr(rng.randrange(256)))
        elif code.endswith("s"):
            n = rng.randrange(int(code[:-1]) + 1)
            values.append("".join(chr(rng.randrange(256)) for _ in range(n)).rstrip(" "))
        else:
            top = (1 << (8 * struct.calcsize(">" + code))) - 1
            values.append(rng.choice((0, top, rng.randrange(top + 1))))
    return classes[type_.decode()](*values)


# ------------------------------------------------------------------ layouts


def test_classes_fields_and_sizes_match_the_contract() -> None:
    for (direction, name), (fields, size) in CONTRACT.items():
        cls = getattr(codec, name)
        assert getattr(ouch, name) is cls
        assert cls._fields == tuple(fields.split()), name
        table = codec.INBOUND_CLASSES if direction == "inbound" else codec.OUTBOUND_CLASSES
        assert table[_type_of(direction, name)] is cls
        assert _table(direction)[_type_of(direction, name).encode()].size == size
    assert len(CONTRACT) == len(ALL) == 16


def _type_of(direction: str, name: str) -> str:
    for t, layout in _table(direction).items():
        if codec.class_name(layout) == name:
            return t.decode()
    raise AssertionError(name)


def test_u_means_replace_inbound_and_replaced_outbound() -> None:
    assert codec.INBOUND_CLASSES["U"] is codec.ReplaceOrder
    assert codec.OUTBOUND_CLASSES["U"] is codec.Replaced
    assert codec.INBOUND_CLASSES["M"] is codec.ModifyOrder
    assert codec.OUTBOUND_CLASSES["M"] is codec.OrderModified


# ------------------------------------------------------------------ exact bytes


def test_enter_order_bytes() -> None:
    msg = codec.enter_order("EF000000000001", "B", 100, "AAPL", 150_2500, firm="ABCD", minimum_quantity=7)
    wire = codec.encode(msg)
    assert len(wire) == 49
    expected = (
        b"O"  # 0 type
        + b"EF000000000001"  # 1..14 token
        + b"B"  # 15 side
        + bytes.fromhex("00000064")  # 16..19 shares 100
        + b"AAPL    "  # 20..27 stock, space padded
        + bytes.fromhex("0016ED24")  # 28..31 price 150.2500 = 1502500
        + bytes.fromhex("0001869F")  # 32..35 TIF 99999 (system hours)
        + b"ABCD"  # 36..39 firm
        + b"Y"  # 40 display
        + b"A"  # 41 capacity
        + b"N"  # 42 intermarket sweep
        + bytes.fromhex("00000007")  # 43..46 minimum quantity
        + b"N"  # 47 cross type
        + b"R"  # 48 customer type
    )
    assert wire == expected
    assert wire[20:28] == b"AAPL    " and wire[28:32] == (1502500).to_bytes(4, "big")
    assert codec.decode_inbound(wire) == msg


def test_enter_order_empty_firm_is_spaces() -> None:
    wire = codec.encode(codec.enter_order("T1", "S", 1, "A", 1))
    assert wire[1:15] == b"T1" + b" " * 12
    assert wire[36:40] == b"    "


def test_accepted_bytes() -> None:
    msg = codec.Accepted(
        "A", 34_200_000_000_123, "EF000000000001", "S", 300, "MSFT", 410_1234, 0, "FIRM", "N",
        0x0102030405060708, "P", "Y", 100, "O", "L", " ",
    )  # fmt: skip
    wire = codec.encode(msg)
    assert len(wire) == 66
    expected = (
        b"A"  # 0
        + (34_200_000_000_123).to_bytes(8, "big")  # 1..8 timestamp (09:30:00.000000123)
        + b"EF000000000001"  # 9..22 token
        + b"S"  # 23 side
        + bytes.fromhex("0000012C")  # 24..27 shares 300
        + b"MSFT    "  # 28..35 stock
        + bytes.fromhex("003E9472")  # 36..39 price 410.1234 = 4101234
        + bytes.fromhex("00000000")  # 40..43 TIF 0 (IOC)
        + b"FIRM"  # 44..47 firm
        + b"N"  # 48 display
        + bytes.fromhex("0102030405060708")  # 49..56 order reference
        + b"P"  # 57 capacity
        + b"Y"  # 58 intermarket sweep
        + bytes.fromhex("00000064")  # 59..62 minimum quantity 100
        + b"O"  # 63 cross type
        + b"L"  # 64 order state
        + b" "  # 65 BBO weight indicator
    )
    assert wire == expected
    assert codec.decode_outbound(wire) == msg


def test_executed_bytes() -> None:
    msg = codec.Executed("E", 1, "TOKEN", 250, 99_9900, "R", 0xDEADBEEF)
    wire = codec.encode(msg)
    assert wire == (
        b"E"  # 0
        + bytes.fromhex("0000000000000001")  # 1..8 timestamp
        + b"TOKEN         "  # 9..22 token
        + bytes.fromhex("000000FA")  # 23..26 executed shares 250
        + bytes.fromhex("000F41DC")  # 27..30 execution price 99.9900 = 999900
        + b"R"  # 31 liquidity flag
        + bytes.fromhex("00000000DEADBEEF")  # 32..39 match number
    )
    assert len(wire) == 40
    assert codec.decode_outbound(wire) == msg


def test_canceled_bytes() -> None:
    msg = codec.Canceled("C", 2, "EF000000000009", 75, codec.CancelReason.IOC)
    wire = codec.encode(msg)
    assert wire == b"C" + bytes.fromhex("0000000000000002") + b"EF000000000009" + bytes.fromhex("0000004B") + b"I"
    assert len(wire) == 28
    assert codec.decode_outbound(wire) == msg


def test_replaced_previous_token_precedes_bbo_weight() -> None:
    msg = codec.Replaced(
        "U", 5, "NEW", "B", 10, "IBM", 1, 99998, "", "Y", 9, "A", "N", 0, "N", "L", "OLD", "2"
    )  # fmt: skip
    wire = codec.encode(msg)
    assert len(wire) == 80
    assert wire[9:23] == b"NEW" + b" " * 11
    assert wire[64:65] == b"L"  # order state
    assert wire[65:79] == b"OLD" + b" " * 11  # previous token
    assert wire[79:80] == b"2"  # BBO weight indicator last
    assert codec.decode_outbound(wire) == msg


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize(("direction", "type_"), ALL, ids=[f"{d}-{t.decode()}" for d, t in ALL])
def test_every_type_round_trips(direction: str, type_: bytes) -> None:
    rng = random.Random(type_[0] + (1000 if direction == "outbound" else 0))
    for _ in range(200):
        msg = random_message(rng, direction, type_)
        wire = codec.encode(msg)
        assert len(wire) == _table(direction)[type_].size
        assert _decode(direction, wire) == msg
        assert codec.encode(_decode(direction, wire)) == wire


def _message_strategy(direction: str, type_: bytes) -> st.SearchStrategy:
    layout = _table(direction)[type_]
    classes = codec.INBOUND_CLASSES if direction == "inbound" else codec.OUTBOUND_CLASSES
    parts: list[st.SearchStrategy] = [st.just(type_.decode())]
    latin1 = st.characters(min_codepoint=0, max_codepoint=255)
    for _, code in layout.fields[1:]:
        if code == "c":
            parts.append(latin1)
        elif code.endswith("s"):
            parts.append(st.text(latin1, max_size=int(code[:-1])).map(lambda s: s.rstrip(" ")))
        else:
            parts.append(st.integers(0, (1 << (8 * struct.calcsize(">" + code))) - 1))
    return st.tuples(*parts).map(lambda v: classes[v[0]](*v))


any_message = st.one_of([_message_strategy(d, t).map(lambda m, d=d: (d, m)) for d, t in ALL])


@settings(max_examples=500, deadline=None)
@given(any_message)
def test_round_trip_property(item: tuple[str, Any]) -> None:
    direction, msg = item
    wire = codec.encode(msg)
    assert _decode(direction, wire) == msg


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("direction", "type_"), ALL, ids=[f"{d}-{t.decode()}" for d, t in ALL])
def test_wrong_length_raises(direction: str, type_: bytes) -> None:
    wire = codec.encode(random_message(random.Random(1), direction, type_))
    for bad in (wire[:-1], wire + b" ", wire[:1]):
        with pytest.raises(ProtocolError, match=r"is \d+ bytes, the OUCH 4.2 layout is \d+"):
            _decode(direction, bad)


def test_unknown_type_and_empty_raise() -> None:
    with pytest.raises(ProtocolError, match="unknown OUCH 4.2 inbound message type 'A'"):
        codec.decode_inbound(b"A" + bytes(65))  # Accepted is outbound only
    with pytest.raises(ProtocolError, match="unknown OUCH 4.2 outbound message type 'O'"):
        codec.decode_outbound(b"O" + bytes(48))
    with pytest.raises(ProtocolError, match=r"0x00"):
        codec.decode_outbound(bytes(40))
    with pytest.raises(ProtocolError, match="empty"):
        codec.decode_inbound(b"")


def test_direction_matters_for_u() -> None:
    replace = codec.encode(codec.replace_order("OLD", "NEW", 10, 1))
    assert len(replace) == 47
    with pytest.raises(ProtocolError, match="'U' message is 47 bytes, the OUCH 4.2 layout is 80"):
        codec.decode_outbound(replace)


def test_encode_rejects_values_that_do_not_fit() -> None:
    m = codec.enter_order("EF000000000001", "B", 100, "AAPL", 150_2500)
    cases = {
        "EnterOrder.stock: 'TOOLONGSYM' is 10 bytes, the field holds 8": m._replace(stock="TOOLONGSYM"),
        "EnterOrder.token: 'EF0000000000001' is 15 bytes": m._replace(token="EF0000000000001"),
        "EnterOrder.firm": m._replace(firm="FIRMX"),
        "EnterOrder.shares: -1 does not fit": m._replace(shares=-1),
        "EnterOrder.price: 4294967296 does not fit": m._replace(price=1 << 32),
        "EnterOrder.price: needs an int, got float": m._replace(price=150.25),
        "EnterOrder.side: needs exactly one latin-1 character, got 'BS'": m._replace(side="BS"),
        "EnterOrder.display: needs exactly one latin-1 character, got ''": m._replace(display=""),
        "EnterOrder.stock: '€' is not latin-1": m._replace(stock="€"),
        "EnterOrder message has type 'X'": m._replace(type="X"),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError) as info:
            codec.encode(bad)
        assert str(info.value).startswith(message), (message, str(info.value))
    ts = codec.SystemEvent("S", 1 << 64, "S")
    with pytest.raises(ValueError, match="SystemEvent.timestamp"):
        codec.encode(ts)
    with pytest.raises(TypeError, match="message class from efsdk.orders.ouch.codec"):
        codec.encode(("O", "x"))


def test_encode_accepts_bytes_for_text_fields() -> None:
    m = codec.enter_order("EF1", "B", 1, "AAPL", 1)
    assert codec.encode(m._replace(token=b"EF1", side=b"B")) == codec.encode(m)


# ------------------------------------------------------------------ constructors and constants


def test_constructor_defaults() -> None:
    m = codec.enter_order("T", "B", 100, "AAPL", 1)
    assert (m.time_in_force, m.firm, m.display, m.capacity, m.intermarket_sweep) == (99999, "", "Y", "A", "N")
    assert (m.minimum_quantity, m.cross_type, m.customer_type) == (0, "N", "R")
    r = codec.replace_order("T", "T2", 50, 2)
    assert r == codec.ReplaceOrder("U", "T", "T2", 50, 2, 99999, "Y", "N", 0)
    assert codec.cancel_order("T") == codec.CancelOrder("X", "T", 0)
    assert codec.cancel_order("T", 40).shares == 40
    assert codec.modify_order("T", "T", 10) == codec.ModifyOrder("M", "T", "T", 10)
    for msg in (m, r, codec.cancel_order("T"), codec.modify_order("T", "E", 1)):
        assert codec.decode_inbound(codec.encode(msg)) == msg


def test_constructors_reject_bad_side_and_tif() -> None:
    with pytest.raises(OrderError, match="side 'X'"):
        codec.enter_order("T", "X", 1, "A", 1)
    with pytest.raises(OrderError, match="time_in_force 100000"):
        codec.enter_order("T", "B", 1, "A", 1, time_in_force=100_000)
    with pytest.raises(OrderError, match="time_in_force -1"):
        codec.replace_order("A", "B", 1, 1, time_in_force=-1)
    with pytest.raises(OrderError, match="needs a new token"):
        codec.replace_order("A", "A", 1, 1)
    with pytest.raises(OrderError, match="side 'b'"):
        codec.modify_order("A", "b", 1)


def test_constants() -> None:
    assert (codec.TIF.IOC, codec.TIF.MARKET_HOURS, codec.TIF.SYSTEM_HOURS) == (0, 99998, 99999)
    assert (codec.Side.BUY, codec.Side.SELL, codec.Side.SELL_SHORT, codec.Side.SELL_SHORT_EXEMPT) == tuple("BSTE")
    assert set(codec.CANCEL_REASONS) == set("UITSDQZ")
    for code in "THZSDCLMRXNO":
        assert code in codec.REJECT_REASONS
    assert codec.RejectReason.INVALID_PRICE == "X" and codec.REJECT_REASONS["X"] == "invalid price"
    assert codec.PRICE_SCALE == 10_000


# ------------------------------------------------------------------ tokens


def test_token_generator_sequence_and_format() -> None:
    gen = codec.TokenGenerator("EF")
    tokens = [gen.next() for _ in range(3)]
    assert tokens == ["EF000000000001", "EF000000000002", "EF000000000003"]
    assert all(len(t) == 14 for t in tokens)
    assert next(gen) == "EF000000000004" and gen() == "EF000000000005"
    assert gen.next_counter == 6
    assert codec.TokenGenerator("", start=7).next() == "00000000000007"


def test_token_generator_resume_after_restart() -> None:
    first = codec.TokenGenerator("AB")
    issued = [first.next() for _ in range(10)]
    resumed = codec.TokenGenerator("AB", start=first.next_counter)
    assert resumed.next() not in issued
    from_seen = codec.TokenGenerator.resume("AB", ["XYZ", *issued[:7]])
    assert from_seen.next() == "AB000000000008"
    with pytest.raises(codec.TokenReuseError):
        from_seen.claim("XYZ")


def test_token_generator_rejects_reuse() -> None:
    gen = codec.TokenGenerator("EF")
    t = gen.next()
    assert gen.used(t) and not gen.used("EF000000000002")
    with pytest.raises(codec.TokenReuseError, match="already used today"):
        gen.claim(t)
    assert gen.claim("MANUAL1") == "MANUAL1"
    with pytest.raises(codec.TokenReuseError):
        gen.claim("MANUAL1")
    with pytest.raises(OrderError, match="reserved"):
        gen.claim("EF000000000050")  # the counter would issue it later
    with pytest.raises(OrderError, match="1-14"):
        gen.claim("X" * 15)
    with pytest.raises(OrderError, match="ends in a space"):
        gen.claim("A ")
    assert isinstance(codec.TokenReuseError("x"), OrderError)


def test_token_generator_limits() -> None:
    with pytest.raises(OrderError, match="prefix"):
        codec.TokenGenerator("E F")
    with pytest.raises(OrderError, match="prefix"):
        codec.TokenGenerator("A" * 13)
    gen = codec.TokenGenerator("A" * 12, start=98)
    assert gen.next() == "A" * 12 + "98" and gen.next() == "A" * 12 + "99"
    with pytest.raises(OrderError, match="exhausted"):
        gen.next()
    with pytest.raises(OrderError, match="start"):
        codec.TokenGenerator("A" * 12, start=100)
