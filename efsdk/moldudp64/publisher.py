"""MoldUDP64 publisher: ITCH messages -> MTU-bounded downstream packets over UDP.

:class:`MoldPublisher` numbers messages, packs them with
:func:`efsdk.moldudp64.codec.packetize`, sends each packet to one (multicast
group or unicast) ``host:port``, keeps the last messages in a
:class:`MessageHistory` for a :class:`~efsdk.moldudp64.request_server.MoldRequestServer`,
sends heartbeats when idle and end-of-session packets at the end.

For tests, an :class:`Impairment` drops, duplicates or reorders chosen data
packets (by index, or a seeded random fraction): loss and reordering without
netem or root.  Re-request answers never go through it.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from efsdk.resource import Resource
from efsdk.moldudp64.codec import (
    DEFAULT_MAX_PAYLOAD,
    encode_session,
    pack_end_of_session,
    pack_heartbeat,
    packetize,
)

__all__ = ["Impairment", "MessageHistory", "MoldPublisher", "PublisherStats"]

log = logging.getLogger(__name__)

# NASDAQ sends a heartbeat about once a second in quiet periods.
DEFAULT_HEARTBEAT_INTERVAL = 1.0
# Enough to answer any re-request of the last few seconds of a busy feed.
DEFAULT_HISTORY = 1_000_000


class MessageHistory:
    """The last ``capacity`` messages by sequence number, for re-requests.

    A ring indexed by ``seq % capacity``: O(1) append and lookup.  Thread-safe
    (the publisher appends while a request server reads).
    """

    def __init__(self, capacity: int = DEFAULT_HISTORY, first_seq: int = 1) -> None:
        if capacity < 1:
            raise ValueError("history capacity must be >= 1")
        self.capacity = capacity
        self._ring: list[bytes | None] = [None] * capacity
        self._first = first_seq  # oldest sequence still held
        self._next = first_seq  # next sequence to be appended
        self._lock = threading.Lock()

    @property
    def first(self) -> int:
        """Oldest sequence number still held."""
        return self._first

    @property
    def next(self) -> int:
        """Sequence number the next appended message will get."""
        return self._next

    def extend(self, messages: list[bytes]) -> int:
        """Append ``messages``; return the sequence number of the first one."""
        with self._lock:
            first = seq = self._next
            ring, cap = self._ring, self.capacity
            for msg in messages:
                ring[seq % cap] = msg
                seq += 1
            self._next = seq
            if seq - self._first > cap:
                self._first = seq - cap
            return first

    def get(self, first: int, count: int) -> tuple[int, list[bytes]]:
        """Held messages among ``[first, first + count)``: ``(first seq returned, messages)``.

        The part older than :attr:`first` or not yet sent is left out, so the
        result may be shorter than asked (or empty).
        """
        with self._lock:
            lo = max(first, self._first)
            hi = min(first + count, self._next)
            ring, cap = self._ring, self.capacity
            return lo, [ring[s % cap] for s in range(lo, hi)]  # type: ignore[misc]

    def __len__(self) -> int:
        return self._next - self._first

    def __repr__(self) -> str:
        return f"<MessageHistory {self._first}..{self._next - 1} capacity={self.capacity}>"


@dataclass
class Impairment:
    """Test-only damage applied to outgoing data packets (indexes count data packets from 0).

    Explicit sets act first; otherwise one seeded draw per packet picks drop,
    duplicate or reorder with the given probabilities.  A reordered packet is
    held back and sent after the next ``reorder_depth`` packets (or at the
    next heartbeat/flush).  Heartbeats and end of session are never impaired.
    """

    drop: frozenset[int] = frozenset()
    duplicate: frozenset[int] = frozenset()
    reorder: frozenset[int] = frozenset()
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    reorder_depth: int = 1
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.drop = frozenset(self.drop)
        self.duplicate = frozenset(self.duplicate)
        self.reorder = frozenset(self.reorder)
        if self.drop_rate + self.duplicate_rate + self.reorder_rate > 1:
            raise ValueError("impairment rates add up to more than 1")
        if self.reorder_depth < 1:
            raise ValueError("reorder_depth must be >= 1")
        self._rng = random.Random(self.seed)

    def decide(self, index: int) -> str | None:
        """``"drop"``, ``"duplicate"``, ``"reorder"`` or ``None`` for data packet ``index``."""
        r = self._rng.random()  # always drawn, so explicit sets don't shift the random ones
        if index in self.drop:
            return "drop"
        if index in self.duplicate:
            return "duplicate"
        if index in self.reorder:
            return "reorder"
        if r < self.drop_rate:
            return "drop"
        r -= self.drop_rate
        if r < self.duplicate_rate:
            return "duplicate"
        r -= self.duplicate_rate
        if r < self.reorder_rate:
            return "reorder"
        return None


@dataclass
class PublisherStats:
    messages: int = 0
    data_packets: int = 0  # packets built (before impairment)
    datagrams_sent: int = 0  # everything actually sent, heartbeats included
    heartbeats: int = 0
    end_of_session: int = 0
    dropped: int = 0  # by the impairment
    duplicated: int = 0
    reordered: int = 0
    send_errors: int = 0


class MoldPublisher(Resource):
    """Publish one MoldUDP64 session to ``address`` (``(host, port)``, group or unicast).

    ``bind`` picks the source address/port (``None``: the kernel's choice);
    for a multicast group, ``ttl`` and ``interface`` (a local IPv4 address)
    set the usual socket options.  ``pace`` sleeps that many seconds after
    every ``pace_burst`` data packets, so a receiver on the same host keeps up.
    Thread-safe: :meth:`publish`, heartbeats and :meth:`end_session` may be
    called from different threads.
    """

    def __init__(
        self,
        session: str | bytes,
        address: tuple[str, int],
        *,
        first_seq: int = 1,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        history: MessageHistory | int = DEFAULT_HISTORY,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        bind: tuple[str, int] | None = None,
        ttl: int = 1,
        interface: str | None = None,
        impairment: Impairment | None = None,
        pace: float = 0.0,
        pace_burst: int = 16,
        sock: socket.socket | None = None,
    ) -> None:
        self.session = encode_session(session)
        self.address = address
        self.max_payload = max_payload
        self.history = history if isinstance(history, MessageHistory) else MessageHistory(history, first_seq)
        if self.history.next != first_seq:
            raise ValueError(f"history continues at {self.history.next}, not first_seq {first_seq}")
        self.heartbeat_interval = heartbeat_interval
        self.impairment = impairment
        self.pace = pace
        self.pace_burst = max(1, pace_burst)
        self.stats = PublisherStats()
        self.ended = False
        self._own_sock = sock is None
        self._sock = sock if sock is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self._own_sock:
                if ipaddress.ip_address(address[0]).is_multicast:
                    self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
                    self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                    if interface is not None:
                        self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
                if bind is not None:
                    self._sock.bind(bind)
        except BaseException:
            self._sock.close()
            raise
        self._lock = threading.RLock()
        self._held: list[list] = []  # [packet, packets still to go before it]
        self._index = 0
        self._last_send = time.monotonic()
        self._hb_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._opened()
        self._send_error_logged = False

    # ------------------------------------------------------------------ sending
    @property
    def next_seq(self) -> int:
        """Sequence number of the next message to be published."""
        return self.history.next

    def publish(self, messages: Iterable[bytes]) -> int:
        """Send ``messages`` (unframed ITCH messages) in order; return the packets built.

        Raises :class:`ValueError` after :meth:`end_session` or for a message
        that cannot fit in ``max_payload``.
        """
        with self._lock:
            if self.ended:
                raise ValueError("the session has ended; publish() after end_session() is not allowed")
            msgs = messages if isinstance(messages, list) else list(messages)
            if not msgs:
                return 0
            # Build first (validates every size), then record, then send: a
            # request server can answer for a packet as soon as it is sent.
            packets = [pkt for _, pkt in packetize(self.session, msgs, self.history.next, self.max_payload)]
            self.history.extend(msgs)
            self.stats.messages += len(msgs)
            pace, burst = self.pace, self.pace_burst
            for i, pkt in enumerate(packets, 1):
                self._send_data(pkt)
                if pace and i % burst == 0:
                    time.sleep(pace)
            self.flush()
            return len(packets)

    def _send_data(self, pkt: bytes) -> None:
        self.stats.data_packets += 1
        imp = self.impairment
        action = imp.decide(self._index) if imp is not None else None
        self._index += 1
        if action == "drop":
            self.stats.dropped += 1
            return
        if action == "reorder":
            self.stats.reordered += 1
            self._held.append([pkt, imp.reorder_depth])  # type: ignore[union-attr]
            return
        self._send(pkt)
        if action == "duplicate":
            self.stats.duplicated += 1
            self._send(pkt)
        if self._held:
            due = []
            for h in self._held:
                h[1] -= 1
                if h[1] <= 0:
                    due.append(h)
            for h in due:
                self._held.remove(h)
                self._send(h[0])

    def flush(self) -> None:
        """Send any packets held back for reordering."""
        with self._lock:
            held, self._held = self._held, []
            for pkt, _ in held:
                self._send(pkt)

    def _send(self, datagram: bytes) -> None:
        try:
            self._sock.sendto(datagram, self.address)
        except OSError as exc:  # e.g. ENOBUFS: a lost packet, which receivers recover
            self.stats.send_errors += 1
            if not self._send_error_logged:
                self._send_error_logged = True
                log.warning(
                    "MoldUDP64 publisher: send to %s failed (%s); further failures are counted", self.address, exc
                )
            return
        self.stats.datagrams_sent += 1
        self._last_send = time.monotonic()

    def send_heartbeat(self) -> None:
        """Send a heartbeat now (an end-of-session packet once the session has ended)."""
        with self._lock:
            self.flush()
            if self.ended:
                self._send(pack_end_of_session(self.session, self.history.next))
                self.stats.end_of_session += 1
            else:
                self._send(pack_heartbeat(self.session, self.history.next))
                self.stats.heartbeats += 1

    def maybe_heartbeat(self, now: float | None = None) -> bool:
        """Send a heartbeat if nothing was sent for ``heartbeat_interval``; True if one was."""
        now = time.monotonic() if now is None else now
        if now - self._last_send >= self.heartbeat_interval:
            self.send_heartbeat()
            return True
        return False

    def start_heartbeats(self) -> None:
        """Heartbeat from a daemon thread until :meth:`close`."""
        if self._hb_thread is not None:
            return
        tick = min(self.heartbeat_interval / 4, 0.25)

        def run() -> None:
            while not self._stop.wait(tick):
                self.maybe_heartbeat()

        self._hb_thread = threading.Thread(target=run, name="mold-heartbeat", daemon=True)
        self._hb_thread.start()

    def end_session(self, repeat: int = 3, interval: float = 0.0) -> None:
        """Send ``repeat`` end-of-session packets (count 0xFFFF); later heartbeats repeat it."""
        with self._lock:
            self.ended = True
        for i in range(repeat):
            self.send_heartbeat()
            if interval and i + 1 < repeat:
                time.sleep(interval)

    # ------------------------------------------------------------------ lifecycle
    def _release(self) -> None:
        """Stop heartbeats and close the socket; safe to call twice."""
        self._stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(timeout=2)
        if self._own_sock:
            self._sock.close()



    def __repr__(self) -> str:
        return (
            f"<MoldPublisher {self.session.decode('ascii').rstrip()!r} -> {self.address[0]}:{self.address[1]} "
            f"next_seq={self.history.next} packets={self.stats.data_packets}{' ended' if self.ended else ''}>"
        )
