"""SoupBinTCP codec: exact bytes of every packet, login fields, and the incremental frame reader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from efsdk.errors import ProtocolError
from efsdk.orders.soupbintcp import codec as sb
from efsdk.orders.soupbintcp.codec import FrameReader

# ------------------------------------------------------------------ exact bytes


def test_every_packet_exact_bytes() -> None:
    assert sb.pack_debug("hi") == b"\x00\x03+hi"
    assert sb.pack_login_accepted("SESS1", 42) == b"\x00\x1fA" + b"SESS1     " + b" " * 18 + b"42"
    assert sb.pack_login_rejected("A") == b"\x00\x02JA"
    assert sb.pack_login_rejected("S") == b"\x00\x02JS"
    assert sb.pack_sequenced(b"xyz") == b"\x00\x04Sxyz"
    assert sb.pack_server_heartbeat() == b"\x00\x01H"
    assert sb.pack_end_of_session() == b"\x00\x01Z"
    assert sb.pack_login_request("user", "pw", "", 1) == (
        b"\x00\x2fL" + b"user  " + b"pw        " + b"          " + b" " * 19 + b"1"
    )
    assert sb.pack_unsequenced(b"O" * 49) == b"\x00\x32U" + b"O" * 49
    assert sb.pack_client_heartbeat() == b"\x00\x01R"
    assert sb.pack_logout_request() == b"\x00\x01O"
    assert sb.pack_frame("S", memoryview(b"ab")) == b"\x00\x03Sab"


def test_payload_limits() -> None:
    big = bytes(sb.MAX_PAYLOAD)
    assert len(sb.pack_sequenced(big)) == 2 + 1 + sb.MAX_PAYLOAD
    with pytest.raises(ValueError, match="exceeds"):
        sb.pack_sequenced(big + b"x")
    with pytest.raises(ValueError, match="exceeds"):
        sb.pack_unsequenced(big + b"x")
    with pytest.raises(ValueError, match="exceeds"):
        sb.pack_frame("+", big + b"x")


def test_login_request_round_trip_and_limits() -> None:
    wire = sb.pack_login_request("ACCT01", "pAssw0rdXY", "SESSION001", 12345678901234567890)
    req = sb.decode_login_request(wire[3:])
    assert (req.username, req.password, req.session, req.sequence) == (
        "ACCT01", "pAssw0rdXY", "SESSION001", 12345678901234567890,
    )  # fmt: skip
    assert "pAssw0rdXY" not in repr(req)  # the password stays out of reprs
    assert sb.decode_login_request(sb.pack_login_request("u", "p")[3:]).sequence == 0
    with pytest.raises(ValueError, match="username 'TOOLONG' is 7 bytes"):
        sb.pack_login_request("TOOLONG", "pw")
    with pytest.raises(ValueError) as info:
        sb.pack_login_request("u", "secretsecret")
    assert "secretsecret" not in str(info.value) and "password" in str(info.value)
    with pytest.raises(ValueError, match="0..99999999999999999999"):
        sb.pack_login_request("u", "p", "", 10**20)
    with pytest.raises(ProtocolError, match="45 bytes"):
        sb.decode_login_request(b" " * 45)
    with pytest.raises(ProtocolError, match="not a decimal number"):
        sb.decode_login_request(b"u".ljust(26) + b"12x".rjust(20))


def test_login_accepted_decode() -> None:
    assert sb.decode_login_accepted(sb.pack_login_accepted("S1", 7)[3:]) == ("S1", 7)
    # Some servers left-justify the number; the value is the same.
    assert sb.decode_login_accepted(b"S1".ljust(10) + b"7".ljust(20)) == ("S1", 7)
    assert sb.decode_login_accepted(b" " * 30) == ("", 0)
    with pytest.raises(ProtocolError):
        sb.decode_login_accepted(b"S1")
    assert sb.decode_login_rejected(b"S") == "S"
    with pytest.raises(ValueError, match="reason"):
        sb.pack_login_rejected("X")


# ------------------------------------------------------------------ frame reader

SERVER_STREAM = [
    ("A", sb.pack_login_accepted("SESSION", 1)),
    ("S", sb.pack_sequenced(b"A" * 66)),
    ("S", sb.pack_sequenced(b"E" * 40)),
    ("H", sb.pack_server_heartbeat()),
    ("+", sb.pack_debug("note")),
    ("S", sb.pack_sequenced(b"x" * 1000)),
    ("Z", sb.pack_end_of_session()),
]
STREAM = b"".join(frame for _, frame in SERVER_STREAM)
EXPECTED = [(t, frame[3:]) for t, frame in SERVER_STREAM]


def test_reader_whole_stream() -> None:
    reader = FrameReader(sb.SERVER_TYPES)
    assert reader.feed(STREAM) == EXPECTED
    assert reader.pending == 0 and reader.frames == len(EXPECTED) and reader.bytes_in == len(STREAM)


def test_reader_byte_by_byte() -> None:
    reader = FrameReader(sb.SERVER_TYPES)
    out = []
    for i in range(len(STREAM)):
        out += reader.feed(STREAM[i : i + 1])
    assert out == EXPECTED
    assert reader.pending == 0


def test_reader_accepts_memoryview_and_keeps_partial() -> None:
    reader = FrameReader()
    view = memoryview(STREAM)
    assert reader.feed(view[:5]) == []
    assert reader.pending == 5
    assert reader.feed(view[5:]) == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_reader_random_splits(cuts: list[int]) -> None:
    reader = FrameReader(sb.SERVER_TYPES)
    bounds = [0, *sorted(cuts), len(STREAM)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        out += reader.feed(STREAM[a:b])
    assert out == EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=40), st.data())
def test_reader_random_payloads_and_splits(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(sb.pack_unsequenced(p) for p in payloads)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    reader = FrameReader(sb.CLIENT_TYPES)
    bounds = [0, *sorted(cuts), len(stream)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        out += reader.feed(stream[a:b])
    assert out == [("U", p) for p in payloads]


@pytest.mark.parametrize(
    ("accept", "data", "match"),
    [
        (None, b"\x00\x00S", "length 0"),
        (None, b"\x10\x01S", "exceeds max_frame=4096"),
        (None, b"GET / HTTP/1.1\r\n", "exceeds max_frame"),
        (None, b"\x00\x01Q", "type 'Q'"),
        (sb.SERVER_TYPES, b"\x00\x05Uabcd", "type 'U'"),  # a client packet sent by a "server"
        (sb.CLIENT_TYPES, b"\x00\x01S", "type 'S'"),
        (None, b"\x00\x02Hx", "'H' packet has a 1-byte payload, expected 0"),
        (None, b"\x00\x03JAB", "'J' packet has a 2-byte payload, expected 1"),
        (None, b"\x00\x05Labcd", "'L' packet has a 4-byte payload, expected 46"),
    ],
)
def test_reader_rejects_broken_streams(accept, data: bytes, match: str) -> None:
    reader = FrameReader(accept)
    with pytest.raises(ProtocolError, match=match):
        reader.feed(data)
    with pytest.raises(ProtocolError, match="already broken"):
        reader.feed(sb.pack_server_heartbeat())


def test_reader_detects_garbage_after_good_frames_with_offset() -> None:
    reader = FrameReader(sb.SERVER_TYPES)
    assert reader.feed(sb.pack_server_heartbeat()) == [("H", b"")]
    with pytest.raises(ProtocolError, match="at stream byte 3"):
        reader.feed(b"\x00\x00")


def test_reader_error_carries_the_frames_before_the_fault() -> None:
    reader = FrameReader(sb.SERVER_TYPES)
    good = sb.pack_login_accepted("S", 1) + sb.pack_sequenced(b"one")
    with pytest.raises(ProtocolError, match="type 'Q'") as info:
        reader.feed(good + b"\x00\x01Q" + sb.pack_sequenced(b"never"))
    assert info.value.frames == [("A", good[3:33]), ("S", b"one")]


def test_reader_custom_max_frame() -> None:
    reader = FrameReader(max_frame=100)
    assert reader.feed(sb.pack_sequenced(b"x" * 99)) == [("S", b"x" * 99)]
    with pytest.raises(ProtocolError, match="exceeds max_frame=100"):
        reader.feed(sb.pack_sequenced(b"x" * 100)[:2])  # refused from the length alone
    with pytest.raises(ValueError):
        FrameReader(max_frame=0)
