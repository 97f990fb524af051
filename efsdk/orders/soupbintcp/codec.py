"""The one SoupBinTCP 4.x packet codec: pack every packet type, frame a TCP byte stream.

A packet is ``Length u16 (type byte + payload) | Type 1 | payload``, big-endian.
Server -> client: ``+`` debug, ``A`` login accepted, ``J`` login rejected,
``S`` sequenced data, ``H`` server heartbeat, ``Z`` end of session.  Client ->
server: ``+`` debug, ``L`` login request, ``U`` unsequenced data, ``R`` client
heartbeat, ``O`` logout request.  Login fields are ASCII: ALPHA fields
left-justified and space padded, the 20-byte sequence numbers right-justified
and space padded.  Sequenced messages carry no number: the client counts them
from the sequence number in Login Accepted.

:class:`FrameReader` turns the byte stream (split or coalesced TCP segments)
into ``(type, payload)`` frames and refuses a stream it cannot frame: after a
zero length, an unknown type, an oversize frame or a control packet of the
wrong size nothing that follows can be trusted, so it raises
:class:`~efsdk.errors.ProtocolError` and the connection has to be closed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from efsdk.errors import ProtocolError

__all__ = [
    "CLIENT_TYPES",
    "DEBUG",
    "DEFAULT_MAX_FRAME",
    "END_OF_SESSION",
    "FrameReader",
    "LOGIN_ACCEPTED",
    "LOGIN_REJECTED",
    "LOGIN_REJECT_REASONS",
    "LOGIN_REQUEST",
    "LOGOUT_REQUEST",
    "LoginAccepted",
    "LoginRequest",
    "MAX_PAYLOAD",
    "CLIENT_HEARTBEAT",
    "SEQUENCED",
    "SERVER_HEARTBEAT",
    "SERVER_TYPES",
    "UNSEQUENCED",
    "decode_login_accepted",
    "decode_login_rejected",
    "decode_login_request",
    "pack_client_heartbeat",
    "pack_debug",
    "pack_end_of_session",
    "pack_frame",
    "pack_login_accepted",
    "pack_login_rejected",
    "pack_login_request",
    "pack_logout_request",
    "pack_sequenced",
    "pack_server_heartbeat",
    "pack_unsequenced",
]

# Packet types.
DEBUG = "+"
LOGIN_ACCEPTED = "A"
LOGIN_REJECTED = "J"
SEQUENCED = "S"
SERVER_HEARTBEAT = "H"
END_OF_SESSION = "Z"
LOGIN_REQUEST = "L"
UNSEQUENCED = "U"
CLIENT_HEARTBEAT = "R"
LOGOUT_REQUEST = "O"

#: Types a server sends (what a client's reader accepts) and a client sends.
SERVER_TYPES = frozenset({DEBUG, LOGIN_ACCEPTED, LOGIN_REJECTED, SEQUENCED, SERVER_HEARTBEAT, END_OF_SESSION})
CLIENT_TYPES = frozenset({DEBUG, LOGIN_REQUEST, UNSEQUENCED, CLIENT_HEARTBEAT, LOGOUT_REQUEST})

#: Login Rejected reason codes and what they mean.
LOGIN_REJECT_REASONS: dict[str, str] = {
    "A": "not authorized: invalid username or password",
    "S": "session not available: the requested session is unknown or not open",
}

USERNAME_SIZE = 6
PASSWORD_SIZE = 10
SESSION_SIZE = 10
SEQUENCE_SIZE = 20
LOGIN_REQUEST_SIZE = USERNAME_SIZE + PASSWORD_SIZE + SESSION_SIZE + SEQUENCE_SIZE  # 46
LOGIN_ACCEPTED_SIZE = SESSION_SIZE + SEQUENCE_SIZE  # 30
MAX_SEQUENCE = 10**SEQUENCE_SIZE - 1

# The length field counts the type byte, so a payload holds at most 65534 bytes.
MAX_PAYLOAD = 0xFFFF - 1
# A frame (type + payload) bigger than this is treated as a broken stream.  OUCH
# 4.2's biggest message is 80 bytes and a login request 46, so 4 KiB leaves
# room for debug text and other protocols while a stray non-SoupBinTCP peer
# (an HTTP request reads as length 0x4745) is refused at once instead of
# being buffered until the idle timeout.
DEFAULT_MAX_FRAME = 4096

# Control packets with a fixed payload size; a different size means a broken stream.
_FIXED_PAYLOAD: dict[int, int] = {
    ord(LOGIN_ACCEPTED): LOGIN_ACCEPTED_SIZE,
    ord(LOGIN_REJECTED): 1,
    ord(SERVER_HEARTBEAT): 0,
    ord(END_OF_SESSION): 0,
    ord(LOGIN_REQUEST): LOGIN_REQUEST_SIZE,
    ord(CLIENT_HEARTBEAT): 0,
    ord(LOGOUT_REQUEST): 0,
}

_HEADER = struct.Struct(">Hc")  # length, type
_pack_header = _HEADER.pack


def pack_frame(type_: str, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """Frame ``payload`` as one packet of ``type_`` (any type, for tests and extensions)."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError(f"SoupBinTCP payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return _pack_header(n + 1, type_.encode("ascii")) + bytes(payload)


def pack_sequenced(payload: bytes | bytearray | memoryview) -> bytes:
    """Sequenced Data (``S``, server -> client) carrying one message."""
    n = len(payload) + 1
    if n > 0xFFFF:
        raise ValueError(f"SoupBinTCP payload of {n - 1} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return n.to_bytes(2, "big") + b"S" + payload


def pack_unsequenced(payload: bytes | bytearray | memoryview) -> bytes:
    """Unsequenced Data (``U``, client -> server) carrying one message (an OUCH order)."""
    n = len(payload) + 1
    if n > 0xFFFF:
        raise ValueError(f"SoupBinTCP payload of {n - 1} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return n.to_bytes(2, "big") + b"U" + payload


def pack_debug(text: str | bytes) -> bytes:
    """Debug packet (``+``, either direction): free ASCII text peers must ignore."""
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    return pack_frame(DEBUG, raw)


_SERVER_HEARTBEAT = pack_frame(SERVER_HEARTBEAT)
_END_OF_SESSION = pack_frame(END_OF_SESSION)
_CLIENT_HEARTBEAT = pack_frame(CLIENT_HEARTBEAT)
_LOGOUT_REQUEST = pack_frame(LOGOUT_REQUEST)


def pack_server_heartbeat() -> bytes:
    """Server Heartbeat (``H``)."""
    return _SERVER_HEARTBEAT


def pack_end_of_session() -> bytes:
    """End of Session (``Z``): the server will send no more sequenced messages in this session."""
    return _END_OF_SESSION


def pack_client_heartbeat() -> bytes:
    """Client Heartbeat (``R``)."""
    return _CLIENT_HEARTBEAT


def pack_logout_request() -> bytes:
    """Logout Request (``O``)."""
    return _LOGOUT_REQUEST


def _alpha(value: str, width: int, what: str, *, secret: bool = False) -> bytes:
    shown = "<hidden>" if secret else repr(value)
    try:
        raw = value.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise ValueError(f"SoupBinTCP {what} {shown} must be an ASCII str") from None
    if len(raw) > width:
        raise ValueError(f"SoupBinTCP {what} {shown} is {len(raw)} bytes, the field holds {width}")
    return raw.ljust(width, b" ")


def _numeric(value: int, what: str) -> bytes:
    if not isinstance(value, int) or not 0 <= value <= MAX_SEQUENCE:
        raise ValueError(f"SoupBinTCP {what} {value!r} must be an int 0..{MAX_SEQUENCE}")
    return str(value).rjust(SEQUENCE_SIZE).encode("ascii")


def _parse_numeric(raw: bytes, what: str) -> int:
    text = raw.strip(b" ")
    if not text:
        return 0
    if not text.isdigit():
        raise ProtocolError(f"SoupBinTCP {what} {raw!r} is not a decimal number")
    return int(text)


def pack_login_request(username: str, password: str, session: str = "", sequence: int = 0) -> bytes:
    """Login Request (``L``): ``sequence`` 0 = next new message, 1 = from the start of the session.

    Raises ``ValueError`` for a field too long or not ASCII (the password is
    never shown in the message).
    """
    payload = (
        _alpha(username, USERNAME_SIZE, "username")
        + _alpha(password, PASSWORD_SIZE, "password", secret=True)
        + _alpha(session, SESSION_SIZE, "session")
        + _numeric(sequence, "requested sequence")
    )
    return _pack_header(LOGIN_REQUEST_SIZE + 1, b"L") + payload


def pack_login_accepted(session: str, sequence: int) -> bytes:
    """Login Accepted (``A``): ``sequence`` is the number of the next sequenced message the server sends."""
    payload = _alpha(session, SESSION_SIZE, "session") + _numeric(sequence, "sequence")
    return _pack_header(LOGIN_ACCEPTED_SIZE + 1, b"A") + payload


def pack_login_rejected(reason: str) -> bytes:
    """Login Rejected (``J``) with reason ``A`` (not authorized) or ``S`` (session not available)."""
    if reason not in LOGIN_REJECT_REASONS:
        raise ValueError(f"login reject reason {reason!r} must be one of {', '.join(LOGIN_REJECT_REASONS)}")
    return _pack_header(2, b"J") + reason.encode("ascii")


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """A decoded Login Request; the password is kept out of ``repr``."""

    username: str
    password: str = field(repr=False)
    session: str  # "" = the current session
    sequence: int  # 0 = next new message, 1 = from the start


class LoginAccepted(NamedTuple):
    """A decoded Login Accepted: the session name and the number of the next sequenced message."""

    session: str
    sequence: int


def decode_login_request(payload: bytes | bytearray | memoryview) -> LoginRequest:
    """Decode a Login Request payload (46 bytes).  Raises :class:`~efsdk.errors.ProtocolError`."""
    raw = bytes(payload)
    if len(raw) != LOGIN_REQUEST_SIZE:
        raise ProtocolError(f"SoupBinTCP login request payload is {len(raw)} bytes, expected {LOGIN_REQUEST_SIZE}")
    if not raw.isascii():
        raise ProtocolError("SoupBinTCP login request has non-ASCII bytes")
    text = raw.decode("ascii")
    u, p, s = USERNAME_SIZE, USERNAME_SIZE + PASSWORD_SIZE, USERNAME_SIZE + PASSWORD_SIZE + SESSION_SIZE
    return LoginRequest(
        text[:u].rstrip(" "),
        text[u:p].rstrip(" "),
        text[p:s].strip(" "),
        _parse_numeric(raw[s:], "requested sequence"),
    )


def decode_login_accepted(payload: bytes | bytearray | memoryview) -> LoginAccepted:
    """Decode a Login Accepted payload (30 bytes).  Raises :class:`~efsdk.errors.ProtocolError`."""
    raw = bytes(payload)
    if len(raw) != LOGIN_ACCEPTED_SIZE:
        raise ProtocolError(f"SoupBinTCP login accepted payload is {len(raw)} bytes, expected {LOGIN_ACCEPTED_SIZE}")
    if not raw.isascii():
        raise ProtocolError(f"SoupBinTCP login accepted {raw!r} has non-ASCII bytes")
    return LoginAccepted(raw[:SESSION_SIZE].decode("ascii").strip(" "), _parse_numeric(raw[SESSION_SIZE:], "sequence"))


def decode_login_rejected(payload: bytes | bytearray | memoryview) -> str:
    """The reason code of a Login Rejected payload (``A`` or ``S``; others are returned as they are)."""
    if len(payload) != 1:
        raise ProtocolError(f"SoupBinTCP login rejected payload is {len(payload)} bytes, expected 1")
    return chr(payload[0])


class FrameReader:
    """Incremental SoupBinTCP framer: ``feed(bytes)`` -> list of complete ``(type, payload)`` frames.

    Handles frames split across and coalesced within TCP segments; keeps at
    most one partial frame.  ``accept`` limits the packet types (a client
    reads :data:`SERVER_TYPES`, a server :data:`CLIENT_TYPES`); ``max_frame``
    bounds one frame (type byte + payload).  Raises
    :class:`~efsdk.errors.ProtocolError` on a zero length, an oversize frame,
    a type outside ``accept`` or a control packet of the wrong size; the
    frames completed before the fault are on the exception's ``frames``
    attribute.  The reader then stays broken (every later ``feed`` raises)
    because the stream has lost its framing.  Payloads are ``bytes`` copies,
    safe to keep.
    """

    __slots__ = ("_accept", "_buf", "_error", "_max", "bytes_in", "frames")

    def __init__(self, accept: frozenset[str] | None = None, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 1 <= max_frame <= 0xFFFF:
            raise ValueError(f"max_frame {max_frame} must be 1..65535")
        types = SERVER_TYPES | CLIENT_TYPES if accept is None else accept
        # A table indexed by the type byte: one list index per frame on the hot path.
        self._accept = [False] * 256
        for t in types:
            self._accept[ord(t)] = True
        self._max = max_frame
        self._buf = b""
        self._error: str | None = None
        self.frames = 0  # complete frames returned
        self.bytes_in = 0  # bytes fed

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back for the next :meth:`feed`."""
        return len(self._buf)

    def _fail(self, msg: str, good: list[tuple[str, bytes]]) -> ProtocolError:
        self._error = msg
        self._buf = b""
        self.frames += len(good)
        exc = ProtocolError(msg)
        exc.frames = good  # type: ignore[attr-defined]
        return exc

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[str, bytes]]:
        """Add received bytes; return the frames completed by them, in order."""
        if self._error is not None:
            raise ProtocolError(f"SoupBinTCP stream already broken: {self._error}")
        self.bytes_in += len(data)
        buf = self._buf + data if self._buf else bytes(data)
        n = len(buf)
        off = 0
        out: list[tuple[str, bytes]] = []
        append = out.append
        accept = self._accept
        max_frame = self._max
        fixed = _FIXED_PAYLOAD
        while n - off >= 2:
            length = (buf[off] << 8) | buf[off + 1]
            if length == 0:
                raise self._fail(f"SoupBinTCP frame of length 0 at stream byte {self.bytes_in - n + off}", out)
            if length > max_frame:
                raise self._fail(
                    f"SoupBinTCP frame of {length} bytes at stream byte {self.bytes_in - n + off} exceeds "
                    f"max_frame={max_frame} (not a SoupBinTCP peer, or a lost framing)",
                    out,
                )
            if n - off < 3:
                break
            t = buf[off + 2]
            if not accept[t]:
                raise self._fail(
                    f"SoupBinTCP packet type {chr(t)!r} (0x{t:02x}) at stream byte {self.bytes_in - n + off} "
                    "is unknown or not allowed in this direction",
                    out,
                )
            want = fixed.get(t)
            if want is not None and length - 1 != want:
                raise self._fail(f"SoupBinTCP {chr(t)!r} packet has a {length - 1}-byte payload, expected {want}", out)
            end = off + 2 + length
            if end > n:
                break
            append((chr(t), buf[off + 3 : end]))
            off = end
        self._buf = buf[off:] if off < n else b""
        self.frames += len(out)
        return out
