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


# ---------------------------------------------------------------- generated sessions


class GeneratedSession:
    """One synthetic ITCH day written once per test session, in three files.

    ``path`` is the plain BinaryFILE, ``gz_path`` the same stream gzip'd, and
    ``no_dlcr_path`` the stream without its 'O' (DLCR) messages, for parsers
    (meatpy 0.5.0) that cannot read NASDAQ's 48-byte 'O'.  ``summary`` is the
    generator's own end-of-day description; ``symbols`` its SymbolInfo list.
    """

    def __init__(self, root: Any, symbols: int, messages: int, seed: int) -> None:
        from efsdk.itch.generator import BinaryFileWriter, SessionGenerator

        gen = SessionGenerator(symbols, messages, seed)
        msgs = list(gen)
        self.path = root / "session.itch"
        self.gz_path = root / "session.itch.gz"
        self.no_dlcr_path = root / "session_no_dlcr.itch"
        for path, selected in (
            (self.path, msgs),
            (self.gz_path, msgs),
            (self.no_dlcr_path, [m for m in msgs if m[:1] != b"O"]),
        ):
            with BinaryFileWriter(path) as writer:
                writer.write_all(selected)
        self.summary = gen.summary
        self.symbols = list(gen.symbols)
        self.messages = messages
        self.dlcr_messages = len(msgs) - sum(1 for m in msgs if m[:1] != b"O")
        self.ipo_locate = gen.ipo_locate

    @property
    def locate_of(self) -> dict[str, int]:
        return {s.ticker: s.locate for s in self.symbols}

    @property
    def deep(self) -> list[str]:
        return [s.ticker for s in self.symbols if s.deep]

    @property
    def thin(self) -> list[str]:
        return [s.ticker for s in self.symbols if not s.deep]

    def __repr__(self) -> str:
        return f"<GeneratedSession {self.path} messages={self.messages} symbols={len(self.symbols)}>"


@pytest.fixture(scope="session")
def itch_session(tmp_path_factory: pytest.TempPathFactory) -> GeneratedSession:
    """100k-message, 12-symbol generated day (2 deep names), all 23 types; ~1 s to write."""
    return GeneratedSession(tmp_path_factory.mktemp("itch_session"), symbols=12, messages=100_000, seed=20240102)


@pytest.fixture(scope="session")
def small_itch_session(tmp_path_factory: pytest.TempPathFactory) -> GeneratedSession:
    """8k-message, 6-symbol generated day, for tests that replay it many times."""
    return GeneratedSession(tmp_path_factory.mktemp("small_itch_session"), symbols=6, messages=8_000, seed=7)
