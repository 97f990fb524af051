"""SoupBinTCP client and server over real TCP on 127.0.0.1.

Timers are shortened through the configs (heartbeats every 50 ms, idle after
0.4 s) so the heartbeat and timeout paths run in well under a second.  Every
wait has a deadline; a test that does not get what it waits for fails.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pydantic import ValidationError

from efsdk.errors import SessionError
from efsdk.orders import ouch
from efsdk.orders.soupbintcp import (
    LoginRejected,
    SoupClient,
    SoupClientConfig,
    SoupCredentials,
    SoupEvent,
    SoupServer,
    SoupServerConfig,
    SoupState,
    SoupStreams,
)
from efsdk.orders.soupbintcp import codec as sb

HB = 0.05
IDLE = 0.4
DEADLINE = 5.0
PASSWORD = "Zq9sEcReT7"  # distinctive, so a leak is easy to find
USERS = {"TRADE1": PASSWORD, "TRADE2": "other"}


def authenticate(username: str, password: str) -> bool:
    return USERS.get(username) == password


class Recorder:
    """Collects what a client delivers."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []
        self.events: list[tuple[SoupEvent, str]] = []

    def on_sequenced(self, seq: int, payload: bytes) -> None:
        self.messages.append((seq, payload))

    def on_event(self, event: SoupEvent, detail: str) -> None:
        self.events.append((event, detail))

    def kinds(self) -> list[SoupEvent]:
        return [e for e, _ in self.events]


def wait_for(cond: Callable[[], bool], *pumps: Callable[[], object], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        for pump in pumps:
            pump()
        if not pumps:
            time.sleep(0.002)


@pytest.fixture
def streams() -> SoupStreams:
    return SoupStreams()


@pytest.fixture
def server(streams: SoupStreams) -> Iterator[SoupServer]:
    srv = SoupServer(
        SoupServerConfig(heartbeat_interval=HB, idle_timeout=IDLE, session="TEST000001"),
        authenticate,
        streams=streams,
    )
    srv.start()
    yield srv
    srv.close()


def make_client(
    port: int, rec: Recorder, user: str = "TRADE1", password: str = PASSWORD, session: str = "", **cfg: object
) -> SoupClient:
    config = SoupClientConfig(port=port, **{"heartbeat_interval": HB, "idle_timeout": IDLE, **cfg})
    return SoupClient(
        config, SoupCredentials(username=user, password=password, session=session), rec.on_sequenced, rec.on_event
    )


@pytest.fixture
def clients() -> Iterator[list[SoupClient]]:
    made: list[SoupClient] = []
    yield made
    for c in made:
        c.close()


def client_for(clients: list[SoupClient], port: int, rec: Recorder, **kw: object) -> SoupClient:
    c = make_client(port, rec, **kw)
    clients.append(c)
    return c


def pump(client: SoupClient) -> Callable[[], int]:
    return lambda: client.poll(0.005)


# ------------------------------------------------------------------ login


def test_login_accepted_and_sequenced_stream_in_order(server: SoupServer, clients) -> None:
    rec = Recorder()
    c = client_for(clients, server.address[1], rec)
    c.connect()
    assert c.login() == 1
    assert c.state is SoupState.LOGGED_IN and c.session == "TEST000001"
    assert rec.kinds() == [SoupEvent.LOGGED_IN]
    wait_for(lambda: server.logged_in_users() == ["TRADE1"])

    # The matching engine publishes from its own thread.
    payloads = [f"msg{i:05d}".encode() * 3 for i in range(2000)]

    def engine() -> None:
        for p in payloads:
            server.send_sequenced("TRADE1", p)

    t = threading.Thread(target=engine)
    t.start()
    wait_for(lambda: len(rec.messages) == len(payloads), pump(c))
    t.join()
    assert rec.messages == list(enumerate(payloads, start=1))
    assert c.next_expected_seq == 2001 and c.last_delivered_seq == 2000
    assert c.stats.sequenced_received == 2000 and c.stats.duplicates_skipped == 0
    assert c.stats.packets_in["S"] == 2000


def test_unsequenced_reaches_the_server_callback_in_order(streams: SoupStreams, clients) -> None:
    got: list[tuple[str, bytes]] = []

    def on_unsequenced(user: str, payload: bytes) -> None:
        got.append((user, payload))
        msg = ouch.decode_inbound(payload)
        accepted = ouch.Accepted("A", 1, msg.token, msg.side, msg.shares, msg.stock, msg.price,
                                 msg.time_in_force, msg.firm, msg.display, len(got), msg.capacity,
                                 msg.intermarket_sweep, msg.minimum_quantity, msg.cross_type, "L", " ")  # fmt: skip
        srv.send_sequenced(user, ouch.encode(accepted))  # answering from inside the callback

    srv = SoupServer(SoupServerConfig(heartbeat_interval=HB, idle_timeout=IDLE), authenticate, on_unsequenced, streams)
    srv.start()
    try:
        rec = Recorder()
        c = client_for(clients, srv.address[1], rec)
        c.connect()
        c.login()
        tokens = ouch.TokenGenerator("T")
        orders = [ouch.enter_order(tokens.next(), "B", 100 + i, "AAPL", 150_0000 + i) for i in range(200)]
        stamps = [c.send(ouch.encode(o)) for o in orders]
        assert stamps == sorted(stamps) and all(isinstance(s, int) for s in stamps)
        wait_for(lambda: len(rec.messages) == 200, pump(c))
        assert [ouch.decode_inbound(p) for _, p in got] == orders
        assert {u for u, _ in got} == {"TRADE1"}
        acks = [ouch.decode_outbound(p) for _, p in rec.messages]
        assert [a.token for a in acks] == [o.token for o in orders]
        assert [a.order_reference for a in acks] == list(range(1, 201))
        assert srv.stats.unsequenced_received == 200 and c.stats.packets_out["U"] == 200
    finally:
        srv.close()


def test_login_rejected_bad_password(server: SoupServer, clients) -> None:
    rec = Recorder()
    c = client_for(clients, server.address[1], rec, password="wrong")
    c.connect()
    with pytest.raises(LoginRejected) as info:
        c.login()
    assert info.value.reason == "A"
    assert "not authorized" in str(info.value) and "TRADE1" in str(info.value)
    assert isinstance(info.value, SessionError)
    assert c.state is SoupState.DISCONNECTED and c.stats.login_rejects == 1
    assert rec.kinds() == [SoupEvent.LOGIN_REJECTED]
    wait_for(lambda: server.stats.login_rejects == 1 and server.connection_count() == 0)


def test_login_rejected_unknown_session(server: SoupServer, clients) -> None:
    c = client_for(clients, server.address[1], Recorder(), session="NOSUCH")
    c.connect()
    with pytest.raises(LoginRejected, match="session not available") as info:
        c.login()
    assert info.value.reason == "S"


def test_send_before_login_raises(server: SoupServer, clients) -> None:
    c = client_for(clients, server.address[1], Recorder())
    with pytest.raises(SessionError, match="disconnected"):
        c.send(b"x")
    c.connect()
    with pytest.raises(SessionError, match="connected"):
        c.send(b"x")


# ------------------------------------------------------------------ heartbeats and timeouts


def test_heartbeats_both_ways_when_idle(server: SoupServer, clients) -> None:
    c = client_for(clients, server.address[1], Recorder())
    c.connect()
    c.login()
    wait_for(lambda: c.stats.heartbeats_in >= 5 and server.stats.heartbeats_in >= 5, pump(c))
    assert c.stats.heartbeats_out >= 5 and server.stats.heartbeats_out >= 5
    assert c.state is SoupState.LOGGED_IN  # heartbeats kept both sides from timing out
    assert server.stats.idle_timeouts == 0 and c.stats.idle_timeouts == 0


def test_client_detects_a_silent_server(clients) -> None:
    """A fake server that accepts the login and then says nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    rec = Recorder()
    c = client_for(clients, listener.getsockname()[1], rec)

    def fake() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(100)
            conn.sendall(sb.pack_login_accepted("QUIET", 1) + sb.pack_sequenced(b"only one"))
            time.sleep(IDLE * 3)

    t = threading.Thread(target=fake, daemon=True)
    t.start()
    try:
        c.connect()
        c.login()
        start = time.monotonic()
        wait_for(lambda: c.state is SoupState.DISCONNECTED, pump(c))
        assert time.monotonic() - start >= IDLE * 0.9
        assert rec.messages == [(1, b"only one")]
        assert rec.kinds() == [SoupEvent.LOGGED_IN, SoupEvent.IDLE_TIMEOUT]
        assert c.stats.idle_timeouts == 1 and c.stats.disconnects == 1
        assert c.stats.heartbeats_out >= 3  # the client kept heartbeating meanwhile
    finally:
        t.join()
        listener.close()


def test_server_closes_a_silent_client(server: SoupServer) -> None:
    with socket.create_connection(server.address) as raw:
        raw.sendall(sb.pack_login_request("TRADE1", PASSWORD))
        raw.settimeout(DEADLINE)
        received = b""
        while True:  # the server heartbeats, then gives up on us
            chunk = raw.recv(4096)
            if not chunk:
                break
            received += chunk
    frames = sb.FrameReader(sb.SERVER_TYPES).feed(received)
    assert frames[0][0] == "A" and {t for t, _ in frames[1:]} == {"H"}
    assert server.stats.idle_timeouts == 1


# ------------------------------------------------------------------ restart and reconnect


def test_server_restart_and_reconnect_resume_without_duplicates_or_gaps(streams: SoupStreams, clients) -> None:
    cfg = SoupServerConfig(heartbeat_interval=HB, idle_timeout=IDLE, session="DAY1")
    srv = SoupServer(cfg, authenticate, streams=streams)
    srv.start()
    port = srv.address[1]
    rec = Recorder()
    c = client_for(clients, port, rec)
    try:
        c.connect()
        c.login()
        for i in range(1, 51):
            srv.send_sequenced("TRADE1", b"m%d" % i)
        wait_for(lambda: len(rec.messages) == 50, pump(c))
    finally:
        srv.close()

    wait_for(lambda: c.state is SoupState.DISCONNECTED, pump(c))
    assert rec.kinds()[-1] is SoupEvent.SERVER_CLOSED
    assert c.stats.server_closed == 1 and c.next_expected_seq == 51

    # Same port, same streams: the engine kept publishing while the client was away.
    srv2 = SoupServer(cfg.model_copy(update={"port": port}), authenticate, streams=streams)
    srv2.start()
    try:
        for i in range(51, 81):
            srv2.send_sequenced("TRADE1", b"m%d" % i)
        assert c.reconnect() == 51
        assert c.session == "DAY1" and c.stats.reconnects == 1
        for i in range(81, 101):
            srv2.send_sequenced("TRADE1", b"m%d" % i)
        wait_for(lambda: len(rec.messages) == 100, pump(c))
        assert rec.messages == [(i, b"m%d" % i) for i in range(1, 101)]
        assert c.stats.duplicates_skipped == 0 and c.stats.sequence_gaps == 0
        assert srv2.stats.messages_replayed == 30

        # A login asking for everything again delivers nothing twice.
        c.logout()
        c.connect()
        assert c.login(sequence=1) == 1
        wait_for(lambda: c.next_expected_seq == 101, pump(c))
        assert len(rec.messages) == 100 and c.stats.duplicates_skipped == 100
        srv2.send_sequenced("TRADE1", b"m101")
        wait_for(lambda: len(rec.messages) == 101, pump(c))
        assert rec.messages[-1] == (101, b"m101")
    finally:
        srv2.close()


def test_login_from_zero_gets_only_new_messages(server: SoupServer, clients) -> None:
    for i in range(5):
        server.send_sequenced("TRADE1", b"old%d" % i)
    rec = Recorder()
    c = client_for(clients, server.address[1], rec, first_sequence=0)
    c.connect()
    assert c.login() == 6
    server.send_sequenced("TRADE1", b"new")
    wait_for(lambda: rec.messages, pump(c))
    assert rec.messages == [(6, b"new")]


def test_streams_are_per_user(server: SoupServer, clients) -> None:
    r1, r2 = Recorder(), Recorder()
    c1 = client_for(clients, server.address[1], r1)
    c2 = client_for(clients, server.address[1], r2, user="TRADE2", password="other")
    for c in (c1, c2):
        c.connect()
        c.login()
    server.send_sequenced("TRADE2", b"for two")
    server.send_sequenced("TRADE1", b"for one")
    wait_for(lambda: r1.messages and r2.messages, pump(c1), pump(c2))
    assert r1.messages == [(1, b"for one")] and r2.messages == [(1, b"for two")]


def test_second_login_replaces_the_first(server: SoupServer, clients) -> None:
    r1, r2 = Recorder(), Recorder()
    c1 = client_for(clients, server.address[1], r1)
    c1.connect()
    c1.login()
    c2 = client_for(clients, server.address[1], r2)
    c2.connect()
    c2.login()
    wait_for(lambda: c1.state is SoupState.DISCONNECTED, pump(c1))
    assert server.stats.replaced_logins == 1
    server.send_sequenced("TRADE1", b"x")
    wait_for(lambda: r2.messages, pump(c2))


# ------------------------------------------------------------------ bad peers


def test_malformed_bytes_close_only_that_connection(server: SoupServer, clients) -> None:
    rec = Recorder()
    c = client_for(clients, server.address[1], rec)
    c.connect()
    c.login()
    for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\x00", b"\x00\x01S", sb.pack_unsequenced(b"early")):
        with socket.create_connection(server.address) as raw:
            raw.settimeout(DEADLINE)
            raw.sendall(garbage)
            try:
                assert raw.recv(100) == b""  # closed by the server
            except ConnectionResetError:
                pass
    wait_for(lambda: server.stats.bad_frames == 4)
    server.send_sequenced("TRADE1", b"still here")
    wait_for(lambda: rec.messages, pump(c))
    assert rec.messages == [(1, b"still here")] and c.state is SoupState.LOGGED_IN
    assert server.connection_count() == 1


def test_frames_before_garbage_are_handled_then_the_connection_closed(server: SoupServer) -> None:
    with socket.create_connection(server.address) as raw:
        raw.settimeout(DEADLINE)
        raw.sendall(sb.pack_login_request("TRADE1", PASSWORD) + b"\x00\x00junk")
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
    assert sb.FrameReader(sb.SERVER_TYPES).feed(received)[0][0] == "A"
    assert server.stats.logins == 1 and server.stats.bad_frames == 1
    wait_for(lambda: server.logged_in_users() == [])


def test_client_survives_a_server_speaking_garbage(clients) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    rec = Recorder()
    c = client_for(clients, listener.getsockname()[1], rec)

    def fake() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(100)
            conn.sendall(sb.pack_login_accepted("BAD", 1) + b"\x00\x01Q")
            time.sleep(0.2)

    t = threading.Thread(target=fake, daemon=True)
    t.start()
    try:
        c.connect()
        try:
            c.login()  # the garbage usually arrives in the same segment as the acceptance
        except SessionError as exc:
            assert "protocol_error" in str(exc)
        wait_for(lambda: c.state is SoupState.DISCONNECTED, pump(c))
        assert rec.kinds() == [SoupEvent.LOGGED_IN, SoupEvent.PROTOCOL_ERROR]
        assert c.stats.protocol_errors == 1
    finally:
        t.join()
        listener.close()


def test_server_callback_errors_are_counted_not_fatal(streams: SoupStreams, clients) -> None:
    def broken(user: str, payload: bytes) -> None:
        raise RuntimeError("engine bug")

    srv = SoupServer(SoupServerConfig(heartbeat_interval=HB, idle_timeout=IDLE), authenticate, broken, streams)
    srv.start()
    try:
        c = client_for(clients, srv.address[1], Recorder())
        c.connect()
        c.login()
        c.send(b"one")
        c.send(b"two")
        wait_for(lambda: srv.stats.callback_errors == 2, pump(c))
        assert c.state is SoupState.LOGGED_IN
    finally:
        srv.close()


# ------------------------------------------------------------------ partial writes


def test_partial_writes_are_buffered_never_dropped(streams: SoupStreams, clients) -> None:
    got: list[bytes] = []
    srv = SoupServer(
        SoupServerConfig(heartbeat_interval=10, idle_timeout=60), authenticate, lambda u, p: got.append(p), streams
    )
    try:
        c = client_for(clients, srv.address[1], Recorder(), idle_timeout=60, heartbeat_interval=10)
        c.connect()
        login = threading.Thread(target=c.login)
        login.start()
        wait_for(lambda: not login.is_alive(), lambda: srv.serve_once(0.01))
        assert c.logged_in
        # The server is not serving now, so the kernel buffers fill up.
        payloads = [i.to_bytes(4, "big") * 1000 for i in range(4000)]  # 16 MB
        for p in payloads:
            c.send(p)
        assert c.stats.partial_writes >= 1 and c.pending_bytes > 0
        wait_for(lambda: len(got) == len(payloads), lambda: srv.serve_once(0.001), lambda: c.poll(0))
        assert got == payloads
        assert c.pending_bytes == 0 and c.stats.unsent_bytes_dropped == 0
    finally:
        srv.close()


# ------------------------------------------------------------------ end of session and logout


def test_end_of_session(server: SoupServer, clients) -> None:
    rec = Recorder()
    c = client_for(clients, server.address[1], rec)
    c.connect()
    c.login()
    server.send_sequenced("TRADE1", b"last")
    server.end_session()
    wait_for(lambda: c.state is SoupState.ENDED, pump(c))
    assert rec.messages == [(1, b"last")]
    assert rec.kinds() == [SoupEvent.LOGGED_IN, SoupEvent.END_OF_SESSION]
    assert c.stats.end_of_session == 1
    with pytest.raises(SessionError, match="ended"):
        server.send_sequenced("TRADE1", b"too late")
    with pytest.raises(SessionError, match="ended"):
        c.send(b"order after the end")
    # A login to the ended session gets the replay, then End of Session again.
    rec2 = Recorder()
    c2 = client_for(clients, server.address[1], rec2, user="TRADE1")
    c2.connect()
    c2.login(sequence=1)
    wait_for(lambda: c2.state is SoupState.ENDED, pump(c2))
    assert rec2.messages == [(1, b"last")]


def test_logout(server: SoupServer, clients) -> None:
    rec = Recorder()
    c = client_for(clients, server.address[1], rec)
    c.connect()
    c.login()
    wait_for(lambda: server.connection_count() == 1)
    c.logout()
    assert c.state is SoupState.DISCONNECTED
    assert rec.kinds() == [SoupEvent.LOGGED_IN, SoupEvent.LOGGED_OUT]
    assert c.stats.logouts == 1 and c.stats.disconnects == 0 and c.stats.server_closed == 0
    wait_for(lambda: server.stats.logouts == 1 and server.connection_count() == 0)
    c.close()
    c.close()  # idempotent
    assert c.state is SoupState.CLOSED


def test_pumped_server_without_thread(streams: SoupStreams, clients) -> None:
    with SoupServer(SoupServerConfig(heartbeat_interval=HB, idle_timeout=IDLE), authenticate, streams=streams) as srv:
        rec = Recorder()
        c = client_for(clients, srv.address[1], rec)
        c.connect()
        login = threading.Thread(target=c.login)  # login() waits for an answer: pump the server meanwhile
        login.start()
        wait_for(lambda: not login.is_alive(), lambda: srv.serve_once(0.01))
        srv.send_sequenced("TRADE1", b"pumped")
        wait_for(lambda: rec.messages, lambda: srv.serve_once(0), pump(c))
        assert rec.messages == [(1, b"pumped")]
    assert srv.closed


# ------------------------------------------------------------------ secrets


def test_password_never_leaks(server: SoupServer, clients, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    creds = SoupCredentials(username="TRADE1", password=PASSWORD)
    texts = [repr(creds), str(creds), creds.model_dump_json(), repr(creds.model_dump())]
    with pytest.raises(ValidationError) as bad:
        SoupCredentials(username="TRADE1", password=PASSWORD + "toolong")
    texts.append(str(bad.value))
    texts.append(repr(bad.value.errors()))
    for wrong in (PASSWORD[:9] + "\u00e9", PASSWORD.encode(), " " + PASSWORD[:9]):
        with pytest.raises(ValidationError) as bad2:
            SoupCredentials(username="TRADE1", password=wrong)
        texts += [str(bad2.value), repr(bad2.value.errors()), bad2.value.json()]
    with pytest.raises(ValidationError) as bad3:
        SoupCredentials(password=PASSWORD)  # username missing: the whole input is in the error
    texts += [str(bad3.value), repr(bad3.value.errors()), bad3.value.json()]

    rec = Recorder()
    c = client_for(clients, server.address[1], rec)
    c.connect()
    c.login()
    texts.append(repr(c))
    texts.append(repr(server))
    c.send(b"x")
    server.close()
    wait_for(lambda: c.state is SoupState.DISCONNECTED, pump(c))
    with pytest.raises(OSError) as refused:
        c.reconnect()
    texts.append(str(refused.value))

    # A rejected login: server logs and the client's exception.
    srv2 = SoupServer(SoupServerConfig(), lambda u, p: False)
    srv2.start()
    try:
        c2 = client_for(clients, srv2.address[1], rec)
        c2.connect()
        with pytest.raises(LoginRejected) as rejected:
            c2.login()
        texts.append(str(rejected.value))
        texts.append(repr(rejected.value))
    finally:
        srv2.close()
    # A login that times out.
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        c3 = client_for(clients, listener.getsockname()[1], rec, login_timeout=0.1)
        c3.connect()
        with pytest.raises(SessionError) as timed_out:
            c3.login()
        texts.append(str(timed_out.value))
        assert c3.stats.login_timeouts == 1
    finally:
        listener.close()

    texts += [r.getMessage() for r in caplog.records]
    texts += [detail for _, detail in rec.events]
    assert caplog.records  # the disconnects and the rejection were logged
    for text in texts:
        assert PASSWORD not in text, text
