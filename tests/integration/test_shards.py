"""Sharded replay (efsdk.shards): real shard processes, generated ITCH files.

The books a pool builds across its processes must equal, book by book, the
ones one process builds from the same file; every failure of a shard must
reach the caller as a ShardError that says which shard and why.
"""

from __future__ import annotations

import collections
import gzip
import operator
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from efsdk.errors import ConfigError
from efsdk.pipeline import FeedHandler
from efsdk.shards import ShardError, ShardPlan, ShardedReplay, count_by_locate


def _python_counts(data: bytes) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    pos = 0
    while pos + 2 <= len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            break
        if n >= 3:
            counts[int.from_bytes(data[pos + 3 : pos + 5], "big")] += 1
        pos += 2 + n
    return counts


@pytest.fixture(scope="module")
def pool():
    with ShardedReplay(2) as p:
        yield p


def test_count_by_locate_matches_a_python_count(itch_session, tmp_path):
    data = itch_session.path.read_bytes()
    truncated = tmp_path / "truncated.itch"
    truncated.write_bytes(data[:-7])  # a torn last message is not counted
    zipped = tmp_path / "truncated.itch.gz"
    zipped.write_bytes(gzip.compress(data[:-7]))
    want = _python_counts(data)
    assert count_by_locate(itch_session.path) == want
    assert count_by_locate(itch_session.gz_path, chunk_size=10_000) == want  # gzip, carried across chunks
    torn = _python_counts(data[:-7])
    assert sum(want.values()) - sum(torn.values()) == 1
    assert count_by_locate(truncated) == torn == count_by_locate(zipped, chunk_size=4096)
    empty = tmp_path / "empty.itch"
    empty.write_bytes(b"")
    assert count_by_locate(empty) == {}


def test_a_balanced_plan_evens_the_load_and_one_shard_takes_every_unnamed_locate():
    plan = ShardPlan.balanced({0: 999, 1: 100, 2: 60, 3: 50, 4: 10}, 2)
    assert plan.locates == ((1, 4), (2, 3)) and plan.loads == (110, 110)
    assert plan.rest == 0
    rest = plan.filter_for(0)
    assert set(rest) == set(range(1, 65536)) - {2, 3}  # locate 0 is system-wide: every shard applies it
    assert plan.filter_for(1) == (2, 3)
    assert ShardPlan.balanced({7: 5}, 3).locates == ((7,), (), ())


@pytest.mark.parametrize(
    ("locates", "rest", "complaint"),
    [(((1, 2), (2,)), 0, "two shards"), (((0,), ()), 0, "out of 1..65535"), (((1,), (2,)), 2, "rest shard 2"), ((), 0, "at least one")],
)
def test_a_bad_plan_is_refused(locates, rest, complaint):
    with pytest.raises(ConfigError, match=complaint):
        ShardPlan(locates, rest=rest)


def test_sharded_books_equal_the_books_of_one_process(pool, itch_session):
    one = FeedHandler()
    one_stats = one.replay(itch_session.path)
    stats = pool.replay(itch_session.path)

    assert stats.messages == one_stats.messages == itch_session.messages
    assert stats.bytes == one_stats.bytes
    assert stats.live_orders == one.builder.live_orders() == itch_session.summary.live_orders
    symbols = {b.symbol for b in one.builder.books() if b.symbol}
    assert set(pool.symbols()) == symbols and len(symbols) == len(itch_session.symbols)
    assert set(pool.symbols().values()) == {0, 1}  # both shards hold books
    for symbol in sorted(symbols):
        assert pool.snapshot(symbol) == one.builder.book(symbol).snapshot(), symbol
    # every shard scanned every message but applied only its share
    assert all(r.feed.messages == itch_session.messages for r in stats.shards)
    assert [r.feed.filtered > 0 for r in stats.shards] == [True, True]
    counters = one.builder.stats.as_dict()
    assert {k: v for k, v in stats.book.as_dict().items() if k != "records"} == {
        k: v for k, v in counters.items() if k != "records"
    }
    with pytest.raises(KeyError, match="no shard holds a book"):
        pool.owner("NOT-A-SYMBOL")


def test_a_plan_that_names_too_few_locates_still_builds_every_book(pool, itch_session):
    first = itch_session.symbols[0].locate
    plan = ShardPlan(((), (first,)), rest=0)  # shard 0 names nothing: it takes everything but `first`
    stats = pool.replay(itch_session.path, plan)
    assert stats.live_orders == itch_session.summary.live_orders
    assert pool.owner(itch_session.symbols[0].ticker) == 1
    assert {pool.owner(s.ticker) for s in itch_session.symbols[1:]} == {0}
    # a shard with no locates builds nothing (an empty filter is not "no filter")
    stats = pool.replay(itch_session.path, ShardPlan(((first,), ()), rest=0))
    assert set(pool.symbols().values()) == {0} and stats.shards[1].live_orders == 0
    assert stats.live_orders == itch_session.summary.live_orders
    with pytest.raises(ConfigError, match="3 shards"):
        pool.replay(itch_session.path, ShardPlan(((), (), ())))


def test_malformed_input_is_counted_once_not_once_per_shard(pool, small_itch_session, tmp_path):
    data = small_itch_session.path.read_bytes()
    middle = 0
    for _ in range(small_itch_session.messages // 2):  # the boundary after half the messages
        middle += 2 + int.from_bytes(data[middle : middle + 2], "big")
    bad = tmp_path / "bad.itch"
    # an unknown type byte mid-file (locate 1: it must still reach every shard), and a torn last message
    bad.write_bytes(data[:middle] + b"\x00\x03Z\x00\x01" + data[middle:] + b"\x00\x20A\x00")
    one = FeedHandler()
    one_stats = one.replay(bad)
    stats = pool.replay(bad)
    assert one_stats.anomalies_by_kind and stats.anomalies_by_kind == one_stats.anomalies_by_kind
    assert stats.book.anomalies == one.builder.stats.anomalies


def test_a_failing_query_is_reported_and_the_pool_goes_on(pool, small_itch_session):
    pool.replay(small_itch_session.path)
    with pytest.raises(ShardError, match="not subscriptable"):
        pool.map(operator.getitem, 1)  # FeedHandler[1] fails in both shards
    symbol = small_itch_session.symbols[0].ticker
    assert pool.snapshot(symbol).symbol == symbol


def test_a_shard_that_dies_is_reported_and_the_pool_refuses_more_work(small_itch_session):
    pool = ShardedReplay(2).start()
    try:
        victim = pool.pids[1]
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(ShardError, match=rf"shard 1 \(pid {victim}\) exited with code -9"):
            pool.replay(small_itch_session.path)
        with pytest.raises(ShardError, match="broken"):
            pool.clear()
    finally:
        pids = pool.pids
        pool.close()
    for pid in pids:  # close() reaped them: nothing left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_shard_that_exits_while_working_is_reported(small_itch_session):
    with ShardedReplay(2) as pool:
        pool.replay(small_itch_session.path)
        with pytest.raises(ShardError, match=r"shard 0 \(pid \d+\) exited with code 1 during call"):
            pool.call(0, sys.exit)  # sys.exit(handler): SystemExit is no Exception, so the shard ends
        with pytest.raises(ShardError, match="broken"):
            pool.snapshot(small_itch_session.symbols[0].ticker)


def test_a_pool_works_from_a_script_without_a_main_guard(small_itch_session, tmp_path):
    """multiprocessing's spawn would re-import this script in every shard and fail; shards are fresh interpreters."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from efsdk.shards import ShardedReplay
            with ShardedReplay(2) as pool:
                stats = pool.replay({str(small_itch_session.path)!r})
                print(stats.messages, stats.live_orders)
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(small_itch_session.messages), str(small_itch_session.summary.live_orders)]


def test_a_pool_that_is_not_started_says_how_to_start_it():
    with pytest.raises(ShardError, match="not started"):
        ShardedReplay(2).replay("whatever.itch")
    with pytest.raises(ConfigError, match="one per shard"):
        ShardedReplay(2, cpus=[0])
