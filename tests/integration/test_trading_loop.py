"""The whole trading loop for real: exchange process, UDP feed, books, strategy, OUCH over SoupBinTCP.

Every test ends by reconciling the strategy's own record (positions, cash,
fill count) with the exchange's record, which must be identical.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from efsdk.netns import netns_skip_reason, veth_pair
from efsdk.sim.process import SimProcess
from efsdk.sources import native_available
from efsdk.strategy import run_sim
from strategies.imbalance_taker import ImbalanceTaker, ImbalanceTakerConfig
from strategies.market_maker import MarketMaker, MarketMakerConfig

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")


def test_market_maker_on_loopback_matches_the_exchange_record():
    strategy = MarketMaker(MarketMakerConfig(symbols=("AAPL", "MSFT")))
    result = run_sim(strategy, duration=4.0, flow_rate=1500)
    assert result.reconcile() == []
    orders = result.run.runtime.orders
    assert orders.stats.fills > 10 and len(result.record["accounts"]["DEMO"]["fills"]) == orders.stats.fills
    assert {f["liquidity"] for f in result.record["accounts"]["DEMO"]["fills"]} >= {"A"}
    assert orders.stats.unmatched_responses == 0 and orders.stats.duplicate_executions == 0
    assert not orders.open_orders(), "stopping cancels every open order"
    t2t = result.run.runtime.tick_to_trade_us()
    assert t2t["samples"] > 0 and 0 < t2t["p50_us"] <= t2t["p99_us"]
    # the exchange saw every request the strategy sent, no more (nothing sent twice)
    assert result.record["stats"]["requests"] == sum(orders.stats.sent.values())


def test_taker_trades_and_matches_the_exchange_record():
    strategy = ImbalanceTaker(ImbalanceTakerConfig(symbols=("AAPL",), entry=0.3, exit=0.05, cooldown_ms=20))
    result = run_sim(strategy, duration=4.0, flow_rate=1500)
    assert result.reconcile() == []
    fills = result.record["accounts"]["DEMO"]["fills"]
    assert fills and all(f["liquidity"] == "R" for f in fills)


class DropOnce(MarketMaker):
    """A market maker whose order connection is cut once, mid-session."""

    cut_after_fills = 5
    gateway = None

    def on_order(self, update):
        super().on_order(update)
        if self.gateway is not None and len(self.fills) >= self.cut_after_fills and not self.cut:
            self.cut = True
            self.gateway.client._sock.shutdown(socket.SHUT_RDWR)  # the network drops the TCP connection

    cut = False


def test_order_session_reconnects_without_losing_or_duplicating_orders(monkeypatch):
    from efsdk.orders import gateway as gateway_module

    made = []
    real = gateway_module.SoupGateway

    class Recording(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)
            DropOnce.gateway = self

    monkeypatch.setattr(gateway_module, "SoupGateway", Recording)
    strategy = DropOnce(MarketMakerConfig(symbols=("AAPL", "MSFT")))
    result = run_sim(strategy, duration=4.0, flow_rate=1500)
    assert strategy.cut
    client = made[0].client
    assert client.stats.reconnects >= 1 and not made[0].lost
    assert result.reconcile() == []
    orders = result.run.runtime.orders
    assert orders.stats.duplicate_executions == 0 and orders.stats.unmatched_responses == 0
    # nothing was sent twice, and every order is settled: filled, canceled, or known never to have arrived
    assert result.record["stats"]["requests"] <= sum(orders.stats.sent.values())
    assert not orders.open_orders()
    assert all(not o.open for o in orders.orders.values())


def test_exchange_and_strategy_in_two_namespaces(tmp_path):
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    group, feed_port, rereq_port, order_port = "239.1.1.21", 26480, 26481, 26482
    with veth_pair(subnet=21) as pair:
        with SimProcess(
            ("AAPL", "MSFT"),
            feed=(group, feed_port),
            rerequest=(pair.tx_addr, rereq_port),
            orders=(pair.tx_addr, order_port),
            user="NSUSER",
            password="secret1",
            args=["--feed-interface", pair.tx_addr, "--flow-rate", "1500"],
            namespace=pair.tx_ns,
        ) as sim:
            out = tmp_path / "run.json"
            env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="160", EFSDK_OUCH_PASSWORD="secret1")
            proc = subprocess.run(
                ["ip", "netns", "exec", pair.rx_ns, sys.executable, "-m", "efsdk.cli", "run",
                 str(ROOT / "strategies" / "market_maker.py"), "--symbols", "AAPL,MSFT",
                 "--feed", f"{group}:{feed_port}", "--iface-addr", pair.rx_addr,
                 "--rerequest", f"{pair.tx_addr}:{rereq_port}", "--orders", f"{pair.tx_addr}:{order_port}",
                 "--user", "NSUSER", "--duration", "4", "--json", str(out)],
                capture_output=True, text=True, env=env, timeout=60, cwd=ROOT,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "secret1" not in proc.stdout + proc.stderr
            # neither process carries the password on its command line (readable by every local user)
            for pid in (sim.pid,):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert b"secret1" not in f.read()
            record = sim.stop()
    doc = json.loads(out.read_text())
    mine = record["accounts"]["NSUSER"]
    assert doc["fills"] > 5 and doc["fills"] == len(mine["fills"])
    assert {s: n for s, n in doc["positions"].items() if n} == mine["positions"]
    assert sum(doc["cash"].values()) == mine["cash"]
    assert doc["feed_latency_us"]["samples"] > 0


def test_efsdk_demo_runs_the_full_loop(tmp_path):
    out = tmp_path / "demo.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="160")
    proc = subprocess.run([sys.executable, "-m", "efsdk.cli", "demo", "--duration", "3", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=90, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["reconciled_with_exchange"] and doc["fills"] > 0
    assert doc["tick_to_trade_us"]["samples"] > 0 and doc["feed_messages"] > 1000
    assert "match the exchange's record" in proc.stdout and "tick-to-trade" in proc.stdout


@pytest.mark.parametrize("sidecar", [False, True], ids=["in-process", "sidecar"])
def test_demo_publishes_its_books_to_a_subscriber_in_another_process(tmp_path, sidecar):
    """`efsdk demo --publish`: a subscriber process rebuilds the strategy's books from the ZeroMQ stream.

    With ``--publish-sidecar`` the demo's live feed handler forwards its bytes to a publisher process.
    """
    endpoint = f"ipc://{tmp_path}/books"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="160")
    sub_out = tmp_path / "sub.json"
    subscriber = subprocess.Popen(
        [sys.executable, "-m", "efsdk.cli", "subscribe", "--symbols", "AAPL,MSFT", "--endpoint", endpoint,
         "--until-final", "--duration", "60", "--depth", "10", "--json", str(sub_out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    demo_out = tmp_path / "demo.json"
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "efsdk.cli", "demo", "--duration", "3", "--symbols", "AAPL,MSFT",
             "--publish", endpoint, "--json", str(demo_out), *(["--publish-sidecar"] if sidecar else [])],
            capture_output=True, text=True, env=env, timeout=90, cwd=ROOT,
        )  # fmt: skip
        assert demo.returncode == 0, demo.stdout + demo.stderr
        stdout, stderr = subscriber.communicate(timeout=60)
    finally:
        subscriber.kill()
    assert subscriber.returncode == 0, stdout + stderr
    books = json.loads(demo_out.read_text())["books"]
    received = json.loads(sub_out.read_text())["books"]
    for symbol in ("AAPL", "MSFT"):
        assert received[symbol]["final"]
        assert received[symbol]["bids"] == books[symbol]["bids"][:10]
        assert received[symbol]["asks"] == books[symbol]["asks"][:10]
