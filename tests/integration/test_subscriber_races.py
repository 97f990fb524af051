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


def test_a_reply_that_overtakes_the_stream_is_not_a_gap(tmp_path):
    """Live from a stream snapshot at seq 5, the requested reply arrives at seq 8 before stream messages 6-8:
    they are in flight, not lost.  Counted as replies_ahead; no gap, no resync; 6..9 then apply in order."""
    ctx = zmq.Context()
    pub, router = ctx.socket(zmq.PUB), ctx.socket(zmq.ROUTER)
    for s in (pub, router):
        s.setsockopt(zmq.LINGER, 0)
    pub.bind(f"ipc://{tmp_path}/s")
    router.bind(f"ipc://{tmp_path}/s.snap")
    config = SubscriberConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_endpoint=f"ipc://{tmp_path}/s.snap",
                              symbols=(SYMBOL,))  # fmt: skip
    try:
        with BookSubscriber(config, context=ctx) as sub:
            book = sub.book(SYMBOL)
            request: list[list[bytes]] = []

            def take_request() -> None:
                if not request and router.poll(0, zmq.POLLIN):
                    request.append(router.recv_multipart())

            _until(lambda: bool(request), sub, "the snapshot request", each=take_request)
            identity, _, body = request[0]
            request_id, symbols = decode_request(body)
            assert symbols == [SYMBOL]
            # a periodic snapshot on the stream, repeated until the SUB's subscription has arrived
            stream_snapshot = encode_snapshot(5, 1, {100: (10, 1)}, {101: (20, 2)})
            _until(lambda: book.synced, sub, "sync from the stream snapshot",
                   each=lambda: pub.send_multipart([TOPIC, stream_snapshot]))  # fmt: skip
            assert book.seq == 5
            # the reply, taken by the publisher after stream messages 6..8 it had already sent
            router.send_multipart([identity, b"", encode_reply_header(request_id, 1), TOPIC,
                                   encode_snapshot(8, 4, {100: (13, 1)}, {101: (20, 2)}, flags=FLAG_REPLY)])  # fmt: skip
            _until(lambda: sub.stats.replies, sub, "the reply")
            assert sub.stats.replies_ahead == 1 and book.seq == 5
            for seq in (6, 7, 8, 9):
                pub.send_multipart([TOPIC, encode_delta(seq, seq, {100: (10 + seq - 5, 1)}, {})])
            _until(lambda: book.seq == 9, sub, "stream messages 6..9")
            stats = sub.stats
            assert stats.gaps == 0 and stats.lost_messages == 0 and stats.resyncs == 0 and stats.duplicates == 0
            assert book.synced and book.bids == {100: (14, 1)} and book.asks == {101: (20, 2)}
    finally:
        pub.close()
        router.close()
        ctx.term()
