"""The native ITCH record decoder against its pure-Python reference.

Streams are built from efsdk.itch.layouts (struct.pack of every field), never
from the codec under test; the C output must be byte-identical to
decode_records_py, including the locate filter it leaves behind and every
counter.
"""

from __future__ import annotations

import gzip
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from efsdk.errors import NativeError
from efsdk.itch import records as R
from efsdk.itch.layouts import LAYOUTS, SIZE_BY_TYPE
from tests.itch_frames import TYPES, bad_length_frame, frame, unknown_type_frame

SYMBOLS = [b"AAPL    ", b"MSFT    ", b"ZVZZT   ", b"QQQ     "]
N_LOCATES = 8  # few locates, so filters and R subscriptions interact often


# ------------------------------------------------------------------ generators


def _field(name: str, code: str) -> st.SearchStrategy:
    if name == "stock_locate":
        return st.integers(0, N_LOCATES - 1)
    if name == "stock":
        return st.sampled_from(SYMBOLS) | st.binary(min_size=8, max_size=8)
    if name == "side":
        return st.sampled_from([b"B", b"S"])
    if code == "c":
        return st.binary(min_size=1, max_size=1)
    if code.endswith("s"):
        n = int(code[:-1])
        return st.binary(min_size=n, max_size=n)
    bits = {"H": 16, "I": 32, "Q": 64}[code]
    return st.integers(0, (1 << bits) - 1)


def _message(t: bytes) -> st.SearchStrategy[bytes]:
    layout = LAYOUTS[t]
    parts = [st.just(t)] + [_field(n, c) for n, c in layout.fields[1:]]
    return st.tuples(*parts).map(lambda v: layout.struct.pack(*v))



valid_frame = st.sampled_from(TYPES).flatmap(_message).map(frame)
# R messages are what symbol subscriptions act on; 1 in 23 is too rare for them
# to meet a subscribed symbol on an unsubscribed locate often enough.
directory_frame = _message(b"R").map(frame)




any_frame = st.one_of(
    valid_frame,
    valid_frame,
    valid_frame,
    valid_frame,
    directory_frame,
    directory_frame,
    bad_length_frame(),
    unknown_type_frame(),
    st.just(b"\x00\x00"),  # empty frame
    st.binary(min_size=1, max_size=12),  # garbage: desynchronises the framing
)

clean_stream = st.lists(valid_frame | directory_frame, max_size=60).map(b"".join)
messy_stream = st.lists(any_frame, max_size=60).map(b"".join)
# Directory-heavy streams with a live subscription: R messages for subscribed
# symbols on unsubscribed locates, then traffic on those locates.
subscription_stream = st.lists(directory_frame | valid_frame, min_size=5, max_size=60).map(b"".join)
locate_sets = st.none() | st.sets(st.integers(0, N_LOCATES - 1), max_size=4)
_symbol_names = st.sampled_from([s.decode().strip() for s in SYMBOLS])
symbol_sets = st.lists(_symbol_names, min_size=1, max_size=3) | st.none() | st.lists(_symbol_names, max_size=3)


# ------------------------------------------------------------------- helpers


def unpack(records: bytes | memoryview) -> list[tuple[int, ...]]:
    return list(R.RECORD.iter_unpack(records))


def shift(recs: list[tuple[int, ...]], by: int) -> list[tuple[int, ...]]:
    """Make record offsets absolute (offset is field 5)."""
    return [r[:5] + (r[5] + by,) + r[6:] for r in recs]


def decode_resuming(dec: R.RecordDecoder, buf: bytes) -> tuple[list[tuple[int, ...]], int]:
    """Call decode until it makes no progress; return records with absolute offsets."""
    out: list[tuple[int, ...]] = []
    pos = 0
    while True:
        recs, used = dec.decode(memoryview(buf)[pos:])
        out += shift(unpack(recs), pos)
        pos += used
        if not used:
            return out, pos


def py_resuming(buf: bytes, filt, symbols, out_cap, stats) -> tuple[list[tuple[int, ...]], int]:
    out: list[tuple[int, ...]] = []
    pos = 0
    while True:
        recs, used = R.decode_records_py(buf[pos:], filt, symbols, out_cap=out_cap, stats=stats)
        out += shift(unpack(recs), pos)
        pos += used
        if not used:
            return out, pos


def py_filter(locates, symbols) -> bytearray | None:
    if locates is None and symbols is None:
        return None
    f = bytearray(65536)
    for loc in locates or ():
        f[loc] = 1
    return f


def msg(t: bytes, locate: int = 1, **kw) -> bytes:
    """A framed message of type t with defaults for every field."""
    layout = LAYOUTS[t]
    vals = []
    for name, code in layout.fields:
        if name == "type":
            vals.append(t)
        elif name == "stock_locate":
            vals.append(locate)
        elif name in kw:
            vals.append(kw[name])
        elif code == "c":
            vals.append(b"B" if name == "side" else b"Y")
        elif code.endswith("s"):
            vals.append(b" " * int(code[:-1]))
        else:
            vals.append(len(vals) * 1000 + 7)  # distinct, non-zero
    return frame(layout.struct.pack(*vals))


# ---------------------------------------------------------------- the tables


def test_native_extension_is_built():
    # Deliberately a failure, not a skip: the portable ITCH module always builds.
    assert R.NATIVE_AVAILABLE, f"efsdk._native_itch did not import ({R._IMPORT_ERROR}); run `pip install -e .`"


def test_size_table_matches_layouts():
    lib = R._lib
    assert {t: lib.efsdk_itch_message_size(t) for t in range(256)} == {
        t: SIZE_BY_TYPE.get(t, 0) for t in range(256)
    }
    assert len(SIZE_BY_TYPE) == 23


def test_record_layout_and_version():
    assert R.RECORD.size == 32 == R._ffi.sizeof("efsdk_itch_record")
    assert R._lib.efsdk_itch_records_version() == R.EXPECTED_NATIVE_VERSION
    for name, off in [("type", 0), ("side", 1), ("locate", 2), ("shares", 4), ("price", 8),
                      ("offset", 12), ("ref", 16), ("ref2", 24)]:  # fmt: skip
        assert R._ffi.offsetof("efsdk_itch_record", name) == off


def test_stale_build_is_refused():
    kinds = (R.ANOMALY_UNKNOWN_TYPE, R.ANOMALY_BAD_LENGTH, R.ANOMALY_EMPTY)
    R._check_native(R.EXPECTED_NATIVE_VERSION, 32, kinds)
    for args in [(R.EXPECTED_NATIVE_VERSION + 1, 32, kinds), (R.EXPECTED_NATIVE_VERSION, 40, kinds),
                 (R.EXPECTED_NATIVE_VERSION, 32, (1, 2, 4))]:  # fmt: skip
        with pytest.raises(NativeError, match=r"stale.*pip install -e \."):
            R._check_native(*args)


# ------------------------------------------------------------ field mapping


def test_every_type_maps_its_fields():
    """One message of each type with known values lands in the documented fields."""
    for t in TYPES:
        buf = msg(t, locate=3)
        (r,) = unpack(R.RecordDecoder().decode(buf)[0])
        v = dict(zip(LAYOUTS[t].field_names, LAYOUTS[t].struct.unpack(buf[2:]), strict=True))
        want = {
            b"A": (v.get("side"), v.get("shares"), v.get("price"), v.get("order_reference_number"), None),
            b"F": (v.get("side"), v.get("shares"), v.get("price"), v.get("order_reference_number"), None),
            b"E": (None, v.get("executed_shares"), None, v.get("order_reference_number"), v.get("match_number")),
            b"C": (v.get("printable"), v.get("executed_shares"), v.get("execution_price"),
                   v.get("order_reference_number"), v.get("match_number")),
            b"X": (None, v.get("cancelled_shares"), None, v.get("order_reference_number"), None),
            b"D": (None, None, None, v.get("order_reference_number"), None),
            b"U": (None, v.get("shares"), v.get("price"), v.get("original_order_reference_number"),
                   v.get("new_order_reference_number")),
            b"P": (v.get("side"), v.get("shares"), v.get("price"), v.get("order_reference_number"),
                   v.get("match_number")),
            b"Q": (v.get("cross_type"), None, v.get("cross_price"), v.get("shares"), v.get("match_number")),
            b"B": (None, None, None, None, v.get("match_number")),
        }.get(t, (None,) * 5)  # fmt: skip
        side, shares, price, ref, ref2 = want
        assert r == (
            t[0],
            side[0] if side else 0,
            3,
            shares or 0,
            price or 0,
            2,
            ref or 0,
            ref2 or 0,
        ), t


def test_anomaly_records():
    stream = b"\x00\x00" + frame(b"Z" + b"\x01" * 10) + frame(b"A" + b"\x02" * 9) + msg(b"D")
    recs = unpack(R.RecordDecoder().decode(stream)[0])
    assert recs[:3] == [
        (0, R.ANOMALY_EMPTY, 0, 0, 0, 0, 0, 0),
        (0, R.ANOMALY_UNKNOWN_TYPE, 0, 11, ord("Z"), 2, 0, 0),
        (0, R.ANOMALY_BAD_LENGTH, 0, 10, ord("A"), 15, 0, 0),
    ]
    assert recs[3][0] == ord("D") and recs[3][5] == 27 + 2


# --------------------------------------------------- C vs Python, property based


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=messy_stream,
    tail=st.binary(max_size=5),
    locates=locate_sets,
    symbols=symbol_sets,
    capacity=st.sampled_from([1, 2, 3, 7, 65536]),
)
def test_c_matches_python_reference(stream, tail, locates, symbols, capacity):
    buf = stream + tail
    dec = R.RecordDecoder(capacity=capacity, locates=locates, symbols=symbols)
    got, got_pos = decode_resuming(dec, buf)

    filt = py_filter(locates, symbols)
    ref_stats = R.DecodeStats()
    want, want_pos = py_resuming(buf, filt, symbols, capacity, ref_stats)

    assert got == want
    assert got_pos == want_pos
    assert dec.stats == ref_stats
    assert dec.locate_filter == (None if filt is None else bytes(filt))
    # Splitting into batches changes nothing: one unbounded Python call agrees.
    one_shot, one_pos = R.decode_records_py(buf, py_filter(locates, symbols), symbols)
    assert unpack(one_shot) == want and one_pos == want_pos


@settings(max_examples=300, deadline=None)
@given(
    stream=subscription_stream,
    locates=st.sets(st.integers(0, N_LOCATES - 1), max_size=3),
    symbols=st.lists(_symbol_names, min_size=1, max_size=3),
    capacity=st.sampled_from([1, 4, 65536]),
)
def test_symbol_subscriptions_match_reference(stream, locates, symbols, capacity):
    dec = R.RecordDecoder(capacity=capacity, locates=locates, symbols=symbols)
    got, got_pos = decode_resuming(dec, stream)
    filt = py_filter(locates, symbols)
    ref_stats = R.DecodeStats()
    want, want_pos = py_resuming(stream, filt, symbols, capacity, ref_stats)
    assert (got, got_pos) == (want, want_pos)
    assert dec.stats == ref_stats
    assert dec.locate_filter == bytes(filt)
    assert dec.locates == sorted(i for i, b in enumerate(filt) if b)


@settings(max_examples=200, deadline=None)
@given(stream=messy_stream, locates=locate_sets, symbols=symbol_sets)
def test_single_call_byte_identical(stream, locates, symbols):
    dec = R.RecordDecoder(locates=locates, symbols=symbols)
    recs, used = dec.decode(stream)
    ref, ref_used = R.decode_records_py(stream, py_filter(locates, symbols), symbols)
    assert bytes(recs) == ref and used == ref_used


@settings(max_examples=200, deadline=None)
@given(stream=clean_stream, cut=st.integers(0, 10_000))
def test_clean_stream_consumes_whole_messages(stream, cut):
    """On valid frames: no anomalies, and a cut stream stops at a frame boundary."""
    cut = min(cut, len(stream))
    dec = R.RecordDecoder()
    recs, used = dec.decode(stream[:cut])
    assert all(r[0] != 0 for r in unpack(recs))
    # what was consumed is exactly the frames that fit
    pos = 0
    while pos + 2 <= cut and pos + 2 + int.from_bytes(stream[pos : pos + 2], "big") <= cut:
        pos += 2 + int.from_bytes(stream[pos : pos + 2], "big")
    assert used == pos
    assert dec.stats.messages == len(recs) // 32 == dec.stats.emitted


# ------------------------------------------------------------------ filtering


def test_symbol_subscription_enables_locate_within_one_call():
    stream = (
        msg(b"A", locate=5)  # before the R: filtered
        + msg(b"R", locate=5, stock=b"AAPL    ")
        + msg(b"A", locate=5)
        + msg(b"R", locate=6, stock=b"MSFT    ")  # not subscribed
        + msg(b"A", locate=6)
        + msg(b"S", locate=0)  # system-wide: always
        + msg(b"D", locate=2)  # explicit locate
    )
    dec = R.RecordDecoder(locates=[2], symbols=["AAPL"])
    recs, used = dec.decode(stream)
    assert used == len(stream)
    assert [(chr(r[0]), r[2]) for r in unpack(recs)] == [("R", 5), ("A", 5), ("S", 0), ("D", 2)]
    assert dec.locates == [2, 5]
    s = dec.stats
    assert (s.messages, s.emitted, s.filtered) == (7, 4, 3)
    # the learned locate persists into later calls
    recs, _ = dec.decode(msg(b"E", locate=5))
    assert len(recs) == 32


def test_no_filter_ignores_symbols_at_the_c_level():
    """Raw contract: a NULL filter emits everything, symbols or not."""
    ffi, lib = R._ffi, R._lib
    stream = msg(b"R", locate=5, stock=b"AAPL    ") + msg(b"A", locate=9)
    out = ffi.new("efsdk_itch_record[]", 4)
    consumed = ffi.new("size_t *")
    syms = ffi.new("uint8_t[]", b"AAPL    ")
    n = lib.efsdk_itch_decode(stream, len(stream), consumed, out, 4, ffi.NULL, syms, 1, ffi.NULL)
    assert n == 2 and consumed[0] == len(stream)


def test_subscribe_and_unsubscribe():
    stream = msg(b"A", locate=1) + msg(b"A", locate=2)
    dec = R.RecordDecoder()
    assert not dec.filtering and len(dec.decode(stream)[0]) == 64
    dec.subscribe_locates([2])
    assert dec.filtering and unpack(dec.decode(stream)[0])[0][2] == 2
    dec.subscribe("QQQ")
    assert dec.symbols == ("QQQ",)
    dec.unsubscribe_all()
    assert not dec.filtering and len(dec.decode(stream)[0]) == 64
    with pytest.raises(ValueError):
        dec.subscribe_locates([65536])
    with pytest.raises(ValueError):
        dec.subscribe(["TOOLONGSYM"])


# ---------------------------------------------------------------- counters


def test_stats_exact():
    stream = (
        msg(b"A", locate=1)
        + msg(b"A", locate=2)  # filtered
        + msg(b"A", locate=0)
        + msg(b"R", locate=5, stock=b"AAPL    ")  # subscribed by symbol
        + msg(b"D", locate=5)
        + frame(b"Z" + bytes(4))  # unknown type
        + frame(b"A" + bytes(9))  # bad length
        + b"\x00\x00"  # empty
        + frame(b"\x00" + bytes(3))  # type byte 0: unknown, counts under "\x00"
        + msg(b"E", locate=3)  # filtered
        + msg(b"X", locate=1)[:-1]  # truncated: not consumed, not counted
    )
    dec = R.RecordDecoder(locates=[1], symbols=["AAPL"])
    recs, used = dec.decode(stream)
    assert used == len(stream) - 24
    assert dec.stats == R.DecodeStats(
        messages=10,
        bytes=used,
        emitted=8,
        filtered=2,
        unknown_type=2,
        bad_length=1,
        empty=1,
        by_type={"A": 4, "R": 1, "D": 1, "Z": 1, "\x00": 2, "E": 1},
    )
    assert sum(dec.stats.by_type.values()) == dec.stats.messages
    assert len(recs) // 32 == 8
    dec.reset_stats()
    assert dec.stats == R.DecodeStats()


def test_capacity_smaller_than_message_count_resumes():
    stream = b"".join(msg(b"A", locate=i % 4, order_reference_number=i) for i in range(1000))
    full = unpack(R.RecordDecoder().decode(stream)[0])
    dec = R.RecordDecoder(capacity=7)
    got, used = decode_resuming(dec, stream)
    assert got == full and used == len(stream)
    assert dec.stats.messages == 1000 and dec.stats.emitted == 1000
    # a full output stops before the next frame, even one that would be filtered
    stream = msg(b"A", locate=1) + msg(b"A", locate=2) * 3
    dec = R.RecordDecoder(capacity=1, locates=[1])
    recs, used = dec.decode(stream)
    assert len(recs) == 32 and used == 38 and dec.stats.filtered == 0
    recs, used = dec.decode(stream[used:])
    assert len(recs) == 0 and used == 3 * 38 and dec.stats.filtered == 3


def test_bad_arguments_return_einval():
    ffi, lib = R._ffi, R._lib
    out = ffi.new("efsdk_itch_record[]", 1)
    consumed = ffi.new("size_t *")
    buf = msg(b"D")
    assert lib.efsdk_itch_decode(buf, len(buf), consumed, out, 0, ffi.NULL, ffi.NULL, 0, ffi.NULL) == -22
    assert lib.efsdk_itch_decode(buf, len(buf), ffi.NULL, out, 1, ffi.NULL, ffi.NULL, 0, ffi.NULL) == -22
    assert lib.efsdk_itch_decode(buf, len(buf), consumed, ffi.NULL, 1, ffi.NULL, ffi.NULL, 0, ffi.NULL) == -22
    assert lib.efsdk_itch_decode(ffi.NULL, 5, consumed, out, 1, ffi.NULL, ffi.NULL, 0, ffi.NULL) == -22
    assert lib.efsdk_itch_decode(buf, len(buf), consumed, out, 1, ffi.NULL, ffi.NULL, 3, ffi.NULL) == -22
    assert lib.efsdk_itch_decode(buf, 1 << 32, consumed, out, 1, ffi.NULL, ffi.NULL, 0, ffi.NULL) == -22
    assert lib.efsdk_itch_decode(ffi.NULL, 0, consumed, out, 1, ffi.NULL, ffi.NULL, 0, ffi.NULL) == 0


def test_accepts_bytes_bytearray_memoryview():
    stream = msg(b"A") + msg(b"D")
    dec = R.RecordDecoder()
    want = bytes(dec.decode(stream)[0])
    for buf in (bytearray(stream), memoryview(stream), memoryview(bytearray(b"xx" + stream))[2:]):
        recs, used = dec.decode(buf)
        assert bytes(recs) == want and used == len(stream)
    assert dec.decode(b"")[1] == 0


def test_records_view_is_reused():
    dec = R.RecordDecoder()
    first, _ = dec.decode(msg(b"A", locate=1))
    keep = bytes(first)
    dec.decode(msg(b"D", locate=2))
    assert first.tobytes() != keep  # documented: valid until the next decode


# ------------------------------------------------------------- file batches


def batches_to_abs(reader) -> list[tuple[int, ...]]:
    out = []
    for recs, chunk, base in reader:
        for r in unpack(recs):
            if r[0]:
                size = SIZE_BY_TYPE[r[0]]
                assert len(chunk) >= r[5] + size  # the message is inside the chunk
                assert LAYOUTS[bytes([r[0]])].struct.unpack_from(chunk, r[5])[1] == r[2]
            out.append(r[:5] + (r[5] + base,) + r[6:])
    return out


@settings(max_examples=150, deadline=None)
@given(
    stream=messy_stream,
    tail=st.binary(max_size=40),
    chunk_size=st.sampled_from([1, 2, 3, 5, 17, 64, 4096]),
    capacity=st.sampled_from([1, 3, 65536]),
    locates=locate_sets,
    symbols=symbol_sets,
)
def test_batches_equal_one_big_decode(stream, tail, chunk_size, capacity, locates, symbols):
    buf = stream + tail
    want, consumed = R.decode_records_py(buf, py_filter(locates, symbols), symbols)
    want = unpack(want)
    dec = R.RecordDecoder(capacity=capacity, locates=locates, symbols=symbols)
    reader = R.iter_record_batches(io.BytesIO(buf), dec, chunk_size=chunk_size)
    got = batches_to_abs(reader)
    stats = reader.stats
    if consumed < len(buf):
        *got, last = got
        length = int.from_bytes(buf[consumed : consumed + 2], "big") if len(buf) - consumed >= 2 else 0
        tbyte = buf[consumed + 2] if len(buf) - consumed >= 3 else 0
        assert last == (0, R.ANOMALY_TRUNCATED_TAIL, 0, length, tbyte, consumed, len(buf) - consumed, 0)
        assert (stats.truncated_tail, stats.truncated_tail_offset) == (1, consumed)
        assert stats.truncated_tail_bytes == len(buf) - consumed
    else:
        assert stats.truncated_tail == 0 and stats.truncated_tail_offset is None
    assert got == want
    assert stats.bytes_read == len(buf) and stats.bytes == consumed
    anomalies = [(r[1], r[5], r[3], r[4]) for r in want if r[0] == 0]
    if stats.truncated_tail:
        anomalies.append((R.ANOMALY_TRUNCATED_TAIL, consumed, length, tbyte))
    assert [(a.kind, a.offset, a.length, a.type_byte) for a in stats.anomalies] == anomalies


def test_file_paths_plain_and_gzip(tmp_path):
    stream = b"".join(msg(t, locate=i % 3) for i, t in enumerate(TYPES * 50))
    stream += frame(b"Z" + bytes(3)) + msg(b"A")[:10]  # an anomaly and a truncated tail
    plain = tmp_path / "day.itch"
    plain.write_bytes(stream)
    gz = tmp_path / "day.NASDAQ_ITCH50"  # gzip detected by content, not name
    gz.write_bytes(gzip.compress(stream))
    want = unpack(R.decode_records_py(stream)[0])
    for path in (plain, gz, str(plain)):
        with R.iter_record_batches(path, chunk_size=100) as reader:
            got = batches_to_abs(reader)
        assert got[:-1] == want
        assert got[-1][:2] == (0, R.ANOMALY_TRUNCATED_TAIL) and got[-1][5] == len(stream) - 10
        s = reader.stats
        assert s.messages == len(TYPES) * 50 + 1 and s.unknown_type == 1
        assert s.truncated_tail == 1 and s.truncated_tail_offset == len(stream) - 10
        assert [a.kind_name for a in s.anomalies] == ["unknown_type", "truncated_tail"]
        assert reader._file.closed
        reader.close()  # idempotent


def test_reader_without_readinto():
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._f = io.BytesIO(data)

        def read(self, n: int) -> bytes:
            return self._f.read(n)

    stream = b"".join(msg(b"A", order_reference_number=i) for i in range(300))
    got = batches_to_abs(R.iter_record_batches(ReadOnly(stream), chunk_size=33))
    assert got == unpack(R.decode_records_py(stream)[0])


def test_anomaly_list_is_bounded():
    stream = b"\x00\x00" * (R.MAX_ANOMALIES_KEPT + 25)
    reader = R.iter_record_batches(io.BytesIO(stream), R.RecordDecoder(capacity=300), chunk_size=512)
    for _ in reader:
        pass
    s = reader.stats
    assert s.empty == R.MAX_ANOMALIES_KEPT + 25
    assert len(s.anomalies) == R.MAX_ANOMALIES_KEPT and s.anomalies_dropped == 25
    assert [a.offset for a in s.anomalies[:3]] == [0, 2, 4]


def test_huge_garbage_frame_with_tiny_chunks_completes():
    """A 65535-byte unknown frame must not wedge the carry buffer."""
    stream = frame(b"Z" + bytes(65534)) + msg(b"D")
    got = batches_to_abs(R.iter_record_batches(io.BytesIO(stream), chunk_size=1000))
    assert [(r[0], r[1], r[5]) for r in got] == [(0, R.ANOMALY_UNKNOWN_TYPE, 0), (ord("D"), 0, 65539)]
