"""Pure-Python ITCH 5.0 codec: one named tuple per message type, decode, encode, frame.

Everything here is derived from :data:`efsdk.itch.layouts.LAYOUTS`; no layout is
restated.  Each of the 23 message types gets a ``typing.NamedTuple`` class named
after its layout in CamelCase (``add_order`` -> :class:`AddOrder`,
``order_executed`` -> :class:`OrderExecuted`, ...).  Field values:

* ``type``: the type as a 1-character ``str`` (``"A"``).
* ``stock_locate``, ``tracking_number``: ``int``.
* ``timestamp``: ``int`` nanoseconds since midnight (the 6-byte wire field joined).
* ALPHA fields (``Ns``): ``str`` decoded latin-1 with trailing spaces stripped
  (latin-1 maps every byte, so decoding never fails and re-encoding restores
  the exact bytes).
* one-byte code fields (``c``): 1-character ``str``, never stripped (a space
  is a meaningful code, e.g. "not available").
* integers stay integers; prices are integer 1/10000 units (MWCB levels
  1e-8): use :func:`price_to_decimal` / :func:`price_to_float` to display.

Decoding is not the feed's hot path (the native layer is) but users replay whole
days through it, so dispatch is one dict lookup on the type byte and each type
has its own closure with the precompiled ``Struct.unpack_from`` bound.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple, TypeAlias

from efsdk.errors import ProtocolError
from efsdk.fields import encode_alpha, encode_char
from efsdk.itch.layouts import (
    LAYOUTS,
    MWCB_PRICE_SCALE,
    PRICE_SCALE,
    SIZE_BY_TYPE,
    TIMESTAMP_MAX,
    MessageLayout,
)

__all__ = [
    "DECODER_BY_TYPE",
    "MESSAGE_CLASSES",
    "MWCB_PRICE_SCALE",
    "PRICE_SCALE",
    "Message",
    "class_name",
    "decode",
    "encode",
    "encode_fields",
    "frame",
    "make_message",
    "price_from_decimal",
    "price_to_decimal",
    "price_to_float",
]  # the 23 message classes are appended below, as they are generated

#: Any decoded ITCH message: a named tuple of one of the generated classes.
Message: TypeAlias = tuple  # type: ignore[type-arg]

Buffer: TypeAlias = bytes | bytearray | memoryview

# Header fields of every generated class; the wire's (timestamp_hi, timestamp_lo)
# become one ``timestamp``, so body field i of a message is struct field i + 1.
_MSG_HEADER_TYPES: list[tuple[str, type]] = [
    ("type", str),
    ("stock_locate", int),
    ("tracking_number", int),
    ("timestamp", int),
]
_WIRE_HEADER_LEN = 5  # type, stock_locate, tracking_number, timestamp_hi, timestamp_lo
_MAX_FRAME = 0xFFFF  # the BinaryFILE / MoldUDP64 length prefix is a u16


def class_name(layout: MessageLayout) -> str:
    """CamelCase class name of a layout: ``add_order_mpid`` -> ``AddOrderMpid``."""
    return "".join(part.capitalize() for part in layout.name.split("_"))


def _py_type(code: str) -> type:
    return str if code == "c" or code.endswith("s") else int


def _int_range(code: str) -> tuple[int, int]:
    return 0, (1 << (8 * struct.calcsize(">" + code))) - 1


# --------------------------------------------------------------------------
# Value conversion for c / ALPHA fields is efsdk.fields' (shared with OUCH),
# kept out of the per-type closures so the error messages are uniform.


def _diagnose(layout: MessageLayout, msg: tuple[Any, ...]) -> ValueError:
    """Name the field that made encoding fail (only called on the error path)."""
    name = class_name(layout)
    fields = (("timestamp", "ts"),) + layout.body
    for index, (field, code) in enumerate(fields, start=3):
        value = msg[index]
        where = f"{name}.{field}"
        if code == "ts":
            lo, hi = 0, TIMESTAMP_MAX
        elif code == "c":
            try:
                encode_char(value)
            except ValueError as exc:
                return ValueError(f"{where}: {exc}")
            continue
        elif code.endswith("s"):
            try:
                encode_alpha(value, int(code[:-1]))
            except ValueError as exc:
                return ValueError(f"{where}: {exc}")
            continue
        else:
            lo, hi = _int_range(code)
        if not isinstance(value, int):
            return ValueError(f"{where} needs an int, got {type(value).__name__} {value!r}")
        if not lo <= value <= hi:
            what = "6-byte timestamp" if code == "ts" else f"{hi.bit_length() // 8}-byte unsigned field"
            return ValueError(f"{where} = {value} does not fit the {what} ({lo}..{hi})")
    for index, field in ((1, "stock_locate"), (2, "tracking_number")):
        value = msg[index]
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            return ValueError(f"{name}.{field} = {value!r} does not fit the 2-byte unsigned field (0..65535)")
    return ValueError(f"{name}: cannot encode {msg!r}")


# --------------------------------------------------------------------------
# Per-type closures built from the table.


# A decoder hand-written for 'A' (tuple unpacking, no index loops) measured no
# faster than these generic closures (both ~1.0-1.2 us per message on the dev
# box, meatpy's from_bytes ~2.4 us), so there is no per-type code generation.
def _make_decoder(layout: MessageLayout, cls: type) -> Callable[[Buffer, int], Message]:
    unpack_from = layout.struct.unpack_from
    type_char = layout.type.decode("ascii")
    new = tuple.__new__
    # Indexes into the *message* tuple (struct index - 1, see _MSG_HEADER_TYPES).
    chars = tuple(i - 1 for i, (_, code) in enumerate(layout.fields) if code == "c" and i > 0)
    alphas = tuple(i - 1 for i, (_, code) in enumerate(layout.fields) if code.endswith("s"))

    def decode_one(buf: Buffer, offset: int) -> Message:
        v = unpack_from(buf, offset)
        out = [type_char, v[1], v[2], (v[3] << 32) | v[4], *v[_WIRE_HEADER_LEN:]]
        for i in chars:
            out[i] = chr(out[i][0])
        for i in alphas:
            out[i] = out[i].decode("latin-1").rstrip(" ")
        return new(cls, out)

    decode_one.__name__ = f"decode_{layout.name}"
    return decode_one


def _make_encoder(layout: MessageLayout) -> Callable[[tuple[Any, ...]], bytes]:
    pack = layout.struct.pack
    type_byte = layout.type
    type_char = layout.type.decode("ascii")
    # Indexes into the *wire* value list (message index + 1).
    chars = tuple(i for i, (_, code) in enumerate(layout.fields) if code == "c" and i > 0)
    alphas = tuple((i, int(code[:-1])) for i, (_, code) in enumerate(layout.fields) if code.endswith("s"))
    name = class_name(layout)

    def encode_one(msg: tuple[Any, ...]) -> bytes:
        if msg[0] != type_char:
            raise ValueError(f"{name} message has type {msg[0]!r}, expected {type_char!r}")
        try:
            ts = msg[3]
            v = [type_byte, msg[1], msg[2], ts >> 32, ts & 0xFFFFFFFF, *msg[4:]]
            for i in chars:
                v[i] = encode_char(v[i])
            for i, width in alphas:
                v[i] = encode_alpha(v[i], width)
            return pack(*v)
        except (struct.error, TypeError, ValueError):
            raise _diagnose(layout, msg) from None

    encode_one.__name__ = f"encode_{layout.name}"
    return encode_one


#: Generated message class by type character (``"A"`` -> :class:`AddOrder`).
MESSAGE_CLASSES: dict[str, type] = {}
#: Decoder by type byte value (``0x41`` -> decode add_order); each takes
#: ``(buf, offset)`` and does no length check: callers that validated the
#: frame (the file reader) use it directly, everyone else calls :func:`decode`.
DECODER_BY_TYPE: dict[int, Callable[[Buffer, int], Message]] = {}
_ENCODER_BY_CLASS: dict[type, Callable[[tuple[Any, ...]], bytes]] = {}

for _layout in LAYOUTS.values():
    _name = class_name(_layout)
    _cls = NamedTuple(  # type: ignore[misc]
        _name, _MSG_HEADER_TYPES + [(field, _py_type(code)) for field, code in _layout.body]
    )
    _cls.__module__ = __name__
    _cls.__doc__ = (
        f"ITCH 5.0 {_layout.type.decode()!r} {_layout.name.replace('_', ' ')} message "
        f"({_layout.size} bytes on the wire)."
    )
    globals()[_name] = _cls
    __all__.append(_name)
    MESSAGE_CLASSES[_layout.type.decode("ascii")] = _cls
    DECODER_BY_TYPE[_layout.type[0]] = _make_decoder(_layout, _cls)
    _ENCODER_BY_CLASS[_cls] = _make_encoder(_layout)
del _layout, _name, _cls

# One lookup on the hot-ish path: type byte -> (size, decoder).
_DISPATCH: dict[int, tuple[int, Callable[[Buffer, int], Message]]] = {
    t: (SIZE_BY_TYPE[t], d) for t, d in DECODER_BY_TYPE.items()
}


# --------------------------------------------------------------------------
# Public API


def decode(buf: Buffer, offset: int = 0) -> Message:
    """Decode the one unframed ITCH message starting at ``buf[offset]`` (its type byte).

    Bytes after the message are ignored, so this also decodes in place inside a
    larger buffer.  Raises :class:`~efsdk.errors.ProtocolError` if the type byte
    is unknown or the buffer is shorter than that type's size.
    """
    try:
        size, decoder = _DISPATCH[buf[offset]]
    except IndexError:
        raise ProtocolError(
            f"no ITCH message at offset {offset}: buffer is only {len(buf)} bytes"
        ) from None
    except KeyError:
        t = buf[offset]
        raise ProtocolError(
            f"unknown ITCH 5.0 message type {chr(t)!r} (0x{t:02x}) at offset {offset}"
        ) from None
    have = len(buf) - offset
    if have < size:
        t = chr(buf[offset])
        raise ProtocolError(
            f"short ITCH {t!r} ({LAYOUTS[t.encode('latin-1')].name}) message at offset {offset}: "
            f"expected {size} bytes, got {have}"
        )
    return decoder(buf, offset)


def encode(msg: Message) -> bytes:
    """Encode a message (an instance of one of the generated classes) to its wire bytes.

    ALPHA fields are space-padded; the result has no length prefix (see :func:`frame`).
    Raises ``TypeError`` if ``msg`` is not a codec message and ``ValueError``
    naming the field if a value does not fit (out of range integer, ALPHA too
    long or not latin-1, code field not exactly one character, timestamp
    outside 0..2**48-1, or a ``type`` that disagrees with the class).
    """
    try:
        encoder = _ENCODER_BY_CLASS[msg.__class__]
    except KeyError:
        raise TypeError(
            f"encode() takes a message class from efsdk.itch.codec, got {type(msg).__name__}; "
            "use encode_fields(type, **fields) for plain values"
        ) from None
    return encoder(msg)


def make_message(type_: str | bytes, /, **fields: Any) -> Message:
    """Build the message of ``type_`` from keyword fields (no value checks; :func:`encode` checks).

    ``stock_locate`` and ``tracking_number`` default to 0; every other field is
    required.  A ``type`` keyword is accepted if it agrees with ``type_``.
    Raises ``ValueError`` for an unknown type, or missing or unknown field names.
    """
    key = type_.decode("latin-1") if isinstance(type_, bytes | bytearray) else type_
    try:
        cls = MESSAGE_CLASSES[key]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown ITCH 5.0 message type {type_!r}; known: {''.join(MESSAGE_CLASSES)}"
        ) from None
    given = fields.pop("type", key)
    if given != key:
        raise ValueError(f"type={given!r} disagrees with message type {key!r}")
    fields.setdefault("stock_locate", 0)
    fields.setdefault("tracking_number", 0)
    names = cls._fields[1:]  # type: ignore[attr-defined]
    missing = [n for n in names if n not in fields]
    unknown = sorted(set(fields) - set(names))
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(unknown)}")
        raise ValueError(f"{cls.__name__}: {'; '.join(problems)} (fields: {', '.join(names)})")
    return cls(key, *(fields[n] for n in names))


def encode_fields(type_: str | bytes, /, **fields: Any) -> bytes:
    """Encode a message of ``type_`` given as keyword fields (timestamp int ns, ALPHA as str).

    Same defaults as :func:`make_message`.  Raises ``ValueError`` for an unknown
    type, a missing or unknown field, or a value that does not fit.
    """
    return encode(make_message(type_, **fields))


def frame(message: bytes | bytearray | memoryview) -> bytes:
    """Prefix one message with its 2-byte big-endian length (BinaryFILE / MoldUDP64 block).

    Raises ``ValueError`` for an empty message or one longer than 65535 bytes.
    """
    n = len(message)
    if not 0 < n <= _MAX_FRAME:
        raise ValueError(f"cannot frame a {n}-byte message: the length prefix holds 1..{_MAX_FRAME}")
    return n.to_bytes(2, "big") + bytes(message)


def price_to_decimal(raw: int, scale: int = PRICE_SCALE) -> Decimal:
    """Exact decimal value of an integer wire price (``scale=MWCB_PRICE_SCALE`` for V levels)."""
    return Decimal(raw) / scale


def price_to_float(raw: int, scale: int = PRICE_SCALE) -> float:
    """Float value of an integer wire price, for display and plotting only (not exact)."""
    return raw / scale


def price_from_decimal(value: Decimal | str | int | float, scale: int = PRICE_SCALE) -> int:
    """Integer wire price for a decimal value, e.g. ``"150.25"`` -> ``1502500``.

    Floats are read through their shortest repr (``0.1`` means 0.1).  Raises
    ``ValueError`` if the value has more decimals than ``scale`` allows; the
    range is checked by :func:`encode`.
    """
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    scaled = d * scale
    if scaled != scaled.to_integral_value():
        raise ValueError(f"price {value!r} has more decimals than 1/{scale} units allow")
    return int(scaled)
