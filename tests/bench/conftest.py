"""Fixtures for the benchmark suites: sizes from the environment, one cached session.

Every benchmark is an :class:`efsdk.bench.Case` (the same code ``efsdk bench
book`` times) and asserts its result after every round, so CI's
``pytest --benchmark-disable`` runs each body once as a correctness test.
Defaults are small enough for that (a 50k-message session: the whole folder
runs in seconds); for real figures::

    EFSDK_BENCH_MESSAGES=1000000 pytest tests/bench --benchmark-enable

Environment:

``EFSDK_BENCH_MESSAGES``         session length (default 50,000; the issue's size is 1,000,000)
``EFSDK_BENCH_SYMBOLS``          symbols (default 50)
``EFSDK_BENCH_SEED``             generator seed (default 1)
``EFSDK_BENCH_ROUNDS``           timed rounds per benchmark (default 5, after 1 warm-up)
``EFSDK_BENCH_OPS``              operations per round of the per-op benchmarks (default 10,000)
``EFSDK_BENCH_DEEP_SCALE``       size of the per-op deep book relative to AAPL-like (default 1)
``EFSDK_BENCH_MEATPY_MESSAGES``  session prefix MeatPy replays (default 10,000)
``EFSDK_BENCH_CACHE_DIR``        where sessions are cached (default ~/.cache/efsdk/bench)
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from efsdk import bench

CI_MESSAGES = 50_000  # ~0.3 s to generate; books still hundreds of levels deep
CI_MEATPY_MESSAGES = 10_000  # MeatPy does ~0.1 M msg/s on a fresh day
WARMUP_ROUNDS = 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "").replace(",", "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(f"{name}={os.environ[name]!r} is not an integer") from None


@dataclass(frozen=True)
class BenchConfig:
    messages: int
    symbols: int
    seed: int
    rounds: int
    ops: int
    deep_scale: float
    meatpy_messages: int


@pytest.fixture(scope="session")
def bench_config() -> BenchConfig:
    cfg = BenchConfig(
        messages=_env_int("EFSDK_BENCH_MESSAGES", CI_MESSAGES),
        symbols=_env_int("EFSDK_BENCH_SYMBOLS", bench.DEFAULT_SYMBOLS),
        seed=_env_int("EFSDK_BENCH_SEED", bench.DEFAULT_SEED),
        rounds=_env_int("EFSDK_BENCH_ROUNDS", bench.DEFAULT_ROUNDS),
        ops=_env_int("EFSDK_BENCH_OPS", bench.DEFAULT_OPS),
        deep_scale=float(os.environ.get("EFSDK_BENCH_DEEP_SCALE") or 1.0),
        meatpy_messages=_env_int("EFSDK_BENCH_MEATPY_MESSAGES", CI_MEATPY_MESSAGES),
    )
    if cfg.rounds < 1 or cfg.ops < 1 or cfg.meatpy_messages < 1 or not 0 < cfg.deep_scale <= 10:
        raise pytest.UsageError(f"bad benchmark sizes from the environment: {cfg}")
    return cfg


@pytest.fixture(scope="session")
def bench_session(bench_config: BenchConfig, tmp_path_factory: pytest.TempPathFactory) -> bench.Session:
    """The generated session, from the shared cache (a private temp dir if the cache is not writable)."""
    args = (bench_config.symbols, bench_config.messages, bench_config.seed)
    try:
        sess = bench.session(*args)
    except OSError:
        sess = bench.session(*args, directory=tmp_path_factory.mktemp("efsdk_bench"))
    sess.reference_digests()  # once, before anything is timed
    return sess


@pytest.fixture(scope="session")
def op_case_table(bench_config: BenchConfig) -> dict[tuple[str, str], bench.Case]:
    """Every per-op case on the deep book, by (key, via); the deep book is built once."""
    cases = bench.op_cases(bench_config.ops, bench.DEEP_BOOK.scaled(bench_config.deep_scale))
    return {(c.key, c.via): c for c in cases}


@pytest.fixture
def run_case(benchmark: Any, bench_config: BenchConfig) -> Callable[[bench.Case], Any]:
    """Time a Case with ``benchmark.pedantic`` and check its result after every round.

    ``setup`` (fresh state, then a full collection) is not timed; neither is
    the check, which runs from ``teardown`` on the round's result.  With
    ``--benchmark-disable`` pedantic runs the body once and returns its
    result, which is checked here.  Rates go to ``extra_info``.
    """

    def run(case: bench.Case, rounds: int | None = None) -> Any:
        held: list[Any] = []

        def setup() -> tuple[tuple[Any], dict[str, Any]]:
            state = case.setup()
            gc.collect()
            return (state,), {}

        def target(state: Any) -> Any:
            result = case.run(state)
            held.append(result)
            return result

        def teardown(state: Any) -> None:
            case.check(held.pop())

        benchmark.group = case.group if case.group != "op" else f"op: {case.key}"
        benchmark.extra_info.update(
            {"case": case.name, "via": case.via, "count": case.count, "unit": case.unit, "target_per_s": case.target}
        )
        result = benchmark.pedantic(
            target,
            setup=setup,
            teardown=teardown,
            rounds=rounds or bench_config.rounds,
            warmup_rounds=WARMUP_ROUNDS,
            iterations=1,
        )
        if held:  # benchmark disabled: no teardown ran
            case.check(held.pop())
        stats = getattr(benchmark, "stats", None)
        if stats is not None and stats.stats.median:
            median = stats.stats.median
            benchmark.extra_info[f"{case.unit}s_per_s_median"] = case.count / median
            benchmark.extra_info[f"{case.unit}s_per_s_max"] = case.count / stats.stats.min
            benchmark.extra_info[f"{case.unit}s_per_s_min"] = case.count / stats.stats.max
            benchmark.extra_info[f"ns_per_{case.unit}_median"] = 1e9 * median / case.count
        return result

    return run
