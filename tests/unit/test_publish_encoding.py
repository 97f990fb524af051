"""Fan-out wire format, builder change tracking, and publisher/subscriber over real ZeroMQ sockets in one process."""

from __future__ import annotations

import random
import time

import pytest
import zmq

from book import BookBuilder
from efsdk.errors import ConfigError, ProtocolError
from efsdk.publish import BookPublisher, BookSubscriber, PublisherConfig, SubscriberConfig, default_snapshot_endpoint
from efsdk.publish.encoding import (
    FLAG_FINAL,
    HEADER,
    KIND_BBO,
    KIND_DELTA,
    KIND_SNAPSHOT,
    KIND_TRADE,
    WIRE_VERSION,
    decode_bbo,
    decode_header,
    decode_levels,
    decode_request,
    decode_snapshot,
    decode_trade,
    encode_bbo,
    encode_delta,
    encode_request,
    encode_snapshot,
    encode_trade,
    symbol_of_topic,
    topic_for,
)

# ---------------------------------------------------------------- topics


def test_topic_is_terminated_and_round_trips():
    assert topic_for("AAPL") == b"AAPL\x00"
    assert symbol_of_topic(b"AAPL\x00") == "AAPL"
    assert topic_for("BRK A") == b"BRK A\x00"  # inner spaces exist in real directories
    for bad in ("", "TOOLONGSYM", " AAPL", "AAPL ", "A\x00", "A\nB", "ÄAPL"):
        with pytest.raises(ValueError):
            topic_for(bad)
    for bad in (b"AAPL", b"\x00", b"AA\x00PL\x00", b"\xff\x00"):
        with pytest.raises(ProtocolError):
            symbol_of_topic(bad)


def test_prefix_subscription_does_not_leak_longer_symbols():
    """ZeroMQ filters by prefix; the NUL terminator makes SUBSCRIBE AAPL miss AAPLX (real inproc sockets)."""
    ctx = zmq.Context()
    try:
        pub = ctx.socket(zmq.PUB)
        pub.bind("inproc://prefix")
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, topic_for("AAPL"))
        sub.connect("inproc://prefix")
        time.sleep(0.05)
        for symbol in ("AAPLX", "AAPL", "AAP", "AAPLX"):
            pub.send_multipart([topic_for(symbol), symbol.encode()])
        got = []
        while sub.poll(200):
            got.append(sub.recv_multipart()[1])
        assert got == [b"AAPL"]
    finally:
        ctx.destroy(linger=0)


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize(("nb", "na"), [(0, 0), (1, 0), (0, 1), (3, 5), (16, 16), (17, 0), (40, 300)])
def test_delta_round_trip(nb, na):
    rng = random.Random(nb * 1000 + na)
    bids = {rng.randrange(1, 2**32): (rng.choice((0, rng.randrange(1, 2**40))), rng.randrange(2**32)) for _ in range(nb)}
    asks = {rng.randrange(1, 2**32): (rng.randrange(2**40), rng.randrange(2**32)) for _ in range(na)}
    body = encode_delta(7, 123_456_789, bids, asks)
    h = decode_header(body)
    assert (h.version, h.kind, h.count, h.seq, h.ts_ns) == (WIRE_VERSION, KIND_DELTA, len(bids) + len(asks), 7, 123_456_789)
    (bp, bs, bo), (ap, as_, ao) = decode_levels(body, h.count, HEADER.size)
    assert dict(zip(bp, zip(bs, bo))) == bids
    assert dict(zip(ap, zip(as_, ao))) == asks
    assert len(body) == HEADER.size + 8 + 16 * h.count  # 16 bytes a level: compact


def test_bbo_trade_snapshot_round_trip():
    body = encode_bbo(3, 99, (1_000_000, 300, 2, None, 0, 0))
    assert decode_header(body).kind == KIND_BBO
    assert decode_bbo(body) == (1_000_000, 300, 2, None, 0, 0)
    body = encode_trade(4, 100, 1_000_100, 50, 12_345)
    assert decode_header(body).kind == KIND_TRADE
    assert decode_trade(body) == (1_000_100, 50, 12_345)
    bids = {1_000_000: (300, 2), 999_900: (100, 1)}
    asks = {1_000_100: (7, 1)}
    body = encode_snapshot(9, 101, bids, asks, flags=FLAG_FINAL, volume=5000, last_price=1_000_100, trading_state="T")
    snap = decode_snapshot(body)
    assert decode_header(body).kind == KIND_SNAPSHOT
    assert (snap.seq, snap.ts_ns, snap.flags, snap.volume, snap.last_price, snap.trading_state) == (9, 101, FLAG_FINAL, 5000, 1_000_100, "T")
    assert snap.bids == bids and snap.asks == asks


def test_request_round_trip_and_malformed_bodies_raise():
    assert decode_request(encode_request(42, ["AAPL", "MSFT"])) == (42, ["AAPL", "MSFT"])
    assert decode_request(encode_request(1, [])) == (1, [])
    good = encode_delta(1, 2, {10: (1, 1)}, {})
    bad_bodies = [
        b"",
        good[:10],  # shorter than the header
        bytes([WIRE_VERSION + 1]) + good[1:],  # another version
        good[:-1],  # truncated levels
        good + b"\x00",  # trailing byte
    ]
    for body in bad_bodies:
        with pytest.raises(ProtocolError):
            h = decode_header(body)
            decode_levels(body, h.count, HEADER.size)
    with pytest.raises(ProtocolError):
        decode_snapshot(good)  # a delta is not a snapshot
    with pytest.raises(ProtocolError):
        decode_request(encode_request(1, ["AAPL"])[:-1] + b"\xff")
    with pytest.raises(ProtocolError):
        decode_request(good)
    with pytest.raises(ProtocolError):  # a symbol that cannot be a topic never reaches the publisher
        decode_request(encode_request(1, ["AAPL"]).replace(b"AAPL", b"AA\nL"))


def test_default_snapshot_endpoint_and_validation():
    assert default_snapshot_endpoint("tcp://127.0.0.1:5556") == "tcp://127.0.0.1:5557"
    assert default_snapshot_endpoint("tcp://127.0.0.1:0") == "tcp://127.0.0.1:*"
    assert default_snapshot_endpoint("ipc:///tmp/x") == "ipc:///tmp/x.snap"
    for bad in ("udp://1.2.3.4:5", "tcp://127.0.0.1", "127.0.0.1:5", "tcp://h:99999"):
        with pytest.raises(ConfigError):
            default_snapshot_endpoint(bad)
    with pytest.raises(ValueError):
        PublisherConfig(endpoint="tcp://127.0.0.1:1", bogus=1)
    with pytest.raises(ValueError):
        SubscriberConfig(endpoint="ipc:///tmp/x", symbols=())


# ---------------------------------------------------------------- builder change tracking


def _l2(builder: BookBuilder) -> dict:
    out = {}
    for book in builder.books():
        for side in (book.bids, book.asks):
            for price in side.levels:
                out[(side, price)] = side.level_totals(price)
    return out


def test_take_changes_equals_the_l2_diff_of_every_batch(small_itch_session):
    """The opt-in tracking names exactly the levels whose (shares, orders) changed, batch by batch."""
    from efsdk.itch.ops import OpDecoder

    data = small_itch_session.path.read_bytes()
    decoder = OpDecoder(256)  # small batches: many boundaries, replace pairs split across them
    builder = BookBuilder()
    builder.track_changes()
    rng = random.Random(3)
    pos = checked = 0
    before = _l2(builder)
    while pos < len(data):
        ops, used = decoder.decode(memoryview(data)[pos : pos + rng.randrange(200, 20_000)])
        if not used:
            break
        pos += used
        builder.apply_ops(ops.cast("Q"))
        changes = {(side, price): v for side, levels in builder.take_changes().items() for price, v in levels.items()}
        after = _l2(builder)
        diff = {k: after.get(k, (0, 0)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        # every real change is reported with its new state; anything else reported is unchanged (touched, net zero)
        assert {k: changes.get(k) for k in diff} == diff
        assert all(after.get(k, (0, 0)) == v for k, v in changes.items())
        before = after
        checked += 1
    assert checked > 10 and builder.live_orders() > 0
    builder._check()
    builder.track_changes(False)
    assert builder.take_changes() == {}


# ---------------------------------------------------------------- in-process publisher -> subscriber


def _sync(pub: BookPublisher, sub: BookSubscriber, timeout: float = 5.0) -> float:
    """Serve the publisher until the subscriber is live; returns the deadline used."""
    deadline = time.monotonic() + timeout
    while not sub.synced and time.monotonic() < deadline:
        pub.poll(0.01)
        sub.poll(0.01)
    assert sub.synced
    return deadline


def _replay_in_slices(feed, data: bytes, rng: random.Random, pump) -> None:
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        used = feed.process(view[pos : pos + rng.randrange(100, 5000)])
        if not used:
            break
        pos += used
        pump()


@pytest.mark.parametrize(
    "options",
    [{}, {"publish_interval_s": 0.003}, {"bbo_conflation_s": 0.01}, {"depth": 5}, {"depth": 3, "publish_interval_s": 0.003}],
    ids=["every-batch", "publish-interval", "bbo-conflation", "top5-window", "top3-window-interval"],
)
def test_subscriber_book_equals_publisher_book_inproc(small_itch_session, options):
    from efsdk.pipeline import FeedHandler

    ctx = zmq.Context()
    symbols = small_itch_session.deep[:1] + small_itch_session.thin[:2]
    try:
        with BookPublisher(PublisherConfig(endpoint="inproc://eq", snapshot_interval_s=0.05, **options), ctx) as pub, \
             BookSubscriber(SubscriberConfig(endpoint="inproc://eq", symbols=tuple(symbols)), ctx) as sub:  # fmt: skip
            feed = FeedHandler()
            pub.attach(feed)
            deadline = _sync(pub, sub)

            def pump() -> None:
                pub.poll()
                sub.poll(0)

            _replay_in_slices(feed, small_itch_session.path.read_bytes(), random.Random(5), pump)
            pub.finish()
            while not sub.all_final and time.monotonic() < deadline + 5:
                pump()
            assert sub.all_final
            window = options.get("depth", 0)
            for s in symbols:
                book = feed.builder.book(s)
                n = window or max(len(book.bids), len(book.asks), 1)
                assert sub.book(s).depth(n + 1) == book.depth(n), s  # a window holds exactly the top n
                assert sub.book(s).depth_window == window
                assert sub.book(s).seq == pub.topic_seq(s)
                assert sub.book(s).bbo() == book.bbo()
                assert sub.book(s).volume == book.volume
            st = sub.stats
            assert st.gaps == 0 and st.decode_errors == 0 and st.snapshot_mismatches == 0 and st.foreign_topics == 0
            assert st.snapshot_checks >= len(symbols) and st.deltas > 0 and st.trades > 0 and st.bbos > 0
            assert pub.stats.send_drops == 0 and pub.stats.unnamed_books == 0
            if "bbo_conflation_s" in options:  # conflated BBOs still end on the book's BBO
                assert pub.stats.bbos_conflated > 0
                assert all(sub.book(s).last_bbo == tuple(feed.builder.book(s).bbo()) for s in symbols)
            pub.detach()
            assert "_apply" not in vars(feed)
    finally:
        ctx.term()


def test_malformed_stream_messages_are_counted_not_raised():
    ctx = zmq.Context()
    try:
        raw = ctx.socket(zmq.PUB)
        raw.bind("inproc://bad")
        router = ctx.socket(zmq.ROUTER)
        router.bind("inproc://bad.snap")
        with BookSubscriber(SubscriberConfig(endpoint="inproc://bad", symbols=("AAPL",)), ctx) as sub:
            # answer its snapshot request: an empty book at seq 0
            ident, empty, _req = router.recv_multipart()
            request_id, _ = decode_request(_req)
            from efsdk.publish.encoding import encode_reply_header

            router.send_multipart([ident, b"", encode_reply_header(request_id, 1), topic_for("AAPL"), encode_snapshot(0, 0, {}, {})])
            deadline = time.monotonic() + 3
            while not sub.synced and time.monotonic() < deadline:
                sub.poll(0.02)
            assert sub.synced
            topic = topic_for("AAPL")
            good = encode_delta(1, 5, {100: (10, 1)}, {})
            for frames in (
                [topic],  # one frame
                [topic, b"\x01"],  # short body
                [topic, bytes([9]) + good[1:]],  # unknown version
                [topic, good[:-3]],  # truncated delta (seq 1): counted, book resyncs
            ):
                raw.send_multipart(frames)
            time.sleep(0.05)
            for _ in range(5):
                sub.poll(0.02)
            assert sub.stats.decode_errors == 4
            assert not sub.book("AAPL").synced  # the bad delta left the book unknown: it asks again
    finally:
        ctx.destroy(linger=0)


def test_publisher_answers_bad_requests_with_an_error(tmp_path):
    ctx = zmq.Context()
    try:
        with BookPublisher(PublisherConfig(endpoint=f"ipc://{tmp_path}/p"), ctx) as pub:
            dealer = ctx.socket(zmq.DEALER)
            dealer.connect(pub.snapshot_endpoint)
            dealer.send_multipart([b"", b"garbage"])
            dealer.send_multipart([b"", encode_request(7, ["NOPE"])])
            deadline = time.monotonic() + 3
            replies = []
            while len(replies) < 2 and time.monotonic() < deadline:
                pub.poll(0.02)
                while dealer.poll(0):
                    replies.append(dealer.recv_multipart())
            assert pub.stats.request_errors == 1 and pub.stats.requests == 1
            err, ok = replies
            assert decode_header(err[1]).kind == ord("X")
            assert decode_header(ok[1]).seq == 7
            snap = decode_snapshot(ok[3])  # unknown symbol: empty book at seq 0
            assert (snap.seq, snap.bids, snap.asks) == (0, {}, {})
            dealer.close(0)
        assert pub.closed
        pub.close()  # idempotent
    finally:
        ctx.term()


@pytest.mark.parametrize("depth", [0, 3], ids=["every-level", "top3-window"])
def test_publishing_from_a_hook_in_the_middle_of_a_batch_leaves_no_book_stale(small_itch_session, depth):
    """A strategy hook that serves the publisher mid-batch (snapshots) must not make it skip
    the rest of the batch: after the batch, every subscriber book equals the publisher's."""
    from efsdk.pipeline import FeedHandler

    ctx = zmq.Context()
    symbols = small_itch_session.deep[:1] + small_itch_session.thin[:2]
    calls = {"n": 0}
    try:
        with BookPublisher(PublisherConfig(endpoint=f"inproc://mid{depth}", snapshot_interval_s=0, depth=depth), ctx) as pub, \
             BookSubscriber(SubscriberConfig(endpoint=f"inproc://mid{depth}", symbols=tuple(symbols)), ctx) as sub:  # fmt: skip

            def on_book(book, event) -> None:
                calls["n"] += 1
                if calls["n"] % 50 == 0:
                    pub.publish_snapshots()

            feed = FeedHandler(on_book=on_book)
            pub.attach(feed)
            deadline = _sync(pub, sub)
            feed.process(small_itch_session.path.read_bytes())  # one batch
            assert calls["n"] > 100
            pub.finish()
            while not sub.all_final and time.monotonic() < deadline + 5:
                sub.poll(0.01)
            assert sub.all_final
            for s in symbols:
                book = feed.builder.book(s)
                n = depth or max(len(book.bids), len(book.asks), 1)
                assert sub.book(s).depth(n + 1) == book.depth(n), s
            assert sub.stats.snapshot_mismatches == 0 and sub.stats.gaps == 0
    finally:
        ctx.term()
