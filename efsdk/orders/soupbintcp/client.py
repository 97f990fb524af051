"""SoupBinTCP 4.x client, pumped from the caller's single-threaded loop.

One plain kernel TCP socket (``TCP_NODELAY``, non-blocking after connect):
nothing Onload-specific, so running under ``efsdk onload run`` (Onload's
``LD_PRELOAD``) accelerates it unchanged.  There is no thread: the strategy
loop calls :meth:`SoupClient.poll` as often as it likes; ``poll`` reads what
has arrived, hands every sequenced message to ``on_sequenced(seq, payload)``,
sends a client heartbeat once nothing was sent for ``heartbeat_interval`` and
drops the connection when the server has been silent for ``idle_timeout``.
:meth:`SoupClient.send` writes an Unsequenced Data packet straight to the
socket and returns the ``time.perf_counter_ns()`` right after the kernel took
the bytes: tick-to-trade latency is measured to that point.

Sequence numbers: the client counts Sequenced Data packets from the number in
Login Accepted and remembers the highest one delivered, so after
:meth:`SoupClient.reconnect` (which asks for the next expected number in the
same session) nothing is delivered twice, even if a server replays from
earlier; every skip, gap and reconnect is counted in :class:`SoupClientStats`.
The password lives in a ``SecretStr`` and is never put in a repr, a log line
or an exception message.
"""

from __future__ import annotations

import enum
import logging
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from efsdk.errors import ProtocolError, SessionError
from efsdk.orders.soupbintcp.codec import (
    DEFAULT_MAX_FRAME,
    LOGIN_REJECT_REASONS,
    MAX_PAYLOAD,
    SERVER_TYPES,
    FrameReader,
    decode_login_accepted,
    decode_login_rejected,
    pack_client_heartbeat,
    pack_login_request,
    pack_logout_request,
)
from efsdk.resource import Resource

__all__ = [
    "LoginRejected",
    "SoupClient",
    "SoupClientConfig",
    "SoupClientStats",
    "SoupCredentials",
    "SoupEvent",
    "SoupState",
]

log = logging.getLogger(__name__)

_now = time.perf_counter_ns
_POLLIN = select.POLLIN | select.POLLERR | select.POLLHUP


def _ascii(value: str, what: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{what} must be printable ASCII")
    if value != value.strip(" "):
        raise ValueError(f"{what} must not start or end with a space (SoupBinTCP pads with spaces)")
    return value


class _Hidden:
    """Stands in for a password of the wrong type, so validation errors cannot show it."""

    def __repr__(self) -> str:
        return "<hidden>"


class SoupCredentials(BaseModel):
    """Login of one SoupBinTCP account; ``session`` "" asks for the server's current session."""

    # hide_input_in_errors keeps the input out of str(ValidationError); the
    # "before" validator below keeps it out of ValidationError.errors() too.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    username: str = Field(min_length=1, max_length=6)
    password: SecretStr = Field(max_length=10)
    session: str = Field("", max_length=10)

    @model_validator(mode="before")
    @classmethod
    def _wrap_password(cls, data: object) -> object:
        if isinstance(data, dict) and "password" in data and not isinstance(data["password"], SecretStr):
            value = data["password"]
            data = {**data, "password": SecretStr(value) if isinstance(value, str) else _Hidden()}
        return data

    @field_validator("username", "session")
    @classmethod
    def _check_ascii(cls, value: str) -> str:
        return _ascii(value, "username/session")

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: SecretStr) -> SecretStr:
        _ascii(value.get_secret_value(), "password")
        return value


class SoupClientConfig(BaseModel):
    """Where and how to connect; times in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    heartbeat_interval: float = Field(1.0, gt=0)  # send R after this long without sending
    idle_timeout: float = Field(15.0, gt=0)  # server silent this long -> connection dropped
    connect_timeout: float = Field(5.0, gt=0)
    login_timeout: float = Field(5.0, gt=0)
    # Requested sequence number of the first login: 1 = the whole session
    # (replays what this account was sent earlier today), 0 = only new messages.
    first_sequence: int = Field(1, ge=0)
    max_frame: int = Field(DEFAULT_MAX_FRAME, ge=64, le=0xFFFF)
    # One recv() per poll: 64 KiB holds ~800 OUCH messages, far more than one
    # poll interval carries, without making a stalled loop's backlog unbounded.
    recv_size: int = Field(65536, ge=1024)
    # Bytes the kernel did not take yet; beyond this send() raises instead of
    # growing without bound (a server that stopped reading).
    max_pending: int = Field(16 << 20, ge=1024)


class SoupState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"  # TCP up, not logged in
    LOGGING_IN = "logging_in"
    LOGGED_IN = "logged_in"
    ENDED = "ended"  # End of Session received; still connected
    LOGGING_OUT = "logging_out"
    CLOSED = "closed"


class SoupEvent(enum.Enum):
    """What ``on_event(event, detail)`` reports."""

    LOGGED_IN = "logged_in"
    LOGIN_REJECTED = "login_rejected"
    END_OF_SESSION = "end_of_session"
    LOGGED_OUT = "logged_out"
    SERVER_CLOSED = "server_closed"  # the server closed the TCP connection
    IDLE_TIMEOUT = "idle_timeout"  # nothing from the server for idle_timeout
    PROTOCOL_ERROR = "protocol_error"  # the server sent bytes that are not SoupBinTCP
    CONNECTION_ERROR = "connection_error"  # send/recv failed (reset, ...)
    LOGIN_TIMEOUT = "login_timeout"


class LoginRejected(SessionError):
    """The server answered the login with Login Rejected; ``reason`` is the code (``A`` or ``S``)."""

    def __init__(self, reason: str, username: str) -> None:
        self.reason = reason
        self.meaning = LOGIN_REJECT_REASONS.get(reason, "unknown reason code")
        super().__init__(f"SoupBinTCP login of {username!r} rejected: {reason!r} ({self.meaning})")


@dataclass
class SoupClientStats:
    """Counters of one client over all its connections."""

    packets_in: dict[str, int] = field(default_factory=dict)  # by packet type
    packets_out: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    heartbeats_in: int = 0
    heartbeats_out: int = 0
    sequenced_received: int = 0  # delivered to on_sequenced
    duplicates_skipped: int = 0  # sequence already delivered (a server replaying from earlier)
    sequence_gaps: int = 0  # logins where the server started after the requested number
    messages_missed: int = 0  # messages in those gaps
    logins: int = 0
    login_rejects: int = 0
    logouts: int = 0
    reconnects: int = 0
    disconnects: int = 0  # every connection loss, whatever the cause (below)
    server_closed: int = 0
    idle_timeouts: int = 0
    protocol_errors: int = 0
    connection_errors: int = 0
    login_timeouts: int = 0
    end_of_session: int = 0
    debug_packets: int = 0
    partial_writes: int = 0  # send() calls the kernel took only part of (rest buffered)
    unsent_bytes_dropped: int = 0  # buffered bytes lost with a connection (never sent)


class SoupClient(Resource):
    """A SoupBinTCP session to one server; see the module docstring.

    ``on_sequenced(seq, payload)`` gets every sequenced message once, in order
    (``payload`` is ``bytes``, the OUCH message).  ``on_event(event, detail)``
    hears about logins, end of session and every connection loss.  Both run
    inside :meth:`poll` (or :meth:`login`, which pumps :meth:`poll`).  Not
    thread-safe: one thread owns a client.
    """

    def __init__(
        self,
        config: SoupClientConfig,
        credentials: SoupCredentials,
        on_sequenced: Callable[[int, bytes], object],
        on_event: Callable[[SoupEvent, str], object] | None = None,
    ) -> None:
        self.config = config
        self._credentials = credentials
        self._on_sequenced = on_sequenced
        self._on_event = on_event
        self.stats = SoupClientStats()
        self._sock: socket.socket | None = None
        self._poller: select.poll | None = None
        self._reader: FrameReader | None = None
        self._state = SoupState.DISCONNECTED
        self._out = bytearray()
        self._session = credentials.session  # after a login: the session the server gave us
        self._next_seq = config.first_sequence  # before a login: what to request
        self._delivered = 0  # highest sequence number handed to on_sequenced
        self._backlog: list[tuple[str, bytes]] = []  # frames left when on_sequenced raised
        self._reject_reason: str | None = None
        self._requested = 0  # sequence number asked for by the last login
        self._accepted_seq = 0  # sequence number in the last Login Accepted
        self._last_event = ""
        self._hb_ns = int(config.heartbeat_interval * 1e9)
        self._idle_ns = int(config.idle_timeout * 1e9)
        self._last_send = 0
        self._last_recv = 0
        self._opened()

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> SoupState:
        return self._state

    @property
    def logged_in(self) -> bool:
        return self._state is SoupState.LOGGED_IN

    @property
    def session(self) -> str:
        """The session name: as requested before the first login, as accepted after it."""
        return self._session

    @property
    def next_expected_seq(self) -> int:
        """Sequence number of the next sequenced message (what a reconnect requests)."""
        return self._next_seq

    @property
    def last_delivered_seq(self) -> int:
        """Highest sequence number handed to ``on_sequenced`` (0 = none yet)."""
        return self._delivered

    @property
    def pending_bytes(self) -> int:
        """Bytes written with :meth:`send` that the kernel has not taken yet."""
        return len(self._out)

    def fileno(self) -> int:
        """The socket's file descriptor (-1 when disconnected), for an outer selector."""
        return self._sock.fileno() if self._sock is not None else -1

    # ------------------------------------------------------------------ connection
    def connect(self) -> None:
        """Open the TCP connection (blocking up to ``connect_timeout``); raises ``OSError`` if refused."""
        if self._closed:
            raise SessionError("SoupClient is closed")
        if self._sock is not None:
            raise SessionError(f"SoupClient already connected ({self._state.value})")
        cfg = self.config
        sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            poller = select.poll()
            poller.register(sock.fileno(), _POLLIN)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._poller = poller
        self._reader = FrameReader(SERVER_TYPES, cfg.max_frame)
        self._out.clear()
        self._state = SoupState.CONNECTED
        self._reject_reason = None
        self._last_send = self._last_recv = _now()

    def login(self, sequence: int | None = None, timeout: float | None = None) -> int:
        """Log in and wait for the answer; return the sequence number in Login Accepted.

        ``sequence`` defaults to :attr:`next_expected_seq` (``first_sequence``
        before the first login); the session requested is the one accepted
        before, or the credentials' one.  Sequenced messages that arrive with
        the acceptance are delivered before this returns.  Raises
        :class:`LoginRejected` (with the reason code's meaning) or
        :class:`~efsdk.errors.SessionError` if the connection is lost or no
        answer comes within ``timeout`` (default ``login_timeout``).
        """
        if self._state is not SoupState.CONNECTED:
            raise SessionError(f"login needs a fresh connection; the client is {self._state.value}")
        requested = self._next_seq if sequence is None else sequence
        cred = self._credentials
        frame = pack_login_request(cred.username, cred.password.get_secret_value(), self._session, requested)
        self._requested = requested
        self._state = SoupState.LOGGING_IN
        self._write(frame, "L")
        deadline = time.monotonic() + (self.config.login_timeout if timeout is None else timeout)
        while self._state is SoupState.LOGGING_IN:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = self.config.login_timeout if timeout is None else timeout
                self._disconnect(SoupEvent.LOGIN_TIMEOUT, f"no answer to the login within {waited:g} s")
                break
            self.poll(min(remaining, 0.05))
        if self._state in (SoupState.LOGGED_IN, SoupState.ENDED):
            return self._accepted_seq
        if self._reject_reason is not None:
            raise LoginRejected(self._reject_reason, cred.username)
        raise SessionError(f"SoupBinTCP login of {cred.username!r} failed: {self._last_event}")

    def reconnect(self, timeout: float | None = None) -> int:
        """Drop any connection, connect and log in again from :attr:`next_expected_seq` in the same session.

        Returns the sequence number in Login Accepted.  Raises ``OSError`` if the
        server is unreachable, :class:`LoginRejected` or
        :class:`~efsdk.errors.SessionError` like :meth:`login`.
        """
        if self._sock is not None:
            self._drop()
        self.stats.reconnects += 1
        self.connect()
        return self.login(timeout=timeout)

    def logout(self, timeout: float = 1.0) -> None:
        """Send a Logout Request, wait up to ``timeout`` for the server to close, then close the socket."""
        if self._sock is None:
            return
        if self._state in (SoupState.LOGGED_IN, SoupState.ENDED):
            self._state = SoupState.LOGGING_OUT
            self.stats.logouts += 1
            try:
                self._write(pack_logout_request(), "O")
            except SessionError:
                return  # the connection was lost while writing: already reported
            deadline = time.monotonic() + timeout
            while self._sock is not None and time.monotonic() < deadline:
                self.poll(min(0.05, max(deadline - time.monotonic(), 0.0)))
        if self._sock is not None:
            self._drop()
            self._event(SoupEvent.LOGGED_OUT, "logged out")

    # ------------------------------------------------------------------ hot path
    def send(self, payload: bytes | bytearray | memoryview) -> int:
        """Send one message (an encoded OUCH order) as Unsequenced Data; return ``perf_counter_ns()`` after the write.

        If the kernel takes only part of it the rest is buffered and flushed by
        :meth:`poll` (never dropped while the connection lives).  Raises
        :class:`~efsdk.errors.SessionError` when not logged in, when the
        connection fails, or when more than ``max_pending`` bytes are waiting.
        """
        if self._state is not SoupState.LOGGED_IN:
            raise SessionError(f"cannot send: SoupBinTCP session is {self._state.value}")
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise ValueError(f"payload of {n} bytes exceeds the SoupBinTCP limit of {MAX_PAYLOAD}")
        return self._write((n + 1).to_bytes(2, "big") + b"U" + payload, "U")

    def _write(self, frame: bytes, type_: str) -> int:
        sock = self._sock
        if sock is None:
            raise SessionError("SoupBinTCP client is not connected")
        stats = self.stats
        out = self._out
        if out:  # earlier bytes still queued: keep the order
            if len(out) + len(frame) > self.config.max_pending:
                raise SessionError(
                    f"{len(out)} bytes already wait for the server to read; refusing to queue more "
                    f"(max_pending={self.config.max_pending})"
                )
            out += frame
            self._flush()
            sent = _now()
            if self._sock is None:
                raise SessionError(f"SoupBinTCP send failed: {self._last_event}")
        else:
            try:
                n = sock.send(frame)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._disconnect(SoupEvent.CONNECTION_ERROR, f"send failed: {exc}")
                raise SessionError(f"SoupBinTCP send failed: {exc}") from None
            sent = _now()
            if n < len(frame):
                stats.partial_writes += 1
                out += frame[n:]
                self._poller.register(sock.fileno(), _POLLIN | select.POLLOUT)  # type: ignore[union-attr]
        self._last_send = sent
        stats.bytes_out += len(frame)
        counts = stats.packets_out
        counts[type_] = counts.get(type_, 0) + 1
        return sent

    def _flush(self) -> None:
        out = self._out
        sock = self._sock
        if sock is None or not out:
            return
        try:
            n = sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._disconnect(SoupEvent.CONNECTION_ERROR, f"send failed: {exc}")
            return
        del out[:n]
        if not out:
            self._poller.register(sock.fileno(), _POLLIN)  # type: ignore[union-attr]

    def poll(self, timeout: float = 0.0) -> int:
        """Read and dispatch what has arrived, waiting up to ``timeout`` s for something; run the timers.

        Returns the number of sequenced messages delivered.  Connection loss is
        reported through ``on_event`` and the counters, never raised.  If
        ``on_sequenced`` raises, the exception propagates; the messages after
        the failing one are kept and delivered by the next call.
        """
        delivered = 0
        if self._backlog:
            frames, self._backlog = self._backlog, []
            delivered += self._dispatch(frames)
        sock = self._sock
        if sock is None:
            if timeout > 0:
                time.sleep(timeout)
            return delivered
        if self._out:
            self._flush()
        now = _now()
        state = self._state
        active = state is SoupState.LOGGED_IN or state is SoupState.ENDED
        wait_ms = timeout * 1000.0
        if active and wait_ms > 0:
            due_ms = (self._last_send + self._hb_ns - now) / 1e6
            if due_ms < wait_ms:
                wait_ms = due_ms if due_ms > 0 else 0.0
        events = self._poller.poll(wait_ms)  # type: ignore[union-attr]
        if events:
            mask = events[0][1]
            if mask & select.POLLOUT:
                self._flush()
            if mask & _POLLIN and self._sock is not None:
                delivered += self._read()
        if self._sock is not None and (self._state is SoupState.LOGGED_IN or self._state is SoupState.ENDED):
            now = _now()
            if now - self._last_recv > self._idle_ns:
                self.stats.idle_timeouts += 1
                self._disconnect(
                    SoupEvent.IDLE_TIMEOUT, f"nothing from the server for {(now - self._last_recv) / 1e9:.2f} s"
                )
            elif now - self._last_send >= self._hb_ns:
                self.stats.heartbeats_out += 1
                try:
                    self._write(pack_client_heartbeat(), "R")
                except SessionError:
                    pass  # reported by _disconnect already
        return delivered

    def _read(self) -> int:
        sock = self._sock
        try:
            data = sock.recv(self.config.recv_size)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._disconnect(SoupEvent.CONNECTION_ERROR, f"recv failed: {exc}")
            return 0
        if not data:
            if self._state is SoupState.LOGGING_OUT:
                self._drop()
                self._event(SoupEvent.LOGGED_OUT, "logged out")
            else:
                self.stats.server_closed += 1
                self._disconnect(SoupEvent.SERVER_CLOSED, "the server closed the connection")
            return 0
        self._last_recv = _now()
        self.stats.bytes_in += len(data)
        try:
            frames = self._reader.feed(data)  # type: ignore[union-attr]
        except ProtocolError as exc:
            # Deliver what was framed before the fault, then drop the broken stream.
            delivered = self._dispatch(getattr(exc, "frames", []))
            self.stats.protocol_errors += 1
            self._disconnect(SoupEvent.PROTOCOL_ERROR, str(exc))
            return delivered
        return self._dispatch(frames)

    def _dispatch(self, frames: list[tuple[str, bytes]]) -> int:
        stats = self.stats
        counts = stats.packets_in
        on_sequenced = self._on_sequenced
        delivered = 0
        i = 0
        n = len(frames)
        try:
            while i < n:
                t, payload = frames[i]
                i += 1
                counts[t] = counts.get(t, 0) + 1
                if t == "S":
                    state = self._state
                    if state is not SoupState.LOGGED_IN and state is not SoupState.LOGGING_OUT:
                        self._violation(f"sequenced data while {state.value}")
                        return delivered
                    seq = self._next_seq
                    self._next_seq = seq + 1
                    if seq <= self._delivered:
                        stats.duplicates_skipped += 1
                        continue
                    self._delivered = seq
                    stats.sequenced_received += 1
                    delivered += 1
                    on_sequenced(seq, payload)
                elif t == "H":
                    stats.heartbeats_in += 1
                elif t == "A":
                    if not self._accepted(payload):
                        return delivered
                elif t == "J":
                    self._rejected(payload)
                    return delivered
                elif t == "Z":
                    stats.end_of_session += 1
                    if self._state is SoupState.LOGGED_IN:
                        self._state = SoupState.ENDED
                    detail = f"session {self._session!r} ended at sequence {self._next_seq}"
                    self._event(SoupEvent.END_OF_SESSION, detail)
                else:  # "+": debug text, to be ignored
                    stats.debug_packets += 1
        except BaseException:
            if i < n and self._sock is not None:
                self._backlog = frames[i:]
            raise
        return delivered

    def _accepted(self, payload: bytes) -> bool:
        if self._state is not SoupState.LOGGING_IN:
            self._violation(f"login accepted while {self._state.value}")
            return False
        try:
            session, next_seq = decode_login_accepted(payload)
        except ProtocolError as exc:
            self._violation(str(exc))
            return False
        requested = self._requested
        if requested >= 1 and next_seq > requested:
            self.stats.sequence_gaps += 1
            self.stats.messages_missed += next_seq - requested
            log.warning(
                "SoupBinTCP session %r: requested sequence %d, the server starts at %d: %d messages are lost",
                session, requested, next_seq, next_seq - requested,
            )  # fmt: skip
        self._session = session
        self._next_seq = self._accepted_seq = next_seq
        self._state = SoupState.LOGGED_IN
        self.stats.logins += 1
        self._event(SoupEvent.LOGGED_IN, f"session {session!r}, next sequence {next_seq}")
        return True

    def _rejected(self, payload: bytes) -> None:
        try:
            reason = decode_login_rejected(payload)
        except ProtocolError as exc:
            self._violation(str(exc))
            return
        self.stats.login_rejects += 1
        self._reject_reason = reason
        meaning = LOGIN_REJECT_REASONS.get(reason, "unknown reason code")
        self._drop()
        self._event(SoupEvent.LOGIN_REJECTED, f"{reason!r} ({meaning})")

    def _violation(self, detail: str) -> None:
        self.stats.protocol_errors += 1
        self._disconnect(SoupEvent.PROTOCOL_ERROR, detail)

    # ------------------------------------------------------------------ teardown
    def _drop(self) -> None:
        """Close the socket; buffered unsent bytes are counted as dropped."""
        sock = self._sock
        if sock is None:
            return
        if self._out:
            self.stats.unsent_bytes_dropped += len(self._out)
            log.warning("SoupBinTCP: %d buffered bytes were never sent (connection closed)", len(self._out))
            self._out.clear()
        self._sock = None
        self._poller = None
        self._reader = None
        self._backlog = []
        self._state = SoupState.DISCONNECTED
        sock.close()

    def _disconnect(self, event: SoupEvent, detail: str) -> None:
        if self._sock is None:
            return
        self._drop()
        stats = self.stats
        stats.disconnects += 1
        if event is SoupEvent.CONNECTION_ERROR:
            stats.connection_errors += 1
        elif event is SoupEvent.LOGIN_TIMEOUT:
            stats.login_timeouts += 1
        log.warning("SoupBinTCP %s@%s:%d: %s (%s)", self._credentials.username, self.config.host,
                    self.config.port, event.value, detail)  # fmt: skip
        self._event(event, detail)

    def _event(self, event: SoupEvent, detail: str) -> None:
        self._last_event = f"{event.value}: {detail}"
        if self._on_event is not None:
            self._on_event(event, detail)

    def _release(self) -> None:
        sock = self._sock
        if sock is not None and self._state in (SoupState.LOGGED_IN, SoupState.ENDED) and not self._out:
            try:
                sock.send(pack_logout_request())  # courtesy; the server also handles a plain close
            except OSError:
                pass
        self._drop()
        self._state = SoupState.CLOSED

    def __repr__(self) -> str:
        return (
            f"<SoupClient {self._credentials.username!r}@{self.config.host}:{self.config.port} "
            f"{self._state.value} session={self._session!r} next_seq={self._next_seq}>"
        )
