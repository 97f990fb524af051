"""Synthetic ITCH session generator: determinism, book consistency, realism.

Every check here re-derives its facts from the bytes with an independent,
deliberately simple replay (plain dicts decoded through the layout table), not
from the generator's own bookkeeping.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
import subprocess
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import dpkt
import pytest
from sortedcontainers import SortedDict

from efsdk.itch.files import open_binary
from efsdk.itch.generator import (
    SessionGenerator,
    generate_session,
    min_messages,
    write_binaryfile,
)
from efsdk.itch.layouts import LAYOUTS, join_timestamp
from efsdk.moldudp64.codec import unpack_packet

ALL_TYPES = {t.decode() for t in LAYOUTS}
BOOK_TYPES = {"A", "F", "E", "C", "X", "D", "U"}
ORDER_TYPES = BOOK_TYPES | {"P"}


def decode(msg: bytes) -> dict:
    layout = LAYOUTS[msg[:1]]
    assert len(msg) == layout.size, f"{msg[:1]!r} is {len(msg)} bytes, layout says {layout.size}"
    rec = dict(zip(layout.field_names, layout.struct.unpack(msg)))
    rec["type"] = rec["type"].decode()
    rec["ts"] = join_timestamp(rec.pop("timestamp_hi"), rec.pop("timestamp_lo"))
    return rec


@lru_cache(maxsize=None)
def session(symbols: int, messages: int, seed: int) -> tuple[bytes, ...]:
    return tuple(generate_session(symbols, messages, seed))


class Replay:
    """A minimal independent book: asserts every lifecycle rule as it goes."""

    def __init__(self, thin: set[int] | None = None) -> None:
        self.live: dict[int, list] = {}  # ref -> [locate, side, price, shares]
        self.levels: dict[tuple[int, bytes], SortedDict] = {}  # (locate, side) -> price -> shares
        self.tickers: dict[int, bytes] = {}
        self.last_ref = 0
        self.last_match = 0
        self.matches: set[int] = set()
        self.counts: Counter[str] = Counter()
        self.halted: set[int] = set()
        self.thin = thin or set()
        self.level_changes: Counter[int] = Counter()  # locate -> levels created + removed
        self.book_events: Counter[int] = Counter()  # locate -> book-changing messages
        self.events: list[str] = []  # system event codes in order
        self.last_ts = 0

    # -- levels ----------------------------------------------------------
    def _level_add(self, loc: int, side: bytes, price: int, shares: int) -> None:
        book = self.levels.setdefault((loc, side), SortedDict())
        if price not in book:
            book[price] = 0
            self.level_changes[loc] += 1
        book[price] += shares

    def _level_sub(self, loc: int, side: bytes, price: int, shares: int) -> None:
        book = self.levels[(loc, side)]
        book[price] -= shares
        assert book[price] >= 0
        if book[price] == 0:
            del book[price]
            self.level_changes[loc] += 1

    def _check_uncrossed(self, loc: int) -> None:
        bids = self.levels.get((loc, b"B"))
        asks = self.levels.get((loc, b"S"))
        if bids and asks:
            best_bid, best_ask = bids.peekitem(-1)[0], asks.peekitem(0)[0]
            assert best_bid < best_ask, f"locate {loc} book crossed/locked: {best_bid} >= {best_ask}"

    def _live(self, ref: int, loc: int) -> list:
        assert ref in self.live, f"reference {ref} is not a live order"
        order = self.live[ref]
        assert order[0] == loc, f"reference {ref} belongs to locate {order[0]}, message says {loc}"
        return order

    def _new_ref(self, ref: int) -> None:
        assert ref > self.last_ref, f"order reference {ref} not above the previous {self.last_ref}"
        self.last_ref = ref

    def _new_match(self, match: int) -> None:
        assert match > self.last_match, f"match number {match} not above the previous {self.last_match}"
        self.last_match = match
        self.matches.add(match)

    # -- messages ----------------------------------------------------------
    def apply(self, msg: bytes) -> dict:
        m = decode(msg)
        t = m["type"]
        loc = m["stock_locate"]
        self.counts[t] += 1
        assert m["ts"] >= self.last_ts, "timestamps must not go backwards"
        self.last_ts = m["ts"]
        if t in ORDER_TYPES:
            assert loc in self.tickers, f"locate {loc} used before its stock directory message"
            assert loc not in self.halted, f"order flow on halted locate {loc}: {t}"
            assert self.events[-1] in ("S", "Q", "M"), f"order flow outside system hours: {t}"
        if t in BOOK_TYPES:
            self.book_events[loc] += 1
        if t in ("A", "F"):
            ref = m["order_reference_number"]
            self._new_ref(ref)
            assert ref not in self.live
            assert m["side"] in (b"B", b"S")
            assert m["shares"] > 0 and m["price"] > 0
            assert m["stock"] == self.tickers[loc]
            self.live[ref] = [loc, m["side"], m["price"], m["shares"]]
            self._level_add(loc, m["side"], m["price"], m["shares"])
            self._check_uncrossed(loc)
        elif t in ("E", "C"):
            o = self._live(m["order_reference_number"], loc)
            ex = m["executed_shares"]
            assert 0 < ex <= o[3], f"execution of {ex} shares against {o[3]} remaining"
            self._new_match(m["match_number"])
            o[3] -= ex
            self._level_sub(loc, o[1], o[2], ex)
            if t == "C":
                assert m["printable"] in (b"Y", b"N") and m["execution_price"] > 0
            if o[3] == 0:
                del self.live[m["order_reference_number"]]
        elif t == "X":
            o = self._live(m["order_reference_number"], loc)
            c = m["cancelled_shares"]
            assert 0 < c < o[3], f"partial cancel of {c} shares of {o[3]} must leave at least one"
            o[3] -= c
            self._level_sub(loc, o[1], o[2], c)
        elif t == "D":
            o = self._live(m["order_reference_number"], loc)
            self._level_sub(loc, o[1], o[2], o[3])
            del self.live[m["order_reference_number"]]
        elif t == "U":
            old = m["original_order_reference_number"]
            o = self._live(old, loc)
            new = m["new_order_reference_number"]
            self._new_ref(new)
            assert new not in self.live
            assert m["shares"] > 0 and m["price"] > 0
            self._level_sub(loc, o[1], o[2], o[3])
            del self.live[old]
            self.live[new] = [loc, o[1], m["price"], m["shares"]]
            self._level_add(loc, o[1], m["price"], m["shares"])
            self._check_uncrossed(loc)
        elif t == "P":
            assert m["order_reference_number"] == 0 and m["side"] == b"B"
            self._new_match(m["match_number"])
        elif t == "Q":
            self._new_match(m["match_number"])
            assert m["cross_type"] in (b"O", b"C", b"H", b"I")
        elif t == "B":
            assert m["match_number"] in self.matches, "broken trade must name an earlier match"
        elif t == "S":
            self.events.append(m["event_code"].decode())
        elif t == "R":
            assert loc not in self.tickers, f"second directory message for locate {loc}"
            assert m["stock"] not in self.tickers.values(), f"duplicate ticker {m['stock']!r}"
            assert m["round_lot_size"] == 100
            self.tickers[loc] = m["stock"]
        elif t == "H":
            if m["trading_state"] == b"T":
                self.halted.discard(loc)
            else:
                self.halted.add(loc)
        elif t == "h":
            if m["operational_halt_action"] == b"H":
                self.halted.add(loc)
            else:
                self.halted.discard(loc)
        return m

    def levels_of(self, loc: int) -> tuple[int, int]:
        return len(self.levels.get((loc, b"B"), ())), len(self.levels.get((loc, b"S"), ()))


@lru_cache(maxsize=None)
def replayed(symbols: int, messages: int, seed: int) -> tuple[Replay, SessionGenerator]:
    gen = SessionGenerator(symbols, messages, seed)
    deep = {s.locate for s in gen.symbols if s.deep}
    rp = Replay(thin={s.locate for s in gen.symbols} - deep)
    for msg in gen:
        rp.apply(msg)
    return rp, gen


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def _digest(msgs: object) -> str:
    h = hashlib.sha256()
    for m in msgs:  # type: ignore[attr-defined]
        h.update(m)
    return h.hexdigest()


def test_same_seed_gives_identical_bytes() -> None:
    a = _digest(generate_session(20, 30_000, 7))
    b = _digest(generate_session(20, 30_000, 7))
    assert a == b


def test_different_seed_gives_different_session() -> None:
    assert _digest(generate_session(20, 30_000, 7)) != _digest(generate_session(20, 30_000, 8))


def test_exact_message_count() -> None:
    for n in (min_messages(10), 12_345):
        assert sum(1 for _ in generate_session(10, n, 3)) == n


def test_generator_iterates_once() -> None:
    gen = SessionGenerator(5, 5_000, 1)
    list(gen)
    with pytest.raises(RuntimeError):
        iter(gen)


def test_rejects_impossible_sessions() -> None:
    with pytest.raises(ValueError):
        SessionGenerator(1, 100_000, 1)
    with pytest.raises(ValueError):
        SessionGenerator(50, min_messages(50) - 1, 1)


def test_binaryfile_round_trip_plain_and_gzip_deterministic(tmp_path) -> None:
    expected = list(generate_session(8, 20_000, 11))
    for name in ("day.itch", "day.itch.gz"):
        p1, p2 = tmp_path / ("1" + name), tmp_path / ("2" + name)
        s1 = write_binaryfile(p1, 8, 20_000, 11)
        write_binaryfile(p2, 8, 20_000, 11)
        assert p1.read_bytes() == p2.read_bytes(), "file output (gzip header included) must be reproducible"
        assert s1.bytes_written == p1.stat().st_size
        if name.endswith(".gz"):
            assert p1.read_bytes()[:2] == b"\x1f\x8b"
            gzip.decompress(p1.read_bytes())  # a valid gzip stream
        got = []
        with open_binary(p1) as f:
            data = f.read()
        off = 0
        while off < len(data):
            (n,) = struct.unpack_from(">H", data, off)
            got.append(data[off + 2 : off + 2 + n])
            off += 2 + n
        assert got == expected


# ---------------------------------------------------------------------------
# Consistency of the book and the day
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_lifecycle_consistency(seed: int) -> None:
    rp, gen = replayed(30, 120_000, seed)  # Replay.apply asserts every rule
    assert rp.counts["U"] > 1000 and rp.counts["E"] > 100
    assert len(rp.live) == gen.summary.live_orders


def test_day_structure() -> None:
    rp, gen = replayed(30, 120_000, 1)
    msgs = session(30, 120_000, 1)
    first, last = decode(msgs[0]), decode(msgs[-1])
    assert (first["type"], first["event_code"]) == ("S", b"O")
    assert (last["type"], last["event_code"]) == ("S", b"C")
    assert rp.events == ["O", "S", "Q", "M", "E", "C"]
    assert set(rp.tickers) == set(range(1, 31))
    # Every symbol trades from the start except the IPO, which starts halted.
    h = [decode(m) for m in msgs if m[:1] == b"H"]
    initial = {r["stock_locate"]: r["trading_state"] for r in reversed(h)}
    assert sum(1 for s in initial.values() if s == b"T") == 29
    assert initial[gen.ipo_locate] == b"H"
    assert not rp.halted, "every halt is lifted by the end of the day"
    # Timestamps inside the day: 03:00 .. 20:10.
    assert 3 * 3600 * 10**9 <= first["ts"] and rp.last_ts <= (20 * 3600 + 600) * 10**9


@pytest.mark.parametrize("seed", [1, 5, 9])
def test_all_23_types_in_a_10k_session(seed: int) -> None:
    types = {chr(m[0]) for m in generate_session(50, 10_000, seed)}
    assert types == ALL_TYPES, f"missing {sorted(ALL_TYPES - types)}"


def test_bursty_arrivals() -> None:
    ts = [decode(m)["ts"] for m in session(30, 120_000, 1)]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert min(gaps) >= 0
    sub_us = sum(1 for g in gaps if g < 1_000) / len(gaps)
    assert 0.2 < sub_us < 0.8, "bursts: a good share of messages within a microsecond of the previous"
    assert max(gaps) > 10**9, "quiet spells exist too"
    # U-shaped activity: the first market half hour is busier per minute than lunch.
    def per_min(lo_h: float, hi_h: float) -> float:
        lo, hi = lo_h * 3600e9, hi_h * 3600e9
        return sum(1 for t in ts if lo <= t < hi) / ((hi_h - lo_h) * 60)

    assert per_min(9.5, 10) > 1.5 * per_min(12, 14)
    assert per_min(12, 14) > 3 * per_min(4, 9.5)


# ---------------------------------------------------------------------------
# Realism: message mix, deep and thin books
# ---------------------------------------------------------------------------


def test_message_mix_200k() -> None:
    counts = Counter(chr(m[0]) for m in session(50, 200_000, 1))
    total = sum(counts.values())
    pct = {k: 100.0 * v / total for k, v in counts.items()}
    # Adds are allowed up to 49.5% (not 48%): the book must grow by ~15% of the
    # messages for the deep names to reach their depth with D >= 33%.
    assert 45.0 <= pct["A"] + pct["F"] <= 49.5
    assert pct["F"] < pct["A"] / 10
    assert 33.0 <= pct["D"] <= 38.0
    assert 8.0 <= pct["U"] <= 10.0
    assert 2.0 <= pct["X"] <= 3.0
    assert 2.0 <= pct["E"] <= 3.0
    assert 0.1 <= pct["C"] <= 0.3
    assert 0.3 <= pct["P"] <= 0.5
    assert pct["E"] > 5 * pct["C"]
    for t in ("I", "N", "Q", "B"):
        assert 0 < pct[t] < 2.0


def test_deep_and_thin_books() -> None:
    rp, gen = replayed(50, 200_000, 1)
    deep = [s.locate for s in gen.symbols if s.deep]
    thin = [s.locate for s in gen.symbols if not s.deep]
    assert 0.1 <= len(deep) / 50 <= 0.2
    deep_levels = max(min(rp.levels_of(loc)) for loc in deep)
    thin_levels = sorted(max(rp.levels_of(loc)) for loc in thin)
    assert deep_levels >= 800, "the deepest name has many hundreds of levels on each side"
    assert thin_levels[len(thin_levels) // 2] <= 40, "a typical thin name has a few dozen levels at most"
    # Deep names carry most of the flow and most of the resting orders.
    flow = Counter(o[0] for o in rp.live.values())
    assert sum(flow[loc] for loc in deep) > 0.8 * len(rp.live)
    # Level churn: on thin names a large share of book events create or remove
    # a price level; on the deep names much less often.
    thin_rate = sum(rp.level_changes[l] for l in thin) / sum(rp.book_events[l] for l in thin)
    deep_rate = sum(rp.level_changes[l] for l in deep) / sum(rp.book_events[l] for l in deep)
    assert thin_rate > 0.4, f"thin-name level churn {thin_rate:.2f} per book event"
    assert thin_rate > 2.5 * deep_rate


@pytest.mark.slow
def test_calibration_1m_messages_50_symbols() -> None:
    """The documented benchmark session: >= 150k live orders, >= 2000 levels a side."""
    un = {t: LAYOUTS[t].struct.unpack for t in (b"A", b"F", b"D", b"U", b"E", b"C", b"X")}
    live: dict[int, list] = {}  # ref -> [locate, side, price, shares]
    for m in generate_session(50, 1_000_000, 1):
        t = m[:1]
        if t == b"A" or t == b"F":
            f = un[t](m)
            live[f[5]] = [f[1], f[6], f[9], f[7]]
        elif t == b"D":
            del live[un[t](m)[5]]
        elif t == b"U":
            f = un[t](m)
            o = live.pop(f[5])
            live[f[6]] = [o[0], o[1], f[8], f[7]]
        elif t == b"E" or t == b"C" or t == b"X":
            f = un[t](m)
            o = live[f[5]]
            o[3] -= f[6]
            if o[3] == 0:
                del live[f[5]]
    assert len(live) >= 150_000
    levels = Counter((loc, side) for loc, side, _ in {(o[0], o[1], o[2]) for o in live.values()})
    assert max(levels.values()) >= 2000


# ---------------------------------------------------------------------------
# CLI: efsdk gen-itch
# ---------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
# Runs the real gen-itch command through argparse in a child process, without
# needing every other module of the efsdk CLI registry to exist.
_HARNESS = """
import argparse, sys
from efsdk.cli import gen_itch
parser = argparse.ArgumentParser(prog="efsdk")
gen_itch.register(parser.add_subparsers(dest="command"))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def _full_cli_available() -> bool:
    try:
        from efsdk.cli import _COMMANDS

        if importlib.util.find_spec("efsdk.cli.__main__") is None:
            return False
        return all(importlib.util.find_spec(f"efsdk.cli.{name}") is not None for name in _COMMANDS)
    except ImportError:
        return False


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _read_binaryfile(path: Path) -> list[bytes]:
    with open_binary(path) as f:
        data = f.read()
    out, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from(">H", data, off)
        out.append(data[off + 2 : off + 2 + n])
        off += 2 + n
    return out


def test_cli_gen_itch_writes_binaryfile_and_pcap(tmp_path: Path) -> None:
    out, pcap = tmp_path / "day.itch.gz", tmp_path / "day.pcap"
    proc = _run(
        [sys.executable, "-c", _HARNESS, "gen-itch", "--symbols", "12", "--messages", "15000", "--seed", "3",
         "-o", str(out), "--pcap", str(pcap), "--group", "239.1.2.3:30001", "--session", "TESTSESS01"]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "live orders at end" in proc.stdout and "add_order" in proc.stdout
    expected = list(generate_session(12, 15_000, 3))
    assert _read_binaryfile(out) == expected

    got, seq = [], 1
    with open(pcap, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            assert dpkt.utils.inet_to_str(ip.dst) == "239.1.2.3" and ip.data.dport == 30001
            header, blocks = unpack_packet(bytes(ip.data.data))
            assert header.session == b"TESTSESS01" and header.sequence == seq
            assert len(ip.data.data) <= 1400
            seq = header.next_sequence
            got.extend(bytes(b) for b in blocks)
    assert header.is_end_of_session and header.sequence == len(expected) + 1
    assert got == expected


# The real registry and main() (error handling, exit codes), limited to gen-itch.
_MAIN_HARNESS = """
import sys
import efsdk.cli as cli
cli._COMMANDS = ("gen_itch",)
sys.exit(cli.main(sys.argv[1:]))
"""


def test_cli_main_reports_bad_arguments(tmp_path: Path) -> None:
    common = ["gen-itch", "--messages", "20000", "-o", str(tmp_path / "x.itch"), "--pcap", str(tmp_path / "x.pcap")]
    for extra, words in (
        (["--group", "10.0.0.1:1"], "not a multicast"),
        (["--group", "239.1.1.1"], "GROUP:PORT"),
        (["--session", "MUCHTOOLONGNAME"], "longer than 10"),
        (["--symbols", "1"], "symbols must be >= 2"),
        (["--symbols", "50", "--messages", "100"], "at least"),
    ):
        proc = _run([sys.executable, "-c", _MAIN_HARNESS, *common, *extra])
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("efsdk gen-itch: error:") and words in proc.stderr, proc.stderr
    ok = _run([sys.executable, "-c", _MAIN_HARNESS, "gen-itch", "--symbols", "3", "--messages", "3000",
               "-o", str(tmp_path / "ok.itch")])  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert _read_binaryfile(tmp_path / "ok.itch") == list(generate_session(3, 3_000, 1))


@pytest.mark.skipif(
    not _full_cli_available(), reason="efsdk.cli.__main__ or another registered command module is not written yet"
)
def test_cli_via_python_m(tmp_path: Path) -> None:
    out = tmp_path / "d.itch"
    proc = _run([sys.executable, "-m", "efsdk.cli", "gen-itch", "--symbols", "5", "--messages", "5000", "-o", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert _read_binaryfile(out) == list(generate_session(5, 5_000, 1))
    bad = _run([sys.executable, "-m", "efsdk.cli", "gen-itch", "--symbols", "1", "-o", str(out)])
    assert bad.returncode == 1 and "error" in bad.stderr
