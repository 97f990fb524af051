"""The native benchmark sender (sendmmsg) on loopback."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from efsdk.sources import native_available

pytestmark = pytest.mark.skipif(not native_available(), reason="efsdk._native_sources is not built")


def test_blast_sends_the_template_and_counts_it():
    from efsdk._native_sources import ffi, lib

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    payload = bytes(range(64))
    sent, errors = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    try:
        assert lib.efsdk_udp_blast(tx.fileno(), payload, len(payload), 64, 20_000_000, sent, errors) == 0
        assert sent[0] > 0
        received = 0
        while True:
            try:
                data = rx.recv(2048)
            except BlockingIOError:
                break
            assert data == payload
            received += 1
        assert 0 < received <= sent[0]
    finally:
        tx.close()
        rx.close()


def test_blast_refuses_bad_arguments():
    from efsdk._native_sources import ffi, lib

    sent, errors = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    assert lib.efsdk_udp_blast(-1, b"x", 1, 8, 1000, sent, errors) == -errno.EINVAL
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        assert lib.efsdk_udp_blast(s.fileno(), b"x", 1, 0, 1000, sent, errors) == -errno.EINVAL
        assert lib.efsdk_udp_blast(s.fileno(), b"x", 1, 2000, 1000, sent, errors) == -errno.EINVAL
        # not connected: the kernel's error comes back as -errno, never a crash
        assert lib.efsdk_udp_blast(s.fileno(), b"x", 1, 8, 1_000_000, sent, errors) == -errno.EDESTADDRREQ


def test_xdp_sender_refuses_bad_arguments_and_missing_interfaces():
    """The in-kernel sender (its traffic test is tests/integration/test_bench_wire.py, inside namespaces)."""
    from efsdk._native_sources import ffi, lib

    sent, calls = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    frame = bytes(60)
    assert lib.efsdk_xdp_blast(0, frame, len(frame), 1000, sent, calls) == -errno.EINVAL
    assert lib.efsdk_xdp_blast(1, frame, 13, 1000, sent, calls) == -errno.EINVAL  # shorter than Ethernet
    assert lib.efsdk_xdp_pass_attach(0) == -errno.EINVAL
    assert lib.efsdk_xdp_live_frames_probe(0, frame, len(frame)) == -errno.EINVAL
    if os.geteuid() == 0:  # as root the program loads; an interface that does not exist: the kernel's -errno
        assert lib.efsdk_xdp_blast(2_000_000_000, frame, len(frame), 1_000_000, sent, calls) == -errno.ENODEV
        assert lib.efsdk_xdp_pass_attach(2_000_000_000) in (-errno.ENODEV, -errno.EINVAL)  # EINVAL on 6.18
        assert lib.efsdk_xdp_live_frames_probe(2_000_000_000, frame, len(frame)) == -errno.ENODEV
        # loopback exists everywhere; XDP_DROP sends nothing.  0 on Linux >= 5.18, -EINVAL before
        assert lib.efsdk_xdp_live_frames_probe(socket.if_nametoindex("lo"), frame, len(frame)) in (0, -errno.EINVAL)

