"""``efsdk bench wire``'s placement helpers (no namespaces, no root)."""

from __future__ import annotations

import os

from efsdk.bench_wire import cpu_mask, cpu_plan


def test_rps_cpu_masks_use_32_bit_groups():
    assert [cpu_mask(c) for c in (0, 1, 5, 31)] == ["1", "2", "20", "80000000"]
    assert cpu_mask(32) == "1,00000000" and cpu_mask(65) == "2,00000000,00000000"


def test_the_receiver_gets_a_cpu_of_its_own():
    allowed = sorted(os.sched_getaffinity(0))
    rx, tx = cpu_plan(3)
    if len(allowed) < 2:
        assert rx is None and tx == [None] * 3
    else:
        assert rx == allowed[-1] and len(tx) == 3 and rx not in tx and set(tx) <= set(allowed)
