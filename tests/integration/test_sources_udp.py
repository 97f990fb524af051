"""Kernel UDP frame source on real interfaces: two namespaces, a veth pair, real sockets.

The receiver runs inside its namespace (``ip netns exec``) and checks every
datagram byte for byte; the sender runs in the other one.  Loopback-only API
tests at the end need no privileges.
"""

from __future__ import annotations

import errno
import gc
import socket
import warnings

import pytest

from efsdk.errors import ConfigError
from efsdk.sources import FLAG_MULTICAST, FLAG_TRUNCATED, SourceError, native_available, open_source
from tests.integration.netns import netns_skip_reason, run_in_ns, start_in_ns, veth_pair

GROUP = "239.1.1.1"
PORT = 26400
RECEIVE = "tests.integration.netns:receive"
SEND = "tests.integration.netns:send_udp"

needs_native = pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")


@pytest.fixture(scope="module")
def pair():
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    if not native_available():
        pytest.skip("efsdk._native_sources is not built (python native/build_sources.py)")
    with veth_pair(subnet=1) as p:
        yield p


def _run(pair, open_kwargs, expect, sizes, dst, port, seqs, **recv):
    with start_in_ns(pair.rx_ns, RECEIVE, backend="udp", open_kwargs=open_kwargs, expect=expect,
                     sizes=sizes, **recv) as rx:  # fmt: skip
        rx.wait_ready()
        sent = run_in_ns(pair.tx_ns, SEND, dst=dst, port=port, src_addr=pair.tx_addr, seqs=seqs, sizes=sizes)
        return sent, rx.result()


def _assert_all(res, first, count, flags):
    assert res["bad"] == 0 and res["dupes"] == 0
    assert res["good"] == count, res["stats"]
    assert res["seqs"] == list(range(first, first + count))
    assert res["ts_kinds"] == {"sw": count}
    assert res["ts_back"] == 0, "software timestamps went backwards"
    assert res["wall0"] <= res["ts_first"] <= res["ts_last"] <= res["wall1"]
    assert res["flags"] == {str(flags): count}
    st = res["stats"]
    assert st["frames"] == count and st["kernel_drops"] == 0 and st["truncated"] == 0


@pytest.mark.root
def test_multicast_every_datagram_byte_identical(pair):
    sizes = [20, 64, 333, 1000, 1400, 1472]  # 1472: the largest unfragmented at MTU 1500
    n = 10_000
    sent, res = _run(pair, {"group": GROUP, "port": PORT, "iface_addr": pair.rx_addr}, n, sizes,
                     GROUP, PORT, [1, 1 + n])  # fmt: skip
    assert sent["sent"] == n
    _assert_all(res, 1, n, FLAG_MULTICAST)
    assert res["stats"]["bytes"] == sum(sizes[s % len(sizes)] for s in range(1, 1 + n))


@pytest.mark.root
@pytest.mark.parametrize("busy", [False, True], ids=["blocking", "busy"])
def test_unicast_every_datagram(pair, busy):
    n = 3000
    sizes = [20, 700, 1472]
    kwargs = {"group": pair.rx_addr, "port": PORT + 1, "busy": busy, "batch": 8}
    _, res = _run(pair, kwargs, n, sizes, pair.rx_addr, PORT + 1, [5000, 5000 + n])
    _assert_all(res, 5000, n, 0)


@pytest.mark.root
def test_truncated_counted_and_skipped(pair):
    sizes = [100, 1000]  # even seqs fit a 512-byte buffer, odd ones do not
    kwargs = {"group": GROUP, "port": PORT + 2, "iface_addr": pair.rx_addr, "buf_size": 512}
    _, res = _run(pair, kwargs, 1000, sizes, GROUP, PORT + 2, [0, 2000])
    assert res["good"] == 1000 and res["bad"] == 0, res["stats"]
    assert all(s % 2 == 0 for s in res["seqs"])
    assert res["stats"]["truncated"] == 1000
    assert res["truncated"] == []


@pytest.mark.root
def test_truncated_kept_and_flagged(pair):
    sizes = [100, 1000]
    kwargs = {"group": GROUP, "port": PORT + 3, "iface_addr": pair.rx_addr, "buf_size": 512, "keep_truncated": True}
    _, res = _run(pair, kwargs, 500, sizes, GROUP, PORT + 3, [0, 1000])
    assert res["good"] == 500, res["stats"]
    assert res["stats"]["truncated"] == 500
    assert res["truncated"] == [[512, 1000]] * 500
    assert res["flags"][str(FLAG_MULTICAST | FLAG_TRUNCATED)] == 500


@pytest.mark.root
def test_socket_overflow_counted_as_kernel_drops(pair):
    """A stalled consumer behind a tiny SO_RCVBUF: the kernel drops, SO_RXQ_OVFL says how many."""
    n = 2000
    kwargs = {"group": GROUP, "port": PORT + 4, "iface_addr": pair.rx_addr, "rcvbuf": 4096}
    sent, res = _run(pair, kwargs, n, [1000], GROUP, PORT + 4, [0, n], timeout=1.0, start_delay=1.5)
    st = res["stats"]
    assert res["bad"] == 0 and 0 < res["good"] < n
    assert st["kernel_drops"] > 0
    assert res["good"] + st["kernel_drops"] == n  # every datagram is either delivered or counted


# ------------------------------------------------------------- API (loopback, no root)


def _loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_native
def test_lifecycle_on_loopback():
    port = _loopback_port()
    src = open_source("udp", group="127.0.0.1", port=port, batch=4)
    assert "open" in repr(src)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for i in range(6):
            tx.sendto(b"m%d" % i, ("127.0.0.1", port))
    got = []
    for _ in range(10):
        batch = src.poll(timeout=0.2)
        assert len(batch) <= 4
        got += [bytes(mv) for mv, _, _ in batch]
        if len(got) == 6:
            break
    assert got == [b"m%d" % i for i in range(6)]
    assert src.pending == 2  # the last batch is still held
    batch.release()
    assert src.pending == 0
    with pytest.raises(ValueError, match="released"):
        list(batch)
    empty = src.poll(timeout=0)
    assert len(empty) == 0 and not empty
    st = src.stats
    assert st.frames == 6 and st.empty_polls >= 1 and st.polls >= 3
    src.close()
    src.close()  # idempotent
    assert src.closed and src.stats.frames == 6
    with pytest.raises(SourceError) as exc:
        src.poll(timeout=0)
    assert exc.value.errno == errno.EBADF


@needs_native
def test_leak_warns():
    src = open_source("udp", group="127.0.0.1", port=_loopback_port())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del src
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)


@needs_native
def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown frame source"):
        open_source("carrier-pigeon")
    with pytest.raises(ConfigError, match="AF_XDP.*not available"):
        open_source("af_xdp")
    with pytest.raises(ConfigError, match="port"):
        open_source("udp", group=GROUP, port=0)
    with pytest.raises(ConfigError, match="group"):
        open_source("udp", group="not-an-address", port=PORT)
    with pytest.raises(SourceError) as exc:  # not a local address
        open_source("udp", group="198.19.255.254", port=PORT)
    assert exc.value.errno == errno.EADDRNOTAVAIL
