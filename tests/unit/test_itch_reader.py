"""BinaryFILE reader: every type, gzip, malformed frames with exact offsets, chunk boundaries."""

from __future__ import annotations

import gzip
import io
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from efsdk.itch.codec import decode, encode, encode_fields, frame
from efsdk.itch.layouts import LAYOUTS
from efsdk.itch.reader import (
    CHUNK_SIZE,
    Anomaly,
    BinaryFileReader,
    ReaderStats,
    iter_frames,
    iter_messages,
)


def _stream(messages: list[Any]) -> bytes:
    return b"".join(frame(encode(m)) for m in messages)


def _write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------
# Well-formed files


def test_every_type_plain_file(tmp_path: Path, itch_one_of_each: list[Any]) -> None:
    data = _stream(itch_one_of_each)
    path = _write(tmp_path / "day.itch", data)
    reader = BinaryFileReader(path)
    assert list(reader) == itch_one_of_each
    s = reader.stats
    assert s.messages == 23
    assert s.by_type == {t.decode(): 1 for t in LAYOUTS}
    assert s.bytes == len(data)
    assert s.anomaly_count == 0 and s.anomalies == []
    assert s.source == str(path)


def test_gzip_gives_the_same(tmp_path: Path, itch_one_of_each: list[Any]) -> None:
    data = _stream(itch_one_of_each * 3)
    plain = _write(tmp_path / "day.itch", data)
    gz = _write(tmp_path / "day.itch.weird-name", data, gz=True)  # detected by magic, not name
    stats_plain, stats_gz = ReaderStats(), ReaderStats()
    assert list(iter_messages(gz, stats=stats_gz)) == list(iter_messages(plain, stats=stats_plain))
    assert stats_gz.messages == 69
    assert stats_gz.bytes == stats_plain.bytes == len(data)
    # Offsets are in the decompressed stream.
    assert [o for o, _ in iter_frames(gz)] == [o for o, _ in iter_frames(plain)]


def test_file_objects_are_read_from_their_position_and_left_open(itch_one_of_each: list[Any]) -> None:
    data = _stream(itch_one_of_each)
    f = io.BytesIO(b"HEADER" + data)
    f.seek(6)
    assert list(iter_messages(f)) == itch_one_of_each
    assert not f.closed
    gz = io.BytesIO(gzip.compress(data))
    with gzip.GzipFile(fileobj=gz) as g:
        assert list(iter_messages(g)) == itch_one_of_each


def test_frames_are_views_of_exact_messages_at_absolute_offsets(itch_one_of_each: list[Any]) -> None:
    data = _stream(itch_one_of_each)
    offset = 0
    frames = list(iter_frames(io.BytesIO(data), chunk_size=64))
    assert len(frames) == 23
    for (off, view), msg in zip(frames, itch_one_of_each):
        assert off == offset
        assert isinstance(view, memoryview) and view.readonly
        assert bytes(view) == encode(msg) == data[off + 2 : off + 2 + len(view)]
        assert int.from_bytes(data[off : off + 2], "big") == len(view)
        offset += 2 + len(view)


def test_path_is_closed_after_iteration_and_reader_is_single_pass(tmp_path: Path, itch_one_of_each: list[Any]) -> None:
    path = _write(tmp_path / "day.itch", _stream(itch_one_of_each))
    with BinaryFileReader(path) as reader:
        it = reader.iter_frames()
        next(it)
        assert reader._file is not None and not reader._file.closed
        f = reader._file
    assert f.closed  # context exit closed it mid-iteration
    reader.close()  # twice is fine
    with pytest.raises(RuntimeError, match="single-pass"):
        next(reader.iter_frames())


def test_empty_file(tmp_path: Path) -> None:
    stats = ReaderStats()
    assert list(iter_messages(_write(tmp_path / "empty.itch", b""), stats=stats)) == []
    assert stats.messages == 0 and stats.bytes == 0 and stats.anomaly_count == 0


def test_rejects_bad_sources() -> None:
    with pytest.raises(TypeError, match="binary mode"):
        list(iter_frames(io.StringIO("abc")))
    with pytest.raises(TypeError, match="path or a binary file"):
        list(iter_frames(12345))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        BinaryFileReader(io.BytesIO(), chunk_size=0)


# ---------------------------------------------------------------------------
# Malformed input: counted at exact offsets, skipped, good neighbours decode


def _good(n: int) -> bytes:
    return encode_fields("A", stock_locate=n, timestamp=n, order_reference_number=n, side="B", shares=n,
                         stock="GOOD", price=n)


def _malformed_stream() -> tuple[bytes, list[tuple[int, str]], list[int]]:
    """Good messages with one of each anomaly between them; returns data, expected anomalies, good ids."""
    parts: list[bytes] = []
    expected: list[tuple[int, str]] = []

    def at() -> int:
        return sum(map(len, parts))

    parts.append(frame(_good(1)))
    expected.append((at(), "bad_length"))  # an 'A' (36 bytes) framed as 40
    parts.append(b"\x00\x28" + _good(99) + b"\x00" * 4)
    parts.append(frame(_good(2)))
    expected.append((at(), "unknown_type"))
    parts.append(b"\x00\x14" + b"Z" + bytes(19))
    parts.append(frame(_good(3)))
    expected.append((at(), "empty"))
    parts.append(b"\x00\x00")
    parts.append(frame(_good(4)))
    expected.append((at(), "bad_length"))  # an 'E' (31) cut short to 20
    parts.append(b"\x00\x14" + encode_fields("E", timestamp=0, order_reference_number=1, executed_shares=1,
                                             match_number=1)[:20])
    parts.append(frame(_good(5)))
    expected.append((at(), "truncated_tail"))  # claims 36, stream ends 10 bytes in
    parts.append(b"\x00\x24" + _good(6)[:10])
    return b"".join(parts), expected, [1, 2, 3, 4, 5]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 17, 38, 39, 40, 64, 1000, CHUNK_SIZE])
def test_malformed_frames_counted_with_offsets_and_skipped(chunk_size: int) -> None:
    data, expected, good = _malformed_stream()
    reader = BinaryFileReader(io.BytesIO(data), chunk_size=chunk_size)
    messages = list(reader.iter_messages())
    assert [m.order_reference_number for m in messages] == good
    assert all(m.stock == "GOOD" for m in messages)
    s = reader.stats
    assert [(a.offset, a.kind) for a in s.anomalies] == expected
    assert (s.bad_length, s.unknown_type, s.empty, s.truncated_tail) == (2, 1, 1, 1)
    assert s.messages == 5 and s.by_type == {"A": 5}
    assert s.bytes == len(data)
    assert [a.detail for a in s.anomalies] == [
        "type 'A' is 36 bytes, length prefix says 40",
        "type byte 0x5a ('Z'), 20-byte frame",
        "zero-length frame",
        "type 'E' is 31 bytes, length prefix says 20",
        "frame needs 38 bytes, stream ends after 12",
    ]


def test_half_length_prefix_at_eof_is_a_truncated_tail() -> None:
    data = frame(_good(1)) + b"\x00"
    stats = ReaderStats()
    assert len(list(iter_messages(io.BytesIO(data), chunk_size=7, stats=stats))) == 1
    assert stats.anomalies == [Anomaly(38, "truncated_tail", "1 byte at end of stream, half a length prefix")]
    assert stats.bytes == 39


def test_each_kind_logged_once_not_per_frame(caplog: pytest.LogCaptureFixture) -> None:
    data = (b"\x00\x00" * 5 + frame(_good(1)) + (b"\x00\x14Z" + bytes(19)) * 5) * 3
    stats = ReaderStats()
    with caplog.at_level(logging.WARNING, logger="efsdk.itch.reader"):
        assert len(list(iter_frames(io.BytesIO(data), stats=stats))) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert "empty at offset 0" in warnings[0]
    assert "unknown_type at offset 48" in warnings[1]
    assert stats.empty == 15 and stats.unknown_type == 15


def test_anomaly_list_is_bounded_but_counts_are_not() -> None:
    stats = ReaderStats(max_anomalies=100)
    list(iter_frames(io.BytesIO(b"\x00\x00" * 250), stats=stats))
    assert stats.empty == 250
    assert len(stats.anomalies) == 100
    assert stats.anomalies[-1] == Anomaly(198, "empty", "zero-length frame")
    d = stats.as_dict()
    assert d["empty"] == 250 and len(d["anomalies"]) == 100  # type: ignore[arg-type]
    assert "empty=250" in repr(stats)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), chunk_size=st.integers(1, 64))
def test_arbitrary_bytes_never_crash_and_account_for_every_byte(data: bytes, chunk_size: int) -> None:
    stats = ReaderStats()
    frames = [(o, bytes(v)) for o, v in iter_frames(io.BytesIO(data), chunk_size=chunk_size, stats=stats)]
    assert stats.bytes == len(data)
    # Same answer as one big chunk: chunking never changes what is read.
    big = ReaderStats()
    assert [(o, bytes(v)) for o, v in iter_frames(io.BytesIO(data), stats=big)] == frames
    assert big.anomalies == stats.anomalies
    # Frames and anomalies tile the stream exactly, in order.
    spans = sorted([(o, 2 + len(v), "ok") for o, v in frames] + [(a.offset, None, a.kind) for a in stats.anomalies])
    pos = 0
    for off, length, kind in spans:
        assert off == pos
        if kind == "truncated_tail":
            pos = len(data)
        else:
            pos += length if length is not None else 2 + int.from_bytes(data[off : off + 2], "big")
    assert pos == len(data)
    for _, msg in frames:
        decode(msg)  # every yielded frame is decodable


# ---------------------------------------------------------------------------
# Chunk boundaries


def test_every_chunk_size_gives_the_same_messages(itch_one_of_each: list[Any]) -> None:
    """Sweeping the chunk size over the whole stream puts a chunk boundary at every
    position of every frame: in the length prefix, on the type byte, mid-body, at the end."""
    data = _stream(itch_one_of_each)
    for chunk_size in range(1, len(data) + 2):
        stats = ReaderStats()
        assert list(iter_messages(io.BytesIO(data), chunk_size=chunk_size, stats=stats)) == itch_one_of_each
        assert stats.bytes == len(data) and stats.anomaly_count == 0


def test_message_straddling_the_default_1mib_boundary(tmp_path: Path) -> None:
    rng = random.Random(1)
    msgs = []
    size = 0
    n = 0
    while size < CHUNK_SIZE + 4096:
        t = rng.choice("AEXDU")
        if t == "A":
            m = encode_fields("A", timestamp=n, order_reference_number=n, side="S", shares=n, stock="X", price=n)
        elif t == "E":
            m = encode_fields("E", timestamp=n, order_reference_number=n, executed_shares=1, match_number=n)
        elif t == "X":
            m = encode_fields("X", timestamp=n, order_reference_number=n, cancelled_shares=1)
        elif t == "D":
            m = encode_fields("D", timestamp=n, order_reference_number=n)
        else:
            m = encode_fields("U", timestamp=n, original_order_reference_number=n, new_order_reference_number=n + 1,
                              shares=1, price=n)
        msgs.append(m)
        size += 2 + len(m)
        n += 1
    data = b"".join(frame(m) for m in msgs)
    # Make sure some frame really crosses the boundary rather than ending on it.
    starts, pos = [], 0
    for m in msgs:
        starts.append(pos)
        pos += 2 + len(m)
    assert any(s < CHUNK_SIZE < s + 2 + len(m) for s, m in zip(starts, msgs))
    path = _write(tmp_path / "big.itch", data, gz=True)
    stats = ReaderStats()
    got = [(o, bytes(v)) for o, v in iter_frames(path, stats=stats)]
    assert got == list(zip(starts, msgs))
    assert stats.messages == len(msgs) and stats.bytes == len(data) and stats.anomaly_count == 0
