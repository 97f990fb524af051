"""AF_XDP source: option validation, error hints, the "module not built" path, the build probe.

Nothing here needs root or the native module, except the program-assembly
check, which skips without ``efsdk._native_afxdp``.  Real sockets and XDP
programs are exercised in tests/integration/test_sources_afxdp.py.
"""

from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

import pytest

from efsdk.errors import ConfigError, NativeError
from efsdk.sources import BACKENDS, open_source
from efsdk.sources import afxdp
from efsdk.sources.afxdp import (
    DEFAULT_FRAME_SIZE,
    DEFAULT_UMEM_SIZE,
    NOT_BUILT,
    STAGE_ATTACH,
    STAGE_PROG,
    STAGE_SOCKET,
    AfXdpConfig,
    afxdp_error,
    make_config,
    open_afxdp,
)

ROOT = Path(__file__).resolve().parents[2]
FEED = [("239.1.1.1", 26400)]


def _load_build_script():
    spec = importlib.util.spec_from_file_location("_efsdk_build_afxdp_test", ROOT / "native" / "build_afxdp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_registered_backend():
    assert BACKENDS["afxdp"] == "efsdk.sources.afxdp:open_afxdp"
    with pytest.raises(ConfigError, match="use 'afxdp'"):
        open_source("af_xdp")


def test_defaults():
    c = make_config("eth1", feeds=FEED)
    assert (c.queue, c.bind_mode, c.xdp_mode, c.need_wakeup) == (0, "auto", "auto", True)
    assert c.frame_size == DEFAULT_FRAME_SIZE and c.umem_size == DEFAULT_UMEM_SIZE
    assert c.n_frames == DEFAULT_UMEM_SIZE // DEFAULT_FRAME_SIZE == 8192
    assert c.fill_entries == c.rx_entries == 8192
    assert c.describe() == "afxdp eth1 queue 0 [239.1.1.1:26400]"
    # A chunk count that is not a power of two: rings round up.
    c = make_config("eth1", feeds=FEED, umem_size=3000 * 4096, frame_size=4096, fill_size=1024)
    assert c.n_frames == 3000 and c.fill_entries == 1024 and c.rx_entries == 4096


def test_config_is_frozen_and_strict():
    c = make_config("eth1", feeds=FEED)
    with pytest.raises(Exception):  # pydantic's frozen-instance error
        c.queue = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="zero_copy"):
        make_config("eth1", feeds=FEED, zero_copy=True)  # unknown option: extra="forbid"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"feeds": []}, "at least one feed"),
        ({"feeds": [("0.0.0.0", 0)]}, "steal all UDP"),
        ({"feeds": [("239.1.1.1", 70000)]}, "0..65535"),
        ({"feeds": [("not-an-ip", 1)]}, "feed address"),
        ({"feeds": [("239.1.1.1",)]}, r"\(address, port\)"),
        ({"feeds": FEED * 2}, "duplicate"),
        ({"feeds": [("239.1.1.1", p) for p in range(1, 66)]}, "feeds"),
        ({"feeds": FEED, "bind_mode": "fast"}, "bind_mode"),
        ({"feeds": FEED, "xdp_mode": "hw"}, "xdp_mode"),
        ({"feeds": FEED, "frame_size": 1024}, "frame_size"),
        ({"feeds": FEED, "umem_size": 5000}, "multiple of frame_size"),
        ({"feeds": FEED, "umem_size": 32 * 2048}, "64..4194304 frames"),
        ({"feeds": FEED, "fill_size": 1000}, "fill_size must be a power of two"),
        ({"feeds": FEED, "rx_size": 32}, "rx_size must be a power of two"),
        ({"feeds": FEED, "queue": -1}, "queue"),
        ({"feeds": FEED, "batch": 0}, "batch"),
        ({"feeds": FEED, "busy_poll_us": -5}, "busy_poll_us"),
    ],
)
def test_bad_options_are_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        make_config("eth1", **options)


def test_bad_interface_name():
    with pytest.raises(ConfigError, match="interface name"):
        make_config("x" * 16, feeds=FEED)
    with pytest.raises(ConfigError, match="interface name"):
        make_config("", feeds=FEED)


def test_wildcards_allowed_one_at_a_time():
    c = make_config("eth1", feeds=[("0.0.0.0", 26400), ("198.18.0.2", 0)])
    assert c.feeds == (("0.0.0.0", 26400), ("198.18.0.2", 0))


def test_errors_name_the_step_and_the_fix():
    e = afxdp_error(-errno.EOPNOTSUPP, STAGE_SOCKET, "opening afxdp veth0")
    assert e.errno == errno.EOPNOTSUPP
    assert "xsk_socket__create" in str(e) and "zero-copy" in str(e) and "bind_mode='auto'" in str(e)
    e = afxdp_error(-errno.EBUSY, STAGE_ATTACH, "opening")
    assert "already has an XDP program" in str(e)
    e = afxdp_error(-errno.EINVAL, STAGE_PROG, "opening", "verifier: R3 invalid mem access")
    assert "verifier" in str(e) and "Linux >= 5.18" in str(e)
    e = afxdp_error(-errno.EBADF, None, "polling")
    assert "closed" in str(e)


def test_module_not_built_is_a_clear_native_error(monkeypatch):
    """Without efsdk._native_afxdp: NativeError saying what to install, before any option is looked at."""
    monkeypatch.setattr(afxdp, "_lib", None)
    monkeypatch.setattr(afxdp, "_IMPORT_ERROR", ImportError("No module named 'efsdk._native_afxdp'"))
    assert not afxdp.afxdp_available()
    assert afxdp.libbpf_version() is None
    with pytest.raises(NativeError, match="install libxdp-dev libbpf-dev") as exc:
        open_afxdp("eth1", feeds=FEED, bind_mode="nonsense")
    assert str(exc.value).startswith(NOT_BUILT)
    with pytest.raises(NativeError, match="AF_XDP support not built"):
        open_source("afxdp", iface="eth1", feeds=FEED)
    with pytest.raises(NativeError, match="not built"):
        afxdp.AfXdpSource(AfXdpConfig(iface="eth1", feeds=FEED))


def test_build_probe_reports_what_is_missing(tmp_path):
    build = _load_build_script()
    libs, why = build.find_xdp({build.ENV_PREFIX: str(tmp_path)})
    assert libs is None
    assert "install libxdp-dev libbpf-dev" in why and str(tmp_path) in why
    # A prefix that has the headers and libraries is accepted (pkg-config is bypassed by the prefix).
    (tmp_path / "include" / "xdp").mkdir(parents=True)
    (tmp_path / "include" / "bpf").mkdir()
    (tmp_path / "include" / "xdp" / "xsk.h").touch()
    (tmp_path / "include" / "bpf" / "libbpf.h").touch()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libxdp.so").touch()
    (tmp_path / "lib" / "libbpf.so").touch()
    libs, why = build.find_xdp({build.ENV_PREFIX: str(tmp_path)})
    assert libs is not None and libs.libraries == ["xdp", "bpf"] and libs.library_dirs == [str(tmp_path / "lib")]


def test_build_module_state_matches_import():
    """setup.py builds the module exactly when the probe finds libxdp; a built module must import cleanly."""
    build = _load_build_script()
    if build.XDP is None:
        assert build.ffibuilder is None
    if afxdp.afxdp_available():
        assert afxdp.libbpf_version()


def test_program_assembles_for_1_to_64_feeds():
    """The filter is generated per feed list: it stays far below the verifier's limits."""
    if not afxdp.afxdp_available():
        pytest.skip(NOT_BUILT)
    lib = afxdp._lib
    one, full = lib.efsdk_afxdp_prog_size(1), lib.efsdk_afxdp_prog_size(64)
    assert 0 < one < full < 4096
    assert full - one == 63 * 3  # address jump + port jump + match jump per feed
    assert lib.efsdk_afxdp_prog_size(0) == -errno.EINVAL
    assert lib.efsdk_afxdp_prog_size(65) == -errno.EINVAL


def test_without_the_module_everything_else_still_works():
    """A fresh interpreter where efsdk._native_afxdp cannot be imported: a clear error, other backends unaffected."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["efsdk._native_afxdp"] = None  # import fails exactly as when the module was not built
from efsdk.errors import NativeError
from efsdk.sources import afxdp, open_source
from efsdk.bench_wire import available_backends
assert not afxdp.afxdp_available()
try:
    open_source("afxdp", iface="eth1", feeds=[("239.1.1.1", 26400)])
except NativeError as exc:
    print(exc)
print(",".join(available_backends()))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, backends = proc.stdout.strip().splitlines()
    assert first.startswith(NOT_BUILT)
    assert "afxdp" not in backends.split(",") and "afpacket-v2" in backends.split(",")
