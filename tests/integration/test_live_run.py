"""``efsdk run`` end to end: a real process receiving a lossy MoldUDP64 feed.

The publisher drops, duplicates and reorders packets (seeded); the request
server fills the gaps; the books `efsdk run` reports must be exactly the
generated session's.  Loopback needs no privileges; the multicast test runs
publisher and receiver in two network namespaces joined by a veth pair.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from efsdk.itch.generator import SessionGenerator
from efsdk.moldudp64 import Impairment, MessageHistory, MoldPublisher, MoldRequestServer
from efsdk.sources import native_available
from tests.integration.netns import ROOT, netns_skip_reason, run_in_ns, veth_pair

SESSION = "EFSDKLIVE1"
MESSAGES = 20_000
CHUNK = 40  # messages per publish call
DEADLINE = 60.0


def make_session(messages: int = MESSAGES, symbols: int = 8, seed: int = 11):
    gen = SessionGenerator(symbols, messages, seed)
    msgs = list(gen)
    return msgs, gen.summary


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def publish(target: tuple[str, int], server_bind: tuple[str, int], msgs: list[bytes], *,
            interface: str | None = None, drop_rate: float = 0.03, seed: int = 5,
            impaired: bool = True) -> dict:  # fmt: skip
    """Publish ``msgs`` (with seeded damage unless ``impaired`` is false) and serve re-requests."""
    impair = Impairment(drop_rate=drop_rate, duplicate_rate=0.02, reorder_rate=0.03, seed=seed) if impaired else None
    history = MessageHistory(len(msgs) + 1)
    with MoldRequestServer(SESSION, history, bind=server_bind) as server, MoldPublisher(
        SESSION, target, history=history, impairment=impair, interface=interface, pace=0.0005
    ) as pub:  # fmt: skip
        server.start()
        for i in range(0, len(msgs), CHUNK):
            pub.publish(msgs[i : i + CHUNK])
        pub.end_session(repeat=5, interval=0.05)
        time.sleep(3.0)  # keep answering re-requests for gaps found at the end
        return {"packets": pub.stats.data_packets, "requests": server.stats.requests}


def run_efsdk(args: list[str], env_prefix: list[str] | None = None) -> subprocess.Popen:
    cmd = (env_prefix or []) + [sys.executable, "-m", "efsdk.cli", "run", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="160")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def check_result(proc: subprocess.Popen, out_path, summary) -> dict:
    stdout, stderr = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, f"efsdk run exited {proc.returncode}\n{stdout}\n{stderr}"
    doc = json.loads(out_path.read_text())
    assert doc["complete"], doc
    assert doc["messages"] == summary.messages
    assert doc["gaps"]["lost"] == 0 and doc["gaps"]["detected"] > 0 and doc["gaps"]["recovered"] > 0
    assert doc["live_orders"] == summary.live_orders
    assert doc["instruments"] == len(summary.books)
    assert doc["anomalies"] == {}
    assert doc["latency_us"]["p50_us"] > 0
    assert "Live session" in stdout
    return doc


@pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")
def test_run_recovers_a_lossy_unicast_feed_on_loopback(tmp_path):
    msgs, summary = make_session()
    port, rport = free_udp_port(), free_udp_port()
    out = tmp_path / "live.json"
    proc = run_efsdk(["--feed", f"127.0.0.1:{port}", "--rerequest", f"127.0.0.1:{rport}",
                      "--duration", str(DEADLINE - 10), "--json", str(out)])  # fmt: skip
    try:
        time.sleep(1.5)  # the receiver binds before the first packet
        stats = publish(("127.0.0.1", port), ("127.0.0.1", rport), msgs)
        assert stats["requests"] > 0
        check_result(proc, out, summary)
    finally:
        proc.kill()


def publish_in_ns(ready, dest, server_bind, interface, messages, seed, impaired=True) -> dict:  # inside a namespace
    msgs, _ = make_session(messages)
    ready()
    return publish(tuple(dest), tuple(server_bind), msgs, interface=interface, seed=seed, impaired=impaired)


@pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")
@pytest.mark.parametrize("source", ["udp", "afpacket", "afxdp"])
def test_run_multicast_across_namespaces(tmp_path, source):
    reason = netns_skip_reason()
    if source == "afxdp":
        from efsdk.sources.afxdp import afxdp_available

        if not afxdp_available():
            pytest.skip("efsdk._native_afxdp is not built (needs libxdp-dev libbpf-dev)")
    if reason:
        pytest.skip(reason)
    msgs, summary = make_session()
    group, port, rport = "239.1.1.7", 26470, 26471
    with veth_pair(subnet=7) as pair:
        out = tmp_path / "live.json"
        src = "udp" if source == "udp" else f"{source}:{pair.rx_if}"
        proc = run_efsdk(
            ["--source", src, "--feed", f"{group}:{port}", "--iface-addr", pair.rx_addr,
             "--rerequest", f"{pair.tx_addr}:{rport}", "--duration", str(DEADLINE - 10), "--json", str(out)],
            env_prefix=["ip", "netns", "exec", pair.rx_ns],
        )  # fmt: skip
        try:
            time.sleep(1.5)
            stats = run_in_ns(pair.tx_ns, "tests.integration.test_live_run:publish_in_ns", timeout=DEADLINE,
                              dest=[group, port], server_bind=[pair.tx_addr, rport],
                              interface=pair.tx_addr, messages=MESSAGES, seed=6)  # fmt: skip
            assert stats["requests"] > 0
            check_result(proc, out, summary)
        finally:
            proc.kill()


def nft(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")
def test_run_recovers_loss_injected_by_nftables(tmp_path):
    """This kernel has no netem: drop 5% of the feed's packets on the sender's veth with nftables.

    A netdev egress chain on the sending interface drops by ``numgen random``
    only the feed's destination port, so re-requests and their answers pass;
    the publisher itself sends everything once, in order.
    """
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    if subprocess.run(["sh", "-c", "command -v nft"], capture_output=True).returncode:
        pytest.skip("nft (nftables) is not installed; .ci/run installs it")
    msgs, summary = make_session()
    group, port, rport = "239.1.1.8", 26480, 26481
    with veth_pair(subnet=8) as pair:
        nft(pair.tx_ns, "add", "table", "netdev", "efsdk_loss")
        nft(pair.tx_ns, "add", "chain", "netdev", "efsdk_loss", "egress",
            f'{{ type filter hook egress device "{pair.tx_if}" priority 0; }}')  # fmt: skip
        nft(pair.tx_ns, "add", "rule", "netdev", "efsdk_loss", "egress",
            "udp", "dport", str(port), "numgen", "random", "mod", "100", "<", "5", "counter", "drop")  # fmt: skip
        out = tmp_path / "live.json"
        proc = run_efsdk(
            ["--source", "udp", "--feed", f"{group}:{port}", "--iface-addr", pair.rx_addr,
             "--rerequest", f"{pair.tx_addr}:{rport}", "--duration", str(DEADLINE - 10), "--json", str(out)],
            env_prefix=["ip", "netns", "exec", pair.rx_ns],
        )  # fmt: skip
        try:
            time.sleep(1.5)
            stats = run_in_ns(pair.tx_ns, "tests.integration.test_live_run:publish_in_ns", timeout=DEADLINE,
                              dest=[group, port], server_bind=[pair.tx_addr, rport],
                              interface=pair.tx_addr, messages=MESSAGES, seed=8, impaired=False)  # fmt: skip
            ruleset = nft(pair.tx_ns, "list", "table", "netdev", "efsdk_loss")
            dropped = int(ruleset.split("counter packets ")[1].split()[0])
            assert dropped > 0, ruleset  # nftables really dropped feed packets...
            assert stats["requests"] > 0
            doc = check_result(proc, out, summary)  # ...and every message was recovered
            assert doc["recovered_messages"] > 0
        finally:
            proc.kill()
