"""OUCH 4.2 over SoupBinTCP: the order gateway of the live and simulator drivers.

:class:`SoupGateway` encodes each request with the shared OUCH codec, hands
it to a :class:`~efsdk.orders.soupbintcp.client.SoupClient` (a plain kernel
TCP socket, which Onload accelerates when the process runs under it), and
decodes the sequenced responses for the order manager.

On a lost connection it reconnects from :meth:`SoupGateway.poll` (bounded
attempts, exponential backoff, short connect/login timeouts so the feed
loop that pumps it stalls as little as possible) and logs in from the next
expected sequence number, so the responses it missed are replayed and
nothing is delivered twice.  It never re-sends a request: a request whose
bytes were written before the loss is settled by the order manager after
the reconnect, and a request made while disconnected raises
:class:`~efsdk.errors.SessionError` at once instead of being queued.
"""

from __future__ import annotations

import logging
import time

from efsdk.errors import ProtocolError, SessionError
from efsdk.orders.ouch import codec as ouch
from efsdk.orders.soupbintcp.client import SoupClient, SoupClientConfig, SoupCredentials, SoupEvent
from efsdk.resource import Resource

__all__ = ["SoupGateway"]

log = logging.getLogger(__name__)


class SoupGateway(Resource):
    """One OUCH order session.  ``poll()`` must be called from the owning loop (the drivers do)."""

    def __init__(
        self,
        address: tuple[str, int],
        credentials: SoupCredentials,
        *,
        reconnect_attempts: int = 5,
        reconnect_backoff: float = 0.2,
        heartbeat_interval: float = 1.0,
        idle_timeout: float = 15.0,
        first_sequence: int = 0,
        reconnect_timeout: float = 0.5,
    ) -> None:
        self.address = address
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_backoff = reconnect_backoff
        self._out: list[tuple] = []
        self.bad_responses = 0
        self.failed_reconnects = 0
        self.ended = False
        self.lost = False  # gave up reconnecting
        self._next_attempt = 0.0
        self._attempts = 0
        self.reconnects = 0  # successful ones; the runtime then settles in-doubt orders
        self.reconnect_timeout = reconnect_timeout
        # The first connect may wait longer than a reconnect, which runs on the feed thread.
        self.client = SoupClient(
            SoupClientConfig(host=address[0], port=address[1], heartbeat_interval=heartbeat_interval,
                             idle_timeout=idle_timeout, first_sequence=first_sequence,
                             connect_timeout=max(reconnect_timeout, 0.1) * 4),  # fmt: skip
            credentials,
            self._on_sequenced,
            self._on_event,
        )
        try:
            self.client.connect()
            self.client.login()
        except BaseException:
            self.client.close()
            raise
        self._opened()

    # ------------------------------------------------------------------ gateway protocol
    def send(self, message: tuple) -> int:
        """Encode and send one OUCH request; returns wall-clock ns after the bytes went to the socket."""
        client = self.client
        if not client.logged_in:
            why = "has ended (end of session)" if self.ended else "is down (reconnecting)" if not self.lost else "is lost"
            raise SessionError(f"order session to {self.address[0]}:{self.address[1]} {why}; request not sent")
        client.send(ouch.encode(message))
        return time.time_ns()

    def poll(self) -> list[tuple]:
        """Responses that arrived since the last call (decoded OUCH named tuples)."""
        client = self.client
        client.poll(0.0)
        if not client.logged_in and not self.ended and not self.lost:
            self._recover()
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ client callbacks
    def _on_sequenced(self, seq: int, payload: bytes) -> None:
        try:
            self._out.append(ouch.decode_outbound(payload))
        except ProtocolError as exc:
            self.bad_responses += 1
            if self.bad_responses == 1:
                log.warning("orders: undecodable OUCH response at sequence %d (%s); further ones are counted", seq, exc)

    def _on_event(self, event: SoupEvent, detail: str) -> None:
        if event is SoupEvent.END_OF_SESSION:
            self.ended = True
        elif event in (SoupEvent.SERVER_CLOSED, SoupEvent.IDLE_TIMEOUT, SoupEvent.CONNECTION_ERROR,
                       SoupEvent.PROTOCOL_ERROR):  # fmt: skip
            if not self.ended:
                log.warning("orders: session to %s:%d lost (%s: %s); reconnecting", *self.address, event.value, detail)

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        """One reconnect attempt from the next expected sequence, if its backoff has passed."""
        if time.monotonic() < self._next_attempt:
            return
        self._attempts += 1
        try:
            self.client.reconnect(timeout=self.reconnect_timeout)
            self._attempts = 0
            self.reconnects += 1
            log.warning("orders: session to %s:%d re-established", *self.address)
        except (OSError, SessionError) as exc:
            self.failed_reconnects += 1
            if self._attempts >= self.reconnect_attempts:
                self.lost = True
                log.error("orders: gave up on %s:%d after %d attempts (%s)", *self.address, self._attempts, exc)
                return
            self._next_attempt = time.monotonic() + self.reconnect_backoff * 2 ** (self._attempts - 1)

    def _release(self) -> None:
        try:
            if self.client.logged_in:
                self.client.logout()
        finally:
            self.client.close()

    def __repr__(self) -> str:
        return f"<SoupGateway {self.address[0]}:{self.address[1]} {self.client.state.value} next_seq={self.client.next_expected_seq}>"
