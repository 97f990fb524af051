"""``efsdk bench wire``'s placement helpers (no namespaces, no root)."""

from __future__ import annotations

import os

from efsdk.bench_wire import cpu_mask, cpu_plan, verdicts


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


def _phase_result(offered: float, received: float, sent: int, drops: int, lost: int) -> dict:
    q = {"p50_us": 2.0, "p99_us": 10.0}
    return {
        "latency": {"latency": q},
        "throughput": {"offered_per_s": offered, "frames_per_s": received, "sent": sent,
                       "lost_before_socket": lost, "stats": {"kernel_drops": drops}},
    }  # fmt: skip


def test_sender_bound_means_offered_too_little_and_the_receiver_kept_up():
    results = {
        "kept-up": _phase_result(6e5, 6e5, 1_200_000, 0, 0),
        "a-blip": _phase_result(6e5, 6e5, 1_200_000, 0, 1_000),  # 0.08% lost: still the sender's limit
        "lost-some": _phase_result(6e5, 5e5, 1_200_000, 100_000, 0),  # the receiver fell behind
        "fast-enough": _phase_result(1.2e6, 1.1e6, 2_400_000, 0, 0),  # offered the target: not sender-bound
    }
    v = verdicts(results)
    assert [v[b]["sender_bound"] for b in results] == [True, True, False, False]
    assert [v[b]["throughput"] for b in results] == [False, False, False, True]
