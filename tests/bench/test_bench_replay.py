"""Full-file replays: the SDK end to end, the subscribed path, and two baselines on the same file.

Each benchmark checks the books it built after every round: per-book orders
and levels equal the generator's summary, and each book's L3 digest equals
the one an independent implementation (the straightforward baseline) built.
"""

from __future__ import annotations

import pytest

from efsdk import bench


def test_full_replay(run_case, bench_session):
    handler = run_case(bench.full_replay_case(bench_session))
    assert handler.builder.live_orders() == bench_session.summary.live_orders


@pytest.mark.parametrize("label", ["deep+thin", "thin-only"])
def test_subscribed(run_case, bench_session, label):
    symbols = bench.pick_subscriptions(bench_session.summary)[label]
    assert len(symbols) == bench.SUBSCRIBED_SYMBOLS
    deep = set(bench_session.summary.deep_symbols)
    assert bool(deep & set(symbols)) == (label == "deep+thin")
    handler = run_case(bench.subscribed_case(bench_session, symbols, label))
    assert handler.stats.messages == bench_session.messages  # the whole feed was scanned
    assert {b.symbol for b in handler.builder.books() if b.order_count()} <= set(symbols)


def test_baseline_straightforward(run_case, bench_session):
    books = run_case(bench.straightforward_case(bench_session))
    assert books.live_orders() == bench_session.summary.live_orders


def test_baseline_meatpy(run_case, bench_session, bench_config):
    if not bench.meatpy_available():
        pytest.skip("meatpy is not installed (pip install -e '.[test]')")
    case = bench.meatpy_case(bench_session, min(bench_config.meatpy_messages, bench_session.messages))
    processors = run_case(case, rounds=min(bench_config.rounds, 3))  # slow: a few rounds are plenty
    assert len(processors) == bench_session.symbols


def test_pick_subscriptions_is_deterministic(bench_session):
    a = bench.pick_subscriptions(bench_session.summary)
    b = bench.pick_subscriptions(bench_session.summary)
    assert a == b
    assert a["deep+thin"][0] == bench_session.summary.deep_symbols[0]
    assert all(len(set(v)) == len(v) for v in a.values())


def test_sharded_replay(run_case, bench_session):
    from efsdk.shards import ShardedReplay

    with ShardedReplay(2) as pool:
        stats = run_case(bench.sharded_replay_case(bench_session, pool))
        assert stats.live_orders == bench_session.summary.live_orders
        assert sum(r.book.records for r in stats.shards) == stats.records
        # each shard applied only its share: together about one full feed, not two
        assert stats.records < 1.2 * bench_session.messages
