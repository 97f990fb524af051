"""cffi out-of-line API-mode build of ``efsdk._native_sources`` (frame sources).

Used by setuptools through ``setup.py``'s ``cffi_modules``, or by hand for a
quick local build that touches nothing but this module::

    python native/build_sources.py     # writes efsdk/_native_sources*.so

The contract is ``frame_source.h``; the backends are ``src_udp.c`` (kernel UDP,
recvmmsg) and ``src_afpacket.c`` (PACKET_RX_RING, TPACKET_V2/V3, parsing in
``netparse.h``); ``udp_blast.c`` is the benchmark's sendmmsg sender; the
cffi declarations are in ``sources.cdef``.  Linux only:
elsewhere the module is simply not built and ``efsdk.sources`` says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _path(name: str) -> str:
    """Path of a file next to this script, relative to the cwd when inside it (see build_itch.py)."""
    p = HERE / name
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


# -O2 is plenty: the hot loop is a few loads per frame; the syscalls dominate.
_CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]



def make_ffibuilder(path=_path) -> FFI:
    """The FFI builder; ``path`` maps a file name in native/ to the path handed to setuptools."""
    ffi = FFI()
    ffi.cdef((HERE / "sources.cdef").read_text(encoding="utf-8"))
    ffi.set_source(
        "efsdk._native_sources",
        '#include "frame_source.h", "poll_wait.h"\n',
        sources=[path("src_udp.c"), path("src_afpacket.c"), path("udp_blast.c")],
        include_dirs=[path(".")],
        depends=[path("frame_source.h"), path("poll_wait.h"), path("netparse.h"), path("mcast_join.h"), path("sources.cdef")],
        extra_compile_args=_CFLAGS,
        py_limited_api=True,
    )
    return ffi


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    # Build in a scratch directory and copy only our .so into efsdk/: never
    # touches (or rebuilds) the other native modules next to it.
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="efsdk-build-sources-") as tmp:
        # cffi compiles from inside tmpdir: hand it absolute paths.
        builder = make_ffibuilder(lambda name: str(HERE / name))
        built = Path(builder.compile(tmpdir=tmp, verbose=bool(os.environ.get("VERBOSE"))))
        dest = HERE.parent / "efsdk" / built.name
        shutil.copy2(built, dest.with_suffix(".tmp"))
        os.replace(dest.with_suffix(".tmp"), dest)  # atomic: a running import never sees half a file
        print(dest)
    sys.exit(0)
