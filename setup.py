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


def _optional_module(script: str, found_attr: str, module: str, what: str) -> bool:
    """True when native/``script`` finds what ``module`` needs (its ``found_attr`` is set).

    The script's own probe decides; its ``WHY`` says what is missing.  A broken
    probe must never break ``pip install .``: it is reported and the module left out.
    """
    spec = importlib.util.spec_from_file_location(f"_efsdk_{Path(script).stem}", Path(__file__).parent / "native" / script)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        print(f"efsdk: {module} ({what}) skipped: probing failed: {exc}", file=sys.stderr)
        return False
    found = getattr(mod, found_attr)
    if found is None:
        print(f"efsdk: {module} ({what}) skipped: {mod.WHY}", file=sys.stderr)
        return False
    print(f"efsdk: building {module} ({what}): {mod.WHY}", file=sys.stderr)
    return True


# Optional, Linux only: ef_vi where Onload's headers and libciul are installed,
# AF_XDP where libxdp and libbpf (headers + libraries) are.
if sys.platform.startswith("linux") and _optional_module("build_efvi.py", "ONLOAD", "efsdk._native_efvi", "ef_vi"):
    CFFI_MODULES.append("native/build_efvi.py:ffibuilder")
if sys.platform.startswith("linux") and _optional_module("build_afxdp.py", "XDP", "efsdk._native_afxdp", "AF_XDP"):
    CFFI_MODULES.append("native/build_afxdp.py:ffibuilder")

setup(cffi_modules=CFFI_MODULES)
