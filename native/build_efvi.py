"""cffi out-of-line API-mode build of ``efsdk._native_efvi`` (the ef_vi frame source and sender).

Optional: it needs the Onload headers (``<etherfabric/ef_vi.h>``) and libciul
(``libciul1.a`` or ``libciul.so``).  They are looked for under
``$EFSDK_ONLOAD_PREFIX`` first, then ``/usr`` and ``/usr/local``; a prefix has
``include/etherfabric/`` and ``lib/`` (or ``lib64/``, ``lib/x86_64-linux-gnu/``).
``setup.py`` adds this module to ``cffi_modules`` only when :func:`find_onload`
finds both, so ``pip install .`` works everywhere and ``efsdk doctor`` reports
the module as not built.

The hot-path ef_vi calls are macros / static inlines (not exported by
libciul), hence API mode: ``src_efvi.c`` (receive) and ``efvi_tx.c`` (transmit)
are compiled, as one translation unit, against the real headers.
The static ``libciul1.a`` is preferred (it is built -fPIC; no runtime library
path needed); otherwise ``-lciul`` with an rpath to the library directory.

By hand, touching nothing but this module::

    EFSDK_ONLOAD_PREFIX=/opt/onload python native/build_efvi.py   # writes efsdk/_native_efvi*.so
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import NamedTuple

# Shared helpers, loaded by path: setuptools runs this file with native/ not importable.
_spec = importlib.util.spec_from_file_location("_efsdk_build_common", Path(__file__).resolve().parent / "build_common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
HERE = common.HERE
ENV_PREFIX = "EFSDK_ONLOAD_PREFIX"
_DEFAULT_PREFIXES = ("/usr", "/usr/local")
_LIBDIRS = ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu")

# Same habits as build_sources.py; -O2 is plenty, the NIC dominates.
_CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]


class Onload(NamedTuple):
    """Where the Onload headers and libciul were found."""

    prefix: str
    include_dir: str
    lib_dir: str
    static_lib: str | None  # path of libciul1.a, preferred
    shared: bool  # libciul.so present (used when there is no static lib)


def find_onload(env: dict[str, str] | None = None) -> tuple[Onload | None, str]:
    """``(Onload, why)`` when headers + libciul are found, else ``(None, why not)``."""
    env = os.environ if env is None else env
    explicit = env.get(ENV_PREFIX, "").strip()
    prefixes = [explicit] if explicit else list(_DEFAULT_PREFIXES)
    tried = []
    for prefix in prefixes:
        inc = Path(prefix, "include")
        if not (inc / "etherfabric" / "ef_vi.h").is_file():
            tried.append(f"{inc}/etherfabric/ef_vi.h missing")
            continue
        if not (inc / "etherfabric" / "efct_vi.h").is_file():
            # src_efvi.c uses the X3 receive API (RX_REF events, efct_vi_rxpkt_*): an older Onload
            # would fail to compile it and with it `pip install .`; skip instead.
            tried.append(f"Onload under {prefix} is too old for src_efvi.c (no etherfabric/efct_vi.h)")
            continue
        for sub in _LIBDIRS:
            lib = Path(prefix, sub)
            static = lib / "libciul1.a"
            shared = any((lib / n).exists() for n in ("libciul.so", "libciul.so.1"))
            if static.is_file() or shared:
                return Onload(prefix, str(inc), str(lib), str(static) if static.is_file() else None, shared), (
                    f"Onload found under {prefix}"
                )
        tried.append(f"no libciul1.a / libciul.so under {prefix}/{{{','.join(_LIBDIRS)}}}")
    hint = "" if explicit else f"; set {ENV_PREFIX}=<prefix> if Onload is installed elsewhere"
    return None, "; ".join(tried) + hint


def make_ffibuilder(onload: Onload, path=common.source_path):
    """The FFI builder for ``onload``; ``path`` maps a file name in native/ to what setuptools gets."""
    from cffi import FFI

    ffi = FFI()
    ffi.cdef((HERE / "efvi.cdef").read_text(encoding="utf-8"))
    link: dict[str, list[str]]
    if onload.static_lib:
        link = {"extra_objects": [onload.static_lib]}
    else:
        link = {
            "libraries": ["ciul"],
            "library_dirs": [onload.lib_dir],
            "extra_link_args": [f"-Wl,-rpath,{onload.lib_dir}"],
        }
    ffi.set_source(
        "efsdk._native_efvi",
        # The module's one translation unit is the real C file (no C in this string).
        '#include "src_efvi.c"\n#include "efvi_tx.c"\n',
        include_dirs=[path("."), onload.include_dir],
        depends=[path(name) for name in ("src_efvi.c", "efvi_tx.c", "frame_source.h", "netparse.h", "mcast_join.h", "efvi.cdef")],
        extra_compile_args=_CFLAGS,
        libraries=link.get("libraries", []) + ["rt"],
        library_dirs=link.get("library_dirs", []),
        extra_objects=link.get("extra_objects", []),
        extra_link_args=link.get("extra_link_args", []),
        py_limited_api=True,
    )
    return ffi


ONLOAD, WHY = find_onload()
#: ``None`` when Onload is absent: setup.py then leaves this module out.
ffibuilder = make_ffibuilder(ONLOAD) if ONLOAD is not None else None

if __name__ == "__main__":
    if ONLOAD is None:
        print(f"efsdk._native_efvi not built: {WHY}", file=sys.stderr)
        sys.exit(1)
    dest = common.build_in_place(lambda path: make_ffibuilder(ONLOAD, path), "efvi")
    print(f"{dest} (against {ONLOAD.prefix}, {'libciul1.a' if ONLOAD.static_lib else 'libciul.so'})")
    sys.exit(0)
