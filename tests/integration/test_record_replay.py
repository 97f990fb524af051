"""``efsdk record`` of a real multicast feed across namespaces, then ``efsdk replay`` of the capture.

The publisher (test_live_run's, seeded duplicates and reorders) sends from one
namespace; ``efsdk record`` captures in the other until end of session.  The
capture must hold exactly the frames the source delivered, and replaying it
(no request server: offline) must rebuild the generated session's books, or,
when the publisher dropped packets, report precisely those messages as lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from efsdk.pcap import parse_udp_frame, read_pcap
from efsdk.sources import native_available
from tests.integration.netns import ROOT, netns_skip_reason, run_in_ns, veth_pair
from tests.integration.test_live_run import make_session, publish

MESSAGES = 10_000
DEADLINE = 40.0


def publish_lossy_in_ns(ready, dest, server_bind, interface, messages, seed, drop_rate) -> dict:  # in a namespace
    msgs, _ = make_session(messages)
    ready()
    return publish(tuple(dest), tuple(server_bind), msgs, interface=interface, seed=seed, drop_rate=drop_rate)


def efsdk_cmd(command: str, *args: str, env_prefix: list[str] | None = None) -> list[str]:
    return (env_prefix or []) + [sys.executable, "-m", "efsdk.cli", command, *args]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="160")


@pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")
@pytest.mark.parametrize(("source", "drop_rate"), [("udp", 0.0), ("afpacket", 0.03)])
def test_record_then_replay_across_namespaces(tmp_path, source, drop_rate):
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    _, summary = make_session(MESSAGES)
    group, port, rport = "239.1.1.9", 26490, 26491
    cap, rec_json, replay_json = tmp_path / "feed.pcap", tmp_path / "rec.json", tmp_path / "replay.json"
    with veth_pair(subnet=9) as pair:
        src = "udp" if source == "udp" else f"afpacket:{pair.rx_if}"
        proc = subprocess.Popen(
            efsdk_cmd("record", "--source", src, "--feed", f"{group}:{port}", "--iface-addr", pair.rx_addr,
                      "-o", str(cap), "--until-end", "--duration", str(DEADLINE - 10), "--json", str(rec_json),
                      env_prefix=["ip", "netns", "exec", pair.rx_ns]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
        )  # fmt: skip
        try:
            time.sleep(1.5)  # the recorder joins before the first packet
            stats = run_in_ns(pair.tx_ns, "tests.integration.test_record_replay:publish_lossy_in_ns",
                              timeout=DEADLINE, dest=[group, port], server_bind=[pair.tx_addr, rport],
                              interface=pair.tx_addr, messages=MESSAGES, seed=8, drop_rate=drop_rate)  # fmt: skip
            stdout, stderr = proc.communicate(timeout=DEADLINE)
        finally:
            proc.kill()
    assert proc.returncode == 0, f"efsdk record exited {proc.returncode}\n{stdout}\n{stderr}"
    rec = json.loads(rec_json.read_text())
    assert rec["stopped_by"] == "end of session", rec
    assert rec["lines"]["A"]["end_of_session"]
    # The capture holds exactly what the source delivered, no more, no less.
    frames = list(read_pcap(cap))
    assert len(frames) == rec["frames"] == rec["sources"]["A"]["frames"] == rec["lines"]["A"]["frames"]
    assert rec["drops"] == {"A": 0}
    assert stats["packets"] > 0 and len(frames) > 0.9 * stats["packets"] * (1 - drop_rate)
    flows = {(d.dst_ip, d.dst_port) for d in (parse_udp_frame(f.data) for f in frames)}
    assert flows == {(group, port)}  # real frames (afpacket) or synthesized ones (udp) of the feed alone
    stamps = [f.ts_ns for f in frames]
    assert stamps == sorted(stamps)

    replay = subprocess.run(efsdk_cmd("replay", str(cap), "--json", str(replay_json), "--no-progress"),
                            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=DEADLINE)  # fmt: skip
    doc = json.loads(replay_json.read_text())
    capture = doc["capture"]
    gaps = capture["gaps"]
    assert capture["complete"] and capture["lines"]["A"]["flow"] == f"{group}:{port}"
    assert capture["duplicate_packets"] > 0  # the publisher duplicates: the session dropped them
    assert doc["anomalies"] == {}
    skipped = capture["start_sequence"] - 1  # messages before the first packet captured (late join)
    if drop_rate == 0:
        assert replay.returncode == 0, replay.stderr
        assert skipped == 0 and gaps["lost"] == 0
        assert doc["messages"] == summary.messages
        assert doc["live_orders"] == summary.live_orders
        assert doc["instruments"] == len(summary.books)
    else:
        # No request server offline: every message the publisher dropped is reported lost, loudly.
        assert replay.returncode == 3, replay.stderr
        assert gaps["lost"] > 0 and gaps["lost_messages"] > 0
        assert doc["messages"] + gaps["lost_messages"] + skipped == summary.messages
        assert "LOST" in replay.stdout
