"""Build hook: cffi out-of-line API mode modules from native/.

Metadata lives in pyproject.toml; setuptools only reads ``cffi_modules`` from here.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup

CFFI_MODULES = ["native/build_itch.py:ffibuilder"]
if sys.platform.startswith("linux"):  # frame sources use Linux-only socket APIs (recvmmsg, AF_PACKET)
    CFFI_MODULES.append("native/build_sources.py:ffibuilder")


def _onload_found() -> bool:
    """True when native/build_efvi.py finds the Onload headers + libciul (EFSDK_ONLOAD_PREFIX, /usr, /usr/local)."""
    spec = importlib.util.spec_from_file_location("_efsdk_build_efvi", Path(__file__).parent / "native" / "build_efvi.py")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # a broken probe must never break `pip install .`
        print(f"efsdk: ef_vi module skipped: probing for Onload failed: {exc}", file=sys.stderr)
        return False
    if mod.ONLOAD is None:
        print(f"efsdk: ef_vi module (efsdk._native_efvi) skipped: {mod.WHY}", file=sys.stderr)
        return False
    print(f"efsdk: building efsdk._native_efvi against {mod.ONLOAD.prefix}", file=sys.stderr)
    return True


# ef_vi is optional: built only where Onload's headers and libciul are installed.
if sys.platform.startswith("linux") and _onload_found():
    CFFI_MODULES.append("native/build_efvi.py:ffibuilder")


def _xdp_found() -> bool:
    """True when native/build_afxdp.py finds <xdp/xsk.h> + libxdp + libbpf (pkg-config, EFSDK_XDP_PREFIX, /usr)."""
    spec = importlib.util.spec_from_file_location("_efsdk_build_afxdp", Path(__file__).parent / "native" / "build_afxdp.py")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # a broken probe must never break `pip install .`
        print(f"efsdk: skipped AF_XDP: probing for libxdp failed: {exc}", file=sys.stderr)
        return False
    if mod.XDP is None:
        print(f"efsdk: skipped AF_XDP (efsdk._native_afxdp): {mod.WHY}", file=sys.stderr)
        return False
    print(f"efsdk: building efsdk._native_afxdp (libxdp + libbpf via {mod.XDP.how})", file=sys.stderr)
    return True


# AF_XDP is optional: built only where libxdp and libbpf (headers + libraries) are installed.
if sys.platform.startswith("linux") and _xdp_found():
    CFFI_MODULES.append("native/build_afxdp.py:ffibuilder")

setup(cffi_modules=CFFI_MODULES)
