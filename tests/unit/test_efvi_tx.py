"""ef_vi transmit (``efsdk.sources.efvi_tx``): what runs without a Solarflare/AMD NIC.

Option validation and error mapping always run.  Where ``efsdk._native_efvi``
is built (against a real libciul: ``EFSDK_ONLOAD_PREFIX``), opening a sender
goes through the real ``ef_driver_open``, which without the driver must fail
with the missing-driver message.  Sending needs a NIC: not tested here.
"""

from __future__ import annotations

import errno
import os

import pytest

from efsdk.errors import ConfigError, NativeError
from efsdk.sources import SourceError, efvi
from efsdk.sources.efvi_tx import CTPIO_SNF, MAX_FRAME, make_sender_config, open_efvi_sender

built = pytest.mark.skipif(not efvi.efvi_available(), reason="efsdk._native_efvi not built (no Onload here)")
not_built = pytest.mark.skipif(efvi.efvi_available(), reason="efsdk._native_efvi is built here")


def test_sender_config_defaults_and_options():
    cfg = make_sender_config("eth2")
    assert (cfg.ctpio, cfg.timestamps, cfg.ctpio_threshold, cfg.txq_size, cfg.n_bufs, cfg.pd_flags) == (
        True, False, CTPIO_SNF, -1, 0, 0)  # fmt: skip
    cfg = make_sender_config("eth2", ctpio=False, timestamps=True, ctpio_threshold=192, txq_size=2048,
                             evq_size=4096, n_bufs=256, pd_flags=["vf", "mcast_loop"])  # fmt: skip
    assert (cfg.ctpio, cfg.timestamps, cfg.ctpio_threshold, cfg.txq_size, cfg.evq_size, cfg.n_bufs) == (
        False, True, 192, 2048, 4096, 256)  # fmt: skip
    assert cfg.pd_flags == efvi.PD_FLAGS["vf"] | efvi.PD_FLAGS["mcast_loop"]
    assert cfg.datapath == "auto" and make_sender_config("eth2", datapath="express").datapath == "express"
    assert "dma, tx timestamps" in cfg.describe()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iface": ""}, "interface name"),
        ({"iface": "a-very-long-interface"}, "interface name"),
        ({"iface": "eth2", "ctpio_threshold": 63}, "ctpio_threshold"),
        ({"iface": "eth2", "ctpio_threshold": "fast"}, "ctpio_threshold"),
        ({"iface": "eth2", "txq_size": 1000}, "txq_size"),
        ({"iface": "eth2", "evq_size": 0}, "evq_size"),
        ({"iface": "eth2", "n_bufs": 8}, "n_bufs"),
        ({"iface": "eth2", "pd_flags": ["turbo"]}, "unknown pd_flags"),
        ({"iface": "eth2", "datapath": "llct"}, "datapath must be one of"),
    ],
)
def test_sender_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_sender_config(**kwargs)


def test_send_errors_say_what_to_do():
    assert "1984 bytes" in str(efvi.efvi_error(-errno.EMSGSIZE, None, "send"))
    assert MAX_FRAME == 1984
    assert "close and reopen" in str(efvi.efvi_error(-errno.ENETRESET, None, "send"))


@not_built
def test_sender_without_module_says_how_to_get_it():
    with pytest.raises(NativeError, match="EFSDK_ONLOAD_PREFIX"):
        open_efvi_sender("eth2")


@built
@pytest.mark.skipif(os.path.exists("/dev/sfc_char"), reason="a driver is loaded: this checks the no-driver path")
def test_sender_open_without_driver_is_a_clear_error():
    with pytest.raises(SourceError) as ei:
        open_efvi_sender("eth0", timestamps=True)
    assert ei.value.errno == errno.ENOENT
    assert "no Solarflare/AMD driver (/dev/sfc_char missing)" in str(ei.value)
    assert "efvi sender eth0 (ctpio, tx timestamps)" in str(ei.value)
