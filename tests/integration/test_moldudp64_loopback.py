"""MoldUDP64 end to end on loopback UDP: publisher -> session (+ request server) -> books.

Real sockets, 127.0.0.1 only, no privileges.  Loss, reordering and
duplication come from the publisher's seeded :class:`Impairment`, so every run
damages the same packets.  The books built by ``FeedHandler.process`` from the
recovered stream must equal the books of the lossless stream.  Every loop
has a deadline; each test takes well under two seconds.
"""

from __future__ import annotations

import logging
import random
import selectors
import socket
import struct
import threading
import time

import pytest

from efsdk.itch.generator import generate_session
from efsdk.moldudp64.codec import packetize
from efsdk.moldudp64.publisher import Impairment, MoldPublisher
from efsdk.moldudp64.request_server import MoldRequestServer
from efsdk.moldudp64.rerequest import MoldRerequester
from efsdk.moldudp64.session import MoldSession, RetryPolicy
from efsdk.pipeline import FeedHandler

LOOPBACK = "127.0.0.1"
SESSION = "LOOPBACK1"
CHUNK = 250  # messages per publish() call: packets go out in bursts, like a feed
DEADLINE = 10.0  # seconds: a receiver that has not finished by then fails the test
POLICY = RetryPolicy(request_delay=0.002, timeout=0.05, max_attempts=5, max_in_flight=8)


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return list(generate_session(6, 20_000, 11))


def book_states(fh: FeedHandler) -> dict[int, tuple]:
    return {b.locate: (b.snapshot(), b.trading_state, b.volume, b.last_price) for b in fh.builder.books()}


def framed(msgs: list[bytes]) -> bytes:
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


@pytest.fixture(scope="module")
def reference(messages) -> FeedHandler:
    fh = FeedHandler()
    buf = framed(messages)
    assert fh.process(buf) == len(buf)
    return fh


def open_line() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    except OSError:
        pass
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    return sock


class Consumer:
    """Feeds each in-sequence payload to a FeedHandler and keeps the raw bytes."""

    def __init__(self) -> None:
        self.fh = FeedHandler()
        self.parts: list[bytes] = []
        self.lost: list[tuple[int, int]] = []
        self.next = 1

    def on_payload(self, first: int, count: int, payload: memoryview) -> None:
        assert first == self.next
        self.next = first + count
        self.parts.append(bytes(payload))
        assert self.fh.process(payload) == len(payload)

    def on_lost(self, first: int, count: int) -> None:
        assert first == self.next
        self.next = first + count
        self.lost.append((first, count))


class Receiver(threading.Thread):
    """One thread: select over the line sockets (+ re-request socket), feed, poll."""

    def __init__(
        self, session: MoldSession, lines: dict[str, socket.socket], requester: MoldRerequester | None
    ) -> None:
        super().__init__(name="mold-receiver", daemon=True)
        self.session, self.lines, self.requester = session, lines, requester
        self.error: BaseException | None = None

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            for line, sock in self.lines.items():
                sel.register(sock, selectors.EVENT_READ, line)
            if self.requester is not None:
                sel.register(self.requester, selectors.EVENT_READ, None)
            session, feed = self.session, self.session.feed
            end = time.monotonic() + DEADLINE
            while not session.complete and time.monotonic() < end:
                for key, _ in sel.select(0.002):
                    now = time.monotonic()
                    if key.data is None:
                        self.requester.receive(now)  # type: ignore[union-attr]
                        continue
                    sock = key.fileobj
                    while True:
                        try:
                            data = sock.recv(65536)  # type: ignore[union-attr]
                        except BlockingIOError:
                            break
                        feed(data, now, key.data)
                now = time.monotonic()
                if self.requester is not None:
                    self.requester.poll(now)
                else:
                    session.poll(now)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc
        finally:
            sel.close()

    def finish(self) -> None:
        self.join(DEADLINE + 5)
        assert not self.is_alive(), "receiver did not stop"
        if self.error is not None:
            raise self.error
        assert self.session.complete, f"session incomplete: {self.session!r} {self.session.stats}"


def publish_all(publishers: list[MoldPublisher], msgs: list[bytes]) -> None:
    for i in range(0, len(msgs), CHUNK):
        for pub in publishers:
            pub.publish(msgs[i : i + CHUNK])
        time.sleep(0.0005)
    for pub in publishers:
        pub.end_session(repeat=3, interval=0.01)


def test_loss_reorder_duplicates_recovered_books_equal(messages, reference) -> None:
    consumer = Consumer()
    session = MoldSession(consumer.on_payload, on_lost=consumer.on_lost, retry=POLICY)
    line = open_line()
    impair = Impairment(drop_rate=0.05, duplicate_rate=0.03, reorder_rate=0.05, reorder_depth=2, seed=1234)
    with (
        line,
        MoldPublisher(SESSION, line.getsockname(), impairment=impair, pace=0.0002) as pub,
        MoldRequestServer(SESSION, pub.history, (LOOPBACK, 0)) as server,
        MoldRerequester(session, server.address) as requester,
    ):
        server.start()
        rx = Receiver(session, {"A": line}, requester)
        rx.start()
        publish_all([pub], messages)
        rx.finish()
    s = session.stats
    assert pub.stats.dropped > 10 and pub.stats.reordered > 10 and pub.stats.duplicated > 5
    assert consumer.lost == [] and s.gaps_lost == 0
    assert s.messages_delivered == len(messages)
    assert s.recovered_by_line.get("R", 0) >= pub.stats.dropped  # at least one message per dropped packet
    assert s.duplicate_messages > 0 and s.gaps_recovered > 0
    assert server.stats.messages_sent >= s.recovered_by_line["R"]
    assert b"".join(consumer.parts) == framed(messages)
    consumer.fh.refresh_stats()
    assert consumer.fh.stats.messages == len(messages)
    assert book_states(consumer.fh) == book_states(reference)


def test_unrecoverable_gap_is_reported_loudly_with_its_range(messages, caplog) -> None:
    msgs = messages[:3000]
    consumer = Consumer()
    session = MoldSession(consumer.on_payload, on_lost=consumer.on_lost, retry=POLICY)
    line = open_line()
    with (
        line,
        MoldPublisher(SESSION, line.getsockname(), impairment=Impairment(drop={1}), history=200) as pub,
        MoldRequestServer(SESSION, pub.history, (LOOPBACK, 0)) as server,
        MoldRerequester(session, server.address) as requester,
        caplog.at_level(logging.ERROR, logger="efsdk.moldudp64.session"),
    ):
        # The server only starts answering once its 200-message history has
        # moved far past the dropped packet: it cannot serve it any more.
        rx = Receiver(session, {"A": line}, requester)
        rx.start()
        publish_all([pub], msgs)
        server.start()
        rx.finish()
    # Which messages packet 1 carried: replay the publisher's packetizing.
    starts = [seq for i in range(0, len(msgs), CHUNK) for seq, _ in packetize(SESSION, msgs[i : i + CHUNK], i + 1)]
    first, end = starts[1], starts[2]
    assert consumer.lost == [(first, end - first)]
    s = session.stats
    assert (s.gaps_lost, s.lost_messages) == (1, end - first)
    assert s.messages_delivered == len(msgs) - (end - first)
    assert s.rerequests == POLICY.max_attempts
    assert server.stats.out_of_history >= 1 and server.stats.answered == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "LOST" in errors[0] and f"{first}-{end - 1}" in errors[0]
    # Everything around the hole arrived intact.
    assert b"".join(consumer.parts) == framed(msgs[: first - 1]) + framed(msgs[end - 1 :])


def test_ab_lines_with_independent_losses_complete_without_request_server(messages, reference) -> None:
    rng = random.Random(99)
    # Independent seeded losses, never the same packet on both lines.
    drop_a = frozenset(i for i in range(0, 5000, 2) if rng.random() < 0.15)
    drop_b = frozenset(i for i in range(1, 5000, 2) if rng.random() < 0.15)
    consumer = Consumer()
    # No request channel: a gap is lost only if the other line has not filled
    # it within 2.5 s (generous, so a loaded CI host cannot make this flaky).
    ab_policy = RetryPolicy(request_delay=0.002, timeout=0.5, max_attempts=5)
    session = MoldSession(consumer.on_payload, on_lost=consumer.on_lost, retry=ab_policy, rerequest=False)
    line_a, line_b = open_line(), open_line()
    with (
        line_a,
        line_b,
        MoldPublisher(
            SESSION,
            line_a.getsockname(),
            impairment=Impairment(drop=drop_a, reorder_rate=0.03, duplicate_rate=0.02, seed=1),
            pace=0.0002,
        ) as pub_a,
        MoldPublisher(
            SESSION,
            line_b.getsockname(),
            impairment=Impairment(drop=drop_b, reorder_rate=0.03, duplicate_rate=0.02, seed=2),
            pace=0.0002,
        ) as pub_b,
    ):
        rx = Receiver(session, {"A": line_a, "B": line_b}, None)
        rx.start()
        publish_all([pub_a, pub_b], messages)
        rx.finish()
    s = session.stats
    assert pub_a.stats.dropped > 10 and pub_b.stats.dropped > 10
    assert consumer.lost == [] and s.gaps_lost == 0 and s.rerequests == 0
    assert s.messages_delivered == len(messages)
    assert s.recovered_by_line.get("A", 0) > 0 and s.recovered_by_line.get("B", 0) > 0
    assert s.duplicates_by_line.get("A", 0) > 0 and s.duplicates_by_line.get("B", 0) > 0
    assert b"".join(consumer.parts) == framed(messages)
    assert book_states(consumer.fh) == book_states(reference)


def test_idle_heartbeat_reveals_a_lost_last_packet(messages) -> None:
    msgs = messages[:500]
    consumer = Consumer()
    session = MoldSession(consumer.on_payload, on_lost=consumer.on_lost, retry=POLICY)
    line = open_line()
    with (
        line,
        MoldPublisher(SESSION, line.getsockname(), heartbeat_interval=0.05) as pub,
        MoldRequestServer(SESSION, pub.history, (LOOPBACK, 0)) as server,
        MoldRerequester(session, server.address) as requester,
    ):
        server.start()
        n_packets = sum(1 for _ in packetize(SESSION, msgs))
        pub.impairment = Impairment(drop={n_packets - 1})  # the last packet, nothing after it
        rx = Receiver(session, {"A": line}, requester)
        rx.start()
        pub.publish(msgs)
        pub.start_heartbeats()
        # No end of session yet: only a heartbeat can tell the receiver about the loss.
        t_end = time.monotonic() + 3
        while session.stats.messages_delivered < len(msgs) and time.monotonic() < t_end:
            time.sleep(0.01)
        assert session.stats.messages_delivered == len(msgs)
        assert session.stats.heartbeats >= 1 and session.stats.recovered_by_line.get("R", 0) > 0
        pub.end_session()
        rx.finish()
    assert b"".join(consumer.parts) == framed(msgs)


def test_publisher_impairment_heartbeat_and_end_of_session_on_the_wire() -> None:
    from efsdk.moldudp64.codec import unpack_header

    line = open_line()
    line.setblocking(True)
    line.settimeout(2.0)
    msgs = [b"A" * 30] * 10  # 3 per 116-byte packet (20 + 3 * 32): 4 packets, seq 1, 4, 7, 10
    imp = Impairment(drop={0}, duplicate={1}, reorder={2})
    with line, MoldPublisher(SESSION, line.getsockname(), max_payload=116, impairment=imp) as pub:
        assert pub.publish(msgs) == 4
        pub.send_heartbeat()
        pub.end_session(repeat=2)
        with pytest.raises(ValueError, match="ended"):
            pub.publish([b"x"])
        got = [unpack_header(line.recv(2048))[1:] for _ in range(7)]
        pub.close()  # twice is fine
    # dropped 1; 4 twice; 7 held back until after 10; heartbeat and EOS carry next seq 11
    assert got == [(4, 3), (4, 3), (10, 1), (7, 3), (11, 0), (11, 0xFFFF), (11, 0xFFFF)]
    assert (pub.stats.dropped, pub.stats.duplicated, pub.stats.reordered) == (1, 1, 1)
    assert (pub.stats.heartbeats, pub.stats.end_of_session, pub.stats.datagrams_sent) == (1, 2, 7)
