"""ZeroMQ fan-out: the publish cost added to the feed path, and stream throughput over ipc:// and tcp:// loopback.

* ``feed path``: the same session replayed without and with a
  :class:`~efsdk.publish.BookPublisher` attached (bound on ipc, no
  subscriber: ZeroMQ drops in the socket, so this is the feed thread's own
  cost), in decoder-sized batches (full-rate replay) and in 32-message
  batches (about one MoldUDP64 packet: the live shape, where per-batch work
  weighs most).  Every round still checks the books against the generator
  and the reference L3 digests, and that the publisher published.
* ``transport``: pre-encoded DELTA messages (3 levels, a typical batch's
  change to one book) sent as fast as ``send`` takes them to a subscriber in
  another process, timed until it has received every one; events/s.

The issue's goal is a publish cost under 10% of the book-build time at full
rate.  Each case here runs its rounds in one block, so on this VM (±20%
drift) the ``replay`` and ``replay+publish*`` medians compare only roughly;
``efsdk bench publish`` measures the same overhead with each publisher round
paired with a plain one in fresh processes, which is the figure the README
gives.  Run for real figures with::

    EFSDK_BENCH_MESSAGES=1000000 pytest tests/bench/test_bench_publish.py --benchmark-enable
    efsdk bench publish
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from typing import Any

import pytest
import zmq

from efsdk import bench
from efsdk.cli.publish import batches
from efsdk.pipeline import FeedHandler
from efsdk.bench_publish import _check_sidecar_books
from efsdk.publish import BookPublisher, PublisherConfig, PublisherSidecar
from efsdk.publish.encoding import encode_delta, topic_for

PACKET_MESSAGES = 32
TOP_DEPTH = 10  # the depth window of the windowed case: a typical L2 product's depth
# Windows are published at most every 10 ms: on packet-sized batches, publishing a window
# after every packet costs ~10x the build (every packet touches a third of the books).
TRANSPORT_MESSAGES = 200_000


def _publish_replay_case(sess: bench.Session, per_batch: int, interval: float = 0.0, depth: int = 0,
                         sidecar: bool = False) -> bench.Case:  # fmt: skip
    path = os.fspath(sess.path)
    data = sess.path.read_bytes()
    slices = batches(data, per_batch) if per_batch else None
    shape = f"{per_batch}-msg batches" if per_batch else "decoder batches"
    if interval:
        shape += f", published every {interval * 1000:g} ms"
    if depth:
        shape += f", top {depth} levels"
    if sidecar:
        shape += ", from a sidecar"

    def setup() -> tuple[FeedHandler, Any, str]:
        tmp = tempfile.mkdtemp(prefix="efsdk-bench-pub-")
        config = PublisherConfig(endpoint=f"ipc://{tmp}/s", snapshot_interval_s=0, publish_interval_s=interval, depth=depth)
        pub = PublisherSidecar(config) if sidecar else BookPublisher(config)
        feed = FeedHandler()
        pub.attach(feed)
        return feed, pub, tmp

    def run(state: tuple[FeedHandler, Any, str]) -> tuple[FeedHandler, Any]:
        feed, pub, _ = state
        _feed_all(feed, data, path, slices)
        if sidecar:
            pub.flush()  # the feed's part ends with its last byte sent; check() waits for the sidecar
        else:
            pub.finish()  # publishes anything still held by the interval, then the final snapshots
        return feed, pub

    def check(result: tuple[FeedHandler, Any]) -> None:
        feed, pub = result
        try:
            feed.refresh_stats()
            bench.check_feed_handler(feed, sess)
            if sidecar:
                pub.finish()
                _check_sidecar_books(feed, pub)
            s = pub.stats
            assert s.deltas > 0 and s.levels > 0 and s.bbos > 0 and s.trades > 0 and s.send_drops == 0
            assert s.unnamed_books == 0
        finally:
            pub.close()

    via = "PublisherSidecar.attach" if sidecar else "BookPublisher.attach"
    return bench.Case(name=f"replay+publish, {shape}", group="publish: feed path", count=sess.messages, unit="msg",
                      run=run, setup=setup, check=check, via=via, key=f"publish[{per_batch},{interval},{depth},{sidecar}]")  # fmt: skip


def _plain_case(sess: bench.Session, per_batch: int) -> bench.Case:
    path = os.fspath(sess.path)
    data = sess.path.read_bytes()
    slices = batches(data, per_batch) if per_batch else None
    shape = f"{per_batch}-msg batches" if per_batch else "decoder batches"

    def run(_: Any) -> FeedHandler:
        feed = FeedHandler()
        _feed_all(feed, data, path, slices)
        return feed

    def check(feed: FeedHandler) -> None:
        feed.refresh_stats()
        bench.check_feed_handler(feed, sess)

    return bench.Case(name=f"replay, {shape}", group="publish: feed path", count=sess.messages, unit="msg",
                      run=run, check=check, via="FeedHandler", key=f"plain[{per_batch}]")  # fmt: skip


def _feed_all(feed: FeedHandler, data: bytes, path: str, slices: list[tuple[int, int, int]] | None) -> None:
    if slices is None:
        feed.replay(path)
        return
    view = memoryview(data)
    process = feed.process
    for start, end, _ in slices:
        process(view[start:end])


@pytest.mark.parametrize("per_batch", [0, PACKET_MESSAGES], ids=["decoder-batches", "packet-batches"])
@pytest.mark.parametrize(
    "publish", [None, (0.0, 0, False), (0.001, 0, False), (0.01, TOP_DEPTH, False), (0.0, 0, True)],
    ids=["replay", "replay+publish", "replay+publish-1ms", f"replay+publish-top{TOP_DEPTH}-10ms", "replay+sidecar"],
)
def test_feed_path(run_case, bench_session, per_batch, publish):
    if publish is None:
        run_case(_plain_case(bench_session, per_batch))
    else:
        interval, depth, sidecar = publish
        run_case(_publish_replay_case(bench_session, per_batch, interval, depth, sidecar))


# ---------------------------------------------------------------- transport throughput


def _receiver(endpoint: str, count: int, conn: Any) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    sub.recv_multipart()  # the first warm-up message: the subscription is in place
    conn.send("ready")
    conn.recv()  # the sender stops warming up; the timed stream follows
    got = 0
    while got < count:
        topic = sub.recv_multipart()[0]
        if topic != b"WARM\x00":
            got += 1
    conn.send(got)
    sub.close(0)
    ctx.term()


def _transport_case(transport: str) -> bench.Case:
    body = encode_delta(1, 34_200_000_000_000, {1_000_000: (500, 3), 999_900: (0, 0)}, {1_000_100: (200, 1)})
    topic = topic_for("AAPL")
    ctx_name = "fork" if "fork" in mp.get_all_start_methods() else "spawn"

    def setup() -> dict[str, Any]:
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)  # unbounded here: this measures the transport, not the drop policy
        pub.setsockopt(zmq.LINGER, 0)
        if transport == "ipc":
            tmp = tempfile.mkdtemp(prefix="efsdk-bench-zmq-")
            pub.bind(f"ipc://{tmp}/s")
        else:
            pub.bind("tcp://127.0.0.1:*")
        endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        parent, child = mp.get_context(ctx_name).Pipe()
        proc = mp.get_context(ctx_name).Process(target=_receiver, args=(endpoint, TRANSPORT_MESSAGES, child), daemon=True)
        proc.start()
        while not parent.poll(0.01):
            pub.send_multipart([b"WARM\x00", b""])
        parent.recv()
        return {"ctx": ctx, "pub": pub, "proc": proc, "conn": parent}

    def run(state: dict[str, Any]) -> int:
        send = state["pub"].send
        more = zmq.SNDMORE
        state["conn"].send("go")
        for _ in range(TRANSPORT_MESSAGES):
            send(topic, more)
            send(body)
        return state["conn"].recv()  # the receiver has every message

    def check(got: int) -> None:
        assert got == TRANSPORT_MESSAGES

    holder: dict[str, Any] = {}

    def setup_and_keep() -> dict[str, Any]:
        _teardown(holder)
        holder.update(setup())
        return holder

    return bench.Case(name=f"stream over {transport}:// loopback", group="publish: transport", count=TRANSPORT_MESSAGES,
                      unit="event", run=run, setup=setup_and_keep, check=lambda got: (check(got), _teardown(holder))[0],
                      via="PUB -> SUB in another process", key=f"transport[{transport}]")  # fmt: skip


def _teardown(state: dict[str, Any]) -> None:
    if not state:
        return
    state["proc"].join(10)
    state["pub"].close(0)
    state["ctx"].term()
    state.clear()


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_transport_throughput(run_case, transport):
    run_case(_transport_case(transport))

