"""The publisher sidecar: a real child process fed the feed handler's ITCH bytes over ZeroMQ.

Its books must equal the feed's, it must publish what an in-process
publisher would, and every way it can fail (bind error, attached too late,
killed, parent killed) must end in a clear error or a clean exit, never a
hung feed.  ipc:// and loopback only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from efsdk.errors import ConfigError, PublishError
from efsdk.pipeline import FeedHandler
from efsdk.publish import BookPublisher, PublisherConfig
from efsdk.publish.publisher import published_l2
from efsdk.publish.sidecar import PublisherSidecar

ROOT = Path(__file__).resolve().parents[2]


def _l2(feed: FeedHandler, symbol: str, depth: int) -> dict:
    return published_l2(feed.builder.book(symbol), depth)


@pytest.mark.parametrize("depth", [0, 3])
def test_sidecar_publishes_the_feeds_books(tmp_path, itch_session, depth):
    """Replay with a sidecar attached: it was sent every byte and built exactly the feed's books."""
    config = PublisherConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_interval_s=0, depth=depth)
    feed = FeedHandler()
    with PublisherSidecar(config, forward_bytes=64 << 10) as sidecar:
        assert sidecar.endpoint == f"ipc://{tmp_path}/s" and sidecar.snapshot_endpoint == f"ipc://{tmp_path}/s.snap"
        sidecar.attach(feed)
        feed.replay(itch_session.path, chunk_size=100_000)
        assert sidecar.finish() == len(itch_session.symbols)  # one final snapshot per book
        published = sidecar.expected_l2()
        stats = sidecar.stats
        sent = sidecar.sidecar_stats
        assert sidecar.feed_summary == {"messages": itch_session.messages, "anomalies": 0, "unconsumed_bytes": 0}
    assert sent.forwarded_bytes == itch_session.path.stat().st_size and sent.forwarded_chunks > 1
    assert sorted(published) == sorted(s.ticker for s in itch_session.symbols)
    for symbol, got in published.items():
        assert {k: got[k] for k in ("bids", "asks", "volume")} == _l2(feed, symbol, depth), symbol
    assert stats.deltas > 0 and stats.trades > 0 and stats.send_drops == 0 and stats.publish_seconds > 0


def test_sidecar_builds_only_what_the_feed_and_the_publisher_keep(tmp_path, itch_session):
    """A filtered feed: the sidecar builds the same books; the publisher's own filter narrows what it publishes."""
    wanted = [itch_session.deep[0], *itch_session.thin[:2]]
    published_only = wanted[1:]
    feed = FeedHandler(symbols=wanted)
    config = PublisherConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_interval_s=0, symbols=tuple(published_only))
    with PublisherSidecar(config) as sidecar:
        sidecar.attach(feed)
        feed.replay(itch_session.path)
        sidecar.finish()
        published = sidecar.expected_l2()
    assert sorted(published) == sorted(published_only)
    for symbol in published_only:
        assert {k: published[symbol][k] for k in ("bids", "asks", "volume")} == _l2(feed, symbol, 0)


def test_sidecar_stream_seq_matches_an_in_process_publisher_fed_the_same_batches(tmp_path, small_itch_session):
    """Fed in the same pieces, the sidecar and an in-process publisher publish the same topic sequence."""
    raw = small_itch_session.path.read_bytes()
    pieces = [raw[i : i + 50_000] for i in range(0, len(raw), 50_000)]
    results = []
    for use_sidecar in (False, True):
        config = PublisherConfig(endpoint=f"ipc://{tmp_path}/{int(use_sidecar)}", snapshot_interval_s=0)
        feed = FeedHandler()
        pub = PublisherSidecar(config, forward_bytes=1) if use_sidecar else BookPublisher(config)
        with pub:
            pub.attach(feed)
            carry = b""
            for piece in pieces:
                data = carry + piece
                carry = data[feed.process(data) :]
                pub.poll(0.0)  # the sidecar sends each processed piece as one message
            pub.finish()
            results.append(pub.expected_l2())
    assert results[0] == results[1]


def test_attach_after_the_first_message_is_refused(tmp_path, small_itch_session):
    feed = FeedHandler()
    feed.process(small_itch_session.path.read_bytes()[:5000])
    with PublisherSidecar(PublisherConfig(endpoint=f"ipc://{tmp_path}/s")) as sidecar:
        with pytest.raises(ConfigError, match="before the feed handler's first message"):
            sidecar.attach(feed)


def test_bind_error_in_the_sidecar_is_raised_in_the_feed_process():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"publisher sidecar: cannot bind tcp://127.0.0.1:{port}"):
            PublisherSidecar(PublisherConfig(endpoint=f"tcp://127.0.0.1:{port}"))
    finally:
        taken.close()


def test_a_killed_sidecar_neither_stops_nor_hangs_the_feed(tmp_path, small_itch_session, caplog):
    """The feed builds on; the loss is counted and logged once; finish() says what happened."""
    feed, reference = FeedHandler(), FeedHandler()
    reference.replay(small_itch_session.path)
    with PublisherSidecar(PublisherConfig(endpoint=f"ipc://{tmp_path}/s"), forward_bytes=1) as sidecar:
        sidecar.attach(feed)
        sidecar._proc.kill()
        sidecar._proc.wait()
        started = time.monotonic()
        feed.replay(small_itch_session.path)
        sidecar.poll(0.01)  # an idle turn (efsdk publish paces with these) does not raise either
        with pytest.raises(PublishError, match=r"publisher sidecar exited \(code -9\)"):
            sidecar.finish()
        assert time.monotonic() - started < 5
        sent = sidecar.sidecar_stats
    assert feed.stats.messages == reference.stats.messages == small_itch_session.messages
    assert sent.forwarded_bytes + sent.lost_bytes == small_itch_session.path.stat().st_size and sent.lost_bytes > 0
    assert [r.levelname for r in caplog.records if "sidecar exited" in r.getMessage()] == ["ERROR"]


_PARENT = textwrap.dedent(
    """
    import os, sys
    from efsdk.publish import PublisherConfig
    from efsdk.publish.sidecar import PublisherSidecar

    sidecar = PublisherSidecar(PublisherConfig(endpoint=sys.argv[1]))
    print(sidecar._proc.pid, flush=True)
    os._exit(0)  # no close(): the sidecar must notice on its own
    """
)


def test_the_sidecar_exits_when_its_feed_process_dies(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", _PARENT, f"ipc://{tmp_path}/s"], env=env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail(f"sidecar {pid} outlived its feed process")


def test_a_stopped_sidecar_is_killed_once_it_stalls_the_feed(tmp_path, itch_session, caplog):
    """Alive but not reading (SIGSTOP): the forwarder waits stall_timeout, kills it, and the feed runs on."""
    feed, reference = FeedHandler(), FeedHandler()
    reference.replay(itch_session.path)
    config = PublisherConfig(endpoint=f"ipc://{tmp_path}/s")
    with PublisherSidecar(config, forward_bytes=4096, forward_hwm=1, stall_timeout=1.0) as sidecar:
        sidecar.attach(feed)
        os.kill(sidecar._proc.pid, signal.SIGSTOP)
        raw = itch_session.path.read_bytes()
        started = time.monotonic()
        carry = b""
        for i in range(0, len(raw), 20_000):  # as a live feed: a piece, then an idle turn
            data = carry + raw[i : i + 20_000]
            carry = data[feed.process(data) :]
            sidecar.poll(0.0)
        took = time.monotonic() - started
        with pytest.raises(PublishError, match="made no progress for 1 s with its queue full"):
            sidecar.finish()
        sent = sidecar.sidecar_stats
        assert sidecar._proc.returncode == -signal.SIGKILL
    assert 1.0 <= took < 10  # one stall, then no more waiting
    assert sent.killed_hung == 1 and sent.blocked_seconds >= 1.0
    assert feed.decoder.stats.messages == reference.decoder.stats.messages == itch_session.messages
    assert sent.lost_bytes > 0 and sent.forwarded_bytes + sent.lost_bytes == itch_session.path.stat().st_size
    assert [r.levelname for r in caplog.records if "made no progress" in r.getMessage()] == ["ERROR"]


@contextlib.contextmanager
def _throttled(pid: int):
    """Another process lets ``pid`` run 0.05 s of every 0.45 s (a thread could not: the feed holds the GIL)."""
    throttle = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, time
        while True:
            os.kill({pid}, signal.SIGSTOP); time.sleep(0.4); os.kill({pid}, signal.SIGCONT); time.sleep(0.05)
    """)])  # fmt: skip
    try:
        yield
    finally:
        throttle.kill()
        throttle.wait()
        with contextlib.suppress(ProcessLookupError):  # gone if it was killed: the test's error says why
            os.kill(pid, signal.SIGCONT)


def test_a_slow_sidecar_is_waited_for_not_killed(tmp_path, itch_session):
    """Working 1/9 of the time (SIGSTOP/SIGCONT), it blocks a send for longer than stall_timeout, yet lives.

    A full queue frees space only after the sidecar has worked through part of
    it, so one send can wait longer than stall_timeout while the sidecar keeps
    working; what counts is that it uses the CPU, and each stop is shorter than
    the timeout.
    """
    raw = itch_session.path.read_bytes()
    repeats = 9  # 29 MB in ~4.8 MB chunks (3 decode batches), ~4 of them fit in the queues and sockets
    feed = FeedHandler()
    config = PublisherConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_interval_s=0, depth=0)
    with PublisherSidecar(config, forward_bytes=4 << 20, forward_hwm=1, sidecar_rcvhwm=1,
                          stall_timeout=0.8) as sidecar:  # fmt: skip
        with _throttled(sidecar._proc.pid):
            sidecar.attach(feed)
            for _ in range(repeats):  # after the first pass, duplicate orders: counted anomalies, still work
                assert feed.process(raw) == len(raw)
            sidecar.finish()
        sent = sidecar.sidecar_stats
        assert sidecar.feed_summary["messages"] == repeats * itch_session.messages
    assert sent.killed_hung == 0 and sent.lost_bytes == 0 and sent.forwarded_bytes == repeats * len(raw)
    assert sent.max_blocked_seconds > 0.8  # one send did wait longer than stall_timeout: the case to survive


def test_a_sidecar_stopped_before_finish_is_killed_not_waited_for(tmp_path, small_itch_session):
    """Its queue is not full, so no send notices; finish() waits for the answer under the stall rule too."""
    feed = FeedHandler()
    with PublisherSidecar(PublisherConfig(endpoint=f"ipc://{tmp_path}/s"), stall_timeout=0.5) as sidecar:
        sidecar.attach(feed)
        feed.replay(small_itch_session.path)
        os.kill(sidecar._proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(PublishError, match=r"made no progress for 0.5 s answering finish"):
            sidecar.finish()
        assert time.monotonic() - started < 5  # not FINISH_TIMEOUT_S
        assert sidecar.sidecar_stats.killed_hung == 1 and sidecar._proc.returncode == -signal.SIGKILL


def test_a_sidecar_busy_past_busy_timeout_is_killed(tmp_path, itch_session):
    """Using the CPU is not enough: one that lets no chunk through for busy_timeout (a live lock; here one
    working 1/9 of the time, so a send waits ~1.3 s) is killed, and the feed runs on without it."""
    raw = itch_session.path.read_bytes()
    feed = FeedHandler()
    config = PublisherConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_interval_s=0, depth=0)
    with PublisherSidecar(config, forward_bytes=4 << 20, forward_hwm=1, sidecar_rcvhwm=1, stall_timeout=0.8,
                          busy_timeout=1.0) as sidecar, _throttled(sidecar._proc.pid):  # fmt: skip
        sidecar.attach(feed)
        for _ in range(9):
            assert feed.process(raw) == len(raw)
        sent = sidecar.sidecar_stats
        assert sent.killed_hung == 1 and sent.lost_bytes > 0
        with pytest.raises(PublishError, match=r"used the CPU for 1 s with its queue full without getting through"):
            sidecar.finish()
    assert feed.decoder.stats.messages == 9 * itch_session.messages  # the feed itself lost nothing


def test_sidecar_applies_the_feeds_locate_and_message_type_filters(tmp_path, itch_session):
    """Whatever filters built the feed's books build the sidecar's (here: one locate, non-displayed prints ignored)."""
    from efsdk.pipeline import HANDLED_MESSAGE_TYPES

    symbol = itch_session.deep[0]
    types = [t for t in HANDLED_MESSAGE_TYPES if t != "P"]
    feed = FeedHandler(locates=[itch_session.locate_of[symbol]], message_types=types)
    unfiltered = FeedHandler()
    unfiltered.replay(itch_session.path)
    with PublisherSidecar(PublisherConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_interval_s=0)) as sidecar:
        sidecar.attach(feed)
        feed.replay(itch_session.path)
        sidecar.finish()
        published = sidecar.expected_l2()
    assert list(published) == [symbol]
    got = {k: published[symbol][k] for k in ("bids", "asks", "volume")}
    assert got == _l2(feed, symbol, 0)
    assert got["volume"] < _l2(unfiltered, symbol, 0)["volume"]  # the P filter mattered: equality is no accident


def test_a_chunk_ending_mid_message_is_counted_not_glued_to_the_next(tmp_path, small_itch_session):
    """A fragment (a replay's truncated tail; here forced first) is dropped and counted in the sidecar:
    glued to the next chunk it would misframe every message after it."""
    raw = small_itch_session.path.read_bytes()
    feed = FeedHandler()
    with PublisherSidecar(PublisherConfig(endpoint=f"ipc://{tmp_path}/s", snapshot_interval_s=0)) as sidecar:
        sidecar.attach(feed)
        sidecar._forward(memoryview(raw[:9]))  # the first message's length prefix and 7 of its bytes
        sidecar.flush()
        feed.replay(small_itch_session.path)
        sidecar.finish()
        summary = sidecar.feed_summary
        published = sidecar.expected_l2()
    assert summary == {"messages": small_itch_session.messages, "anomalies": 0, "unconsumed_bytes": 9}
    assert sorted(published) == sorted(s.ticker for s in small_itch_session.symbols)
    for symbol, got in published.items():
        assert {k: got[k] for k in ("bids", "asks", "volume")} == _l2(feed, symbol, 0), symbol
