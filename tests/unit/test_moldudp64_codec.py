"""MoldUDP64 codec: exact bytes, round trips, packetizing limits, malformed packets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from efsdk.errors import EfsdkError, ProtocolError
from efsdk.moldudp64.codec import (
    END_OF_SESSION_COUNT,
    HEADER,
    HEADER_SIZE,
    HEARTBEAT_COUNT,
    MAX_MESSAGE_COUNT,
    encode_session,
    iter_blocks,
    pack_end_of_session,
    pack_heartbeat,
    pack_packet,
    pack_request,
    packetize,
    unpack_header,
    unpack_packet,
)

messages_st = st.lists(st.binary(min_size=0, max_size=120), max_size=300)


def test_header_layout_constants() -> None:
    assert HEADER.format == ">10sQH"
    assert HEADER_SIZE == 20
    assert (HEARTBEAT_COUNT, END_OF_SESSION_COUNT, MAX_MESSAGE_COUNT) == (0, 0xFFFF, 0xFFFE)


def test_pack_packet_exact_bytes() -> None:
    pkt = pack_packet("SESS1", 0x0102030405060708, [b"AB", b"", b"xyz"])
    assert pkt == (
        b"SESS1     "
        + bytes.fromhex("0102030405060708")
        + b"\x00\x03"
        + b"\x00\x02AB"
        + b"\x00\x00"
        + b"\x00\x03xyz"
    )


def test_round_trip_and_header_properties() -> None:
    msgs = [b"S" * 12, b"A" * 36, b"D" * 19]
    pkt = pack_packet(b"ABCDEFGHIJ", 41, msgs)
    h = unpack_header(pkt)
    assert (h.session, h.sequence, h.count) == (b"ABCDEFGHIJ", 41, 3)
    assert h.next_sequence == 44 and not h.is_heartbeat and not h.is_end_of_session
    assert [bytes(b) for b in iter_blocks(pkt)] == msgs
    header, blocks = unpack_packet(pkt)
    assert header == h and blocks == msgs


def test_blocks_of_a_memoryview_are_zero_copy_views() -> None:
    pkt = bytearray(pack_packet("S", 1, [b"hello", b"world"]))
    blocks = list(iter_blocks(memoryview(pkt)))
    assert all(isinstance(b, memoryview) for b in blocks)
    pkt[-1:] = b"D"  # the views see the buffer, no copy was made
    assert bytes(blocks[1]) == b"worlD"


def test_heartbeat_end_of_session_and_request() -> None:
    hb = pack_heartbeat("S", 1000)
    assert len(hb) == 20
    h = unpack_header(hb)
    assert h.is_heartbeat and h.sequence == 1000 and h.next_sequence == 1000
    assert list(iter_blocks(hb)) == []

    eos = pack_end_of_session("S", 1000)
    h = unpack_header(eos)
    assert h.is_end_of_session and h.count == 0xFFFF and h.message_count == 0 and h.next_sequence == 1000
    assert list(iter_blocks(eos)) == []

    req = pack_request("S", 77, 10)
    assert req == b"S         " + struct.pack(">QH", 77, 10)
    for bad in (0, 0xFFFF):
        with pytest.raises(ValueError):
            pack_request("S", 1, bad)


def test_session_names() -> None:
    assert encode_session("NASDAQ") == b"NASDAQ    "
    assert encode_session(b"0123456789") == b"0123456789"
    with pytest.raises(ValueError):
        encode_session("ELEVENCHARS")
    with pytest.raises(ValueError):
        encode_session("séance")


def test_sequence_must_fit_u64() -> None:
    with pytest.raises(ValueError):
        pack_packet("S", 1 << 64, [b"x"])
    with pytest.raises(ValueError):
        pack_heartbeat("S", -1)


@settings(max_examples=200, deadline=None)
@given(messages_st, st.integers(min_value=143, max_value=1500), st.integers(min_value=1, max_value=1 << 40))
def test_packetize_respects_limits_and_preserves_order(msgs: list[bytes], max_payload: int, first: int) -> None:
    out = list(packetize("SESSION", msgs, first_seq=first, max_payload=max_payload))
    got: list[bytes] = []
    expected_seq = first
    for seq, pkt in out:
        assert len(pkt) <= max_payload
        header, blocks = unpack_packet(pkt)
        assert header.sequence == seq == expected_seq
        assert 1 <= header.count
        expected_seq += header.count
        got.extend(bytes(b) for b in blocks)
    assert got == msgs
    # Greedy: the next message would not have fitted in any packet but the last.
    for (_, pkt), (_, nxt) in zip(out, out[1:]):
        first_len = struct.unpack_from(">H", nxt, HEADER_SIZE)[0]
        assert len(pkt) + 2 + first_len > max_payload


def test_packetize_exact_fit_and_too_large() -> None:
    msg = b"m" * (1400 - HEADER_SIZE - 2)
    [(seq, pkt)] = list(packetize("S", [msg]))
    assert seq == 1 and len(pkt) == 1400
    with pytest.raises(ValueError):
        list(packetize("S", [msg + b"!"]))
    with pytest.raises(ValueError):
        list(packetize("S", [b"x"], max_payload=22))


def test_packetize_count_limit() -> None:
    # Zero-length blocks are legal; 0xFFFF of them must split, since 0xFFFF means end of session.
    out = list(packetize("S", [b""] * 0x10000, max_payload=1_000_000))
    assert [unpack_header(p).count for _, p in out] == [MAX_MESSAGE_COUNT, 2]
    assert out[1][0] == 1 + MAX_MESSAGE_COUNT


def test_too_many_messages_for_one_packet() -> None:
    with pytest.raises(ValueError):
        pack_packet("S", 1, [b""] * 0xFFFF)


# -- malformed packets ------------------------------------------------------


def _raises_protocol(buf: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        iter_blocks(buf)
    with pytest.raises(ProtocolError, match=match):
        unpack_packet(buf)


def test_short_header() -> None:
    for n in (0, 1, 19):
        with pytest.raises(ProtocolError, match="shorter than the 20-byte header"):
            unpack_header(b"x" * n)
        _raises_protocol(b"x" * n, "shorter")


def test_block_overruns_packet() -> None:
    good = pack_packet("S", 5, [b"abcdef"])
    _raises_protocol(good[:-1], "overruns")
    _raises_protocol(HEADER.pack(b"S".ljust(10), 5, 1) + b"\x00\x10short", "overruns")


def test_count_larger_than_blocks_present() -> None:
    two = pack_packet("S", 5, [b"a", b"b"])
    three = HEADER.pack(b"S".ljust(10), 5, 3) + two[HEADER_SIZE:]
    _raises_protocol(three, "claims 3 blocks but ends after 2")
    # A length prefix cut in half is the same failure.
    _raises_protocol(three + b"\x00", "claims 3 blocks")


def test_trailing_bytes() -> None:
    _raises_protocol(pack_packet("S", 5, [b"a"]) + b"\x00\x01z", "trailing")
    _raises_protocol(pack_heartbeat("S", 5) + b"\x00", "trailing")
    _raises_protocol(pack_end_of_session("S", 5) + b"\x00\x00", "trailing")


def test_malformed_rejected_before_any_block_is_returned() -> None:
    bad = pack_packet("S", 5, [b"first", b"second"])[:-1]
    with pytest.raises(ProtocolError):
        for _ in iter_blocks(bad):  # nothing may be yielded before the error
            pytest.fail("a block of a malformed packet was returned")


def test_protocol_error_is_an_efsdk_value_error() -> None:
    with pytest.raises(EfsdkError):
        unpack_header(b"")
    with pytest.raises(ValueError):
        unpack_header(b"")
