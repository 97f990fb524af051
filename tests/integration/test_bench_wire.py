"""``efsdk bench wire`` end to end, small: the JSON it writes is complete and sane (no timing thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from efsdk.bench_wire import BACKENDS, available_backends
from efsdk.sources import native_available
from tests.integration.netns import ROOT, netns_skip_reason

pytestmark = pytest.mark.root


def _skip_unless_the_bench_can_run() -> None:
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    if not native_available():
        pytest.skip("efsdk._native_sources is not built (python native/build_sources.py)")
    pytest.importorskip("hdrh", reason="hdrhistogram is not installed")


def test_bench_wire_json(tmp_path):
    _skip_unless_the_bench_can_run()
    out = tmp_path / "wire.json"
    proc = subprocess.run(
        [sys.executable, "-m", "efsdk.cli", "bench", "wire", "--seconds", "1", "--rate", "2000", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Latency" in proc.stdout and "Throughput" in proc.stdout
    doc = json.loads(out.read_text())
    measured = set(available_backends())  # afxdp only when efsdk._native_afxdp is built
    assert measured <= set(BACKENDS) and {"udp", "afpacket-v3", "afpacket-v2", "python-loop"} <= measured
    assert set(doc["backends"]) == measured
    assert set(doc["verdicts"]) == measured
    assert doc["config"]["sender"] == "xdp" and doc["config"]["steer"] == "sender"
    assert doc["config"]["seconds"] == 1 and doc["config"]["rate"] == 2000
    for name, r in doc["backends"].items():
        lat, thr = r["latency"], r["throughput"]
        assert lat["sent"] > 0 and lat["frames"] > 0, name
        q = lat["latency"]
        assert q["count"] > 0, name
        assert 0 < q["p50_us"] <= q["p99_us"] <= q["p99_9_us"] <= q["max_us"], (name, q)
        assert q["hdr"], name
        assert thr["sent"] > 0 and thr["frames"] > 0 and thr["frames_per_s"] > 0, (name, thr)
        assert thr["offered_per_s"] > 0 and thr["batches"] > 0, name
        assert thr["stats"]["kernel_drops"] >= 0 and thr["lost_before_socket"] >= 0, name


def _rps_wakeups() -> dict[int, int]:
    """Per CPU, how often another CPU handed it packets through RPS (``/proc/net/softnet_stat`` column 10).

    A line per online CPU: the CPU is the 13th column where the kernel has it
    (Linux >= 5.10), else the line's index (right only while every CPU is online).
    """
    with open("/proc/net/softnet_stat") as f:
        rows = [line.split() for line in f]
    return {int(r[12], 16) if len(r) > 12 else i: int(r[9], 16) for i, r in enumerate(rows)}


@pytest.mark.parametrize(("sender", "steer"), [("xdp", "sender"), ("xdp", "receiver"), ("raw", "sender")])
def test_frame_senders_reach_a_udp_socket_and_steering_moves_receive_work(sender, steer):
    """The in-kernel (XDP live frames) and raw senders' prebuilt frames are datagrams the kernel's UDP
    stack delivers to the group's socket; ``steer="receiver"`` hands the veth's receive work to the
    receiver's CPU (RPS), ``"sender"`` does not."""
    from efsdk import bench_wire

    _skip_unless_the_bench_can_run()
    rx_cpu, _ = bench_wire.cpu_plan(1)
    if rx_cpu is None:
        pytest.skip("one CPU: nothing to steer between")
    before = _rps_wakeups()
    doc = bench_wire.run(0.3, 2000, backends=["udp"], senders=1, sender=sender, steer=steer)
    after = _rps_wakeups()
    thr = doc["backends"]["udp"]["throughput"]
    if doc["config"]["sender_used"] != sender:
        pytest.skip(doc["config"]["sender_fallback"])
    assert thr["sender"] == sender and doc["config"]["steer"] == steer
    assert thr["sent"] > 1000 and thr["frames"] > 0  # well-formed IPv4/UDP to the group, or none would arrive
    assert thr["frames"] + thr["stats"]["kernel_drops"] <= thr["sent"]  # nothing counted twice
    handed_over = after[rx_cpu] - before[rx_cpu]
    if steer == "receiver":
        assert handed_over > 0
    else:
        assert handed_over < 100  # nothing of ours (other traffic on the host could wake it rarely)
