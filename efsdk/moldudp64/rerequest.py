"""MoldUDP64 re-request client: turns a session's gap decisions into UDP requests.

The retry policy (delay, timeout, attempts, in-flight bound) lives in
:class:`~efsdk.moldudp64.session.MoldSession`; this class only sends what
:meth:`MoldSession.poll` decides and feeds the answers back into the same
session as a third line (``"R"``), where they are sequenced and de-duplicated
exactly like the A and B feeds.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from efsdk.resource import Resource
from efsdk.moldudp64.codec import pack_request
from efsdk.moldudp64.session import LINE_REREQUEST, MoldSession

__all__ = ["MoldRerequester", "RerequesterStats"]

log = logging.getLogger(__name__)

# Answers are ordinary downstream packets, so one MTU-sized datagram each;
# 64 KiB covers any UDP datagram a misconfigured server might send.
MAX_DATAGRAM = 65536
# A request burst can be answered by max_in_flight * ~40 packets at once.
RECV_BUFFER = 4 << 20


@dataclass
class RerequesterStats:
    requests_sent: int = 0
    messages_requested: int = 0
    responses: int = 0  # datagrams received from the server
    send_errors: int = 0
    foreign_datagrams: int = 0  # from an address other than the server


class MoldRerequester(Resource):
    """Re-request client for ``session`` against the request server at ``server``.

    Call :meth:`poll` regularly (it calls ``session.poll``) and :meth:`receive`
    when :meth:`fileno` is readable.  Binds to ``bind`` (loopback by default).
    """

    def __init__(
        self,
        session: MoldSession,
        server: tuple[str, int],
        *,
        bind: tuple[str, int] = ("127.0.0.1", 0),
        line: str = LINE_REREQUEST,
        sock: socket.socket | None = None,
    ) -> None:
        self.session = session
        self.server = server
        self.line = line
        self.stats = RerequesterStats()
        self._own_sock = sock is None
        self._sock = sock if sock is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self._own_sock:
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
                except OSError:  # capped by net.core.rmem_max: a smaller buffer still works
                    pass
                self._sock.bind(bind)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self._server_host = socket.gethostbyname(server[0])
        self._opened()
        self._logged = False

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def address(self) -> tuple[str, int]:
        return self._sock.getsockname()[:2]

    def poll(self, now: float | None = None) -> int:
        """Send the re-requests the session decides are due; return how many were sent."""
        requests = self.session.poll(now)
        name = self.session.session
        if not requests or name is None:
            return 0
        stats = self.stats
        sock, server = self._sock, self.server
        for first, count in requests:
            try:
                sock.sendto(pack_request(name, first, count), server)
            except OSError as exc:  # counted; the session retries after its timeout
                stats.send_errors += 1
                if not self._logged:
                    self._logged = True
                    log.warning("MoldUDP64 re-request to %s failed (%s); further failures are counted", server, exc)
                continue
            stats.requests_sent += 1
            stats.messages_requested += count
        return len(requests)

    def receive(self, now: float | None = None, max_packets: int = 1024) -> int:
        """Feed waiting answers into the session (non-blocking); return how many."""
        sock, feed, line = self._sock, self.session.feed, self.line
        host = self._server_host
        n = 0
        while n < max_packets:
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            if addr[0] != host:
                self.stats.foreign_datagrams += 1
                continue
            n += 1
            feed(data, now, line)
        self.stats.responses += n
        return n

    def _release(self) -> None:
        """Close the socket; safe to call twice."""
        if self._own_sock:
            self._sock.close()



    def __repr__(self) -> str:
        return f"<MoldRerequester -> {self.server[0]}:{self.server[1]} sent={self.stats.requests_sent}>"
