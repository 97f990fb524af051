"""SoupBinTCP 4.x server: logins, per-user sequenced streams, heartbeats, for the exchange simulator.

A ``selectors`` loop over non-blocking sockets, run from a background thread
(:meth:`SoupServer.start`) or pumped by the caller (:meth:`SoupServer.serve_once`).
Every account has its own sequenced stream per session, kept in a
:class:`SoupStreams` object that outlives the server: a server restarted on
the same port with the same streams serves a reconnecting client from the
sequence number it asks for (1 = from the start, 0 = only new messages).

:meth:`SoupServer.send_sequenced` is thread-safe (the simulator's matching
engine calls it from its own loop); it appends to the stream and writes to
the account's live connection at once.  ``on_unsequenced(user, payload)``
runs in the serving thread, outside the server's lock, so it may call
:meth:`~SoupServer.send_sequenced` itself.  A client that sends bytes which
are not SoupBinTCP, or breaks the login rules, loses its connection (counted,
logged once per kind); every other client keeps being served.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from efsdk.errors import ProtocolError, SessionError
from efsdk.orders.soupbintcp.codec import (
    CLIENT_TYPES,
    DEFAULT_MAX_FRAME,
    FrameReader,
    decode_login_request,
    pack_end_of_session,
    pack_login_accepted,
    pack_login_rejected,
    pack_sequenced,
    pack_server_heartbeat,
)
from efsdk.resource import Resource

__all__ = ["SoupServer", "SoupServerConfig", "SoupServerStats", "SoupStreams"]

log = logging.getLogger(__name__)

_now = time.perf_counter_ns
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class SoupServerConfig(BaseModel):
    """Listening address, current session name and timers (seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0: an ephemeral port, see SoupServer.address
    session: str = Field("EFSDK00001", min_length=1, max_length=10)
    heartbeat_interval: float = Field(1.0, gt=0)  # send H after this long without sending
    idle_timeout: float = Field(15.0, gt=0)  # client silent this long (logged in or not) -> closed
    max_frame: int = Field(DEFAULT_MAX_FRAME, ge=64, le=0xFFFF)
    recv_size: int = Field(65536, ge=1024)
    listen_backlog: int = Field(64, ge=1)

    @field_validator("session")
    @classmethod
    def _check_session(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("session must be printable ASCII without spaces")
        return value


class SoupStreams:
    """The sequenced messages of every (session, user), in memory; thread-safe.

    Sequence numbers start at 1 in each stream.  Keep one instance across
    server restarts so reconnecting clients resume where they were.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str], list[bytes]] = {}
        self._ended: set[str] = set()

    def append(self, session: str, user: str, payload: bytes) -> int:
        """Append one message; return its sequence number."""
        with self._lock:
            stream = self._streams.setdefault((session, user), [])
            stream.append(payload)
            return len(stream)

    def next_sequence(self, session: str, user: str) -> int:
        """Sequence number the next appended message will get."""
        with self._lock:
            return len(self._streams.get((session, user), ())) + 1

    def messages(self, session: str, user: str, first: int = 1) -> list[bytes]:
        """The messages numbered ``first`` onwards (a copy)."""
        with self._lock:
            return self._streams.get((session, user), [])[max(first, 1) - 1 :]

    def sessions(self) -> set[str]:
        """Every session that has a stream."""
        with self._lock:
            return {s for s, _ in self._streams}

    def end(self, session: str) -> None:
        """Mark ``session`` ended: no more messages; logins to it get End of Session after the replay."""
        with self._lock:
            self._ended.add(session)

    def ended(self, session: str) -> bool:
        with self._lock:
            return session in self._ended

    def __repr__(self) -> str:
        with self._lock:
            total = sum(len(s) for s in self._streams.values())
            return f"<SoupStreams streams={len(self._streams)} messages={total} ended={sorted(self._ended)}>"


@dataclass
class SoupServerStats:
    """Counters of one server over all its connections."""

    packets_in: dict[str, int] = field(default_factory=dict)  # by packet type
    packets_out: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    connections: int = 0  # accepted
    logins: int = 0
    login_rejects: int = 0
    replaced_logins: int = 0  # a second login of a user: the older connection was closed
    logouts: int = 0
    client_closed: int = 0  # the client closed the TCP connection
    idle_timeouts: int = 0
    bad_frames: int = 0  # connections closed for bytes that are not SoupBinTCP or break the rules
    send_errors: int = 0  # connections closed because a write failed
    heartbeats_in: int = 0
    heartbeats_out: int = 0
    sequenced_sent: int = 0  # Sequenced Data packets queued to clients, replays included
    messages_replayed: int = 0  # of which re-sent at login
    unsequenced_received: int = 0
    callback_errors: int = 0  # on_unsequenced / authenticate raised
    end_of_session_sent: int = 0


class _Conn:
    __slots__ = ("addr", "closing", "dead", "events", "last_recv", "last_send", "out", "reader", "session",
                 "sock", "user")  # fmt: skip

    def __init__(self, sock: socket.socket, addr: tuple[str, int], reader: FrameReader, now: int) -> None:
        self.sock = sock
        self.addr = addr
        self.reader = reader
        self.out = bytearray()
        self.user: str | None = None  # set by a successful login
        self.session = ""
        self.last_recv = now
        self.last_send = now
        self.events = _READ  # what the selector watches
        self.closing = False  # close once ``out`` is flushed (after a Login Rejected)
        self.dead: str | None = None  # why it must be closed by the serving thread

    def __repr__(self) -> str:
        return f"<conn {self.addr[0]}:{self.addr[1]} user={self.user!r}>"


class SoupServer(Resource):
    """A SoupBinTCP server; see the module docstring.

    ``authenticate(username, password) -> bool`` decides logins (it runs in the
    serving thread).  ``on_unsequenced(user, payload)`` receives every
    Unsequenced Data message of a logged-in client.
    """

    def __init__(
        self,
        config: SoupServerConfig,
        authenticate: Callable[[str, str], bool],
        on_unsequenced: Callable[[str, bytes], object] | None = None,
        streams: SoupStreams | None = None,
    ) -> None:
        self.config = config
        self.streams = streams if streams is not None else SoupStreams()
        self.stats = SoupServerStats()
        self._authenticate = authenticate
        self._on_unsequenced = on_unsequenced
        self._lock = threading.RLock()
        self._conns: dict[int, _Conn] = {}
        self._live: dict[tuple[str, str], _Conn] = {}  # (session, user) -> its logged-in connection
        self._logged: set[str] = set()
        self._hb_ns = int(config.heartbeat_interval * 1e9)
        self._idle_ns = int(config.idle_timeout * 1e9)
        # Longest select() wait: timers (heartbeats, idle) are checked at least this often.
        self._tick = min(config.heartbeat_interval, config.idle_timeout) / 4
        self._thread: threading.Thread | None = None
        # One serving thread at a time; reentrant so close() works from inside a callback.
        self._serving = threading.RLock()
        self._stop = threading.Event()
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # A restarted server must be able to take the port back while the old
            # connections sit in TIME_WAIT.
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind((config.host, config.port))
            lsock.listen(config.listen_backlog)
            lsock.setblocking(False)
            wake_r, wake_w = socket.socketpair()
        except BaseException:
            lsock.close()
            raise
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._lsock = lsock
        self._wake_r, self._wake_w = wake_r, wake_w
        self._sel = selectors.DefaultSelector()
        self._sel.register(lsock, _READ, "listen")
        self._sel.register(wake_r, _READ, "wake")
        self._opened()

    # ------------------------------------------------------------------ public API
    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` clients connect to."""
        return self._lsock.getsockname()[:2]

    @property
    def session(self) -> str:
        """The current session name (what a blank requested session means)."""
        return self.config.session

    def logged_in_users(self) -> list[str]:
        """Users with a live logged-in connection."""
        with self._lock:
            return sorted({user for _, user in self._live})

    def connection_count(self) -> int:
        """Open client connections (logged in or not)."""
        with self._lock:
            return len(self._conns)

    def send_sequenced(self, user: str, payload: bytes | bytearray | memoryview) -> int:
        """Append ``payload`` to ``user``'s stream in the current session and send it if they are connected.

        Thread-safe.  Returns the message's sequence number.  Raises
        :class:`~efsdk.errors.SessionError` after :meth:`end_session`.
        """
        data = bytes(payload)
        frame = pack_sequenced(data)
        session = self.config.session
        with self._lock:
            if self.streams.ended(session):
                raise SessionError(f"SoupBinTCP session {session!r} has ended; no more sequenced messages")
            seq = self.streams.append(session, user, data)
            conn = self._live.get((session, user))
            if conn is not None and conn.dead is None:
                self.stats.sequenced_sent += 1
                self._queue(conn, frame, "S")
                if conn.out and threading.current_thread() is not self._thread:
                    self._wake()  # the serving thread has to watch for writability
        return seq

    def end_session(self) -> None:
        """End the current session: End of Session to every client in it; later logins get it after the replay."""
        session = self.config.session
        with self._lock:
            self.streams.end(session)
            for (sess, _), conn in list(self._live.items()):
                if sess == session and conn.dead is None:
                    self._queue(conn, pack_end_of_session(), "Z")
                    self.stats.end_of_session_sent += 1
        self._wake()

    def start(self) -> None:
        """Serve from a daemon thread until :meth:`close`."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                self.serve_once(self._tick)

        self._thread = threading.Thread(target=run, name=f"soupbintcp-server-{self.address[1]}", daemon=True)
        self._thread.start()

    def serve_once(self, timeout: float | None = 0.0) -> int:
        """Handle what is ready now (waiting up to ``timeout`` s), run the timers; return the events handled."""
        if not self._serving.acquire(blocking=False):
            raise RuntimeError("SoupServer.serve_once is already running in another thread (start() was called?)")
        try:
            if self._closed:
                return 0
            wait = self._tick if timeout is None else min(timeout, self._tick)
            ready = self._sel.select(wait)
            callbacks: list[tuple[str, bytes]] = []
            with self._lock:
                if self._closed:
                    return 0
                for key, mask in ready:
                    data = key.data
                    if data == "listen":
                        self._accept()
                    elif data == "wake":
                        self._drain_wake()
                    else:
                        conn: _Conn = data
                        if mask & _WRITE and conn.dead is None:
                            self._flush(conn)
                        if mask & _READ and conn.dead is None:
                            self._read(conn, callbacks)
                self._timers()
                self._reap()
            if callbacks:
                self._deliver(callbacks)
            return len(ready)
        finally:
            self._serving.release()

    # ------------------------------------------------------------------ serving internals
    def _once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(msg + "; further ones are only counted", *args)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already pending (or closing): the loop wakes anyway

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept(self) -> None:
        cfg = self.config
        while True:
            try:
                sock, addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the others
                self._once("accept", "SoupBinTCP server: accept failed (%s)", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, addr[:2], FrameReader(CLIENT_TYPES, cfg.max_frame), _now())
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, _READ, conn)
            self.stats.connections += 1

    def _read(self, conn: _Conn, callbacks: list[tuple[str, bytes]]) -> None:
        try:
            data = conn.sock.recv(self.config.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.stats.client_closed += 1
            conn.dead = f"recv failed: {exc}"
            return
        if not data:
            self.stats.client_closed += 1
            conn.dead = "client closed the connection"
            return
        stats = self.stats
        stats.bytes_in += len(data)
        conn.last_recv = _now()
        try:
            frames = conn.reader.feed(data)
            fault = None
        except ProtocolError as exc:
            frames = getattr(exc, "frames", [])  # handle what came before the fault
            fault = str(exc)
        self._handle(conn, frames, callbacks)
        if fault is not None and conn.dead is None:
            self._bad(conn, fault)

    def _handle(self, conn: _Conn, frames: list[tuple[str, bytes]], callbacks: list[tuple[str, bytes]]) -> None:
        if conn.closing:
            return  # rejected: only waiting for the Login Rejected to leave
        stats = self.stats
        counts = stats.packets_in
        for t, payload in frames:
            counts[t] = counts.get(t, 0) + 1
            if conn.user is None:
                if t == "L":
                    self._login(conn, payload)
                    if conn.closing or conn.dead is not None:
                        return
                elif t != "+":
                    self._bad(conn, f"{t!r} packet before login")
                    return
            elif t == "U":
                stats.unsequenced_received += 1
                callbacks.append((conn.user, payload))
            elif t == "R":
                stats.heartbeats_in += 1
            elif t == "O":
                stats.logouts += 1
                conn.dead = "logout"
                return
            elif t == "L":
                self._bad(conn, "second login request on a logged-in connection")
                return
            # "+": debug text, ignored

    def _login(self, conn: _Conn, payload: bytes) -> None:
        try:
            req = decode_login_request(payload)
        except ProtocolError as exc:
            self._bad(conn, str(exc))
            return
        try:
            ok = bool(self._authenticate(req.username, req.password))
        except Exception as exc:  # a broken callback must not take the server down
            self.stats.callback_errors += 1
            self._once("auth", "SoupBinTCP server: authenticate() raised %s", type(exc).__name__)
            ok = False
        current = self.config.session
        session = req.session or current
        if not ok:
            reason = "A"
        elif session != current and session not in self.streams.sessions():
            reason = "S"
        else:
            reason = ""
        if reason:
            self.stats.login_rejects += 1
            log.info("SoupBinTCP server: login of %r from %s rejected (%s)", req.username, conn.addr[0], reason)
            self._queue(conn, pack_login_rejected(reason), "J")
            conn.closing = True
            return
        user = req.username
        old = self._live.get((session, user))
        if old is not None and old is not conn:
            self.stats.replaced_logins += 1
            self._once("replace", "SoupBinTCP server: %r logged in again; closing the older connection", user)
            old.dead = "replaced by a newer login"
            old.user = None
        next_seq = self.streams.next_sequence(session, user)
        start = next_seq if req.sequence == 0 or req.sequence > next_seq else req.sequence
        conn.user = user
        conn.session = session
        self._live[(session, user)] = conn
        self.stats.logins += 1
        self._queue(conn, pack_login_accepted(session, start), "A")
        replay = self.streams.messages(session, user, start)
        if replay:
            self.stats.messages_replayed += len(replay)
            self.stats.sequenced_sent += len(replay)
            self._queue_many(conn, [pack_sequenced(m) for m in replay], "S")
        if self.streams.ended(session):
            self._queue(conn, pack_end_of_session(), "Z")
            self.stats.end_of_session_sent += 1

    def _bad(self, conn: _Conn, detail: str) -> None:
        self.stats.bad_frames += 1
        self._once("bad", "SoupBinTCP server: closing %s: %s", conn, detail)
        conn.dead = f"protocol error: {detail}"

    def _queue(self, conn: _Conn, frame: bytes, type_: str) -> None:
        stats = self.stats
        stats.bytes_out += len(frame)
        counts = stats.packets_out
        counts[type_] = counts.get(type_, 0) + 1
        conn.out += frame
        self._flush(conn)

    def _queue_many(self, conn: _Conn, frames: list[bytes], type_: str) -> None:
        stats = self.stats
        counts = stats.packets_out
        counts[type_] = counts.get(type_, 0) + len(frames)
        for frame in frames:
            conn.out += frame
            stats.bytes_out += len(frame)
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        out = conn.out
        if not out or conn.dead is not None:
            return
        try:
            n = conn.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.stats.send_errors += 1
            conn.dead = f"send failed: {exc}"
            return
        del out[:n]
        conn.last_send = _now()

    def _timers(self) -> None:
        now = _now()
        hb_ns, idle_ns = self._hb_ns, self._idle_ns
        heartbeat = pack_server_heartbeat()
        for conn in self._conns.values():
            if conn.dead is not None:
                continue
            if now - conn.last_recv > idle_ns:
                self.stats.idle_timeouts += 1
                conn.dead = f"idle for {(now - conn.last_recv) / 1e9:.2f} s"
                log.info("SoupBinTCP server: closing %s: %s", conn, conn.dead)
            elif conn.user is not None and not conn.out and now - conn.last_send >= hb_ns:
                self.stats.heartbeats_out += 1
                self._queue(conn, heartbeat, "H")

    def _reap(self) -> None:
        """Close dead connections and connections done flushing a rejection; sync selector interest."""
        sel = self._sel
        for fd, conn in list(self._conns.items()):
            if conn.closing and not conn.out and conn.dead is None:
                conn.dead = "login rejected"
            if conn.dead is not None:
                self._close_conn(fd, conn)
                continue
            want = _READ | _WRITE if conn.out else _READ
            if want != conn.events:
                sel.modify(conn.sock, want, conn)
                conn.events = want

    def _close_conn(self, fd: int, conn: _Conn) -> None:
        del self._conns[fd]
        if conn.user is not None and self._live.get((conn.session, conn.user)) is conn:
            del self._live[(conn.session, conn.user)]
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _deliver(self, callbacks: list[tuple[str, bytes]]) -> None:
        handler = self._on_unsequenced
        if handler is None:
            return
        for user, payload in callbacks:
            try:
                handler(user, payload)
            except Exception:
                self.stats.callback_errors += 1
                if "callback" not in self._logged:
                    self._logged.add("callback")
                    log.exception("SoupBinTCP server: on_unsequenced raised; further errors are only counted")

    # ------------------------------------------------------------------ teardown
    def _release(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._serving, self._lock:
            for fd, conn in list(self._conns.items()):
                self._close_conn(fd, conn)
            self._sel.close()
            self._lsock.close()
            self._wake_r.close()
            self._wake_w.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.config.host}:{self._lsock.getsockname()[1]}"
        return (
            f"<SoupServer {state} session={self.config.session!r} connections={len(self._conns)} "
            f"logins={self.stats.logins}>"
        )
