"""cffi out-of-line API-mode build of ``efsdk._native_afxdp`` (the AF_XDP frame source).

Optional: it needs libxdp's ``<xdp/xsk.h>`` and the libxdp + libbpf libraries
(Debian/Ubuntu: ``apt-get install libxdp-dev libbpf-dev pkg-config``).  They
are found through ``pkg-config libxdp libbpf`` (honours ``PKG_CONFIG_PATH``),
else under ``$EFSDK_XDP_PREFIX``, ``/usr``, ``/usr/local``.  ``setup.py`` adds
this module to ``cffi_modules`` only when :func:`find_xdp` finds them, so
``pip install .`` works everywhere and ``efsdk.sources.afxdp`` says the module
is not built.  No clang is needed: the XDP program is assembled in C at open
time (``src_afxdp.c``).

API mode because the ring helpers (``xsk_ring_cons__peek`` & co.) are inlines
in ``xsk.h``: ``src_afxdp.c`` is compiled against the real headers.

By hand, touching nothing but this module::

    python native/build_afxdp.py     # writes efsdk/_native_afxdp*.so
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

# Shared helpers, loaded by path: setuptools runs this file with native/ not importable.
_spec = importlib.util.spec_from_file_location("_efsdk_build_common", Path(__file__).resolve().parent / "build_common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
HERE = common.HERE
ENV_PREFIX = "EFSDK_XDP_PREFIX"
NOT_FOUND_HINT = "install libxdp-dev libbpf-dev (and pkg-config)"
_DEFAULT_PREFIXES = ("/usr", "/usr/local")
_LIBDIRS = ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu")

# Same habits as build_sources.py; -O2 is plenty: the rings are a few loads per frame.
_CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]


class XdpLibs(NamedTuple):
    """Where libxdp / libbpf were found, as compiler and linker arguments."""

    how: str  # "pkg-config" or the prefix
    include_dirs: list[str]
    library_dirs: list[str]
    libraries: list[str]
    extra_compile_args: list[str]


def _pkg_config(*args: str) -> str | None:
    exe = shutil.which("pkg-config")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _has_xsk_header(include_dirs: list[str]) -> bool:
    return any(Path(d, "xdp", "xsk.h").is_file() for d in [*include_dirs, "/usr/include", "/usr/local/include"])


def find_xdp(env: dict[str, str] | None = None) -> tuple[XdpLibs | None, str]:
    """``(XdpLibs, why)`` when ``<xdp/xsk.h>`` + libxdp + libbpf are found, else ``(None, why not)``."""
    env = os.environ if env is None else env
    tried = []
    explicit = env.get(ENV_PREFIX, "").strip()
    if not explicit:
        flags = _pkg_config("--cflags", "--libs", "libxdp", "libbpf")
        if flags is not None:
            parts = flags.split()
            inc = [p[2:] for p in parts if p.startswith("-I")]
            if _has_xsk_header(inc):
                return XdpLibs(
                    "pkg-config",
                    inc,
                    [p[2:] for p in parts if p.startswith("-L")],
                    [p[2:] for p in parts if p.startswith("-l")] or ["xdp", "bpf"],
                    [p for p in parts if not p.startswith(("-I", "-L", "-l"))],
                ), "libxdp + libbpf found by pkg-config"
            tried.append("pkg-config knows libxdp/libbpf but <xdp/xsk.h> is missing")
        else:
            tried.append("pkg-config has no libxdp/libbpf" if shutil.which("pkg-config") else "no pkg-config")
    for prefix in [explicit] if explicit else _DEFAULT_PREFIXES:
        inc = Path(prefix, "include")
        if not (inc / "xdp" / "xsk.h").is_file() or not (inc / "bpf" / "libbpf.h").is_file():
            tried.append(f"no {inc}/xdp/xsk.h + {inc}/bpf/libbpf.h")
            continue
        for sub in _LIBDIRS:
            lib = Path(prefix, sub)
            if (lib / "libxdp.so").exists() and (lib / "libbpf.so").exists():
                return XdpLibs(prefix, [str(inc)], [str(lib)], ["xdp", "bpf"], []), f"libxdp + libbpf under {prefix}"
        tried.append(f"no libxdp.so + libbpf.so under {prefix}/{{{','.join(_LIBDIRS)}}}")
    return None, "; ".join(tried) + f" ({NOT_FOUND_HINT})"


def make_ffibuilder(libs: XdpLibs, path=common.source_path):
    """The FFI builder for ``libs``; ``path`` maps a file name in native/ to what setuptools gets."""
    from cffi import FFI

    ffi = FFI()
    ffi.cdef((HERE / "afxdp.cdef").read_text(encoding="utf-8"))
    rpath = [f"-Wl,-rpath,{d}" for d in libs.library_dirs if d not in ("/usr/lib", "/usr/lib64")]
    ffi.set_source(
        "efsdk._native_afxdp",
        # The module's one translation unit is the real C file (no C in this string).
        '#include "src_afxdp.c"\n',
        include_dirs=[path("."), *libs.include_dirs],
        depends=[path(name) for name in ("src_afxdp.c", "frame_source.h", "poll_wait.h", "netparse.h", "mcast_join.h", "afxdp.cdef")],
        extra_compile_args=_CFLAGS + libs.extra_compile_args,
        libraries=libs.libraries,
        library_dirs=libs.library_dirs,
        extra_link_args=rpath,
        py_limited_api=True,
    )
    return ffi


XDP, WHY = find_xdp()
#: ``None`` when libxdp/libbpf are absent: setup.py then leaves this module out.
ffibuilder = make_ffibuilder(XDP) if XDP is not None else None

if __name__ == "__main__":
    if XDP is None:
        print(f"skipped AF_XDP (efsdk._native_afxdp not built): {WHY}", file=sys.stderr)
        sys.exit(1)
    dest = common.build_in_place(lambda path: make_ffibuilder(XDP, path), "afxdp")
    print(f"{dest} (libxdp + libbpf via {XDP.how})")
    sys.exit(0)
