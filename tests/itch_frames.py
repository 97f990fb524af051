"""Hypothesis building blocks for framed ITCH streams, shared by the native tests."""

from __future__ import annotations

from hypothesis import strategies as st

from efsdk.itch.layouts import LAYOUTS, SIZE_BY_TYPE

TYPES = sorted(LAYOUTS)
UNKNOWN_TYPES = [t for t in range(256) if t not in SIZE_BY_TYPE]


def frame(msg: bytes) -> bytes:
    """BinaryFILE / MoldUDP64 block framing: u16 big-endian length, then the message."""
    return len(msg).to_bytes(2, "big") + msg


@st.composite
def bad_length_frame(draw: st.DrawFn) -> bytes:
    """A known type whose length prefix disagrees with its size."""
    t = draw(st.sampled_from(TYPES))
    size = SIZE_BY_TYPE[t[0]]
    n = draw(st.integers(1, 80).filter(lambda k: k != size))
    return frame(t + draw(st.binary(min_size=n - 1, max_size=n - 1)))


@st.composite
def unknown_type_frame(draw: st.DrawFn) -> bytes:
    """A frame whose type byte is not one of the 23 ITCH 5.0 types."""
    t = draw(st.sampled_from(UNKNOWN_TYPES))
    return frame(bytes([t]) + draw(st.binary(max_size=60)))
