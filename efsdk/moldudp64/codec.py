"""The one MoldUDP64 packet codec (NASDAQ MoldUDP64 1.00).

A downstream packet is a 20-byte header ``Session 10 | Sequence u64 | Count u16``
followed by ``Count`` message blocks ``Length u16 | payload`` (length excludes
itself), all big-endian.  ``Sequence`` is the sequence number of the first block;
each following block is implicitly one more.  Two counts are special:
:data:`HEARTBEAT_COUNT` (0) and :data:`END_OF_SESSION_COUNT` (0xFFFF), both
carrying the next expected sequence number and no blocks.  A re-request
(client -> request server) has the same 20-byte shape: first missing sequence
and the number of messages wanted.

This module only packs and unpacks bytes; the session layer (gap detection,
re-requests, A/B arbitration), publisher and request server are built on it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from efsdk.errors import ProtocolError

__all__ = [
    "BLOCK_LENGTH",
    "DEFAULT_MAX_PAYLOAD",
    "END_OF_SESSION_COUNT",
    "HEADER",
    "HEADER_SIZE",
    "HEARTBEAT_COUNT",
    "MAX_MESSAGE_COUNT",
    "MAX_MESSAGE_SIZE",
    "PacketHeader",
    "SESSION_SIZE",
    "encode_session",
    "iter_blocks",
    "pack_end_of_session",
    "pack_heartbeat",
    "pack_packet",
    "pack_request",
    "packetize",
    "unpack_header",
    "unpack_packet",
]

HEADER = struct.Struct(">10sQH")  # session, sequence of the first block, block count
HEADER_SIZE = HEADER.size  # 20
SESSION_SIZE = 10
BLOCK_LENGTH = struct.Struct(">H")  # length prefix of each message block

HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
# 0xFFFF means end of session, so a data packet carries at most 0xFFFE blocks.
MAX_MESSAGE_COUNT = 0xFFFE
# A block length is a u16; a message can never be longer than that.
MAX_MESSAGE_SIZE = 0xFFFF
# Publishers keep a packet inside one Ethernet MTU (1500) after IPv4 (20) and
# UDP (8) headers, with margin for VLAN tags/tunnels: 1,400 is the usual choice.
DEFAULT_MAX_PAYLOAD = 1400

_pack_header = HEADER.pack
_unpack_header_from = HEADER.unpack_from
_pack_len = BLOCK_LENGTH.pack
_unpack_len_from = BLOCK_LENGTH.unpack_from


class PacketHeader(NamedTuple):
    """A decoded MoldUDP64 header.  ``session`` is the raw 10 ALPHA bytes."""

    session: bytes
    sequence: int
    count: int

    @property
    def is_heartbeat(self) -> bool:
        return self.count == HEARTBEAT_COUNT

    @property
    def is_end_of_session(self) -> bool:
        return self.count == END_OF_SESSION_COUNT

    @property
    def message_count(self) -> int:
        """Number of message blocks carried (0 for heartbeats and end of session)."""
        return 0 if self.count == END_OF_SESSION_COUNT else self.count

    @property
    def next_sequence(self) -> int:
        """Sequence number expected after this packet."""
        return self.sequence + self.message_count


def encode_session(session: str | bytes) -> bytes:
    """Return the 10-byte ALPHA session field (ASCII, space padded on the right).

    Raises :class:`ValueError` if the name is longer than 10 bytes or not ASCII.
    """
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > SESSION_SIZE:
        raise ValueError(f"MoldUDP64 session name {raw!r} is longer than {SESSION_SIZE} bytes")
    if not raw.isascii():
        raise ValueError(f"MoldUDP64 session name {raw!r} is not ASCII")
    return raw.ljust(SESSION_SIZE, b" ")


def _check_sequence(sequence: int) -> None:
    if not 0 <= sequence < 1 << 64:
        raise ValueError(f"MoldUDP64 sequence {sequence} does not fit in a u64")


def pack_packet(session: str | bytes, sequence: int, messages: Sequence[bytes]) -> bytes:
    """Pack a downstream packet carrying ``messages``, the first numbered ``sequence``.

    An empty ``messages`` gives a heartbeat.  Raises :class:`ValueError` for more
    than :data:`MAX_MESSAGE_COUNT` messages or a message longer than 65,535 bytes.
    No size limit is applied here; :func:`packetize` keeps packets within an MTU.
    """
    if len(messages) > MAX_MESSAGE_COUNT:
        raise ValueError(f"{len(messages)} messages exceed the MoldUDP64 limit of {MAX_MESSAGE_COUNT} per packet")
    _check_sequence(sequence)
    parts = [_pack_header(encode_session(session), sequence, len(messages))]
    for msg in messages:
        if len(msg) > MAX_MESSAGE_SIZE:
            raise ValueError(f"message of {len(msg)} bytes exceeds the MoldUDP64 block limit of {MAX_MESSAGE_SIZE}")
        parts.append(_pack_len(len(msg)))
        parts.append(msg)
    return b"".join(parts)


def pack_heartbeat(session: str | bytes, next_sequence: int) -> bytes:
    """Pack a heartbeat: no blocks, ``next_sequence`` = the next message's number."""
    _check_sequence(next_sequence)
    return _pack_header(encode_session(session), next_sequence, HEARTBEAT_COUNT)


def pack_end_of_session(session: str | bytes, next_sequence: int) -> bytes:
    """Pack an end-of-session packet (count 0xFFFF) carrying the next expected sequence."""
    _check_sequence(next_sequence)
    return _pack_header(encode_session(session), next_sequence, END_OF_SESSION_COUNT)


def pack_request(session: str | bytes, first_sequence: int, count: int) -> bytes:
    """Pack a re-request for ``count`` messages starting at ``first_sequence``.

    ``count`` must be 1..0xFFFE: 0 and 0xFFFF mean heartbeat/end of session on
    the downstream channel and ask for nothing useful.
    """
    _check_sequence(first_sequence)
    if not 1 <= count <= MAX_MESSAGE_COUNT:
        raise ValueError(f"re-request count {count} must be between 1 and {MAX_MESSAGE_COUNT}")
    return _pack_header(encode_session(session), first_sequence, count)


def packetize(
    session: str | bytes,
    messages: Iterable[bytes],
    first_seq: int = 1,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Iterator[tuple[int, bytes]]:
    """Pack a stream of messages into downstream packets, greedily, in order.

    Yields ``(sequence of the first message, packet)``; every packet (the UDP
    payload) is at most ``max_payload`` bytes and carries at least one message.
    Raises :class:`ValueError` if a single message cannot fit in ``max_payload``.
    The caller adds heartbeats / end of session; the next sequence after the
    last packet is ``first_seq`` + number of messages consumed.
    """
    if max_payload < HEADER_SIZE + BLOCK_LENGTH.size + 1:
        raise ValueError(f"max_payload {max_payload} cannot hold a header and one block")
    _check_sequence(first_seq)
    sess = encode_session(session)
    seq = first_seq
    parts: list[bytes] = []
    n = 0
    size = HEADER_SIZE
    for msg in messages:
        need = 2 + len(msg)
        if HEADER_SIZE + need > max_payload or len(msg) > MAX_MESSAGE_SIZE:
            raise ValueError(f"a {len(msg)}-byte message cannot fit in a {max_payload}-byte MoldUDP64 packet")
        if size + need > max_payload or n == MAX_MESSAGE_COUNT:
            yield seq, _pack_header(sess, seq, n) + b"".join(parts)
            seq += n
            parts.clear()
            n = 0
            size = HEADER_SIZE
        parts.append(_pack_len(len(msg)))
        parts.append(msg)
        n += 1
        size += need
    if n:
        yield seq, _pack_header(sess, seq, n) + b"".join(parts)


def unpack_header(buf: bytes | bytearray | memoryview) -> PacketHeader:
    """Decode the 20-byte header.  Raises :class:`ProtocolError` if ``buf`` is shorter."""
    if len(buf) < HEADER_SIZE:
        raise ProtocolError(f"MoldUDP64 packet of {len(buf)} bytes is shorter than the {HEADER_SIZE}-byte header")
    return PacketHeader(*_unpack_header_from(buf))


def iter_blocks(buf: bytes | bytearray | memoryview) -> Iterator[bytes | bytearray | memoryview]:
    """Return an iterator over the message blocks of a downstream packet.

    The whole packet is validated before anything is returned, so a malformed
    packet is rejected as a unit rather than after some of its messages were
    applied to a book.  Blocks are slices of ``buf`` (zero-copy if ``buf`` is a
    memoryview).  Heartbeats and end-of-session packets yield nothing.

    Raises :class:`ProtocolError` for a short header, a block overrunning the
    packet, or a block count that disagrees with the bytes present (fewer
    blocks, or trailing bytes after the last one).
    """
    return iter(_split(buf, unpack_header(buf)))


def unpack_packet(buf: bytes | bytearray | memoryview) -> tuple[PacketHeader, list[bytes | bytearray | memoryview]]:
    """Decode and validate a whole packet: ``(header, list of message blocks)``."""
    header = unpack_header(buf)
    return header, _split(buf, header)


def _split(buf: bytes | bytearray | memoryview, header: PacketHeader) -> list[bytes | bytearray | memoryview]:
    end = len(buf)
    count = header.message_count
    blocks = []
    off = HEADER_SIZE
    for i in range(count):
        if off + 2 > end:
            raise ProtocolError(
                f"MoldUDP64 packet seq {header.sequence} claims {count} blocks but ends after {i}"
            )
        (length,) = _unpack_len_from(buf, off)
        off += 2
        if off + length > end:
            raise ProtocolError(
                f"MoldUDP64 block {i} (seq {header.sequence + i}) of {length} bytes overruns the "
                f"{end}-byte packet"
            )
        blocks.append(buf[off : off + length])
        off += length
    if off != end:
        kind = "heartbeat/end-of-session" if count == 0 else f"{count}-block"
        raise ProtocolError(
            f"MoldUDP64 {kind} packet seq {header.sequence} has {end - off} trailing bytes "
            "(block count does not match the packet length)"
        )
    return blocks
