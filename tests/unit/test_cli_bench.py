"""``efsdk bench book`` end to end, small, in a subprocess: the tables have their rows and sane numbers.

No timing thresholds (the machine is shared and noisy): only that every
figure is there, positive and consistent with the JSON the same run wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from efsdk import bench

ROUNDS = 2
SYMBOLS = 10
MESSAGES = 20_000
OPS = 300

FEED_ROWS = (
    f"full replay, {SYMBOLS} books",
    f"full replay, {SYMBOLS} books, 2 shards",
    f"subscribed 5/{SYMBOLS}, deep+thin",
    f"subscribed 5/{SYMBOLS}, thin-only",
    "baseline: struct+SortedDict",
)
MUTATION_ROWS = (
    "add, new level",
    "add, existing level",
    "execute, partial",
    "cancel, partial",
    "delete, level survives",
    "delete, level vanishes",
    "replace",
)
READ_ROWS = ("bbo()", "depth(10)", "queue_position, random order", "queue_position, back of touch")


def _efsdk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = f"from efsdk.cli import main; raise SystemExit(main({list(args)!r}))"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    env.pop("EFSDK_BENCH_CACHE_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _cells(stdout: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is (or starts with) ``name``."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)]
        if cells and cells[0].startswith(name):
            return cells
    raise AssertionError(f"no row {name!r} in:\n{stdout}")


def _rate(cell: str) -> float:
    m = re.fullmatch(r"([\d.]+) ([Mk])", cell)
    assert m, f"not a rate: {cell!r}"
    return float(m.group(1)) * (1e6 if m.group(2) == "M" else 1e3)


def _number(cell: str) -> float:
    m = re.match(r"([\d,]+)", cell)
    assert m, f"not a number: {cell!r}"
    return float(m.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    tmp = tmp_path_factory.mktemp("cli_bench")
    out = tmp / "bench.json"
    proc = _efsdk(
        "bench", "book",
        "--messages", str(MESSAGES), "--symbols", str(SYMBOLS), "--seed", "3",
        "--rounds", str(ROUNDS), "--warmup", "0",
        "--ops", str(OPS), "--deep-scale", "0.05", "--meatpy-messages", "2000", "--shards", "2",
        "--cache-dir", str(tmp / "cache"), "--json", str(out),
        cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc, json.loads(out.read_text())


def test_feed_table_rows_and_numbers(bench_run):
    proc, _ = bench_run
    stdout = proc.stdout
    rows = FEED_ROWS + (("baseline: MeatPy",) if bench.meatpy_available() else ())
    for name in rows:
        cells = _cells(stdout, name)
        scenario, rate, ns, rounds, spread, target, ratio = cells[:7]
        assert _rate(rate) > 0
        assert _number(ns) > 0
        assert int(rounds) == ROUNDS
        lo, hi = re.match(r"([\d.]+)-([\d.]+) [Mk]", spread).groups()
        assert 0 < float(lo) <= float(hi)
        assert target.startswith(">=") or target.startswith("ref")
        assert float(ratio.rstrip("x")) > 0
    # the baseline is the unit of the ratio column
    assert _cells(stdout, "baseline: struct+SortedDict")[6] == "1.00x"
    assert ">= 2.50 M" in _cells(stdout, FEED_ROWS[0])[5] and ">= 2.50 M" in _cells(stdout, FEED_ROWS[1])[5]
    assert ">= 15.00 M" in _cells(stdout, FEED_ROWS[2])[5]
    assert "subscriptions: deep+thin: AAPL" in stdout


def test_per_op_table_rows_and_numbers(bench_run):
    stdout = bench_run[0].stdout
    assert "Per operation on an AAPL-like deep book" in stdout
    for name in MUTATION_ROWS:
        cells = _cells(stdout, name)
        assert _number(cells[1]) > 0  # ops/round
        assert _number(cells[2]) > 0 and _number(cells[3]) > 0  # OrderBook and apply_ops ns/op
    for name in READ_ROWS:
        cells = _cells(stdout, name)
        assert _number(cells[2]) > 0
        assert cells[3] == "-"  # reads exist only as OrderBook methods


def test_json_has_every_result(bench_run):
    _, doc = bench_run
    assert doc["session"]["messages"] == MESSAGES and doc["session"]["symbols"] == SYMBOLS
    assert doc["rounds"] == ROUNDS
    keys = [r["info"]["key"] for r in doc["feed"]]
    assert keys[:5] == [
        "full_replay", "sharded_replay[2]", "subscribed[deep+thin]", "subscribed[thin-only]", "baseline_straightforward"
    ]  # fmt: skip
    assert doc["feed"][1]["info"]["shards"] == 2
    for r in doc["feed"] + doc["ops"]:
        assert len(r["seconds"]) == ROUNDS and all(s > 0 for s in r["seconds"])
        assert r["per_s_median"] > 0 and r["ns_per_unit"] > 0
        assert r["per_s_min"] <= r["per_s_median"] <= r["per_s_max"]
    assert [(r["info"]["key"], r["via"]) for r in doc["ops"]] == list(bench.OP_CASE_IDS)
    assert set(doc["subscriptions"]) == {"deep+thin", "thin-only"}


def test_bad_arguments_exit_nonzero(tmp_path):
    proc = _efsdk("bench", "book", "--rounds", "0", "--cache-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "--rounds" in proc.stderr


def test_bench_without_subcommand_prints_help(tmp_path):
    proc = _efsdk("bench", cwd=tmp_path)
    assert proc.returncode == 2
    assert "book" in proc.stdout


def test_bench_publish_measures_every_mode_in_paired_rounds(tmp_path):
    """`efsdk bench publish`: each mode, in-process and from a sidecar (default and one-chunk queues),
    replays, is checked, publishes, and gets one ratio per round."""
    out = tmp_path / "publish.json"
    proc = _efsdk(
        "bench", "publish", "--messages", str(MESSAGES), "--symbols", str(SYMBOLS), "--seed", "3",
        "--rounds", str(ROUNDS), "--depths", "0,3", "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    modes = {(m["depth"], m["sidecar"], m["queue"]): m for m in json.loads(out.read_text())["modes"]}
    assert sorted(modes, key=str) == [
        (0, False, None), (0, True, 1), (0, True, None), (3, False, None), (3, True, 1), (3, True, None),
        (None, False, None),
    ]  # fmt: skip
    assert modes[None, False, None]["ratios"] == [] and len(modes[None, False, None]["seconds"]) == ROUNDS
    for (depth, sidecar, _), m in modes.items():
        if depth is None:
            continue
        assert len(m["seconds"]) == len(m["ratios"]) == len(m["publisher_seconds"]) == ROUNDS
        assert len(m["finish_seconds"]) == len(m["blocked_seconds"]) == len(m["sustained_ratios"]) == (
            ROUNDS if sidecar else 0
        )
        assert sidecar or m["sustained_overhead"] == m["overhead"]
        assert all(r > 0 for r in m["ratios"]) and m["deltas"] > 0 and m["levels"] > 0
        assert _cells(proc.stdout, m["mode"])[2].endswith("%")
    # a 3-level window sends fewer level rows than every change, wherever it runs
    for key in ((False, None), (True, None), (True, 1)):
        assert modes[(3, *key)]["levels"] < modes[(0, *key)]["levels"], key
    assert "sidecar, queue 1: publish top 3 levels" in proc.stdout
    only = _efsdk("bench", "publish", "--messages", str(MESSAGES), "--symbols", str(SYMBOLS), "--seed", "3",
                  "--rounds", "1", "--depths", "3", "--no-sidecar", "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)  # fmt: skip
    assert only.returncode == 0 and "sidecar:" not in only.stdout and "publish top 3 levels" in only.stdout
    bad = _efsdk("bench", "publish", "--depths", "0,x", cwd=tmp_path)
    assert bad.returncode != 0 and "--depths" in bad.stderr
