"""BookSubscriber against a hand-driven publisher (real PUB and ROUTER sockets, ipc://): orderings that
a real publisher produces only by chance, made to happen every time."""

from __future__ import annotations

import time

import pytest
import zmq

from efsdk.publish import SubscriberConfig
from efsdk.publish.encoding import (
    FLAG_REPLY,
    decode_request,
    encode_delta,
    encode_reply_header,
    encode_snapshot,
    topic_for,
)
from efsdk.publish.subscriber import BookSubscriber

SYMBOL = "AAPL"
TOPIC = topic_for(SYMBOL)


def _until(condition, sub: BookSubscriber, what: str, timeout: float = 10.0, each=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if each is not None:
            each()
        sub.poll(0.02)
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {sub.stats}")


class HandDriven:
    """A PUB and a ROUTER played by the test, and a subscriber live from a stream snapshot at seq 5."""

    def __init__(self, tmp_path, request_timeout_s: float) -> None:
        self.ctx = zmq.Context()
        self.pub, self.router = self.ctx.socket(zmq.PUB), self.ctx.socket(zmq.ROUTER)
        for s in (self.pub, self.router):
            s.setsockopt(zmq.LINGER, 0)
        self.pub.bind(f"ipc://{tmp_path}/s")
        self.router.bind(f"ipc://{tmp_path}/s.snap")
        config = SubscriberConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_endpoint=f"ipc://{tmp_path}/s.snap",
                                  symbols=(SYMBOL,), request_timeout_s=request_timeout_s)  # fmt: skip
        self.sub = BookSubscriber(config, context=self.ctx)
        self.book = self.sub.book(SYMBOL)

    def sync_at_5_with_the_request_open(self) -> tuple[bytes, int]:
        """Take the subscriber's request (unanswered), sync it from a stream snapshot; the request's address."""
        request: list[list[bytes]] = []

        def take_request() -> None:
            if not request and self.router.poll(0, zmq.POLLIN):
                request.append(self.router.recv_multipart())

        _until(lambda: bool(request), self.sub, "the snapshot request", each=take_request)
        identity, _, body = request[0]
        request_id, symbols = decode_request(body)
        assert symbols == [SYMBOL]
        # a periodic snapshot on the stream, repeated until the SUB's subscription has arrived
        stream_snapshot = encode_snapshot(5, 1, {100: (10, 1)}, {101: (20, 2)})
        _until(lambda: self.book.synced, self.sub, "sync from the stream snapshot",
               each=lambda: self.pub.send_multipart([TOPIC, stream_snapshot]))  # fmt: skip
        assert self.book.seq == 5
        return identity, request_id

    def reply_at_8(self, identity: bytes, request_id: int) -> None:
        """The reply, as taken by the publisher after stream messages 6..8."""
        self.router.send_multipart([identity, b"", encode_reply_header(request_id, 1), TOPIC,
                                    encode_snapshot(8, 4, {100: (13, 1)}, {101: (20, 2)}, flags=FLAG_REPLY)])  # fmt: skip
        _until(lambda: self.sub.stats.replies, self.sub, "the reply")
        assert self.sub.stats.replies_ahead == 1 and self.book.seq == 5

    def delta(self, seq: int) -> None:
        self.pub.send_multipart([TOPIC, encode_delta(seq, seq, {100: (10 + seq - 5, 1)}, {})])

    def close(self) -> None:
        self.sub.close()
        self.pub.close()
        self.router.close()
        self.ctx.term()


@pytest.fixture
def hand_driven(tmp_path):
    driven = HandDriven(tmp_path, request_timeout_s=0.3)
    try:
        yield driven
    finally:
        driven.close()


def test_a_reply_that_overtakes_the_stream_is_not_a_gap(hand_driven):
    """Live from a stream snapshot at seq 5, the requested reply arrives at seq 8 before stream messages 6-8:
    they are in flight, not lost.  Counted as replies_ahead; no gap, no resync; 6..9 then apply in order,
    and once past request_timeout_s the held reply is not taken for a loss."""
    d = hand_driven
    d.reply_at_8(*d.sync_at_5_with_the_request_open())
    for seq in (6, 7, 8, 9):
        d.delta(seq)
    _until(lambda: d.book.seq == 9, d.sub, "stream messages 6..9")
    d.sub.run(duration=0.5)  # past request_timeout_s
    stats = d.sub.stats
    assert stats.gaps == 0 and stats.lost_messages == 0 and stats.resyncs == 0 and stats.duplicates == 0
    assert d.book.synced and d.book.seq == 9 and d.book.bids == {100: (14, 1)} and d.book.asks == {101: (20, 2)}


def test_a_reply_ahead_of_a_quiet_stream_reveals_the_loss(hand_driven):
    """Stream messages 6..8 were lost and nothing follows on the stream: the reply at seq 8 is the only
    evidence.  Held for request_timeout_s, then counted as a gap of 3 and adopted; later messages apply."""
    d = hand_driven
    d.reply_at_8(*d.sync_at_5_with_the_request_open())
    started = time.monotonic()
    _until(lambda: d.book.seq == 8, d.sub, "the held reply to be adopted")
    assert time.monotonic() - started >= 0.25  # not before the stream had its chance
    stats = d.sub.stats
    assert stats.gaps == 1 and stats.lost_messages == 3 and stats.resyncs == 1
    assert d.book.synced and d.book.bids == {100: (13, 1)}
    d.delta(9)
    _until(lambda: d.book.seq == 9, d.sub, "stream message 9")
    assert d.book.bids == {100: (14, 1)} and d.sub.stats.gaps == 1


def test_a_reply_ahead_of_a_backlog_waits_for_the_backlog(hand_driven, monkeypatch):
    """The subscriber is behind, not losing: stream messages 6..8 are queued when the reply at 8 is held, and
    each poll reads one (POLL_BATCH 1 plays a backlog of 10k), slower than request_timeout_s.  The timer
    counts only while the stream is read to its end, so 6..8 apply: no gap, no resync."""
    import efsdk.publish.subscriber as subscriber_module

    d = hand_driven
    d.reply_at_8(*d.sync_at_5_with_the_request_open())
    monkeypatch.setattr(subscriber_module, "POLL_BATCH", 1)
    for seq in (6, 7, 8):
        d.delta(seq)
    time.sleep(0.1)  # all three queued
    while d.book.seq < 8:
        assert d.sub.poll(0.05) == 1, "a queued stream message per poll"
        time.sleep(0.35)  # longer than request_timeout_s between polls
    d.sub.run(duration=0.5)
    stats = d.sub.stats
    assert stats.gaps == 0 and stats.lost_messages == 0 and stats.resyncs == 0 and stats.duplicates == 0
    assert d.book.bids == {100: (13, 1)}
