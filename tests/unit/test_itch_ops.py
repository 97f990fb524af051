"""The native book-op stream (``native/itch_ops.c``) against an independent derivation.

The expected op words are computed here, in Python, from the records of the
pure-Python reference decoder (:func:`efsdk.itch.records.decode_records_py`)
and book/ops.py's table, with message sequence numbers taken from a framing
walk written in this file.  Nothing under test (``OpDecoder``, the C op
re-shaping, ``iter_op_batches``) is used to compute an expectation.

Streams are packed from :mod:`efsdk.itch.layouts` (never from the codec) and
mix all 23 types, adds with side bytes other than B/S, bad lengths, unknown
types, empty frames and garbage that desynchronises the framing.
"""

from __future__ import annotations

import errno

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import book.ops as book_ops
from book.ops import (
    ADD_BASE,
    OP_ANOMALY,
    OP_CANCEL,
    OP_DELETE,
    OP_EXECUTE,
    OP_EXECUTE_PRICE,
    OP_MESSAGE,
    OP_REPLACE_IN,
    OP_REPLACE_OUT,
)
from efsdk.errors import NativeError
from efsdk.itch import ops as itch_ops
from efsdk.itch.layouts import LAYOUTS, SIZE_BY_TYPE
from efsdk.itch.ops import ANOMALY_BAD_SIDE, OpDecoder, iter_op_batches
from efsdk.itch.records import (
    ANOMALY_TRUNCATED_TAIL,
    RECORD,
    DecodeStats,
    decode_records_py,
)
from tests.itch_frames import TYPES, bad_length_frame, frame, unknown_type_frame

native = pytest.importorskip("efsdk._native_itch")
lib, ffi = native.lib, native.ffi

SYMBOLS = [b"AAPL    ", b"MSFT    ", b"ZVZZT   ", b"QQQ     "]
N_LOCATES = 6  # few locates: filters, subscriptions and books interact often
_A, _F, _D, _E, _C, _X, _U = (ord(c) for c in "AFDECXU")
SEQ_LOW = 0xFFFFFFFF
GZIP_MAGIC = b"\x1f\x8b"


# ------------------------------------------------------------------ generators



def _field(name: str, code: str, bad_side: bool) -> st.SearchStrategy:
    if name == "stock_locate":
        return st.integers(0, N_LOCATES - 1)
    if name == "stock":
        return st.sampled_from(SYMBOLS) | st.binary(min_size=8, max_size=8)
    if name == "side":
        sides = st.sampled_from([b"B", b"S"])
        # Mostly B/S; sometimes any other byte (an add the book must not apply).
        return sides | st.binary(min_size=1, max_size=1) if bad_side else sides
    if name == "shares" and code == "I":
        return st.integers(0, 3) | st.integers(0, (1 << 32) - 1)
    if code == "c":
        return st.binary(min_size=1, max_size=1)
    if code.endswith("s"):
        n = int(code[:-1])
        return st.binary(min_size=n, max_size=n)
    bits = {"H": 16, "I": 32, "Q": 64}[code]
    return st.integers(0, (1 << bits) - 1)


def _message(t: bytes, bad_side: bool = True) -> st.SearchStrategy[bytes]:
    layout = LAYOUTS[t]
    parts = [st.just(t)] + [_field(n, c, bad_side) for n, c in layout.fields[1:]]
    return st.tuples(*parts).map(lambda v: layout.struct.pack(*v))


valid_frame = st.sampled_from(TYPES).flatmap(_message).map(frame)
# Book-changing types and directory messages more often than 1 in 23.
book_frame = st.sampled_from([b"A", b"F", b"U", b"D", b"E", b"C", b"X"]).flatmap(_message).map(frame)
directory_frame = _message(b"R").map(frame)
replace_frame = _message(b"U").map(frame)




any_frame = st.one_of(
    valid_frame,
    valid_frame,
    book_frame,
    book_frame,
    book_frame,
    directory_frame,
    bad_length_frame(),
    unknown_type_frame(),
    st.just(b"\x00\x00"),  # empty frame
    st.binary(min_size=1, max_size=12),  # garbage: desynchronises the framing
)
messy_stream = st.lists(any_frame, max_size=50).map(b"".join)
# Replace-heavy: most records are the two-record U, the capacity edge case.
replace_stream = st.lists(
    st.one_of(replace_frame, replace_frame, replace_frame, book_frame, valid_frame), max_size=40
).map(b"".join)
locate_sets = st.none() | st.sets(st.integers(0, N_LOCATES - 1), max_size=3)
_symbol_names = st.sampled_from([s.decode().strip() for s in SYMBOLS])
symbol_sets = st.none() | st.lists(_symbol_names, max_size=3)
first_seqs = st.sampled_from([1, 2, SEQ_LOW - 3, SEQ_LOW + 1, (7 << 40) + 5]) | st.integers(1, 1 << 62)


# ------------------------------------------------------------------ the derivation


def py_filter(locates, symbols) -> bytearray | None:
    if locates is None and symbols is None:
        return None
    f = bytearray(65536)
    for loc in locates or ():
        f[loc] = 1
    return f


def frame_index(buf: bytes, end: int) -> dict[int, int]:
    """Start offset (of the length prefix) -> 0-based position of every frame in ``buf[:end]``."""
    index: dict[int, int] = {}
    pos = 0
    while pos < end:
        index[pos] = len(index)
        pos += 2 + int.from_bytes(buf[pos : pos + 2], "big")
    assert pos == end, "the reference consumed a partial frame"
    return index


def expected_ops(buf: bytes, locates=None, symbols=None, first_seq: int = 1):
    """The op words book/ops.py's table gives for ``buf``, derived from the reference records.

    Returns ``(words, consumed, next_seq, reference stats, locate filter left behind)``.
    """
    filt = py_filter(locates, symbols)
    stats = DecodeStats()
    raw, consumed = decode_records_py(buf, filt, symbols, stats=stats)
    index = frame_index(buf, consumed)
    words: list[int] = []
    for t, side, loc, shares, price, off, ref, ref2 in RECORD.iter_unpack(raw):
        if t == 0:  # framing anomaly: offset of its length prefix, kind, declared length
            words += [OP_ANOMALY, off, side, shares]
            continue
        seq = first_seq + index[off - 2]  # 1-based position among all frames
        packed = ((seq & SEQ_LOW) << 32) | shares
        if t in (_A, _F):
            if side == ord("B") or side == ord("S"):
                words += [ADD_BASE + 2 * loc + (side == ord("S")), ref, price, packed]
            else:  # frame offset, kind 5, side byte << 16 | declared length; counted in stats
                words += [OP_ANOMALY, off - 2, ANOMALY_BAD_SIDE, side << 16 | SIZE_BY_TYPE[t]]
                stats.bad_side += 1
        elif t == _D:
            words += [OP_DELETE, ref, 0, off]
        elif t == _E:
            words += [OP_EXECUTE, ref, shares, off]
        elif t == _C:
            words += [OP_EXECUTE_PRICE, ref, shares, off]
        elif t == _X:
            words += [OP_CANCEL, ref, shares, off]
        elif t == _U:
            words += [OP_REPLACE_OUT, ref, ref2, off, OP_REPLACE_IN, ref2, price, packed]
        else:
            words += [OP_MESSAGE, off, loc, t]
    return words, consumed, first_seq + len(index), stats, filt


def absolute(words: list[int], base: int) -> list[int]:
    """Make the buffer-relative offsets of a batch absolute (which word holds one depends on the op)."""
    out = list(words)
    for i in range(0, len(out), 4):
        op = out[i]
        if op in (OP_MESSAGE, OP_ANOMALY):
            out[i + 1] += base
        elif op in (OP_DELETE, OP_EXECUTE, OP_EXECUTE_PRICE, OP_CANCEL, OP_REPLACE_OUT):
            out[i + 3] += base
    return out


def decode_all(dec: OpDecoder, buf: bytes) -> tuple[list[list[int]], int]:
    """Call ``decode`` until it makes no progress; per-call absolute words and bytes consumed."""
    calls: list[list[int]] = []
    pos = 0
    while True:
        ops, used = dec.decode(memoryview(buf)[pos:])
        if ops:
            calls.append(absolute(ops.cast("Q").tolist(), pos))
        pos += used
        if not used:
            return calls, pos


def records(words: list[int]) -> list[tuple[int, ...]]:
    return [tuple(words[i : i + 4]) for i in range(0, len(words), 4)]


def assert_calls_keep_replaces_whole(calls: list[list[int]], capacity: int) -> None:
    for words in calls:
        ops = words[0::4]
        assert 1 <= len(ops) <= capacity
        assert ops[-1] != OP_REPLACE_OUT, "a REPLACE_OUT was split from its REPLACE_IN"
        assert ops[0] != OP_REPLACE_IN
        for i, op in enumerate(ops):
            if op == OP_REPLACE_OUT:
                assert ops[i + 1] == OP_REPLACE_IN and words[4 * i + 2] == words[4 * i + 5]


def flat(calls: list[list[int]]) -> list[int]:
    return [w for c in calls for w in c]


# ------------------------------------------------------------------ the contract


def test_op_codes_equal_the_native_ones():
    """book.ops is the contract; the compiled module must carry the same numbers."""
    native_codes = {
        "OP_ANOMALY": lib.EFSDK_OP_ANOMALY,
        "OP_DELETE": lib.EFSDK_OP_DELETE,
        "OP_EXECUTE": lib.EFSDK_OP_EXECUTE,
        "OP_EXECUTE_PRICE": lib.EFSDK_OP_EXECUTE_PRICE,
        "OP_CANCEL": lib.EFSDK_OP_CANCEL,
        "OP_REPLACE_OUT": lib.EFSDK_OP_REPLACE_OUT,
        "OP_REPLACE_IN": lib.EFSDK_OP_REPLACE_IN,
        "OP_MESSAGE": lib.EFSDK_OP_MESSAGE,
        "ADD_BASE": lib.EFSDK_OP_ADD_BASE,
    }
    assert native_codes == {name: getattr(book_ops, name) for name in native_codes}
    assert lib.efsdk_book_ops_version() == book_ops.OPS_VERSION
    assert lib.EFSDK_ITCH_ANOMALY_BAD_SIDE == ANOMALY_BAD_SIDE == 5
    # Every op word is distinct and no single op collides with the add range.
    singles = [v for k, v in native_codes.items() if k != "ADD_BASE"]
    assert len(set(singles)) == len(singles) and max(singles) < lib.EFSDK_OP_ADD_BASE
    # (book/ops.py's comment says 16 + 2*65535 + 1 < 2**17: it is 131087, not below 131072;
    # harmless, nothing relies on it.)
    assert book_ops.add_op(65535, True) == ADD_BASE + 2 * 65535 + 1


@pytest.mark.parametrize("name", ["OP_DELETE", "ADD_BASE", "OPS_VERSION", "OP_REPLACE_IN"])
def test_contract_check_refuses_a_mismatch(monkeypatch, name):
    """The import-time check fires when a constant drifts (simulates a stale build)."""
    itch_ops._check_ops_contract()  # matches now
    monkeypatch.setattr(book_ops, name, getattr(book_ops, name) + 100)
    with pytest.raises(NativeError, match=rf"{name}.*pip install -e \."):
        itch_ops._check_ops_contract()


def test_capacity_below_two_is_refused():
    with pytest.raises(ValueError, match="capacity"):
        OpDecoder(capacity=1)
    # The C entry point refuses it too, rather than splitting a replace.
    ops = ffi.new("uint64_t[]", 8)  # room for 2 records
    consumed = ffi.new("size_t *")
    seq = ffi.new("uint64_t *", 1)
    buf = frame(LAYOUTS[b"U"].struct.pack(b"U", 1, 0, 0, 0, 1, 2, 3, 4))
    rc = lib.efsdk_itch_decode_ops(buf, len(buf), consumed, ops, 1, ffi.NULL, ffi.NULL, 0, seq, ffi.NULL, ffi.NULL, ffi.NULL)
    assert rc == -errno.EINVAL
    rc = lib.efsdk_itch_decode_ops(buf, len(buf), consumed, ops, 2, ffi.NULL, ffi.NULL, 0, seq, ffi.NULL, ffi.NULL, ffi.NULL)
    assert rc == 2 and consumed[0] == len(buf) and seq[0] == 2


# ------------------------------------------------------------------ hand-built


def _pack(t: bytes, locate: int = 1, **kw) -> bytes:
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
            vals.append(b"AAPL".ljust(int(code[:-1])))
        else:
            vals.append(len(vals) * 1000 + 7)
    return frame(layout.struct.pack(*vals))


def test_every_record_kind_by_hand():
    """One of each op shape with the numbers written out (not derived)."""
    stream = (
        _pack(b"A", 3, order_reference_number=11, side=b"S", shares=100, price=5000)  # frame 1 @0
        + _pack(b"F", 2, order_reference_number=12, side=b"B", shares=7, price=4000)  # frame 2 @38
        + _pack(b"D", 3, order_reference_number=11)  # frame 3 @80
        + b"\x00\x00"  # frame 4 @101: empty
        + _pack(b"U", 2, original_order_reference_number=12, new_order_reference_number=13,
                shares=9, price=4100)  # @103
        + _pack(b"E", 2, order_reference_number=13, executed_shares=2)  # @140
        + _pack(b"C", 2, order_reference_number=13, executed_shares=1)  # @173
        + _pack(b"X", 2, order_reference_number=13, cancelled_shares=3)  # @211
        + _pack(b"A", 2, order_reference_number=14, side=b"Q")  # @236: bad side
        + frame(b"Z" + bytes(4))  # @274: unknown type
        + frame(b"D" + bytes(3))  # @281: bad length
        + _pack(b"S", 0)  # @287
    )
    dec = OpDecoder(first_seq=1)
    ops, used = dec.decode(stream)
    assert used == len(stream)
    assert records(ops.cast("Q").tolist()) == [
        (ADD_BASE + 2 * 3 + 1, 11, 5000, (1 << 32) | 100),
        (ADD_BASE + 2 * 2, 12, 4000, (2 << 32) | 7),
        (OP_DELETE, 11, 0, 82),
        (OP_ANOMALY, 101, 3, 0),
        (OP_REPLACE_OUT, 12, 13, 105),
        (OP_REPLACE_IN, 13, 4100, (5 << 32) | 9),
        (OP_EXECUTE, 13, 2, 142),
        (OP_EXECUTE_PRICE, 13, 1, 175),
        (OP_CANCEL, 13, 3, 213),
        (OP_ANOMALY, 236, ANOMALY_BAD_SIDE, ord("Q") << 16 | 36),
        (OP_ANOMALY, 274, 1, 5),
        (OP_ANOMALY, 281, 2, 4),
        (OP_MESSAGE, 289, 0, ord("S")),
    ]
    assert dec.seq == 13
    # ...and the independent derivation agrees with the hand-written numbers.
    assert expected_ops(stream)[0] == ops.cast("Q").tolist()


def test_seq_counts_filtered_frames():
    """An order's arrival sequence is its message's feed position whatever the subscription."""
    stream = b"".join(
        _pack(b"A", loc, order_reference_number=ref, side=b"B", shares=1, price=1)
        for ref, loc in enumerate([1, 2, 2, 1, 3, 1], start=1)
    )
    dec = OpDecoder(locates=[1])
    ops, used = dec.decode(stream)
    words = ops.cast("Q").tolist()
    assert [(w >> 32, w & SEQ_LOW) for w in words[3::4]] == [(1, 1), (4, 1), (6, 1)]
    assert dec.seq == 7 and used == len(stream)


# ------------------------------------------------------------------ C vs derivation


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=messy_stream,
    tail=st.binary(max_size=5),
    locates=locate_sets,
    symbols=symbol_sets,
    capacity=st.sampled_from([2, 3, 4, 7, 65536]),
    first_seq=first_seqs,
)
def test_ops_match_independent_derivation(stream, tail, locates, symbols, capacity, first_seq):
    buf = stream + tail
    want, want_used, want_seq, want_stats, want_filter = expected_ops(buf, locates, symbols, first_seq)

    dec = OpDecoder(capacity=capacity, locates=locates, symbols=symbols, first_seq=first_seq)
    calls, used = decode_all(dec, buf)
    assert flat(calls) == want
    assert used == want_used
    assert dec.seq == want_seq
    assert dec.stats == want_stats
    assert dec.locate_filter == (None if want_filter is None else bytes(want_filter))
    assert_calls_keep_replaces_whole(calls, capacity)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=replace_stream,
    locates=locate_sets,
    capacity=st.sampled_from([2, 3]),
    first_seq=first_seqs,
)
def test_tiny_capacity_keeps_replaces_together(stream, locates, capacity, first_seq):
    """With room for 2 or 3 records a U's pair never splits and resuming loses nothing."""
    want, want_used, want_seq, _, _ = expected_ops(stream, locates, None, first_seq)
    dec = OpDecoder(capacity=capacity, locates=locates, first_seq=first_seq)
    calls, used = decode_all(dec, stream)
    assert flat(calls) == want
    assert (used, dec.seq) == (want_used, want_seq)
    assert_calls_keep_replaces_whole(calls, capacity)


@pytest.mark.parametrize("capacity", [2, 3])
def test_capacity_edge_all_replaces(capacity):
    """Only U messages: one replace (two records) per call, consumed one frame at a time."""
    n = 50
    stream = b"".join(
        _pack(b"U", 1 + i % 3, original_order_reference_number=i, new_order_reference_number=i + 1000,
              shares=i + 1, price=100 * i)
        for i in range(n)
    )  # fmt: skip
    dec = OpDecoder(capacity=capacity)
    pos = 0
    got = []
    for i in range(n):
        ops, used = dec.decode(memoryview(stream)[pos:])
        words = ops.cast("Q").tolist()
        assert used == 37 and len(words) == 8, f"call {i}"
        assert words[0::4] == [OP_REPLACE_OUT, OP_REPLACE_IN]
        assert words[7] == ((i + 1) << 32) | (i + 1)
        got += absolute(words, pos)
        pos += used
    assert dec.decode(memoryview(stream)[pos:])[1] == 0
    assert got == expected_ops(stream)[0]


# ------------------------------------------------------------------ file reader


def expected_file_ops(buf: bytes, locates=None, symbols=None) -> tuple[list[int], int]:
    """Whole-file expectation: the derivation plus the synthesised truncated-tail record."""
    words, used, next_seq, _, _ = expected_ops(buf, locates, symbols)
    tail = buf[used:]
    if tail:
        declared = int.from_bytes(tail[:2], "big") if len(tail) >= 2 else 0
        words += [OP_ANOMALY, used, ANOMALY_TRUNCATED_TAIL, declared]
    return words, next_seq


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    stream=messy_stream,
    tail=st.binary(max_size=5),
    locates=locate_sets,
    symbols=symbol_sets,
    chunk_size=st.sampled_from([1, 2, 3, 5, 37, 100, 4096]),
    capacity=st.sampled_from([2, 3, 65536]),
)
def test_iter_op_batches_seq_continuity_across_chunks(
    tmp_path, stream, tail, locates, symbols, chunk_size, capacity
):
    buf = stream + tail
    # A file is opened as gzip when it starts with the gzip magic (detection by
    # content); a plain stream starting 1f 8b is a corrupt gzip file then.
    assume(not buf.startswith(GZIP_MAGIC))
    path = tmp_path / "feed.itch"
    path.write_bytes(buf)
    want, want_seq = expected_file_ops(buf, locates, symbols)

    dec = OpDecoder(capacity=capacity, locates=locates, symbols=symbols)
    got: list[int] = []
    with iter_op_batches(path, dec, chunk_size) as batches:
        for ops, chunk, file_offset in batches:
            words = ops.cast("Q").tolist()
            assert len(words) <= 4 * capacity
            assert not words or words[-4] != OP_REPLACE_OUT
            got += absolute(words, file_offset)
        stats = batches.stats
    assert got == want
    assert dec.seq == want_seq
    assert stats.bytes_read == len(buf)
    # Framing anomalies and the tail are in the reader's stats with absolute offsets.
    framing = [(w[1], w[2]) for w in records(want) if w[0] == OP_ANOMALY and w[2] != ANOMALY_BAD_SIDE]
    assert [(a.offset, a.kind) for a in stats.anomalies if a.kind != ANOMALY_BAD_SIDE] == framing


def test_iter_op_batches_gzip_equals_plain(tmp_path):
    import gzip
    import random

    rng = random.Random(5)
    stream = b"".join(
        _pack(b"A", rng.randint(1, 4), order_reference_number=i, side=rng.choice([b"B", b"S"]),
              shares=rng.randint(1, 999), price=rng.randint(1, 10**6))
        if i % 3 else _pack(b"U", 1, original_order_reference_number=i + 1, new_order_reference_number=i + 10**6)
        for i in range(3000)
    )  # fmt: skip
    plain = tmp_path / "p.itch"
    plain.write_bytes(stream)
    gz = tmp_path / "p.itch.gz"
    gz.write_bytes(gzip.compress(stream, mtime=0))
    results = []
    for path in (plain, gz):
        dec = OpDecoder(capacity=100)
        words: list[int] = []
        with iter_op_batches(path, dec, chunk_size=1000) as batches:
            for ops, _, off in batches:
                words += absolute(ops.cast("Q").tolist(), off)
        results.append((words, dec.seq))
    assert results[0] == results[1] == (expected_ops(stream)[0], 3001)


def test_iter_op_batches_reports_bad_side_in_stats(tmp_path):
    stream = (
        _pack(b"A", 1, order_reference_number=1)
        + _pack(b"A", 1, order_reference_number=2, side=b"X")
        + _pack(b"A", 1, order_reference_number=3)
    )
    path = tmp_path / "bad_side.itch"
    path.write_bytes(stream)
    with iter_op_batches(path, OpDecoder()) as batches:
        for _ in batches:
            pass
        anomalies = batches.stats.anomalies
    assert [(a.kind, a.offset) for a in anomalies] == [(ANOMALY_BAD_SIDE, 38)]


def test_message_types_drop_unwanted_rare_messages_in_c():
    """Only the chosen non-book types become OP_MESSAGE; the rest are counted as filtered."""
    stream = (
        _pack(b"S", 0, event_code=b"O")
        + _pack(b"A", 1, order_reference_number=1)
        + _pack(b"I", 1)
        + _pack(b"N", 1)
        + _pack(b"P", 1)
        + _pack(b"D", 1, order_reference_number=1)
    )
    everything = OpDecoder()
    ops_all, _ = everything.decode(stream)
    kinds_all = [w for w in ops_all.cast("Q").tolist()[::4]]
    assert kinds_all.count(OP_MESSAGE) == 4  # S I N P
    some = OpDecoder(message_types="SP")
    ops, used = some.decode(stream)
    words = ops.cast("Q").tolist()
    messages = [words[i + 3] for i in range(0, len(words), 4) if words[i] == OP_MESSAGE]
    assert messages == [ord("S"), ord("P")]
    assert used == len(stream) and some.seq == 7  # dropped ones still take their sequence number
    stats = some.stats
    assert stats.filtered == 2 and stats.by_type["I"] == 1 and stats.by_type["N"] == 1
    # the book ops are untouched
    assert [w for w in words[::4] if w != OP_MESSAGE] == [w for w in kinds_all if w != OP_MESSAGE]
    with pytest.raises(ValueError, match="single ITCH type characters"):
        OpDecoder(message_types=["AB"])


# ------------------------------------------------------------------ touched books


def expected_touched(buf: bytes, start: int, end: int, locates=None, symbols=None) -> list[int]:
    """Locates of the reference's book-changing records in ``buf[start:end)``, first-touch order."""
    raw, _ = decode_records_py(buf, py_filter(locates, symbols), symbols, stats=DecodeStats())
    touched: dict[int, None] = {}
    for t, side, loc, _shares, _price, off, _ref, _ref2 in RECORD.iter_unpack(raw):
        if not start <= off < end:
            continue
        if t in (_A, _F) and side not in (ord("B"), ord("S")):
            continue  # a bad-side add is an anomaly: it changes no book
        if t in (_A, _F, _D, _E, _C, _X, _U):
            touched[loc] = None
    return list(touched)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=messy_stream, locates=locate_sets, symbols=symbol_sets, capacity=st.sampled_from([2, 3, 7, 65536]))
def test_touched_books_are_the_locates_of_book_records(stream, locates, symbols, capacity):
    dec = OpDecoder(capacity=capacity, locates=locates, symbols=symbols)
    assert not dec.tracking_touched and dec.take_touched() == []
    dec.track_touched()
    pos = 0
    while True:
        ops, used = dec.decode(memoryview(stream)[pos:])
        # each call lists exactly what it decoded (the symbol filter learns locates as it goes,
        # so the reference runs on the whole prefix with the same filter arguments)
        assert dec.take_touched() == expected_touched(stream, pos, pos + used, locates, symbols)
        assert dec.take_touched() == []
        pos += used
        if not used:
            break
    dec.track_touched(False)
    dec.decode(stream)
    assert not dec.tracking_touched and dec.take_touched() == []
