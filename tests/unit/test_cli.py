"""The efsdk command line, run as real subprocesses on real generated files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from efsdk.itch.generator import write_binaryfile


def efsdk(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "efsdk.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"efsdk {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "day.itch"
    summary = write_binaryfile(path, symbols=12, messages=40_000, seed=5)
    return path, summary


def test_help_lists_every_command():
    out = efsdk("--help").stdout
    for command in ("demo", "replay", "gen-itch", "bench"):
        assert command in out


def test_replay_json_matches_the_generated_session(day, tmp_path):
    path, summary = day
    out = tmp_path / "out.json"
    proc = efsdk("replay", str(path), "--json", str(out), "--depth", "3")
    doc = json.loads(out.read_text())
    assert doc["messages"] == summary.messages
    assert doc["by_type"] == summary.counts
    assert doc["live_orders"] == summary.live_orders
    assert doc["instruments"] == 12
    assert doc["anomalies"] == {}
    assert all(v == 0 for k, v in doc["book_stats"].items() if k in ("unknown_ref", "duplicate_ref", "over_execution"))
    # the deepest books are shown, with the generator's own view of their size
    expected = {sym: (orders, bids, asks) for sym, orders, bids, asks in summary.books}
    for book in doc["books"]:
        assert (book["orders"], *book["levels"]) == expected[book["symbol"]]
        assert len(book["bids"]) <= 3 and book["bids"][0][0] < book["asks"][0][0]
    assert "Messages by type" in proc.stdout and "live orders" in proc.stdout


def test_replay_symbols_builds_only_those(day, tmp_path):
    path, summary = day
    deep, thin = summary.books[0][0], summary.books[-1][0]
    out = tmp_path / "sub.json"
    proc = efsdk("replay", str(path), "--symbols", f"{deep},{thin},NOPE", "--json", str(out))
    doc = json.loads(out.read_text())
    assert [b["symbol"] for b in doc["books"]] == [deep, thin]
    assert doc["missing_symbols"] == ["NOPE"]
    assert doc["filtered"] > 0
    assert "NOPE: no stock directory" in proc.stdout
    expected = {sym: orders for sym, orders, _, _ in summary.books}
    assert [b["orders"] for b in doc["books"]] == [expected[deep], expected[thin]]


def test_replay_of_a_damaged_file_counts_and_continues(day, tmp_path):
    path, summary = day
    data = bytearray(path.read_bytes())
    bad = tmp_path / "bad.itch"
    garbage = b"\x00\x05Zxxxx"  # a frame of an unknown type
    cut = 4096
    # move the cut to a frame boundary so the garbage frame sits between two good ones
    pos = 0
    while pos < cut:
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
    bad.write_bytes(bytes(data[:pos]) + garbage + bytes(data[pos:-7]))  # and a truncated tail
    out = tmp_path / "bad.json"
    efsdk("replay", str(bad), "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["anomalies"] == {"unknown_type": 1, "truncated_tail": 1}
    offsets = dict((k, v) for k, v in doc["anomaly_offsets"])
    assert offsets["unknown_type"] == pos
    assert doc["messages"] == summary.messages + 1 - 1  # +garbage frame, -the cut-off last one


def test_replay_errors_are_one_line_not_tracebacks(tmp_path):
    proc = efsdk("replay", str(tmp_path / "missing.itch"), check=False)
    assert proc.returncode == 1
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "x.itch").write_bytes(b"")
    proc = efsdk("replay", str(tmp_path / "x.itch"), "--symbols", ",", check=False)
    assert proc.returncode == 1 and "--symbols needs at least one symbol" in proc.stderr


def test_demo_runs_the_whole_path():
    proc = efsdk("demo", "--offline", "--messages", "30000", "--symbols", "8", "--watch", "3")
    out = proc.stdout
    assert "What the strategy saw" in out
    assert "30,000 feed messages scanned" in out
    assert "malformed input: 0" in out


def test_cpu_pinning_refuses_a_cpu_that_is_not_ours():
    proc = efsdk("run", "--cpu", "4096", "--feed", "239.1.1.1:26400", "--duration", "0.1", check=False)
    assert proc.returncode == 1 and "--cpu 4096: this process may only run on CPUs" in proc.stderr


def test_replay_in_shards_shows_what_one_process_shows(day, tmp_path):
    path, summary = day
    data = path.read_bytes()
    pos = 0
    while pos < 4096:
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
    bad = tmp_path / "bad.itch"
    bad.write_bytes(data[:pos] + b"\x00\x05Zxxxx" + data[pos:-7])  # an unknown type, a truncated tail
    for file in (path, bad):
        docs = []
        for extra in ((), ("--shards", "2")):
            out = tmp_path / f"{file.stem}{len(extra)}.json"
            proc = efsdk("replay", str(file), "--json", str(out), "--depth", "4", "--top", "12", *extra)
            docs.append(json.loads(out.read_text()))
        one, sharded = docs
        for key in ("messages", "by_type", "instruments", "live_orders", "trades", "anomalies"):
            assert sharded[key] == one[key], key
        assert {k: v for k, v in sharded["book_stats"].items() if k != "records"} == {
            k: v for k, v in one["book_stats"].items() if k != "records"
        }
        assert sorted(sharded["books"], key=lambda b: b["symbol"]) == sorted(one["books"], key=lambda b: b["symbol"])
        split = [s["instruments"] for s in sharded["shards"]]
        assert sum(split) == 12 and all(split), split  # both shards hold books
    assert sharded["anomalies"] == {"unknown_type": 1, "truncated_tail": 1}
    assert "shards (messages applied each)" in proc.stdout and "levels" in proc.stdout


def test_replay_shards_refuses_what_it_cannot_shard(day):
    path, _ = day
    proc = efsdk("replay", str(path), "--shards", "2", "--symbols", "AAPL", check=False)
    assert proc.returncode == 1 and "--shards builds every instrument" in proc.stderr
    proc = efsdk("replay", str(path), "--shards", "-1", check=False)
    assert proc.returncode == 1 and "--shards must be >= 1" in proc.stderr
