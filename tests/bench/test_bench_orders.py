"""Order-entry costs on the send path: OUCH encode/decode and a SoupBinTCP round trip on loopback."""

from __future__ import annotations

import time

from efsdk.orders.ouch import codec as ouch
from efsdk.orders.soupbintcp.client import SoupClient, SoupClientConfig, SoupCredentials
from efsdk.orders.soupbintcp.server import SoupServer, SoupServerConfig


def test_bench_encode_enter_order(benchmark):
    msg = ouch.enter_order("EF000000000001", "B", 100, "AAPL", 1_234_500)
    raw = benchmark(lambda: ouch.encode(ouch.enter_order("EF000000000001", "B", 100, "AAPL", 1_234_500)))
    assert len(raw) == 49 and ouch.decode_inbound(raw) == msg


def test_bench_decode_executed(benchmark):
    raw = ouch.encode(ouch.Executed("E", 123, "EF000000000001", 100, 1_234_500, "A", 77))
    msg = benchmark(ouch.decode_outbound, raw)
    assert msg.executed_shares == 100 and msg.match_number == 77


def test_bench_round_trip_order_to_ack(benchmark):
    """send() of an order -> the server's echo delivered to the client (server thread in this process: the GIL
    shares one core between both ends, so this is an upper bound)."""
    holder: list[SoupServer] = []
    server = SoupServer(SoupServerConfig(), lambda user, password: password == "pw",
                        lambda user, payload: holder[0].send_sequenced(user, payload))  # echo it back as the ack
    holder.append(server)
    server.start()
    acks = []
    client = SoupClient(SoupClientConfig(port=server.address[1]), SoupCredentials(username="U", password="pw"),
                        lambda seq, payload: acks.append(seq))  # fmt: skip
    try:
        client.connect()
        client.login()
        order = ouch.encode(ouch.enter_order("EF000000000001", "B", 100, "AAPL", 1_234_500))

        def round_trip():
            want = len(acks) + 1
            client.send(order)
            deadline = time.monotonic() + 5
            while len(acks) < want and time.monotonic() < deadline:
                client.poll(0.001)
            return len(acks) == want

        assert benchmark(round_trip)
    finally:
        client.close()
        server.close()
