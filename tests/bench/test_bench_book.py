"""Each book operation on an AAPL-like deep book, via OrderBook methods and via apply_ops batches.

A fresh deep book (~46k orders, 2,900 levels a side, thousands of orders at
each touch; see :class:`efsdk.bench.DeepBookSpec`) is built in the untimed
setup of every round; the timed body applies ``EFSDK_BENCH_OPS`` operations
(reads of a whole touch level, a fiftieth of them), and the book is checked
after every round: the touched orders, level counts, and ``_check()``.
"""

from __future__ import annotations

import pytest

from efsdk import bench


@pytest.mark.parametrize(("key", "via"), bench.OP_CASE_IDS, ids=[f"{k}-{v}" for k, v in bench.OP_CASE_IDS])
def test_book_operation(run_case, op_case_table, key, via):
    case = op_case_table[(key, via)]
    assert case.count > 0
    run_case(case)


def test_deep_book_is_aapl_like(op_case_table, bench_config):
    deep = next(iter(op_case_table.values())).info["deep_book"]
    if bench_config.deep_scale == 1.0:
        assert deep["bid_levels"] >= 2000 and deep["ask_levels"] >= 2000
        assert 30_000 <= deep["orders"] <= 60_000
    assert deep["single_order_levels"] > 0
