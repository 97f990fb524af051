"""The snapshot server cannot stall the feed thread: bounded work per call, one encoding per book state."""

from __future__ import annotations

import time

import zmq

from efsdk.itch.codec import frame
from efsdk.itch.generator import SessionGenerator
from efsdk.pipeline import FeedHandler
from efsdk.publish.encoding import decode_header, encode_request
from efsdk.publish.publisher import REQUESTS_PER_SERVICE, BookPublisher, PublisherConfig


def test_requests_are_served_a_few_per_call_and_duplicates_count_once(tmp_path):
    gen = SessionGenerator(5, 20_000, 2)
    feed = FeedHandler()
    with BookPublisher(PublisherConfig(endpoint=f"ipc://{tmp_path}/pub", snapshot_interval_s=0)) as pub:
        pub.attach(feed)
        feed.process(b"".join(frame(m) for m in gen))
        deep = gen.summary.books[0][0]
        ctx = zmq.Context.instance()
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(pub.snapshot_endpoint)
        try:
            n = 3 * REQUESTS_PER_SERVICE
            for request_id in range(1, n + 1):
                dealer.send_multipart([b"", encode_request(request_id, [deep] * 50)])
            deadline = time.monotonic() + 5
            while pub.stats.requests == 0 and time.monotonic() < deadline:
                pub.poll(0.01)
            assert pub.stats.requests == REQUESTS_PER_SERVICE  # one call: a bounded amount of work
            while pub.stats.requests < n and time.monotonic() < deadline:
                pub.poll(0.01)
            assert pub.stats.requests == n
            replies = [dealer.recv_multipart() for _ in range(n)]
        finally:
            dealer.close(0)
    for reply in replies:
        assert decode_header(reply[1]).count == 1  # 50 copies of one symbol: answered once
    assert len({bytes(r[3]) for r in replies}) == 1  # the same state, the same (cached) encoding
