"""SoupBinTCP 4.x: the packet codec, a client pumped from the caller's loop, and a server.

Typical client use::

    from efsdk.orders.soupbintcp import SoupClient, SoupClientConfig, SoupCredentials

    creds = SoupCredentials(username="ACCT01", password="...")
    client = SoupClient(SoupClientConfig(host="10.0.0.5", port=15000), creds, on_sequenced=handle)
    client.connect(); client.login()
    while running:
        client.poll()                  # delivers sequenced messages, heartbeats, detects a silent server
        ...
        sent_ns = client.send(order_bytes)
"""

from efsdk.orders.soupbintcp.client import (
    LoginRejected,
    SoupClient,
    SoupClientConfig,
    SoupClientStats,
    SoupCredentials,
    SoupEvent,
    SoupState,
)
from efsdk.orders.soupbintcp.codec import FrameReader
from efsdk.orders.soupbintcp.server import SoupServer, SoupServerConfig, SoupServerStats, SoupStreams

__all__ = [
    "FrameReader",
    "LoginRejected",
    "SoupClient",
    "SoupClientConfig",
    "SoupClientStats",
    "SoupCredentials",
    "SoupEvent",
    "SoupServer",
    "SoupServerConfig",
    "SoupServerStats",
    "SoupState",
    "SoupStreams",
]
