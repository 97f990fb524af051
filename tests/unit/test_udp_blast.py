"""The native benchmark sender (sendmmsg) on loopback."""

from __future__ import annotations

import errno
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
