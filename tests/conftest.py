"""Shared test fixtures."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

import pytest


def _random_itch_message(rng: random.Random, type_char: str) -> Any:
    """One ITCH message of ``type_char`` with full-range random field values, from the layout table."""
    from efsdk.itch.codec import MESSAGE_CLASSES
    from efsdk.itch.layouts import LAYOUTS, TIMESTAMP_MAX

    layout = LAYOUTS[type_char.encode("ascii")]
    values: list[Any] = [
        type_char,
        rng.randrange(1 << 16),
        rng.randrange(1 << 16),
        rng.choice((0, TIMESTAMP_MAX, rng.randrange(TIMESTAMP_MAX + 1))),
    ]
    for _, code in layout.body:
        if code == "c":
            values.append(chr(rng.randrange(256)))
        elif code.endswith("s"):
            n = rng.randrange(int(code[:-1]) + 1)
            # Any latin-1 text that does not end in a space survives the strip.
            text = "".join(chr(rng.randrange(256)) for _ in range(n)).rstrip(" ")
            values.append(text)
        else:
            top = (1 << (8 * struct.calcsize(">" + code))) - 1
            values.append(rng.choice((0, top, rng.randrange(top + 1))))
    return MESSAGE_CLASSES[type_char](*values)


@pytest.fixture
def random_itch_message() -> Callable[[random.Random, str], Any]:
    """Factory ``(rng, type_char) -> message`` with full-range random values (edges included)."""
    return _random_itch_message


@pytest.fixture
def itch_one_of_each() -> list[Any]:
    """One message of each of the 23 ITCH 5.0 types, in table order, fixed seed."""
    from efsdk.itch.layouts import LAYOUTS

    rng = random.Random(23)
    return [_random_itch_message(rng, t.decode("ascii")) for t in LAYOUTS]
