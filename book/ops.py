"""The book-op stream: how decoded order events reach the book in bulk.

A feed decoder (efsdk's native ITCH decoder, or any other) turns messages into
flat records of four unsigned 64-bit words ``[op, a, b, c]`` and hands the book
a flat sequence of them: a ``list[int]``, or better ``memoryview(buf).cast("Q")``
over the decoder's own buffer.  Iterating it with ``zip(it, it, it, it)`` costs
~50 ns a record in CPython, several times cheaper than unpacking structs per
message, which is what lets a pure-Python book keep up with a full feed.

Record meanings (``seq`` is the feed sequence number of the message, used as
the order's arrival sequence; shares fit in 32 bits):

=================  ==========================  ===============  =====================
op                 a                           b                c
=================  ==========================  ===============  =====================
ADD_BASE + 2*L+S   order ref                   price            ``seq << 32 | shares``
OP_DELETE          order ref                   0                message offset
OP_EXECUTE         order ref                   executed shares  message offset
OP_EXECUTE_PRICE   order ref                   executed shares  message offset
OP_CANCEL          order ref                   cancelled shares message offset
OP_REPLACE_OUT     original ref                new ref          message offset
OP_REPLACE_IN      new ref                     price            ``seq << 32 | shares``
OP_MESSAGE         message offset              stock locate     message type byte
OP_ANOMALY         message offset              anomaly kind     declared length
=================  ==========================  ===============  =====================

``L`` is the stock locate (0..65535) and ``S`` is 0 for buy, 1 for sell, so an
add's op word alone selects the book side.  ``OP_REPLACE_OUT`` is always
followed by its ``OP_REPLACE_IN``: a replace is a delete plus an add on the
same side that loses time priority.  ``OP_MESSAGE`` carries every message that
does not change resting orders (directory, trading state, trades...); the
consumer decodes it from the source buffer at ``offset`` when it cares.
Offsets are relative to the buffer the records were decoded from.
"""

from __future__ import annotations

__all__ = [
    "ADD_BASE",
    "OP_ANOMALY",
    "OP_CANCEL",
    "OP_DELETE",
    "OP_EXECUTE",
    "OP_EXECUTE_PRICE",
    "OP_MESSAGE",
    "OP_NAMES",
    "OP_REPLACE_IN",
    "OP_REPLACE_OUT",
    "OPS_VERSION",
    "RECORD_WORDS",
    "SEQ_SHIFT",
    "SHARES_MASK",
    "add_op",
    "pack_shares",
]

OPS_VERSION = 1  # bump on any change; native/ checks it

OP_ANOMALY = 0
OP_DELETE = 1
OP_EXECUTE = 2
OP_EXECUTE_PRICE = 3
OP_CANCEL = 4
OP_REPLACE_OUT = 5
OP_REPLACE_IN = 6
OP_MESSAGE = 7
ADD_BASE = 16  # first add op word; the last is 16 + 2*65535 + 1 = 131087

RECORD_WORDS = 4
SEQ_SHIFT = 32
SHARES_MASK = (1 << SEQ_SHIFT) - 1

OP_NAMES = {
    OP_ANOMALY: "anomaly",
    OP_DELETE: "delete",
    OP_EXECUTE: "execute",
    OP_EXECUTE_PRICE: "execute_price",
    OP_CANCEL: "cancel",
    OP_REPLACE_OUT: "replace_out",
    OP_REPLACE_IN: "replace_in",
    OP_MESSAGE: "message",
}


def add_op(locate: int, is_sell: bool) -> int:
    """The op word of an add to ``locate`` on the given side."""
    return ADD_BASE + (locate << 1) + (1 if is_sell else 0)


def pack_shares(seq: int, shares: int) -> int:
    """Pack an arrival sequence and share count the way resting orders store them."""
    return (seq << SEQ_SHIFT) | shares
