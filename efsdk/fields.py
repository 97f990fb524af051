"""Field encoding shared by the NASDAQ codecs (ITCH 5.0, OUCH 4.2): one-byte codes and ALPHA text.

Both protocols carry text as single bytes, left-justified and space-padded;
these checks keep ``struct`` from silently truncating or mis-encoding a
value (a cut symbol or token is a different one).
"""

from __future__ import annotations

from typing import Any

__all__ = ["encode_alpha", "encode_char"]


def encode_char(value: Any) -> bytes:
    """One latin-1 character (``str`` or ``bytes`` of length 1) as its byte; ``ValueError`` otherwise."""
    if isinstance(value, str):
        if len(value) == 1 and value <= "\xff":
            return value.encode("latin-1")
    elif isinstance(value, bytes | bytearray) and len(value) == 1:
        return bytes(value)
    raise ValueError(f"needs exactly one latin-1 character, got {value!r}")


def encode_alpha(value: Any, width: int) -> bytes:
    """``value`` (``str`` or ``bytes``) space-padded to ``width`` bytes; ``ValueError`` if not latin-1 or too long."""
    if isinstance(value, str):
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{value!r} is not latin-1 (ALPHA fields are single bytes)") from None
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        raise ValueError(f"needs str (or bytes), got {type(value).__name__} {value!r}")
    if len(raw) > width:
        # struct would silently truncate; a cut symbol or token is a different one.
        raise ValueError(f"{value!r} is {len(raw)} bytes, the field holds {width}")
    return raw.ljust(width, b" ")
