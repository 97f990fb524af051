"""cffi out-of-line API-mode build of ``efsdk._native_sources`` (frame sources).

Used by setuptools through ``setup.py``'s ``cffi_modules``, or by hand for a
quick local build that touches nothing but this module::

    python native/build_sources.py     # writes efsdk/_native_sources*.so

The contract is ``frame_source.h``; the backends are ``src_udp.c`` (kernel UDP,
recvmmsg) and ``src_afpacket.c`` (PACKET_RX_RING, TPACKET_V2/V3, parsing in
``netparse.h``); ``udp_blast.c`` and ``xdp_blast.c`` are the benchmark's
senders (sendmmsg; XDP live frames); the
cffi declarations are in ``sources.cdef``.  Linux only:
elsewhere the module is simply not built and ``efsdk.sources`` says so.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from cffi import FFI

# Shared helpers, loaded by path: setuptools runs this file with native/ not importable.
_spec = importlib.util.spec_from_file_location("_efsdk_build_common", Path(__file__).resolve().parent / "build_common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
HERE = common.HERE


# -O2 is plenty: the hot loop is a few loads per frame; the syscalls dominate.
_CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]



def make_ffibuilder(path=common.source_path) -> FFI:
    """The FFI builder; ``path`` maps a file name in native/ to the path handed to setuptools."""
    ffi = FFI()
    ffi.cdef((HERE / "sources.cdef").read_text(encoding="utf-8"))
    ffi.set_source(
        "efsdk._native_sources",
        '#include "frame_source.h"\n',
        sources=[path("src_udp.c"), path("src_afpacket.c"), path("udp_blast.c"), path("xdp_blast.c")],
        include_dirs=[path(".")],
        depends=[path("frame_source.h"), path("poll_wait.h"), path("netparse.h"), path("mcast_join.h"), path("sources.cdef")],
        extra_compile_args=_CFLAGS,
        py_limited_api=True,
    )
    return ffi


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    print(common.build_in_place(make_ffibuilder, "sources"))
    sys.exit(0)
