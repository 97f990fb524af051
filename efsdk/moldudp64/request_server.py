"""MoldUDP64 request server: answers re-requests from a publisher's history.

A re-request is a 20-byte ``Session | first Sequence | Count`` datagram.  The
answer is ordinary downstream packets, unicast to the requester, carrying the
requested messages that are still in the :class:`MessageHistory` — possibly
fewer than asked: at most ``max_messages`` per request, and nothing older
than the history or not yet published (a server cannot serve what it does not
have; each such case is counted so it shows up in monitoring).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from dataclasses import dataclass

from efsdk.resource import Resource
from efsdk.moldudp64.codec import (
    DEFAULT_MAX_PAYLOAD,
    END_OF_SESSION_COUNT,
    HEADER,
    HEADER_SIZE,
    HEARTBEAT_COUNT,
    encode_session,
    packetize,
)
from efsdk.moldudp64.publisher import MessageHistory

__all__ = ["MoldRequestServer", "RequestServerStats"]

log = logging.getLogger(__name__)

# One request may not make the server flood a client (or itself): ~1,000
# ITCH messages is ~30-40 packets, well inside a default receive buffer.
DEFAULT_MAX_MESSAGES = 1000

_unpack_header_from = HEADER.unpack_from


@dataclass
class RequestServerStats:
    requests: int = 0
    answered: int = 0  # requests that got at least one message
    malformed: int = 0  # not 20 bytes, or count 0 / 0xFFFF
    wrong_session: int = 0
    out_of_history: int = 0  # asked (partly) for messages older than the history
    unavailable_messages: int = 0  # messages asked for and not held (too old or not yet sent)
    future: int = 0  # first sequence not published yet
    truncated: int = 0  # answered fewer than asked because of max_messages
    messages_sent: int = 0
    packets_sent: int = 0
    send_errors: int = 0


class MoldRequestServer(Resource):
    """Serve re-requests for ``session`` from ``history`` on a UDP socket bound to ``bind``.

    :meth:`handle` is the pure part (request bytes -> answer packets); the
    socket part is :meth:`serve_once` or a background thread from
    :meth:`start`.  Close with :meth:`close` (idempotent) or ``with``.
    """

    def __init__(
        self,
        session: str | bytes,
        history: MessageHistory,
        bind: tuple[str, int] = ("127.0.0.1", 0),
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        sock: socket.socket | None = None,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.session = encode_session(session)
        self.history = history
        self.max_messages = max_messages
        self.max_payload = max_payload
        self.stats = RequestServerStats()
        self._own_sock = sock is None
        self._sock = sock if sock is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self._own_sock:
            try:
                self._sock.bind(bind)
            except BaseException:
                self._sock.close()
                raise
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._opened()
        self._logged: set[str] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` clients send re-requests to."""
        return self._sock.getsockname()[:2]

    def _once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(msg + "; further ones are counted", *args)

    # ------------------------------------------------------------------ logic
    def handle(self, request: bytes | bytearray | memoryview) -> list[bytes]:
        """The downstream packets answering one re-request datagram (maybe none)."""
        stats = self.stats
        stats.requests += 1
        if len(request) != HEADER_SIZE:
            stats.malformed += 1
            self._once("size", "MoldUDP64 request server: %d-byte request ignored (must be 20)", len(request))
            return []
        session, first, count = _unpack_header_from(request, 0)
        if count == HEARTBEAT_COUNT or count == END_OF_SESSION_COUNT or first == 0:
            stats.malformed += 1
            self._once("count", "MoldUDP64 request server: request seq %d count %d ignored", first, count)
            return []
        if session != self.session:
            stats.wrong_session += 1
            self._once("session", "MoldUDP64 request server: request for session %r, serving %r", session, self.session)
            return []
        history = self.history
        if first >= history.next:
            stats.future += 1
            stats.unavailable_messages += count
            return []
        if first < history.first:
            stats.out_of_history += 1
            self._once(
                "history",
                "MoldUDP64 request server: seq %d requested, history starts at %d",
                first,
                history.first,
            )
        if count > self.max_messages:
            stats.truncated += 1
        lo, msgs = history.get(first, min(count, self.max_messages))
        stats.unavailable_messages += min(count, self.max_messages) - len(msgs)
        if not msgs:
            return []
        packets = [pkt for _, pkt in packetize(self.session, msgs, lo, self.max_payload)]
        stats.answered += 1
        stats.messages_sent += len(msgs)
        return packets

    # ------------------------------------------------------------------ socket
    def serve_once(self, timeout: float | None = 0.0) -> int:
        """Answer the requests waiting now (waiting up to ``timeout`` for one); return how many."""
        sock = self._sock
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            return 0
        n = 0
        while True:
            try:
                data, addr = sock.recvfrom(2048, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return n
            n += 1
            for pkt in self.handle(data):
                try:
                    sock.sendto(pkt, addr)
                    self.stats.packets_sent += 1
                except OSError as exc:
                    self.stats.send_errors += 1
                    self._once("send", "MoldUDP64 request server: answer to %s failed (%s)", addr, exc)

    def start(self) -> None:
        """Serve from a daemon thread until :meth:`close`."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.serve_once(0.05)
                except (OSError, ValueError):  # socket closed under us by close()
                    if not self._stop.is_set():
                        raise
                    return

        self._thread = threading.Thread(target=run, name="mold-request-server", daemon=True)
        self._thread.start()

    def _release(self) -> None:
        """Stop the thread and close the socket; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._own_sock:
            self._sock.close()



    def __repr__(self) -> str:
        return (
            f"<MoldRequestServer {self.session.decode('ascii').rstrip()!r} history={self.history!r} "
            f"requests={self.stats.requests}>"
        )
