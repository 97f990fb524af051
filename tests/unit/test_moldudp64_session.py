"""MoldUDP64 session layer, pure logic: sequencing, gaps, re-request policy, A/B.

Packets are built by hand with the codec; time is passed explicitly, so every
retry/timeout case is exact and instant.  Also the socket-free parts of the
publisher (history, impairment) and the request server (``handle``).
"""

from __future__ import annotations

import logging
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from efsdk.moldudp64.codec import (
    encode_session,
    pack_end_of_session,
    pack_heartbeat,
    pack_packet,
    pack_request,
    packetize,
    unpack_packet,
)
from efsdk.moldudp64.publisher import Impairment, MessageHistory
from efsdk.moldudp64.request_server import MoldRequestServer
from efsdk.moldudp64.session import MoldSession, Request, RetryPolicy

S = "SESSION01"
POLICY = RetryPolicy(request_delay=0.01, timeout=0.1, max_attempts=3, max_in_flight=2, max_request_count=50)


def make_messages(n: int, start: int = 1) -> list[bytes]:
    """Distinct messages of varied length; message i (1-based) says its own number."""
    return [b"m%d:" % i + b"x" * (i % 5) for i in range(start, start + n)]


def chunk(messages: list[bytes], per: int, first: int = 1, session: str = S) -> list[bytes]:
    """Packets of ``per`` messages each, numbered from ``first``."""
    return [pack_packet(session, first + i, messages[i : i + per]) for i in range(0, len(messages), per)]


def split_payload(payload: memoryview) -> list[bytes]:
    out, off = [], 0
    while off < len(payload):
        (n,) = struct.unpack_from(">H", payload, off)
        out.append(bytes(payload[off + 2 : off + 2 + n]))
        off += 2 + n
    return out


class Sink:
    """Consumer: checks batches are contiguous, keeps the messages and losses."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.next: int | None = None
        self.lost: list[tuple[int, int]] = []
        self.ends: list[int] = []
        self.changes: list[tuple[bytes, bytes]] = []

    def on_payload(self, first: int, count: int, payload: memoryview) -> None:
        assert self.next is None or first == self.next, (first, self.next)
        blocks = split_payload(payload)
        assert len(blocks) == count
        self.messages.extend(blocks)
        self.next = first + count

    def on_lost(self, first: int, count: int) -> None:
        assert self.next is None or first == self.next
        self.lost.append((first, count))
        self.messages.extend([b"<lost>"] * count)
        self.next = first + count

    def on_session_change(self, old: bytes, new: bytes) -> None:
        self.changes.append((old, new))
        self.next = None  # the new session numbers from 1 again

    def session(self, **kw) -> MoldSession:
        kw.setdefault("retry", POLICY)
        return MoldSession(
            self.on_payload,
            on_lost=self.on_lost,
            on_end_of_session=self.ends.append,
            on_session_change=self.on_session_change,
            **kw,
        )


def test_in_order_delivers_each_packet_once() -> None:
    msgs = make_messages(20)
    sink = Sink()
    sess = sink.session()
    for p in chunk(msgs, 4):
        sess.feed(p, 0.0)
    assert sink.messages == msgs
    s = sess.stats
    assert (s.data_packets, s.messages_delivered, s.duplicate_messages, s.gaps_detected) == (5, 20, 0, 0)
    assert s.delivered_by_line == {"A": 20}
    assert sess.expected == 21 and sess.session == encode_session(S)
    assert sess.poll(10.0) == []


def test_payload_is_zero_copy_slice_and_blocks_mode_matches() -> None:
    msgs = make_messages(9)
    got_blocks: list[bytes] = []
    payloads: list[memoryview] = []
    sess = MoldSession(lambda f, c, p: payloads.append(p), on_messages=lambda f, b: got_blocks.extend(map(bytes, b)))
    pkts = chunk(msgs, 3)
    for p in pkts:
        sess.feed(memoryview(p), 0.0)
    assert got_blocks == msgs
    assert [bytes(p) for p in payloads] == [p[20:] for p in pkts]


def test_duplicates_are_dropped_and_counted() -> None:
    msgs = make_messages(12)
    sink = Sink()
    sess = sink.session()
    for p in chunk(msgs, 3):
        sess.feed(p, 0.0, "A")
        sess.feed(p, 0.0, "B")
    assert sink.messages == msgs
    assert sess.stats.duplicate_packets == 4
    assert sess.stats.duplicate_messages == 12
    assert sess.stats.duplicates_by_line == {"B": 12}


def test_partial_overlap_delivers_only_the_new_tail() -> None:
    msgs = make_messages(10)
    sink = Sink()
    sess = sink.session()
    sess.feed(pack_packet(S, 1, msgs[:4]), 0.0)
    sess.feed(pack_packet(S, 3, msgs[2:8]), 0.0, "B")  # 3..8, of which 3..4 are old
    sess.feed(pack_packet(S, 8, msgs[7:]), 0.0)
    assert sink.messages == msgs
    assert sess.stats.duplicate_messages == 3


def test_reorder_is_buffered_then_released_in_order() -> None:
    msgs = make_messages(12)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session()
    for i in (0, 2, 3, 1):
        sess.feed(p[i], 0.0)
    assert sink.messages == msgs
    s = sess.stats
    assert (s.gaps_detected, s.gap_messages, s.gaps_recovered, s.recovered_messages) == (1, 3, 1, 3)
    assert s.buffered_packets == 2 and sess.buffered == 0 and sess.gaps == []


def test_gap_is_rerequested_after_the_delay_and_recovered_on_the_r_line() -> None:
    msgs = make_messages(12)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session()
    sess.feed(p[0], 0.0)
    sess.feed(p[2], 0.0)
    sess.feed(p[3], 0.0)
    assert sess.gaps == [(4, 3)] and sess.missing_ranges() == [(4, 3)]
    assert sess.poll(0.005) == []  # still inside request_delay: the other line may fill it
    assert sess.poll(0.02) == [Request(4, 3)]
    assert sess.poll(0.05) == []  # in flight
    sess.feed(pack_packet(S, 4, msgs[3:6]), 0.06, "R")
    assert sink.messages == msgs
    assert sess.stats.recovered_by_line == {"R": 3}
    assert sess.stats.rerequests == 1 and sess.poll(1.0) == []


def test_heartbeat_reveals_a_gap_in_a_quiet_period() -> None:
    msgs = make_messages(6)
    sink = Sink()
    sess = sink.session()
    sess.feed(pack_packet(S, 1, msgs[:3]), 0.0)
    sess.feed(pack_heartbeat(S, 4), 0.5)  # nothing missing
    assert sess.gaps == [] and sess.stats.heartbeats == 1
    sess.feed(pack_heartbeat(S, 7), 1.0)  # 4..6 were sent and never seen
    assert sess.gaps == [(4, 3)]
    assert sess.poll(1.02) == [Request(4, 3)]
    sess.feed(pack_packet(S, 4, msgs[3:]), 1.03, "R")
    assert sink.messages == msgs and sess.gaps == []


def test_retries_then_declared_lost_loudly_then_buffered_data_flows(caplog) -> None:
    msgs = make_messages(15)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session()
    for i in (0, 2, 4):  # 4..6 and 10..12 missing
        sess.feed(p[i], 0.0)
    assert sess.missing_ranges() == [(4, 3), (10, 3)]
    sent = []
    t = 0.02
    with caplog.at_level(logging.ERROR, logger="efsdk.moldudp64.session"):
        while t < 2.0 and sess.gaps:
            sent += sess.poll(t)
            t += 0.01
    # 3 attempts per gap, none answered; both declared lost, in order.
    assert sent.count(Request(4, 3)) == 3 and sent.count(Request(10, 3)) == 3
    assert sess.stats.rerequest_retries == 4
    assert sink.lost == [(4, 3), (10, 3)]
    assert sink.messages == msgs[:3] + [b"<lost>"] * 3 + msgs[6:9] + [b"<lost>"] * 3 + msgs[12:]
    s = sess.stats
    assert (s.gaps_lost, s.lost_messages, s.gaps_recovered) == (2, 6, 0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # once per gap, with its range
    assert "LOST" in errors[0].getMessage() and "4-6" in errors[0].getMessage()
    assert "10-12" in errors[1].getMessage()
    # A late answer for a lost range is just a duplicate now.
    sess.feed(p[1], 3.0, "R")
    assert sess.stats.duplicate_messages == 3 and sink.lost == [(4, 3), (10, 3)]


def test_progress_resets_attempts_and_answered_request_is_followed_at_once() -> None:
    msgs = make_messages(200)
    sink = Sink()
    sess = sink.session()
    sess.feed(pack_packet(S, 1, msgs[:1]), 0.0)
    sess.feed(pack_packet(S, 200, msgs[199:]), 0.0)  # 2..199 missing: 198 > max_request_count 50
    t = 0.02
    first = sess.poll(t)
    assert first == [Request(2, 50)]
    # The server answers in pieces; each answer lets the next request go out at once.
    nxt = 2
    while sess.gaps:
        for req in sess.poll(t):
            assert req.first == nxt
            got = min(req.count, 20)  # the server answers fewer than asked
            sess.feed(pack_packet(S, req.first, msgs[req.first - 1 : req.first - 1 + got]), t, "R")
            nxt += got
        t += 0.2  # always past the timeout: progress must keep the gap alive
    assert sink.messages == msgs and sess.stats.gaps_lost == 0


def test_max_in_flight_bounds_outstanding_requests() -> None:
    msgs = make_messages(30)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session()
    for i in range(0, 10, 2):  # gaps at packets 1, 3, 5, 7
        sess.feed(p[i], 0.0)
    assert len(sess.gaps) == 4
    assert sess.poll(0.02) == [Request(4, 3), Request(10, 3)]  # max_in_flight = 2
    assert sess.poll(0.05) == []
    sess.feed(p[1], 0.06, "R")
    assert sess.poll(0.07) == [Request(16, 3)]


def test_no_request_channel_gap_lost_after_the_policy_time() -> None:
    msgs = make_messages(6)
    sink = Sink()
    sess = sink.session(rerequest=False)
    sess.feed(pack_packet(S, 1, msgs[:3]), 0.0)
    sess.feed(pack_heartbeat(S, 7), 0.0)
    limit = POLICY.request_delay + POLICY.max_attempts * POLICY.timeout
    t = 0.0
    while t < limit - 0.001:
        assert sess.poll(t) == []
        t += 0.005
    assert sink.lost == []
    for _ in range(5):
        sess.poll(t)
        t += 0.005
    assert sink.lost == [(4, 3)] and sess.stats.rerequests == 0


def test_end_of_session_completes_once_everything_is_in() -> None:
    msgs = make_messages(9)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session()
    sess.feed(p[0], 0.0)
    sess.feed(p[2], 0.0)
    sess.feed(pack_end_of_session(S, 10), 0.0)
    assert sess.ended and not sess.complete and sink.ends == []
    sess.feed(pack_end_of_session(S, 10), 0.1, "B")
    sess.feed(p[1], 0.1, "R")
    assert sess.complete and sink.ends == [10]
    sess.feed(pack_end_of_session(S, 10), 0.2)
    assert sink.ends == [10] and sess.stats.end_of_session_packets == 3


def test_end_of_session_reveals_a_trailing_gap() -> None:
    msgs = make_messages(6)
    sink = Sink()
    sess = sink.session()
    sess.feed(pack_packet(S, 1, msgs[:3]), 0.0)
    sess.feed(pack_end_of_session(S, 7), 0.0)
    assert sess.gaps == [(4, 3)] and not sess.complete
    sess.feed(pack_packet(S, 4, msgs[3:]), 0.0, "R")
    assert sess.complete and sink.messages == msgs


def test_session_change_reset_flushes_loudly_and_follows_the_new_one(caplog) -> None:
    old = make_messages(9)
    new = [b"new%d" % i for i in range(1, 5)]
    p = chunk(old, 3)
    sink = Sink()
    sess = sink.session()
    sess.feed(p[0], 0.0)
    sess.feed(p[2], 0.0)  # 4..6 missing, 7..9 buffered
    with caplog.at_level(logging.WARNING):
        sess.feed(pack_packet("NEWSESS", 1, new[:2]), 1.0)
    assert sink.changes == [(encode_session(S), encode_session("NEWSESS"))]
    assert sink.lost == [(4, 3)]
    assert sink.messages[:9] == old[:3] + [b"<lost>"] * 3 + old[6:]
    # The new session counts from 1 again; a late packet of the old one is dropped.
    sess.feed(p[1], 1.1, "B")
    sess.feed(pack_packet("NEWSESS", 3, new[2:]), 1.2)
    assert sink.messages[9:] == new
    s = sess.stats
    assert (s.session_changes, s.stale_session_packets, s.gaps_lost) == (1, 1, 1)
    assert any("session changed" in r.getMessage() for r in caplog.records)


def test_session_change_policy_drop() -> None:
    msgs = make_messages(3)
    sink = Sink()
    sess = sink.session(session=S, session_change="drop")
    sess.feed(pack_packet("OTHER", 1, [b"zzz"]), 0.0)
    sess.feed(pack_packet(S, 1, msgs), 0.0)
    assert sink.messages == msgs
    assert sess.stats.foreign_session_packets == 1 and sess.stats.session_changes == 0


def test_buffer_overflow_is_counted_and_its_messages_stay_missing() -> None:
    msgs = make_messages(18)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session(max_buffered=2)
    sess.feed(p[0], 0.0)
    for i in (2, 3, 4, 5):  # room for 2: packets 4 and 5 overflow
        sess.feed(p[i], 0.0)
    assert sess.stats.buffer_overflows == 2 and sess.buffered == 2
    assert sess.missing_ranges() == [(4, 3), (13, 6)]
    sess.feed(p[1], 0.0, "R")
    assert sess.missing_ranges() == [(13, 6)]
    assert sess.poll(0.02) == [Request(13, 6)]
    sess.feed(pack_packet(S, 13, msgs[12:]), 0.03, "R")
    assert sink.messages == msgs and sess.stats.buffer_high_water == 2


def test_late_join_and_start_from_one() -> None:
    msgs = make_messages(9)
    p = chunk(msgs, 3)
    late = Sink()
    sess = late.session(start_sequence=None)
    sess.feed(p[1], 0.0)
    sess.feed(p[2], 0.0)
    assert late.messages == msgs[3:] and sess.gaps == []
    full = Sink()
    sess = full.session()  # start_sequence=1: 1..3 are owed
    sess.feed(p[1], 0.0)
    assert sess.gaps == [(1, 3)]


def test_malformed_packets_are_counted_never_raised(caplog) -> None:
    msgs = make_messages(3)
    good = pack_packet(S, 1, msgs)
    sink = Sink()
    sess = sink.session()
    with caplog.at_level(logging.WARNING):
        for bad in (b"", good[:10], good[:-1], good + b"x", pack_packet(S, 1, msgs[:2])[:20] + good[20:]):
            sess.feed(bad, 0.0)
    assert sess.stats.malformed_packets == 5
    assert sum("malformed" in r.getMessage() for r in caplog.records) == 1
    sess.feed(good, 0.0)
    assert sink.messages == msgs


# ------------------------------------------------------------------ A/B arbitration


def _ab_case(draw_msgs: int, per_a: int, per_b: int):
    msgs = make_messages(draw_msgs)
    a = [pkt for _, pkt in packetize(S, msgs, 1, 20 + per_a * 12)]
    b = [pkt for _, pkt in packetize(S, msgs, 1, 20 + per_b * 12)]
    return msgs, a, b


def _span(pkt: bytes) -> set[int]:
    header = unpack_packet(pkt)[0]
    return set(range(header.sequence, header.next_sequence))


@st.composite
def ab_interleavings(draw):
    """Two lines carrying the same messages (maybe packetized differently), each
    damaged independently (drops, duplicates, local reorder), merged in any
    order; every packet of at least one line survives at least once."""
    n = draw(st.integers(1, 60))
    per_a = draw(st.integers(1, 5))
    same = draw(st.booleans())
    per_b = per_a if same else draw(st.integers(1, 5))
    msgs, a, b = _ab_case(n, per_a, per_b)
    events = []
    # The line that keeps everything alternates per message range, not per line:
    # a drop on A is allowed only where B still has that message.
    keep_a = draw(st.lists(st.booleans(), min_size=len(a), max_size=len(a)))
    for i, pkt in enumerate(a):
        for _ in range(draw(st.integers(1 if keep_a[i] else 0, 2))):
            events.append(("A", pkt, i))
    covered = set()
    for k, pkt in zip(keep_a, a):
        if k:
            covered.update(_span(pkt))
    for j, pkt in enumerate(b):
        lo = 0 if _span(pkt) <= covered else 1  # B must carry what A dropped
        for _ in range(draw(st.integers(lo, 2))):
            events.append(("B", pkt, j))
    order = draw(st.permutations(events))
    return msgs, order


@settings(max_examples=300, deadline=None)
@given(ab_interleavings())
def test_any_ab_interleaving_yields_each_message_once_in_order(case) -> None:
    msgs, events = case
    sink = Sink()
    sess = sink.session(max_buffered=10_000)
    for line, pkt, _ in events:
        sess.feed(pkt, 0.0, line)
    assert sink.messages == msgs
    assert sess.gaps == [] and sess.buffered == 0 and sink.lost == []
    s = sess.stats
    assert s.messages_delivered == len(msgs)
    assert sum(s.delivered_by_line.values()) == len(msgs)
    # Every message copy received was either delivered once or dropped as a duplicate.
    received = sum(unpack_packet(pkt)[0].count for _, pkt, _ in events)
    assert s.duplicate_messages == received - len(msgs)


def test_ab_gap_on_one_line_filled_by_the_other_without_requests() -> None:
    msgs = make_messages(30)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session()
    # B lags two packets behind A: A's losses (packets 2, 3, 7) show as gaps
    # that B fills; B's own losses (5, 8) were already delivered by A.
    for i in range(len(p) + 2):
        if i < len(p) and i not in (2, 3, 7):
            sess.feed(p[i], i * 0.0001, "A")
        if i >= 2 and i - 2 not in (5, 8):
            sess.feed(p[i - 2], i * 0.0001 + 0.00005, "B")
    assert sink.messages == msgs
    assert sess.poll(1.0) == [] and sess.stats.rerequests == 0
    assert sess.stats.recovered_by_line == {"B": 9}


# ------------------------------------------------------------------ publisher history / request server


def test_history_ring_keeps_the_last_capacity_messages() -> None:
    h = MessageHistory(5, first_seq=1)
    assert h.extend([b"1", b"2", b"3"]) == 1
    assert h.get(2, 5) == (2, [b"2", b"3"])
    h.extend([b"4", b"5", b"6", b"7"])
    assert (h.first, h.next, len(h)) == (3, 8, 5)
    assert h.get(1, 4) == (3, [b"3", b"4"])
    assert h.get(8, 3) == (8, [])


def test_impairment_is_deterministic() -> None:
    a = Impairment(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.1, seed=5)
    b = Impairment(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.1, seed=5)
    da = [a.decide(i) for i in range(200)]
    assert da == [b.decide(i) for i in range(200)]
    assert {"drop", "duplicate", "reorder", None} == set(da)
    c = Impairment(drop={3}, duplicate={4}, reorder={5})
    assert [c.decide(i) for i in range(7)] == [None, None, None, "drop", "duplicate", "reorder", None]


def test_request_server_handle() -> None:
    h = MessageHistory(10)
    msgs = make_messages(25)
    h.extend(msgs)  # holds 16..25
    with MoldRequestServer(S, h, max_messages=4, max_payload=60) as server:
        pkts = server.handle(pack_request(S, 18, 3))
        got = [m for pkt in pkts for m in unpack_packet(pkt)[1]]
        assert got == msgs[17:20] and unpack_packet(pkts[0])[0].sequence == 18
        assert all(len(pkt) <= 60 for pkt in pkts)
        # More than the per-request bound: fewer messages than asked.
        got = [m for pkt in server.handle(pack_request(S, 16, 100)) for m in unpack_packet(pkt)[1]]
        assert got == msgs[15:19]
        # Partly older than the history: what is held is served, the rest counted.
        pkts = server.handle(pack_request(S, 14, 4))
        assert unpack_packet(pkts[0])[0].sequence == 16
        assert server.handle(pack_request(S, 1, 3)) == []
        assert server.handle(pack_request(S, 26, 3)) == []
        assert server.handle(pack_request("OTHER", 18, 1)) == []
        assert server.handle(b"short") == []
        assert server.handle(pack_heartbeat(S, 18)) == []
        s = server.stats
        assert (s.requests, s.answered, s.truncated, s.out_of_history, s.future, s.wrong_session, s.malformed) == (
            8,
            3,
            1,
            2,
            1,
            1,
            2,
        )


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0, 0.6),
    server_bound=st.integers(1, 40),
    max_buffered=st.integers(1, 64),
)
def test_random_loss_recovered_through_request_server_logic(n, seed, loss, server_bound, max_buffered) -> None:
    """One lossy, reordering line + the request server's handle(), in virtual time:
    whatever is lost, re-requests (answered in pieces, into a small buffer)
    bring every message exactly once, in order, and nothing is declared lost."""
    import random

    rng = random.Random(seed)
    msgs = make_messages(n)
    history = MessageHistory(1000)
    history.extend(msgs)
    server = MoldRequestServer(S, history, max_messages=server_bound, max_payload=200)
    try:
        pkts = [pkt for _, pkt in packetize(S, msgs, 1, 120)]
        arrivals = [p for p in pkts if rng.random() >= loss]
        for i in range(len(arrivals) - 1):  # local reordering
            if rng.random() < 0.2:
                arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
        sink = Sink()
        sess = sink.session(max_buffered=max_buffered)
        t = 0.0
        for p in arrivals:
            sess.feed(p, t)
        sess.feed(pack_end_of_session(S, n + 1), t)
        while not sess.complete and t < 100:
            t += 0.02
            for first, count in sess.poll(t):
                for answer in server.handle(pack_request(S, first, count)):
                    sess.feed(answer, t, "R")
        assert sess.complete
        assert sink.messages == msgs and sink.lost == []
        assert sess.stats.messages_delivered == n
    finally:
        server.close()


def test_full_buffer_evicts_the_farthest_packet_for_a_nearer_one() -> None:
    msgs = make_messages(15)
    p = chunk(msgs, 3)
    sink = Sink()
    sess = sink.session(max_buffered=2)
    sess.feed(p[0], 0.0)
    sess.feed(p[3], 0.0)  # 10..12
    sess.feed(p[4], 0.0)  # 13..15: buffer full, 4..9 missing
    sess.feed(p[2], 0.0)  # 7..9 is needed sooner: 13..15 is evicted and becomes missing
    assert sess.stats.buffer_overflows == 1
    assert sess.missing_ranges() == [(4, 3), (13, 3)]
    assert sess.poll(0.02) == [Request(4, 3)]  # buffer full: only the head gap is asked for
    sess.feed(p[1], 0.03, "R")
    assert sess.poll(0.04) == [Request(13, 3)]
    sess.feed(p[4], 0.05, "R")
    assert sink.messages == msgs and sess.gaps == []
