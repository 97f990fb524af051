"""ef_vi frame source without hardware: missing-module error, option validation, error mapping, build probe.

With ``efsdk._native_efvi`` built (Onload headers + libciul found at install
time) the native tests run too; they need no NIC: on a machine without the
driver ``ef_driver_open`` must give -ENOENT and the open a clear SourceError.
"""

from __future__ import annotations

import errno
import importlib.util
import os
from pathlib import Path

import pytest

from efsdk.errors import ConfigError, NativeError
from efsdk.sources import SourceError, open_source
from efsdk.sources import efvi

ROOT = Path(__file__).resolve().parents[2]
FEED = [("239.1.1.1", 26400)]
built = pytest.mark.skipif(not efvi.efvi_available(), reason="efsdk._native_efvi not built (no Onload here)")
not_built = pytest.mark.skipif(efvi.efvi_available(), reason="efsdk._native_efvi is built here")


# --------------------------------------------------------------------------- registration / missing module


def test_efvi_is_a_backend_not_planned():
    from efsdk import sources

    assert "efvi" in sources.BACKENDS
    assert "efvi" not in sources._PLANNED


@not_built
def test_open_source_without_module_says_how_to_get_it():
    with pytest.raises(NativeError) as ei:
        open_source("efvi", iface="eth2", feeds=FEED)
    msg = str(ei.value)
    assert "ef_vi support not built" in msg
    assert "EFSDK_ONLOAD_PREFIX" in msg and "libciul" in msg and "reinstall" in msg
    assert not isinstance(ei.value, SourceError)


@not_built
def test_missing_module_wins_over_bad_options():
    # The main problem is reported first, whatever the options.
    with pytest.raises(NativeError, match="ef_vi support not built"):
        open_source("efvi", iface="eth2", feeds=[])


@not_built
def test_probe_without_module():
    assert efvi.libciul_version() is None
    with pytest.raises(NativeError, match="EFSDK_ONLOAD_PREFIX"):
        efvi.probe_driver()


def test_doctor_message_matches():
    # efsdk doctor names the same module and the same way to get it.
    from efsdk import doctor

    assert doctor.NATIVE_EFVI == efvi.NATIVE_EFVI


# --------------------------------------------------------------------------- option validation


def test_make_config_defaults():
    cfg = efvi.make_config("eth2", feeds=FEED)
    assert cfg.iface == "eth2" and cfg.feeds == (("239.1.1.1", 26400),)
    assert (cfg.rxq_size, cfg.evq_size, cfg.n_bufs, cfg.pd_flags) == (-1, -1, 0, 0)
    assert cfg.join and cfg.sw_filter and not cfg.busy and not cfg.hw_timestamps
    assert cfg.batch == efvi.DEFAULT_BATCH
    assert cfg.describe() == "efvi eth2 [239.1.1.1:26400]"


def test_make_config_feeds_in_network_order():
    cfg = efvi.make_config("eth2", feeds=[("239.1.1.1", 26400), ("10.0.0.2", 5000)])
    # the C side reads the u32 as in_addr: first byte in memory = first octet
    assert cfg.feeds_be == [(int.from_bytes(bytes([239, 1, 1, 1]), "little"), 26400),
                            (int.from_bytes(bytes([10, 0, 0, 2]), "little"), 5000)]  # fmt: skip


def test_make_config_options():
    cfg = efvi.make_config(
        "ens1f0np0", feeds=FEED, busy=True, hw_timestamps=True, event_merge=True, join=False,
        rxq_size=4096, evq_size=8192, n_bufs=8192, iface_addr="198.18.0.2", pd_flags=("phys", "mcast_loop"),
        batch=256,
    )  # fmt: skip
    assert cfg.busy and cfg.hw_timestamps and cfg.event_merge and not cfg.join
    assert (cfg.rxq_size, cfg.evq_size, cfg.n_bufs, cfg.batch) == (4096, 8192, 8192, 256)
    assert cfg.pd_flags == efvi.PD_FLAGS["phys"] | efvi.PD_FLAGS["mcast_loop"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iface": "", "feeds": FEED}, "interface name"),
        ({"iface": "x" * 16, "feeds": FEED}, "interface name"),
        ({"iface": "eth2", "feeds": []}, "needs a NIC filter"),
        ({"iface": "eth2", "feeds": [], "macs": ["00:0f:53:01:02"]}, "a MAC filter is"),
        ({"iface": "eth2", "feeds": [], "macs": ["00:0f:53:01:02:zz"]}, "a MAC filter is"),
        ({"iface": "eth2", "feeds": [], "macs": ["00:0f:53:01:02:03"] * 2}, "distinct MAC"),
        ({"iface": "eth2", "feeds": [], "macs": [f"00:0f:53:01:02:{i:02x}" for i in range(9)]}, "at most 8"),
        ({"iface": "eth2", "feeds": FEED, "datapath": "fast"}, "datapath must be one of"),
        ({"iface": "eth2", "feeds": [("239.1.1.1", 0)]}, "port must be 1..65535"),
        ({"iface": "eth2", "feeds": [("239.1.1.1", 70000)]}, "port must be 1..65535"),
        ({"iface": "eth2", "feeds": [("0.0.0.0", 26400)]}, "NIC filters need one"),
        ({"iface": "eth2", "feeds": [("239.1.1", 26400)]}, "feed address"),
        ({"iface": "eth2", "feeds": [("239.1.1.1",)]}, r"a feed is \(address, port\)"),
        ({"iface": "eth2", "feeds": FEED * 2}, "duplicate feeds"),
        ({"iface": "eth2", "feeds": [(f"239.1.1.{i}", 1) for i in range(65)]}, "at most 64 feeds"),
        ({"iface": "eth2", "feeds": FEED, "rxq_size": 1000}, "rxq_size"),
        ({"iface": "eth2", "feeds": FEED, "evq_size": 0}, "evq_size"),
        ({"iface": "eth2", "feeds": FEED, "rxq_size": 32768}, "rxq_size"),
        ({"iface": "eth2", "feeds": FEED, "n_bufs": 10}, "n_bufs"),
        ({"iface": "eth2", "feeds": FEED, "pd_flags": ["turbo"]}, "unknown pd_flags"),
        ({"iface": "eth2", "feeds": FEED, "iface_addr": "nope"}, "iface_addr"),
        ({"iface": "eth2", "feeds": FEED, "batch": 0}, "batch"),
    ],
)
def test_make_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        efvi.make_config(**kwargs)


def test_config_is_frozen():
    cfg = efvi.make_config("eth2", feeds=FEED)
    with pytest.raises(AttributeError):
        cfg.iface = "eth3"  # type: ignore[misc]


# --------------------------------------------------------------------------- error mapping


def test_enoent_at_driver_open_names_the_missing_driver():
    exc = efvi.efvi_error(-errno.ENOENT, efvi.STAGE_DRIVER, "opening efvi eth2")
    assert isinstance(exc, SourceError) and isinstance(exc, NativeError) and isinstance(exc, OSError)
    assert exc.errno == errno.ENOENT
    msg = str(exc)
    assert "no Solarflare/AMD driver (/dev/sfc_char missing)" in msg
    assert "ef_driver_open" in msg and "opening efvi eth2" in msg


def test_eperm_at_vi_alloc_mentions_event_merge():
    msg = str(efvi.efvi_error(-errno.EPERM, efvi.STAGE_VI, "open"))
    assert "EF_VI_RX_EVENT_MERGE" in msg and "ef_vi_alloc_from_pd" in msg


def test_ebusy_depends_on_stage():
    vi = str(efvi.efvi_error(-errno.EBUSY, efvi.STAGE_VI, "open"))
    flt = str(efvi.efvi_error(-errno.EBUSY, efvi.STAGE_FILTER, "open"))
    assert "no free VIs" in vi
    assert "already owns this group:port filter" in flt and "ef_vi_filter_add" in flt


@pytest.mark.parametrize(
    ("rc", "stage", "needle"),
    [
        (-errno.ENODEV, efvi.STAGE_PD, "not a Solarflare/AMD interface"),
        (-errno.ENOMEM, efvi.STAGE_MEM, "huge pages"),
        (-errno.ENOMEM, efvi.STAGE_MEMREG, "RLIMIT_MEMLOCK"),
        (-errno.EACCES, efvi.STAGE_DRIVER, "/dev/sfc_char"),
        (-errno.ENETRESET, None, "close and reopen"),
        (-errno.ENOBUFS, None, "release()"),
        (-errno.EBADF, None, "closed"),
    ],
)
def test_error_hints(rc, stage, needle):
    exc = efvi.efvi_error(rc, stage, "x")
    assert exc.errno == -rc
    assert needle in str(exc)


def test_unknown_errno_still_readable():
    exc = efvi.efvi_error(-errno.EIO, efvi.STAGE_POST, "open")
    assert exc.errno == errno.EIO
    assert os.strerror(errno.EIO) in str(exc) and "posting receive buffers" in str(exc)


def test_after_open_errors_have_no_stage():
    exc = efvi.efvi_error(-errno.ENETRESET, None, "polling efvi eth2")
    assert exc.strerror.startswith("polling efvi eth2: ")


# --------------------------------------------------------------------------- build probe (setup.py)


def _load_build_efvi():
    spec = importlib.util.spec_from_file_location("_t_build_efvi", ROOT / "native" / "build_efvi.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_find_onload_missing_prefix(tmp_path):
    mod = _load_build_efvi()
    found, why = mod.find_onload({"EFSDK_ONLOAD_PREFIX": str(tmp_path)})
    assert found is None
    assert "ef_vi.h missing" in why


def _headers(root, names=("ef_vi.h", "efct_vi.h")):
    (root / "include" / "etherfabric").mkdir(parents=True)
    for name in names:
        (root / "include" / "etherfabric" / name).write_text("/* stub */\n")


def test_find_onload_too_old(tmp_path):
    mod = _load_build_efvi()
    _headers(tmp_path, ("ef_vi.h",))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libciul1.a").write_bytes(b"")
    found, why = mod.find_onload({"EFSDK_ONLOAD_PREFIX": str(tmp_path)})
    assert found is None and "too old" in why


def test_find_onload_headers_without_lib(tmp_path):
    mod = _load_build_efvi()
    _headers(tmp_path)
    found, why = mod.find_onload({"EFSDK_ONLOAD_PREFIX": str(tmp_path)})
    assert found is None and "libciul" in why


@pytest.mark.parametrize(("libdir", "name", "static"), [("lib", "libciul1.a", True), ("lib64", "libciul.so.1", False)])
def test_find_onload_prefix(tmp_path, libdir, name, static):
    mod = _load_build_efvi()
    _headers(tmp_path)
    (tmp_path / libdir).mkdir()
    (tmp_path / libdir / name).write_bytes(b"")
    found, _ = mod.find_onload({"EFSDK_ONLOAD_PREFIX": str(tmp_path)})
    assert found is not None
    assert found.include_dir == str(tmp_path / "include") and found.lib_dir == str(tmp_path / libdir)
    assert (found.static_lib is not None) == static


# --------------------------------------------------------------------------- with the module built (no NIC needed)


@built
def test_native_driver_probe_maps_enoent():
    rc = efvi.probe_driver()
    if rc == 0:
        pytest.skip("an ef_vi driver is loaded here")
    assert rc == -errno.ENOENT or os.path.exists("/dev/sfc_char")


@built
def test_native_filter_spec_builds():
    addr = int.from_bytes(bytes([239, 1, 1, 1]), "little")
    assert efvi._lib.efsdk_efvi_check_filter(addr, 26400) == 0


@built
@pytest.mark.skipif(os.path.exists("/dev/sfc_char"), reason="a driver is loaded: this checks the no-driver path")
def test_native_open_without_driver_is_a_clear_error():
    with pytest.raises(SourceError) as ei:
        open_source("efvi", iface="eth0", feeds=FEED)
    assert ei.value.errno == errno.ENOENT
    assert "no Solarflare/AMD driver (/dev/sfc_char missing)" in str(ei.value)


def test_make_config_mac_and_multicast_all_filters_and_datapath():
    cfg = efvi.make_config("eth2", feeds=[], macs=["00:0F:53:01:02:03", "02-00-00-00-00-01"], multicast_all=True,
                           datapath="enterprise")  # fmt: skip
    assert cfg.macs == (bytes.fromhex("000f53010203"), bytes.fromhex("020000000001"))
    assert cfg.multicast_all and cfg.datapath == "enterprise" and cfg.feeds == ()
    assert cfg.describe() == "efvi eth2 [mac 00:0f:53:01:02:03, mac 02:00:00:00:00:01, multicast-all]"
    assert efvi.make_config("eth2", feeds=FEED).datapath == "auto"  # express where the NIC offers it


def test_express_refused_says_what_to_do():
    msg = str(efvi.efvi_error(-errno.EOPNOTSUPP, efvi.STAGE_PD, "opening"))
    assert "no express datapath" in msg and "enterprise" in msg


def test_timestamp_sync_flags_are_frame_flags():
    from efsdk import sources

    assert (sources.FLAG_TS_CLOCK_SET, sources.FLAG_TS_IN_SYNC) == (0x10, 0x20)
    assert not (sources.FLAG_TS_CLOCK_SET | sources.FLAG_TS_IN_SYNC) & (
        sources.FLAG_TRUNCATED | sources.FLAG_VLAN | sources.FLAG_MULTICAST | sources.FLAG_RAW)  # fmt: skip


@built
def test_native_mac_and_multicast_all_filter_specs_build():
    assert efvi._lib.efsdk_efvi_check_eth_filter(bytes.fromhex("000f53010203")) == 0
    assert efvi._lib.efsdk_efvi_check_eth_filter(efvi._ffi.NULL) == 0  # multicast-all


@not_built
def test_capabilities_without_module():
    with pytest.raises(NativeError, match="EFSDK_ONLOAD_PREFIX"):
        efvi.capabilities("eth2")


@built
@pytest.mark.skipif(os.path.exists("/dev/sfc_char"), reason="a driver is loaded: this checks the no-driver path")
def test_capabilities_without_driver_say_what_to_do():
    with pytest.raises(SourceError) as ei:
        efvi.capabilities("eth0")
    assert ei.value.errno == errno.ENOENT and "no Solarflare/AMD driver" in str(ei.value)
    for name in efvi.CAPABILITY_NAMES:  # every name is an EF_VI_CAP_* the build knows
        assert isinstance(getattr(efvi._lib, f"EF_VI_CAP_{name.upper()}"), int)


def test_capabilities_check_the_interface_name_first():
    with pytest.raises(ConfigError, match="interface name"):
        efvi.capabilities("")
