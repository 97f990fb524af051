"""A deterministic synthetic NASDAQ TotalView-ITCH 5.0 trading day.

The session is meant to be a fair benchmark for an order book, so it imitates
the things that make real TotalView expensive:

* the message mix of a real day: adds and deletes dominate, replaces are
  common, executions are a few percent;
* two kinds of names: a few **deep** names (most of the flow) that accumulate a
  large population of resting orders far from the touch, thousands of price
  levels per side, and many **thin** names whose handful of orders sit near the
  price, so levels are created and destroyed all the time;
* a consistent book: unique increasing order references, every E/C/X/D/U
  refers to a live order of its symbol, executions never exceed the remaining
  shares, the displayed book never locks or crosses;
* the shape of a day: system events, stock directory, opening/closing crosses
  with imbalance (NOII) messages, an IPO, a LULD pause, an operational halt, a
  late-day MWCB level-1 breach (which by rule does not halt trading after 15:25),
  a few broken trades; U-shaped intraday activity and bursty arrivals.

Price model (per symbol, all prices in 1/10000 dollars on a 1-cent grid): a
latent *fair* price does a random walk sized to about 1.5% daily volatility.
The displayed book is split by a boundary ``q``: bids rest at or below ``q``,
asks at or above ``q + tick``, so it can never cross.  Orders are placed a
heavy-tailed distance away from the fair price (clipped to their side of the
boundary).  Executions (E/C) hit the first order (time priority) at the best
level on the side the fair price pushes towards; when that level is empty the
boundary walks to the next populated level, which is how the traded price moves.

Everything is drawn from one ``random.Random(seed)``: same arguments, same bytes.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from efsdk.resource import Resource
from efsdk.itch.layouts import LAYOUTS, MWCB_PRICE_SCALE, PRICE_SCALE, TIMESTAMP_MAX, split_timestamp

__all__ = [
    "BinaryFileWriter",
    "SessionGenerator",
    "SessionSummary",
    "SymbolInfo",
    "generate_session",
    "min_messages",
    "write_binaryfile",
]

# ---------------------------------------------------------------------------
# Tunables.  Each has a reason; tests/unit/test_generator.py checks the targets.
# ---------------------------------------------------------------------------

TICK = 100  # $0.01 in ITCH price units (4 implied decimals): the Reg NMS tick above $1
HALF_TICK = TICK // 2  # midpoint executions print at half a cent
NS_PER_S = 1_000_000_000

# Order-flow mix, in percent of the whole session (the scheduled messages below
# take the remaining ~1.7%).  Targets a real NASDAQ day: adds and deletes
# dominate, replaces ~9-10%, partial cancels and executions a few percent, E >> C.
# Adds exceed deletes plus full fills by ~15.5% of all messages so the deep
# names accumulate a standing book (>= 150k live orders after 1M messages);
# with every other type inside its usual range that puts A+F near 49% and D
# near 33.4%, slightly above the ~48% often quoted for adds.
W_ADD = 47.25  # A
W_ADD_MPID = 2.0  # F: attributed adds are a small share of adds on TotalView
W_DELETE = 33.35
W_REPLACE = 9.6
W_CANCEL = 2.7  # X: partial cancels
W_EXEC = 2.7  # E
W_EXEC_PRICE = 0.2  # C: much rarer than E
W_TRADE = 0.45  # P: hidden (non-displayed) executions

# Share of deletes aimed at the far resting population of a deep name rather
# than the near-the-touch active orders: "rarely touched", not "never".
REST_DELETE_SHARE = 0.03

# Scheduled (non-flow) message budgets as fractions of the session.
NOII_SHARE = 0.014  # I: imbalance messages around the opening/closing crosses
RPII_SHARE = 0.003  # N: retail price improvement indicators

# Symbol classes.  Deep names are the mega caps: few symbols, most of the flow.
DEEP_FRACTION = 0.16
DEEP_FLOW_SHARE = 0.65
# Within a class activity follows a Zipf-like law: the busiest name of a class
# gets several times the flow of the quietest, as in real markets.
ZIPF_EXPONENT = 0.8
DEEP_PRICE_RANGE = (80.0, 500.0)  # dollars: room for thousands of 1-cent levels below
THIN_PRICE_RANGE = (3.0, 150.0)
DAILY_VOLATILITY = 0.015  # fair-price random walk size over the day (1 sigma)
MIN_FAIR_PRICE = 100 * TICK  # $1.00: keep every name a priced security

# Active orders sit near the fair price: distance in ticks is (Pareto(alpha)-1)
# x scale, so ~40% are at the fair price and a few percent tens of ticks away.
ACTIVE_ALPHA = 1.4
ACTIVE_SCALE_DEEP = 2.0
# Thin names are quoted wider, so their few orders spread over more levels
# and a level is created or emptied by a large share of their messages.
ACTIVE_SCALE_THIN = 5.0
ACTIVE_MAX_TICKS = 400
# Resting orders of deep names: log-uniform distance out to
# this many ticks or a fraction of the price, whichever is smaller.  That fills
# every level near the touch and thins out far away, like a real deep book.
REST_MAX_TICKS = 4000
REST_MAX_PRICE_FRACTION = 0.35
# ...shifted: density ~ 1/(d + shift), so the levels just behind the touch hold
# a few hundred orders on the deepest name (not thousands) and thin out slowly.
REST_SHIFT_TICKS = 20
# Feedback that keeps the near-touch population stable: a deep-name add goes to
# the resting population more often when the active population is above target.
# Deletes pick uniformly among active orders, so each name's active book settles
# where its add rate equals its delete rate (a Smith-Farmer style book).
ACTIVE_ORDERS_PER_SYMBOL = 25
REST_BASE_PROBABILITY = 0.5
REST_FEEDBACK_GAIN = 2.0

# Pressure towards the fair price: an execution hits the side the fair price
# points at with probability 0.5 + PRESSURE_BIAS, so the traded price follows it.
PRESSURE_BIAS = 0.3
# Replace keeps the size this often (pure re-pricing, the common HFT case).
REPLACE_KEEP_SIZE = 0.6
# Order references are not consecutive on a real feed (non-displayed orders use
# numbers too); this fraction of adds skips 1-3 numbers.
REF_GAP_PROBABILITY = 0.25

# Arrivals: a mixture of sub-microsecond bursts and exponential gaps whose mean
# follows the intraday activity profile.
BURST_PROBABILITY = 0.35
BURST_BITS = 9  # burst gaps are uniform 0..511 ns: getrandbits(9)
BURST_MEAN_NS = ((1 << BURST_BITS) - 1) / 2


def _hms(h: int, m: int, s: float = 0.0) -> int:
    return int(((h * 60 + m) * 60 + s) * NS_PER_S)


T_START_OF_MESSAGES = _hms(3, 5)  # NASDAQ opens its feed shortly after 03:00
T_START_OF_SYSTEM = _hms(4, 0)
T_MWCB_LEVELS = _hms(9, 0)
T_OPEN_NOII = _hms(9, 25)
T_START_OF_MARKET = _hms(9, 30)
T_IPO_QUOTING = _hms(10, 0)
T_IPO_DLCR = _hms(10, 40)
T_IPO_RELEASE = _hms(11, 0)
T_LULD_HALT = _hms(13, 0)
T_LULD_RESUME = _hms(13, 5)
T_OP_HALT = _hms(14, 0)
T_OP_RESUME = _hms(14, 5)
T_BROKEN_TRADES = (_hms(14, 30), _hms(15, 10))
T_MWCB_BREACH = _hms(15, 40)  # after 15:25 a level-1 breach does not halt trading
T_CLOSE_NOII = _hms(15, 50)
T_END_OF_MARKET = _hms(16, 0)
T_END_OF_SYSTEM = _hms(20, 0)
T_END_OF_MESSAGES = _hms(20, 5)

# Intraday activity (U shape): (start, end, relative share of order flow).
FLOW_SEGMENTS: tuple[tuple[int, int, float], ...] = (
    (T_START_OF_SYSTEM, T_START_OF_MARKET, 5.0),  # pre-market
    (T_START_OF_MARKET, _hms(10, 0), 12.0),  # the open
    (_hms(10, 0), _hms(12, 0), 22.0),
    (_hms(12, 0), _hms(14, 0), 15.0),  # lunch lull
    (_hms(14, 0), _hms(15, 30), 18.0),
    (_hms(15, 30), T_END_OF_MARKET, 22.0),  # into the close
    (T_END_OF_MARKET, T_END_OF_SYSTEM, 6.0),  # post-market
)

# Tickers: real NASDAQ names for realism; deep names are mega caps.  Beyond the
# lists, deterministic synthetic 4-letter tickers are used.
DEEP_TICKERS = (
    "AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL", "TSLA", "AVGO", "QQQ", "COST",
    "NFLX", "AMD", "ADBE", "PEP", "CSCO", "TMUS", "INTU", "QCOM", "TXN", "AMGN",
)  # fmt: skip
THIN_TICKERS = (
    "ZION", "WING", "SAIA", "EXPE", "FAST", "CHRW", "HBAN", "FITB", "NTRS", "JBHT",
    "LKQ", "POOL", "ULTA", "TROW", "ROST", "PAYX", "CTAS", "VRSK", "ODFL", "ALGN",
    "TQQQ", "SQQQ", "ZM", "DOCU", "ROKU", "PTON", "SIRI", "MRNA", "BIIB", "ILMN",
    "VRTX", "REGN", "DLTR", "EBAY", "MCHP", "NXPI", "SWKS", "KLAC", "LRCX", "AMAT",
    "MU", "WDC", "STX", "NTAP", "AKAM", "FFIV", "CDNS", "SNPS", "ANSS", "TTWO",
    "EA", "MTCH", "ZBRA", "TER", "ENPH", "FSLR", "PCAR", "CPRT", "CSGP", "IDXX",
    "DXCM", "ISRG", "HOLX", "INCY", "EXEL", "HALO", "LSCC", "MPWR", "ON", "QRVO",
    "CROX", "DKNG", "LYFT", "UAL", "AAL", "JBLU", "SBUX", "MAR", "BKNG", "ABNB",
)  # fmt: skip
ETP_LEVERAGE = {"QQQ": (1, b"N"), "TQQQ": (3, b"N"), "SQQQ": (3, b"Y")}
MPIDS = (b"VIRT", b"CDRG", b"GSCO", b"MSCO", b"JPMS", b"UBSS", b"NITE", b"SUSQ", b"JANE", b"HRTF")
MARKET_MAKERS_DEEP = 4  # L messages per deep name
MARKET_MAKERS_THIN = 2


def _apportion(weights: list[float], size: int, minimum: int = 0) -> list[int]:
    """Split ``size`` table slots in proportion to ``weights`` (largest remainder).

    Each weight gets at least ``minimum`` slots; the counts add up to ``size``
    exactly, so the quantisation error is below one slot per weight.
    """
    spare = size - minimum * len(weights)
    total = sum(weights)
    exact = [w / total * spare for w in weights]
    counts = [minimum + int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: int(exact[i]) - exact[i])
    for i in by_remainder[: size - sum(counts)]:
        counts[i] += 1
    return counts


def _share_table(pairs: list[tuple[int, float]], size: int = 256) -> tuple[int, ...]:
    """Expand (value, weight) pairs into a lookup table drawn with getrandbits(8)."""
    counts = _apportion([w for _, w in pairs], size)
    return tuple(v for (v, _), k in zip(pairs, counts) for _ in range(k))


# Displayed order sizes near the touch: round lots dominate, odd lots are common.
ACTIVE_SHARES = _share_table(
    [(100, 38), (200, 12), (300, 7), (400, 4), (500, 7), (1000, 4), (1500, 1), (2000, 1.5),
     (5000, 0.5), (150, 1.5), (250, 1.5), (1, 2), (5, 2), (10, 3), (20, 2), (25, 2), (50, 3),
     (75, 2), (99, 1), (30, 2), (60, 2), (40, 2)]
)  # fmt: skip
# Resting orders far away are larger (institutional / stub liquidity).
RESTING_SHARES = _share_table(
    [(100, 20), (200, 10), (300, 5), (500, 15), (1000, 20), (2000, 10), (5000, 8), (10000, 5),
     (50, 4), (25, 3)]
)  # fmt: skip
# Marketable order sizes: most US equity prints are 100 shares or odd lots.
EXEC_SHARES = _share_table(
    [(100, 45), (200, 7), (300, 4), (500, 4), (1000, 2), (1, 4), (5, 4), (10, 6), (20, 4),
     (25, 4), (40, 3), (50, 6), (75, 3)]
)  # fmt: skip


def _active_offsets(scale: float, size: int = 4096) -> tuple[int, ...]:
    """Quantile table of active-order distances from the fair price, in price units.

    Entry i is the Pareto(ACTIVE_ALPHA) quantile at (i + 0.5) / size, so drawing
    ``table[getrandbits(12)]`` samples the distribution (tail cut at 1/8192)
    for the price of one C call instead of a power and a float conversion.
    """
    out = []
    for i in range(size):
        u = (i + 0.5) / size
        ticks = int(((1.0 - u) ** (-1.0 / ACTIVE_ALPHA) - 1.0) * scale)
        out.append(min(ticks, ACTIVE_MAX_TICKS) * TICK)
    return tuple(out)


ACTIVE_OFFSETS_DEEP = _active_offsets(ACTIVE_SCALE_DEEP)
ACTIVE_OFFSETS_THIN = _active_offsets(ACTIVE_SCALE_THIN)

_BINARYFILE_LENGTH = struct.Struct(">H")
# Write BinaryFILE in batches: one write (and one gzip call) per batch rather
# than per 30-byte message keeps the writer off the profile.
_WRITE_BATCH = 4096
# gzip level 6 is the gzip(1) default; 9 is ~3x slower for <5% smaller files.
GZIP_LEVEL = 6


@dataclass(frozen=True)
class SymbolInfo:
    """Static description of one symbol of the session."""

    locate: int
    ticker: str
    deep: bool
    start_price: int  # ITCH price units
    weight: float  # relative share of order flow
    tracking: int


@dataclass
class SessionSummary:
    """What a finished session contained (filled in when the generator is exhausted)."""

    symbols: int
    messages: int
    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    live_orders: int = 0
    first_timestamp: int = 0
    last_timestamp: int = 0
    deep_symbols: tuple[str, ...] = ()
    # (ticker, live orders, bid levels, ask levels) at end of day, by locate
    books: list[tuple[str, int, int, int]] = field(default_factory=list)
    path: str | None = None
    bytes_written: int = 0

    @property
    def max_levels(self) -> tuple[int, int]:
        """Most price levels on any symbol's (bid, ask) side at the end of the day."""
        if not self.books:
            return 0, 0
        return max(b[2] for b in self.books), max(b[3] for b in self.books)

    def mix(self) -> dict[str, float]:
        """Share of each message type in percent."""
        total = sum(self.counts.values()) or 1
        return {k: 100.0 * v / total for k, v in self.counts.items()}


def _zipf_weights(n: int, total: float) -> list[float]:
    raw = [1.0 / (i + 1) ** ZIPF_EXPONENT for i in range(n)]
    s = sum(raw)
    return [total * r / s for r in raw]


def _synthetic_ticker(rng: random.Random, taken: set[str]) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while True:
        name = "".join(rng.choice(letters) for _ in range(4))
        if name not in taken:
            taken.add(name)
            return name


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _fixed_message_count(n_symbols: int, n_deep: int) -> int:
    """Scheduled messages that do not scale with the session length."""
    system = 6  # S: O S Q M E C
    directory = n_symbols  # R
    trading = n_symbols + 4  # H T for all; IPO Q + T; LULD H + T
    regsho = n_symbols + 1  # Y per symbol + a restriction on the LULD name
    mm = n_deep * MARKET_MAKERS_DEEP + (n_symbols - n_deep) * MARKET_MAKERS_THIN  # L
    crosses = (n_symbols - 1) + n_symbols + 2  # Q: open (IPO not yet trading), close, IPO, LULD reopen
    others = 1 + 1 + 1 + _LULD_COLLARS + 2 + _DLCR_MESSAGES + len(T_BROKEN_TRADES)  # V W K J h O B
    return system + directory + trading + regsho + mm + crosses + others


_LULD_COLLARS = 3  # J messages during the LULD pause
_LULD_NOII = 3  # I messages (cross type H) before the LULD reopening
_DLCR_MESSAGES = 4  # O messages before the IPO cross
_MIN_FLOW = 200  # enough order flow for every flow message type to have appeared


def _budgets(messages: int) -> tuple[int, int]:
    noii = max(_LULD_NOII + 2, round(messages * NOII_SHARE))
    rpii = max(1, round(messages * RPII_SHARE))
    return noii, rpii


def _n_deep(symbols: int) -> int:
    return max(1, min(symbols - 1, round(symbols * DEEP_FRACTION)))


def min_messages(symbols: int) -> int:
    """Smallest session length :class:`SessionGenerator` accepts for ``symbols``."""
    fixed = _fixed_message_count(symbols, _n_deep(symbols))
    n = fixed + _MIN_FLOW
    while True:  # the I/N budgets grow with the session; find the fixed point
        need = fixed + sum(_budgets(n)) + _MIN_FLOW
        if need <= n:
            return n
        n = need


# A scheduled message: (time, tie-break in schedule order, build(t) -> message).
_Scheduled = tuple[int, int, Callable[[int], bytes]]


class SessionGenerator:
    """One synthetic trading day.  Iterate once to get the unframed ITCH messages.

    After the iterator is exhausted, :attr:`summary` describes the session
    (message counts, live orders and price levels at the end of the day).

    ``symbols`` must be at least 2 (one name plays the IPO of the day);
    ``messages`` is the exact number of messages produced and must be at least
    :func:`min_messages`.  Raises :class:`ValueError` otherwise.
    """

    def __init__(self, symbols: int, messages: int, seed: int) -> None:
        if symbols < 2:
            raise ValueError(f"symbols must be >= 2 (one of them is the IPO of the day), got {symbols}")
        if symbols > 0xFFFF:
            raise ValueError(f"symbols must fit a u16 stock locate, got {symbols}")
        floor = min_messages(symbols)
        if messages < floor:
            raise ValueError(f"{symbols} symbols need a session of at least {floor} messages, got {messages}")
        self.n_symbols = symbols
        self.n_messages = messages
        self.seed = seed
        self._rng = random.Random(seed)
        self._started = False
        self.summary = SessionSummary(symbols=symbols, messages=messages, seed=seed)
        self._build_universe()

    def __repr__(self) -> str:
        return f"<SessionGenerator symbols={self.n_symbols} messages={self.n_messages} seed={self.seed}>"

    # -- universe ---------------------------------------------------------

    def _build_universe(self) -> None:
        rng = self._rng
        n = self.n_symbols
        n_deep = _n_deep(n)
        n_thin = n - n_deep
        weights = _zipf_weights(n_deep, DEEP_FLOW_SHARE) + _zipf_weights(n_thin, 1.0 - DEEP_FLOW_SHARE)
        taken = set(DEEP_TICKERS) | set(THIN_TICKERS)
        infos: list[SymbolInfo] = []
        for i in range(n):
            deep = i < n_deep
            if deep:
                ticker = DEEP_TICKERS[i] if i < len(DEEP_TICKERS) else _synthetic_ticker(rng, taken)
                lo, hi = DEEP_PRICE_RANGE
            else:
                j = i - n_deep
                ticker = THIN_TICKERS[j] if j < len(THIN_TICKERS) else _synthetic_ticker(rng, taken)
                lo, hi = THIN_PRICE_RANGE
            price = round(_log_uniform(rng, lo, hi) * PRICE_SCALE / TICK) * TICK
            # Tracking numbers are NASDAQ-internal; real feeds show a handful
            # of small values, so use one per symbol from a small set.
            infos.append(SymbolInfo(i + 1, ticker, deep, price, weights[i], 1 + i % 8))
        self.symbols: list[SymbolInfo] = infos
        # Special roles, on thin names from the end of the list (with only two
        # symbols the roles share the one thin name; their times never overlap).
        self.ipo_locate = n
        self.luld_locate = max(n - 1, n_deep + 1)
        self.op_halt_locate = max(n - 2, n_deep + 1)

    # -- helpers for scheduled messages -------------------------------------

    def _stock(self, loc: int) -> bytes:
        return self.symbols[loc - 1].ticker.encode("ascii").ljust(8)

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a SessionGenerator can be iterated only once; create a new one")
        self._started = True
        return self._run()

    # -- the day ------------------------------------------------------------

    def _run(self) -> Iterator[bytes]:  # noqa: C901 - one hot loop, kept flat for speed
        rng = self._rng
        rnd = rng.random
        bits = rng.getrandbits
        log = math.log
        exp = math.exp
        n = self.n_symbols
        syms = self.symbols

        # Per-locate state (index 0 unused).
        stock = [b""] + [self._stock(i) for i in range(1, n + 1)]
        trk = [0] + [s.tracking for s in syms]
        is_deep = [False] + [s.deep for s in syms]
        fair = [0] + [s.start_price for s in syms]
        bound = [0] + [s.start_price for s in syms]  # q: bids <= q < q + TICK <= asks
        bids: list[dict[int, dict[int, None]]] = [{} for _ in range(n + 1)]
        asks: list[dict[int, dict[int, None]]] = [{} for _ in range(n + 1)]
        rest: list[list[int]] = [[] for _ in range(n + 1)]
        halted = [False] * (n + 1)
        halted[self.ipo_locate] = True  # not trading until its IPO cross
        price_floor = [0] + [max(MIN_FAIR_PRICE, s.start_price // 2) for s in syms]
        price_cap = [0] + [s.start_price * 2 for s in syms]
        # distance in ticks = shift * exp(u * far_ln) - (shift - 1): from 1 tick
        # behind the touch out to the name's reach, density ~ 1/(d + shift)
        far_ln = [0.0] + [
            log(1.0 + max(2.0, min(REST_MAX_TICKS, REST_MAX_PRICE_FRACTION * s.start_price / TICK)) / REST_SHIFT_TICKS)
            for s in syms
        ]
        rest_shift = REST_SHIFT_TICKS - 1

        noii_budget, rpii_budget = _budgets(self.n_messages)
        fixed = _fixed_message_count(n, sum(1 for s in syms if s.deep))
        n_flow = self.n_messages - fixed - noii_budget - rpii_budget

        # Probability that an add moves the fair price one tick: sized so the
        # walk's standard deviation over the day is DAILY_VOLATILITY of price.
        add_share = (W_ADD + W_ADD_MPID) / _FLOW_TOTAL
        total_w = sum(s.weight for s in syms)
        p_fair = [0.0]
        for s in syms:
            sd_ticks = DAILY_VOLATILITY * s.start_price / TICK
            expected_adds = max(1.0, n_flow * add_share * s.weight / total_w)
            p_fair.append(min(1.0, sd_ticks * sd_ticks / expected_adds))

        # Live orders: ref -> [locate, is_buy, price, shares, pool, index in pool].
        orders: dict[int, list] = {}
        active: list[int] = []  # near-touch orders of every symbol, for uniform picks
        active_target = ACTIVE_ORDERS_PER_SYMBOL * n

        # Eligible-symbol pick tables (weighted), rebuilt on halts and releases.
        def tables() -> tuple[list[int], list[int]]:
            elig = [s for s in syms if not halted[s.locate]]
            deep = [s for s in elig if s.deep] or elig
            return _pick_table(elig), _pick_table(deep)

        pick_all, pick_deep = tables()

        state = _DayState(self, bound, fair, halted, stock, trk)
        schedule = self._schedule(state, noii_budget, rpii_budget)
        n_sched = len(schedule)
        si = 0
        next_t = schedule[0][0]

        pack_A = LAYOUTS[b"A"].struct.pack
        pack_F = LAYOUTS[b"F"].struct.pack
        pack_D = LAYOUTS[b"D"].struct.pack
        pack_U = LAYOUTS[b"U"].struct.pack
        pack_X = LAYOUTS[b"X"].struct.pack
        pack_E = LAYOUTS[b"E"].struct.pack
        pack_C = LAYOUTS[b"C"].struct.pack
        pack_P = LAYOUTS[b"P"].struct.pack
        A, F, D, U, X, E, C, P = b"A", b"F", b"D", b"U", b"X", b"E", b"C", b"P"
        BUY, SELL, YES, NO = b"B", b"S", b"Y", b"N"
        mpids = MPIDS
        active_sh, resting_sh, exec_sh = ACTIVE_SHARES, RESTING_SHARES, EXEC_SHARES
        offsets = [ACTIVE_OFFSETS_DEEP] + [ACTIVE_OFFSETS_DEEP if s.deep else ACTIVE_OFFSETS_THIN for s in syms]
        # Module constants as locals: the loop below runs once per message.
        tick = TICK
        half_tick = HALF_TICK
        p_burst = BURST_PROBABILITY
        burst_bits = BURST_BITS
        burst_term = BURST_PROBABILITY * BURST_MEAN_NS
        long_share = 1.0 - BURST_PROBABILITY
        p_ref_gap = REF_GAP_PROBABILITY
        p_keep = REPLACE_KEEP_SIZE
        bias = PRESSURE_BIAS
        rest_base = REST_BASE_PROBABILITY - REST_FEEDBACK_GAIN  # at len(active) == 0
        rest_gain = REST_FEEDBACK_GAIN / active_target
        ts_mask = 0xFFFFFFFF
        never = _NEVER

        # Cumulative thresholds of the flow mix, in dispatch order (most frequent first).
        c_add = (W_ADD + W_ADD_MPID) / _FLOW_TOTAL
        c_a = W_ADD / _FLOW_TOTAL
        c_del = c_add + W_DELETE / _FLOW_TOTAL
        c_del_rest = c_add + W_DELETE * REST_DELETE_SHARE / _FLOW_TOTAL
        c_rep = c_del + W_REPLACE / _FLOW_TOTAL
        c_can = c_rep + W_CANCEL / _FLOW_TOTAL
        c_exe = c_can + W_EXEC / _FLOW_TOTAL
        c_exp = c_exe + W_EXEC_PRICE / _FLOW_TOTAL

        counts = [0] * 256
        ref_next = 1
        match_next = 1
        state.match_next = match_next

        def unlink(ref: int, o: list) -> None:
            """Remove a live order from its pool (swap-remove) and its price level."""
            pool = o[4]
            i = o[5]
            last = pool.pop()
            if last != ref:
                pool[i] = last
                orders[last][5] = i
            del orders[ref]
            side = bids[o[0]] if o[1] else asks[o[0]]
            lv = side[o[2]]
            del lv[ref]
            if not lv:
                del side[o[2]]

        # Timestamps are split inline (as split_timestamp does) because the
        # schedule keeps every time below 24 h, far inside the 48-bit field.
        assert T_END_OF_MESSAGES <= TIMESTAMP_MAX
        t = 0
        for seg_start, seg_end, seg_count in _segment_counts(n_flow):
            if t < seg_start:
                t = seg_start
            left = seg_count
            while left:
                # Bursty arrivals; the long-gap mean is re-derived from the time
                # and messages left in the segment, so activity follows the
                # intraday profile without drifting past the segment's end.
                if rnd() < p_burst:
                    t += bits(burst_bits)
                else:
                    mean = ((seg_end - t) / left - burst_term) / long_share
                    if mean > 0.0:
                        t += int(-log(1.0 - rnd()) * mean)
                if t >= seg_end:  # segments are half-open; t < seg_end held before this step
                    t = seg_end - 1
                if next_t <= t:
                    state.match_next = match_next
                    while next_t <= t:
                        msg = schedule[si][2](next_t)
                        counts[msg[0]] += 1
                        yield msg
                        si += 1
                        next_t = schedule[si][0] if si < n_sched else never
                    match_next = state.match_next
                    if state.eligibility_changed:
                        state.eligibility_changed = False
                        pick_all, pick_deep = tables()
                hi = t >> 32
                lo = t & ts_mask

                while True:  # draw until the event is possible in the current book
                    r = rnd()
                    if r < c_add:
                        # ---- add (A / F)
                        loc = pick_all[bits(PICK_BITS)]
                        fl = fair[loc]
                        if rnd() < p_fair[loc]:  # fair price random walk, reflected in a band
                            if rnd() < 0.5:
                                fl = fl + tick if fl < price_cap[loc] else fl - tick
                            else:
                                fl = fl - tick if fl > price_floor[loc] else fl + tick
                            fair[loc] = fl
                        q = bound[loc]
                        buy = bits(1)
                        if is_deep[loc] and rnd() < rest_base + rest_gain * len(active):
                            # Resting orders are placed behind the touch, measured from the
                            # boundary: clipped onto it they would pile up at the best
                            # price, where they are rarely deleted (a real touch holds
                            # tens of orders, not thousands).
                            off = int(REST_SHIFT_TICKS * exp(rnd() * far_ln[loc]) - rest_shift) * tick
                            pool = rest[loc]
                            shares = resting_sh[bits(8)]
                            if buy:
                                price = q - off
                                if price < tick:
                                    price = tick
                                side = bids[loc]
                            else:
                                price = q + tick + off
                                side = asks[loc]
                        else:
                            off = offsets[loc][bits(12)]
                            pool = active
                            shares = active_sh[bits(8)]
                            if buy:
                                price = fl - off
                                if price > q:
                                    price = q
                                if price < tick:
                                    price = tick
                                side = bids[loc]
                            else:
                                price = fl + tick + off
                                if price <= q:
                                    price = q + tick
                                side = asks[loc]
                        ref = ref_next
                        ref_next += 1 if rnd() >= p_ref_gap else 2 + bits(1) + bits(1)
                        orders[ref] = [loc, buy, price, shares, pool, len(pool)]
                        pool.append(ref)
                        lv = side.get(price)
                        if lv is None:
                            side[price] = {ref: None}
                        else:
                            lv[ref] = None
                        if r < c_a:
                            msg = pack_A(A, loc, trk[loc], hi, lo, ref, BUY if buy else SELL, shares, stock[loc], price)
                        else:
                            msg = pack_F(
                                F, loc, trk[loc], hi, lo, ref, BUY if buy else SELL, shares, stock[loc], price,
                                mpids[bits(3)],
                            )  # fmt: skip
                        break
                    if r < c_del:
                        # ---- delete (D): mostly a uniformly random active order
                        if r < c_del_rest:
                            pool = rest[pick_deep[bits(PICK_BITS)]]
                            if not pool:
                                pool = active
                        else:
                            pool = active
                        if not pool:
                            continue
                        i = int(rnd() * len(pool))
                        ref = pool[i]
                        o = orders[ref]
                        loc = o[0]
                        if halted[loc]:
                            continue
                        # unlink(), inlined: this is the most common removal
                        last = pool.pop()
                        if last != ref:
                            pool[i] = last
                            orders[last][5] = i
                        del orders[ref]
                        side = bids[loc] if o[1] else asks[loc]
                        price = o[2]
                        lv = side[price]
                        del lv[ref]
                        if not lv:
                            del side[price]
                        msg = pack_D(D, loc, trk[loc], hi, lo, ref)
                        break
                    if r < c_rep:
                        # ---- replace (U): re-price near the fair price, new ref, back of the queue
                        if not active:
                            continue
                        i = int(rnd() * len(active))
                        old = active[i]
                        o = orders[old]
                        loc = o[0]
                        if halted[loc]:
                            continue
                        buy = o[1]
                        side = bids[loc] if buy else asks[loc]
                        price = o[2]
                        lv = side[price]
                        del lv[old]
                        if not lv:
                            del side[price]
                        q = bound[loc]
                        if buy:
                            price = fair[loc] - offsets[loc][bits(12)]
                            if price > q:
                                price = q
                            if price < tick:
                                price = tick
                        else:
                            price = fair[loc] + tick + offsets[loc][bits(12)]
                            if price <= q:
                                price = q + tick
                        shares = o[3] if rnd() < p_keep else active_sh[bits(8)]
                        ref = ref_next
                        ref_next += 1
                        del orders[old]
                        orders[ref] = o
                        active[i] = ref
                        o[2] = price
                        o[3] = shares
                        lv = side.get(price)
                        if lv is None:
                            side[price] = {ref: None}
                        else:
                            lv[ref] = None
                        msg = pack_U(U, loc, trk[loc], hi, lo, old, ref, shares, price)
                        break
                    if r < c_can:
                        # ---- partial cancel (X): always leaves at least one share
                        if not active:
                            continue
                        ref = active[int(rnd() * len(active))]
                        o = orders[ref]
                        loc = o[0]
                        shares = o[3]
                        if shares < 2 or halted[loc]:
                            continue
                        cancelled = 1 + int(rnd() * (shares - 1))
                        o[3] = shares - cancelled
                        msg = pack_X(X, loc, trk[loc], hi, lo, ref, cancelled)
                        break
                    if r < c_exp:
                        # ---- execution (E / C) at the best level, first in time priority
                        loc = pick_all[bits(PICK_BITS)]
                        q = bound[loc]
                        fl = fair[loc]
                        if rnd() < (0.5 + bias if fl > q else 0.5 - bias if fl < q else 0.5):
                            side = asks[loc]
                            if not side:
                                continue
                            best = q + tick
                            lv = side.get(best)
                            while lv is None:  # walk up to the best ask: the price ticks up
                                best += tick
                                lv = side.get(best)
                            bound[loc] = best - tick
                        else:
                            side = bids[loc]
                            if not side:
                                continue
                            best = q
                            lv = side.get(best)
                            while lv is None:
                                best -= tick
                                lv = side.get(best)
                            bound[loc] = best
                        ref = next(iter(lv))
                        o = orders[ref]
                        shares = o[3]
                        executed = exec_sh[bits(8)]
                        if executed >= shares:
                            executed = shares
                            unlink(ref, o)
                        else:
                            o[3] = shares - executed
                        match = match_next
                        match_next += 1
                        if r < c_exe:
                            msg = pack_E(E, loc, trk[loc], hi, lo, ref, executed, match)
                        else:
                            # Executed at its displayed price; non-printable when
                            # it will be reported in a later print (rare).
                            printable = YES if rnd() < 0.8 else NO
                            msg = pack_C(C, loc, trk[loc], hi, lo, ref, executed, match, printable, best)
                        break
                    # ---- hidden execution (P): no displayed order involved
                    loc = pick_all[bits(PICK_BITS)]
                    q = bound[loc]
                    u = rnd()
                    # Midpoint pegs print at the half cent; others at either touch.
                    price = q + half_tick if u < 0.5 else q if u < 0.75 else q + tick
                    match = match_next
                    match_next += 1
                    # NASDAQ sends order reference 0 and side B on P since 2014.
                    msg = pack_P(P, loc, trk[loc], hi, lo, 0, BUY, exec_sh[bits(8)], stock[loc], price, match)
                    break

                counts[msg[0]] += 1
                yield msg
                left -= 1

        state.match_next = match_next
        while si < n_sched:  # end of day: E, C and anything after the last flow message
            if t < schedule[si][0]:
                t = schedule[si][0]
            msg = schedule[si][2](t)
            counts[msg[0]] += 1
            yield msg
            si += 1

        summary = self.summary
        summary.counts = {chr(k): v for k, v in enumerate(counts) if v}
        summary.live_orders = len(orders)
        summary.first_timestamp = schedule[0][0]
        summary.last_timestamp = t
        summary.deep_symbols = tuple(s.ticker for s in syms if s.deep)
        per_loc = [0] * (n + 1)
        for o in orders.values():
            per_loc[o[0]] += 1
        summary.books = [(s.ticker, per_loc[s.locate], len(bids[s.locate]), len(asks[s.locate])) for s in syms]

    # -- scheduled messages ---------------------------------------------------

    def _schedule(self, st: _DayState, noii_budget: int, rpii_budget: int) -> list[_Scheduled]:
        """Every non-flow message of the day: (time, tie-break, build(t) -> bytes).

        Builders run at emission time, so crosses and imbalances use the
        book's price at that moment and halts change which names trade.
        """
        rng = self._rng
        syms = self.symbols
        items: list[_Scheduled] = []

        def at(t: int, build: Callable[[int], bytes]) -> None:
            items.append((t, len(items), build))

        system = st.system_event
        at(T_START_OF_MESSAGES, system(b"O"))
        t = T_START_OF_MESSAGES + 1_000_000  # directory follows ~1 ms later, ~10 us apart
        for s in syms:
            at(t, st.directory(s))
            t += 10_000
        for s in syms:
            if s.locate == self.ipo_locate:
                at(t, st.trading_action(s.locate, b"H", b"IPO1"))
            else:
                at(t, st.trading_action(s.locate, b"T", b"    "))
            t += 10_000
        for s in syms:
            at(t, st.reg_sho(s.locate, b"0"))
            t += 10_000
        for s in syms:
            k = MARKET_MAKERS_DEEP if s.deep else MARKET_MAKERS_THIN
            for mpid in rng.sample(MPIDS, k):
                at(t, st.market_maker(s.locate, mpid, primary=mpid == MPIDS[s.locate % len(MPIDS)]))
                t += 10_000
        at(T_START_OF_SYSTEM, system(b"S"))
        at(T_MWCB_LEVELS, st.mwcb_levels)

        regular = [s.locate for s in syms if s.locate not in (self.ipo_locate, self.luld_locate, self.op_halt_locate)]
        if not regular:
            regular = [s.locate for s in syms if s.locate != self.ipo_locate]
        trading_at_open = [s.locate for s in syms if s.locate != self.ipo_locate]

        # NOII: opening window (09:25-09:30) and closing window (15:50-16:00),
        # one round over the names per dissemination interval, as NASDAQ does.
        n_cross_noii = noii_budget - _LULD_NOII  # >= 2 by _budgets()
        n_open = max(1, n_cross_noii * 2 // 5)
        n_close = n_cross_noii - n_open
        for start, end, count, cross, names in (
            (T_OPEN_NOII, T_START_OF_MARKET, n_open, b"O", trading_at_open),
            (T_CLOSE_NOII, T_END_OF_MARKET, n_close, b"C", [s.locate for s in syms]),
        ):
            rounds = -(-count // len(names))
            interval = (end - start) // rounds
            for i in range(count):
                rnd_i, j = divmod(i, len(names))
                at(start + rnd_i * interval + j * 2_000, st.noii(names[j], cross))

        at(T_START_OF_MARKET, system(b"Q"))
        for j, loc in enumerate(trading_at_open):
            at(T_START_OF_MARKET + 1_000_000 + j * 5_000, st.cross(loc, b"O"))

        # IPO of the day: quoting period, DLCR price discovery, IPO cross, trading.
        ipo = self.ipo_locate
        at(T_IPO_QUOTING, st.ipo_update(ipo))
        at(T_IPO_QUOTING + 1_000, st.trading_action(ipo, b"Q", b"IPOQ"))
        for i in range(_DLCR_MESSAGES):
            at(T_IPO_DLCR + i * 5 * 60 * NS_PER_S, st.dlcr(ipo))
        at(T_IPO_RELEASE, st.cross(ipo, b"H"))
        at(T_IPO_RELEASE + 1_000, st.trading_action(ipo, b"T", b"    ", release=True))

        # LULD pause on a thin name: halt, collars, imbalances, reopening cross.
        luld = self.luld_locate
        at(T_LULD_HALT, st.trading_action(luld, b"H", b"LUDP", halt=True))
        at(T_LULD_HALT + 1_000, st.reg_sho(luld, b"1"))
        for i in range(_LULD_COLLARS):
            at(T_LULD_HALT + (i * 100 + 1) * NS_PER_S, st.luld_collar(luld, i))
        for i in range(_LULD_NOII):
            at(T_LULD_RESUME - (_LULD_NOII - i) * 20 * NS_PER_S, st.noii(luld, b"H"))
        at(T_LULD_RESUME, st.cross(luld, b"H"))
        at(T_LULD_RESUME + 1_000, st.trading_action(luld, b"T", b"    ", release=True))

        # Operational halt of another thin name on NASDAQ only.
        op = self.op_halt_locate
        at(T_OP_HALT, st.operational_halt(op, b"H", halt=True))
        at(T_OP_RESUME, st.operational_halt(op, b"T", release=True))

        for t_b in T_BROKEN_TRADES:
            at(t_b, st.broken_trade)
        at(T_MWCB_BREACH, st.mwcb_breach)

        # RPII: retail interest comes and goes on regular names during market hours.
        for _ in range(rpii_budget):
            at(rng.randrange(T_START_OF_MARKET + NS_PER_S, T_END_OF_MARKET), st.rpii(rng.choice(regular)))

        at(T_END_OF_MARKET, system(b"M"))
        for j, s in enumerate(syms):
            at(T_END_OF_MARKET + 1_000_000 + j * 5_000, st.cross(s.locate, b"C"))
        at(T_END_OF_SYSTEM, system(b"E"))
        at(T_END_OF_MESSAGES, system(b"C"))
        items.sort(key=lambda it: (it[0], it[1]))
        return items


# Weighted symbol picks index a 65,536-entry table with getrandbits(16): one C
# call per pick, and enough resolution for every one of up to 65,535 locates.
PICK_BITS = 16


def _pick_table(symbols: list[SymbolInfo]) -> list[int]:
    """Locates repeated in proportion to weight, exactly 2**PICK_BITS entries (>= 1 each)."""
    counts = _apportion([s.weight for s in symbols], 1 << PICK_BITS, minimum=1)
    return [s.locate for s, k in zip(symbols, counts) for _ in range(k)]


_FLOW_TOTAL = W_ADD + W_ADD_MPID + W_DELETE + W_REPLACE + W_CANCEL + W_EXEC + W_EXEC_PRICE + W_TRADE
_NEVER = 1 << 62


def _segment_counts(n_flow: int) -> list[tuple[int, int, int]]:
    """Split the flow messages over the intraday segments by activity share."""
    total = sum(w for _, _, w in FLOW_SEGMENTS)
    out, used = [], 0
    for i, (start, end, w) in enumerate(FLOW_SEGMENTS):
        k = n_flow - used if i == len(FLOW_SEGMENTS) - 1 else round(n_flow * w / total)
        used += k
        out.append((start, end, k))
    return out


class _DayState:
    """Builders for scheduled messages, sharing the generator's live state."""

    def __init__(
        self,
        gen: SessionGenerator,
        bound: list[int],
        fair: list[int],
        halted: list[bool],
        stock: list[bytes],
        trk: list[int],
    ) -> None:
        self.gen = gen
        self.rng = gen._rng
        self.bound = bound
        self.fair = fair
        self.halted = halted
        self.stock = stock
        self.trk = trk
        self.match_next = 1
        self.eligibility_changed = False

    def _header(self, loc: int, t: int) -> tuple[int, int, int, int]:
        hi, lo = split_timestamp(t)
        return loc, self.trk[loc], hi, lo

    def system_event(self, code: bytes) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"S"].struct.pack
        return lambda t: pack(b"S", 0, 0, *split_timestamp(t), code)

    def directory(self, s: SymbolInfo) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"R"].struct.pack
        leverage, inverse = ETP_LEVERAGE.get(s.ticker, (0, b"N"))
        etp = s.ticker in ETP_LEVERAGE
        category = b"Q" if s.deep else b"QGS"[s.locate % 3 : s.locate % 3 + 1]

        def build(t: int) -> bytes:
            return pack(
                b"R", *self._header(s.locate, t), self.stock[s.locate],
                category,
                b"N",  # financial status: normal
                100,  # round lot size
                b"N",  # round lots only
                b"Q" if etp else b"C",  # issue classification: other (ETP) / common stock
                b"E " if etp else b"Z ",  # issue sub-type
                b"P",  # authenticity: production
                b"N",  # short sale threshold
                b"Y" if s.locate == self.gen.ipo_locate else b"N",
                b"1" if s.deep else b"2",  # LULD tier: large caps are tier 1
                b"Y" if etp else b"N",
                leverage,
                inverse,
            )  # fmt: skip

        return build

    def trading_action(
        self, loc: int, state: bytes, reason: bytes, *, halt: bool = False, release: bool = False
    ) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"H"].struct.pack

        def build(t: int) -> bytes:
            if halt or release:
                self.halted[loc] = halt
                self.eligibility_changed = True
            return pack(b"H", *self._header(loc, t), self.stock[loc], state, b" ", reason)

        return build

    def reg_sho(self, loc: int, action: bytes) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"Y"].struct.pack
        return lambda t: pack(b"Y", *self._header(loc, t), self.stock[loc], action)

    def market_maker(self, loc: int, mpid: bytes, *, primary: bool) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"L"].struct.pack
        return lambda t: pack(b"L", *self._header(loc, t), mpid, self.stock[loc], b"Y" if primary else b"N", b"N", b"A")

    def mwcb_levels(self, t: int) -> bytes:
        # Levels 1/2/3 are 7/13/20% below the prior S&P 500 close (here 4,800.00).
        ref = 4800 * MWCB_PRICE_SCALE
        return LAYOUTS[b"V"].struct.pack(
            b"V", 0, 0, *split_timestamp(t), ref * 93 // 100, ref * 87 // 100, ref * 80 // 100
        )

    def mwcb_breach(self, t: int) -> bytes:
        return LAYOUTS[b"W"].struct.pack(b"W", 0, 0, *split_timestamp(t), b"1")

    def _near(self, loc: int, ticks: int) -> int:
        return max(TICK, self.bound[loc] + self.rng.randint(-ticks, ticks) * TICK)

    def noii(self, loc: int, cross: bytes) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"I"].struct.pack

        def build(t: int) -> bytes:
            rng = self.rng
            paired = rng.randrange(1, 400) * 100
            direction = rng.choice(b"BBSSNO")
            imbalance = 0 if direction in (ord("N"), ord("O")) else rng.randrange(1, 200) * 100
            ref = self.bound[loc]
            return pack(
                b"I", *self._header(loc, t), paired, imbalance, bytes((direction,)), self.stock[loc],
                self._near(loc, 20), self._near(loc, 5), ref, cross,
                rng.choice((b"L", b"L", b"L", b"1", b"2", b" ")),  # mostly < 1% from the reference
            )  # fmt: skip

        return build

    def cross(self, loc: int, cross_type: bytes) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"Q"].struct.pack

        def build(t: int) -> bytes:
            lots = self.rng.randrange(50, 5000) if self.gen.symbols[loc - 1].deep else self.rng.randrange(1, 500)
            match = self.match_next
            self.match_next += 1
            return pack(b"Q", *self._header(loc, t), lots * 100, self.stock[loc], self.bound[loc], match, cross_type)

        return build

    def broken_trade(self, t: int) -> bytes:
        # A trade already printed today is broken (clearly erroneous execution).
        match = self.rng.randrange(1, self.match_next) if self.match_next > 1 else 1
        return LAYOUTS[b"B"].struct.pack(b"B", 0, 0, *split_timestamp(t), match)

    def ipo_update(self, loc: int) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"K"].struct.pack
        release_s = T_IPO_RELEASE // NS_PER_S  # seconds since midnight
        return lambda t: pack(
            b"K", *self._header(loc, t), self.stock[loc], release_s, b"A", self.gen.symbols[loc - 1].start_price
        )

    def dlcr(self, loc: int) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"O"].struct.pack

        def build(t: int) -> bytes:
            ref = self.bound[loc]
            near = self._near(loc, 10)
            return pack(
                b"O", *self._header(loc, t), self.stock[loc], b"Y",
                ref * 80 // 100, ref * 120 // 100,  # allowable range: +-20% of the reference
                near, t, near * 90 // 100, near * 110 // 100,
            )  # fmt: skip

        return build

    def luld_collar(self, loc: int, extension: int) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"J"].struct.pack

        def build(t: int) -> bytes:
            ref = self.bound[loc]
            # Collars are 5% either side for tier-2 names, widened per extension.
            band = ref * (5 + 5 * extension) // 100
            return pack(b"J", *self._header(loc, t), self.stock[loc], ref, ref + band, max(TICK, ref - band), extension)

        return build

    def operational_halt(
        self, loc: int, action: bytes, *, halt: bool = False, release: bool = False
    ) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"h"].struct.pack

        def build(t: int) -> bytes:
            self.halted[loc] = halt
            self.eligibility_changed = True
            return pack(b"h", *self._header(loc, t), self.stock[loc], b"Q", action)

        return build

    def rpii(self, loc: int) -> Callable[[int], bytes]:
        pack = LAYOUTS[b"N"].struct.pack
        return lambda t: pack(b"N", *self._header(loc, t), self.stock[loc], self.rng.choice((b"B", b"S", b"A", b"N")))


# ---------------------------------------------------------------------------
# Public helpers
# ---------------------------------------------------------------------------


def generate_session(symbols: int, messages: int, seed: int) -> Iterator[bytes]:
    """Yield the ``messages`` unframed ITCH 5.0 messages of a synthetic day.

    Deterministic: the same arguments give the same bytes.  Use
    :class:`SessionGenerator` directly to get the end-of-day summary.
    """
    return iter(SessionGenerator(symbols, messages, seed))


class BinaryFileWriter(Resource):
    """Write NASDAQ BinaryFILE framing (u16 big-endian length + message).

    A path ending in ``.gz`` is gzip-compressed with a zero mtime and no file
    name in the header, so the output is byte-identical between runs.
    """

    def __init__(self, path: str | os.PathLike[str], *, compresslevel: int = GZIP_LEVEL) -> None:
        self.path = os.fspath(path)
        self._raw: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._out: BinaryIO
        if self.path.endswith(".gz"):
            self._out = gzip.GzipFile(  # type: ignore[assignment]
                filename="", mode="wb", fileobj=self._raw, compresslevel=compresslevel, mtime=0
            )
        else:
            self._out = self._raw
        self._batch: list[bytes] = []
        self.messages = 0
        self.uncompressed_bytes = 0
        self._opened()

    def write(self, message: bytes) -> None:
        """Append one message."""
        batch = self._batch
        batch.append(_BINARYFILE_LENGTH.pack(len(message)))
        batch.append(message)
        if len(batch) >= 2 * _WRITE_BATCH:
            self._flush()

    def write_all(self, messages: Iterable[bytes]) -> None:
        """Append every message of ``messages``."""
        batch = self._batch
        append = batch.append
        pack_len = _BINARYFILE_LENGTH.pack
        limit = 2 * _WRITE_BATCH
        for m in messages:
            append(pack_len(len(m)))
            append(m)
            if len(batch) >= limit:
                self._flush()

    def _flush(self) -> None:
        if self._batch:
            data = b"".join(self._batch)
            self._out.write(data)
            self.messages += len(self._batch) // 2
            self.uncompressed_bytes += len(data)
            self._batch.clear()

    def _release(self) -> None:
        """Flush and close; safe to call twice."""
        try:
            self._flush()
            if self._out is not self._raw:
                self._out.close()
        finally:
            self._raw.close()


    def __repr__(self) -> str:
        return f"<BinaryFileWriter {self.path!r} messages={self.messages + len(self._batch) // 2}>"


def write_binaryfile(path: str | os.PathLike[str], symbols: int, messages: int, seed: int) -> SessionSummary:
    """Generate a session into a BinaryFILE (gzip if ``path`` ends in ``.gz``).

    Returns the session summary with ``path`` and ``bytes_written`` (the size
    of the file on disk) filled in.
    """
    gen = SessionGenerator(symbols, messages, seed)
    with BinaryFileWriter(path) as writer:
        writer.write_all(gen)
    summary = gen.summary
    summary.path = os.fspath(path)
    summary.bytes_written = os.path.getsize(path)
    return summary
