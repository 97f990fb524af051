"""The embedded exchange: matching engine + background flow on real sockets.

One loop on one thread joins the parts, so the exchange is deterministic
for a seed apart from the timing of participants' orders:

* OUCH 4.2 requests arrive over SoupBinTCP (:class:`~efsdk.orders.soupbintcp.server.SoupServer`,
  pumped with ``serve_once``); each goes straight into the
  :class:`~efsdk.sim.engine.MatchingEngine`, and its responses go back as
  sequenced SoupBinTCP messages to the accounts they concern;
* :class:`~efsdk.sim.flow.BackgroundFlow` adds orders at ``flow_rate``
  actions per second, so the book moves and participants' resting orders
  get filled;
* every ITCH 5.0 message the engine emits is published at once as
  MoldUDP64 (:class:`~efsdk.moldudp64.MoldPublisher`), and a
  :class:`~efsdk.moldudp64.MoldRequestServer` answers re-requests from the
  publisher's history.

A participant therefore sees its own orders in the feed and fills against
the same book everyone sees.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from efsdk.errors import ProtocolError
from efsdk.moldudp64 import MoldPublisher, MoldRequestServer
from efsdk.orders.ouch import codec as ouch
from efsdk.orders.soupbintcp.server import SoupServer, SoupServerConfig
from efsdk.resource import Resource
from efsdk.sim.engine import MatchingEngine
from efsdk.sim.flow import BackgroundFlow, FlowConfig

__all__ = ["Exchange", "ExchangeConfig", "ExchangeStats"]

log = logging.getLogger(__name__)

#: Loop wait when idle: bounds how late a flow step or an order is handled.
IDLE_WAIT_S = 0.0002


class ExchangeConfig(BaseModel):
    """Everything ``efsdk sim`` takes; defaults run a small market on loopback."""

    # hide_input_in_errors: a bad value must not echo a password back.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "AMZN")
    session: str = Field("EFSIM00001", max_length=10)
    feed_host: str = Field("127.0.0.1", description="unicast address or 239.x multicast group of the feed")
    feed_port: int = Field(26400, gt=0, lt=65536)
    feed_interface: str | None = Field(None, description="local IPv4 to send multicast from")
    rerequest_host: str = "127.0.0.1"
    rerequest_port: int = Field(26401, ge=0, lt=65536)
    order_host: str = "127.0.0.1"
    order_port: int = Field(26402, ge=0, lt=65536)
    users: dict[str, SecretStr] = Field(default_factory=lambda: {"DEMO": SecretStr("demo")})
    seed: int = 1
    flow_rate: float = Field(2000.0, ge=0, description="background actions per second")
    flow: FlowConfig = Field(default_factory=FlowConfig)
    heartbeat_interval: float = Field(1.0, gt=0)
    idle_timeout: float = Field(15.0, gt=0)


@dataclass
class ExchangeStats:
    requests: int = 0
    bad_requests: int = 0  # undecodable OUCH from a participant (counted, connection kept)
    responses: int = 0
    itch_messages: int = 0
    flow_actions: int = 0
    started: float = field(default_factory=time.monotonic)


class Exchange(Resource):
    """Run with :meth:`run` (blocking) after construction; :meth:`close` tears everything down."""

    def __init__(self, config: ExchangeConfig | None = None, *, clock_ns: Any = None) -> None:
        self.config = cfg = config or ExchangeConfig()
        self.stats = ExchangeStats()
        self.engine = MatchingEngine(cfg.symbols, clock_ns=clock_ns)
        self.flow = BackgroundFlow(self.engine, seed=cfg.seed, config=cfg.flow)
        self._passwords = {user: secret.get_secret_value() for user, secret in cfg.users.items()}
        self.publisher: MoldPublisher | None = None
        self.request_server: MoldRequestServer | None = None
        self.orders: SoupServer | None = None
        try:
            self.publisher = MoldPublisher(
                cfg.session, (cfg.feed_host, cfg.feed_port), interface=cfg.feed_interface,
                heartbeat_interval=cfg.heartbeat_interval,
            )  # fmt: skip
            self.request_server = MoldRequestServer(cfg.session, self.publisher.history,
                                                    bind=(cfg.rerequest_host, cfg.rerequest_port))  # fmt: skip
            self.orders = SoupServer(
                SoupServerConfig(host=cfg.order_host, port=cfg.order_port, session=cfg.session,
                                 heartbeat_interval=cfg.heartbeat_interval, idle_timeout=cfg.idle_timeout),
                self._authenticate,
                self._on_request,
            )  # fmt: skip
        except BaseException:
            self._release()
            raise
        self._stopping = False
        self._opened()

    # ------------------------------------------------------------------ addresses
    @property
    def order_address(self) -> tuple[str, int]:
        return self.orders.address  # type: ignore[union-attr]

    @property
    def rerequest_address(self) -> tuple[str, int]:
        return self.request_server.address  # type: ignore[union-attr]

    # ------------------------------------------------------------------ participants
    def _authenticate(self, username: str, password: str) -> bool:
        expected = self._passwords.get(username)
        return expected is not None and expected == password

    def _on_request(self, user: str, payload: bytes) -> None:
        self.stats.requests += 1
        try:
            message = ouch.decode_inbound(payload)
        except ProtocolError as exc:
            self.stats.bad_requests += 1
            if self.stats.bad_requests == 1:
                log.warning("sim: undecodable OUCH request from %s (%s); further ones are counted", user, exc)
            return
        responses = self.engine.handle(user, message)
        # Background orders hit by this request: the flow must hear of it.
        self._respond(self.flow.deliver(responses))
        self._publish()

    def _respond(self, responses: list) -> None:
        send = self.orders.send_sequenced  # type: ignore[union-attr]
        background = self.flow.account
        for account, message in responses:
            if account != background:
                send(account, ouch.encode(message))
                self.stats.responses += 1

    def _publish(self) -> None:
        messages = self.engine.drain_itch()
        if messages:
            self.stats.itch_messages += len(messages)
            self.publisher.publish(messages)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the loop
    def open(self) -> None:
        """Open the trading day: directory, system events and the primed background book, published."""
        self.engine.open_session()
        self._respond(self.flow.prime())
        self._publish()

    def stop(self) -> None:
        """Ask :meth:`run` to end the day and return (thread-safe)."""
        self._stopping = True

    def run(self, duration: float | None = None, on_status: Any = None, status_every: float = 1.0) -> ExchangeStats:
        """Trade until ``duration`` s pass or :meth:`stop`; then close the day (end of session sent)."""
        if not self.engine.is_open:
            self.open()
        cfg = self.config
        self.request_server.start()  # type: ignore[union-attr]
        self.publisher.start_heartbeats()  # type: ignore[union-attr]
        serve = self.orders.serve_once  # type: ignore[union-attr]
        step = self.flow.step
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        interval = 1.0 / cfg.flow_rate if cfg.flow_rate else None
        next_action = started
        next_status = started + status_every
        try:
            while not self._stopping:
                serve(IDLE_WAIT_S)
                now = time.monotonic()
                if interval is not None and now >= next_action:
                    due = min(64, int((now - next_action) / interval) + 1)  # catch up, in bounded bites
                    self._respond(step(due))
                    self.stats.flow_actions += due
                    self._publish()
                    next_action += due * interval
                    if now - next_action > 1.0:  # far behind (a stall): do not burst to catch up
                        next_action = now
                if deadline is not None and now >= deadline:
                    break
                if on_status is not None and now >= next_status:
                    on_status(self)
                    next_status = now + status_every
        except KeyboardInterrupt:
            pass
        self.close_day()
        return self.stats

    def close_day(self) -> None:
        """Close the market: cancel what rests, publish it, end the MoldUDP64 and SoupBinTCP sessions."""
        if not self.engine.is_open:
            return
        self._respond(self.flow.deliver(self.engine.close_session()))
        self._publish()
        self.publisher.end_session(repeat=3)  # type: ignore[union-attr]
        self.orders.end_session()  # type: ignore[union-attr]

    def _release(self) -> None:
        for part in (self.orders, self.request_server, self.publisher):
            if part is not None:
                part.close()

    def __repr__(self) -> str:
        return (
            f"<Exchange {self.config.session} symbols={len(self.config.symbols)} requests={self.stats.requests} "
            f"itch={self.stats.itch_messages}>"
        )
