"""Matching-engine throughput in OUCH requests per second.

A request stream is recorded once (untimed) from the background flow, alone or
with aggressive participants, then replayed into a fresh engine each round: the
timed body is the engine alone (matching, OUCH responses, ITCH packing), not
the flow's decisions.  After every round the result is checked: the engine's
ITCH output, framed and run through the SDK's feed handler, must build books
equal to the engine's order by order, and the replay must reproduce the
recorded run's executions exactly.

``EFSDK_BENCH_SIM_REQUESTS`` sets the stream length (default 20,000).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from efsdk import bench
from efsdk.itch.codec import frame
from efsdk.orders.ouch import codec as ouch
from efsdk.pipeline import FeedHandler
from efsdk.sim import DAY, IOC, BackgroundFlow, MatchingEngine

SYMBOLS = ["AAPL", "MSFT", "NVDA", "ZION"]
START = {"AAPL": 190_0000, "MSFT": 410_0000, "NVDA": 120_0000, "ZION": 45_0000}
REQUESTS = int(os.environ.get("EFSDK_BENCH_SIM_REQUESTS", "20000").replace("_", ""))


class FakeClock:
    def __init__(self) -> None:
        self.now = 34_200_000_000_000

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


class Recorder:
    """Stands in for the engine in front of the flow: forwards every request and remembers it."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.requests: list[tuple[str, str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def _call(self, kind: str, account: str, msg: Any) -> list:
        self.requests.append((kind, account, msg))
        return getattr(self.engine, kind)(account, msg)

    def enter(self, account: str, msg: Any) -> list:
        return self._call("enter", account, msg)

    def replace(self, account: str, msg: Any) -> list:
        return self._call("replace", account, msg)

    def cancel(self, account: str, msg: Any) -> list:
        return self._call("cancel", account, msg)


def fresh_engine() -> MatchingEngine:
    e = MatchingEngine(SYMBOLS, clock_ns=FakeClock())
    e.open_session()
    return e


def record(mix: str, n: int, seed: int = 1) -> list[tuple[str, str, Any]]:
    """The first ``n`` requests of a run of ``mix``."""
    engine = fresh_engine()
    rec = Recorder(engine)
    flow = BackgroundFlow(rec, seed=seed, start_prices=START)  # type: ignore[arg-type]
    flow.prime()
    rng = random.Random(seed)
    k = 0
    while len(rec.requests) < n:
        if mix == "flow" or rng.random() < 0.7:
            flow.step(1)
            continue
        # An aggressive participant: IOC orders through the touch and marketable day orders.
        s = SYMBOLS[rng.randrange(len(SYMBOLS))]
        bid, ask = engine.best(s)
        is_buy = rng.random() < 0.5
        ref = ask if is_buy else bid
        if ref is None:
            continue
        k += 1
        price = ref + (1 if is_buy else -1) * rng.randint(0, 3) * 100
        responses = rec.enter("TAKER", ouch.EnterOrder(
            type="O", token=f"TK{k}", side="B" if is_buy else "S", shares=rng.choice((100, 300, 800, 2000)),
            stock=s, price=price, time_in_force=IOC if rng.random() < 0.7 else DAY, firm="TAKR", display="Y",
            capacity="P", intermarket_sweep="N", minimum_quantity=0, cross_type="N", customer_type="N",
        ))  # fmt: skip
        flow.deliver(responses)  # the background's fills by the taker keep its view exact
    assert flow.stats.rejected == flow.stats.cancel_rejects == 0
    assert not engine.stats.ignored and engine.stats.cancel_rejects == 0
    del rec.requests[n:]
    return rec.requests


def replay(requests: list[tuple[str, str, Any]]) -> MatchingEngine:
    engine = fresh_engine()
    calls = {"enter": engine.enter, "replace": engine.replace, "cancel": engine.cancel, "modify": engine.modify}
    for kind, account, msg in requests:
        calls[kind](account, msg)
    return engine


def check(engine: MatchingEngine, expected_executions: int | None) -> None:
    engine._check()
    if expected_executions is not None:
        assert engine.stats.executions == expected_executions
    fh = FeedHandler()
    buf = b"".join(frame(m) for m in engine.drain_itch())
    assert fh.process(buf) == len(buf)
    for s in SYMBOLS:
        ours = [(o.ref, o.price, o.shares) for o in engine.orders(s)]
        theirs = [(o.ref, o.price, o.shares) for o in fh.builder.book(s).orders()]
        assert ours == theirs, s
    assert fh.builder.stats.executions == engine.stats.executions
    assert fh.refresh_stats().anomalies == 0


@pytest.mark.parametrize("mix", ["flow", "flow+takers"])
def test_engine_throughput(run_case, mix):
    requests = record(mix, REQUESTS)
    # Every round must reproduce this untimed replay exactly.
    expected = replay(requests).stats.executions
    assert expected > 0
    if mix == "flow+takers":
        assert sum(1 for r in requests if r[1] == "TAKER") > REQUESTS // 10
    case = bench.Case(
        name=f"sim engine: {mix}",
        group="sim",
        count=len(requests),
        unit="order",
        run=lambda _: replay(requests),
        check=lambda engine: check(engine, expected),
        info={"executions": expected},
    )
    engine = run_case(case)
    assert engine.stats.executions == expected
