"""cffi out-of-line API-mode build of ``efsdk._native_itch`` (ITCH framing/decode).

Used by setuptools through ``setup.py``'s ``cffi_modules`` (``pip install .``,
``pip install -e .``, ``python -m build``), or by hand for a quick local build::

    python native/build_itch.py     # writes efsdk/_native_itch*.so under the cwd

The C lives in ``itch_records.c``/``.h`` (framing + records) and
``itch_ops.c``/``.h`` (records re-shaped into book ops); the cffi declarations in
``itch_records.cdef``.  Every path is resolved from this file, not the current
directory, because setuptools may run the build from a copy of the tree.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from cffi import FFI

# Shared helpers, loaded by path: setuptools runs this file with native/ not importable.
_spec = importlib.util.spec_from_file_location("_efsdk_build_common", Path(__file__).resolve().parent / "build_common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
HERE = common.HERE


# -O3: the decode loop is the hot path; -fno-strict-aliasing is not needed
# (all unaligned loads go through memcpy).  -fvisibility=hidden keeps the C
# helpers private; cffi exports only PyInit_*.
_CFLAGS = ["-std=c11", "-O3", "-Wall", "-Wextra", "-fvisibility=hidden"]
if sys.platform == "win32":  # pragma: no cover - MSVC takes different flags
    _CFLAGS = ["/O2"]

ffibuilder = FFI()
ffibuilder.cdef((HERE / "itch_records.cdef").read_text(encoding="utf-8"))
ffibuilder.set_source(
    "efsdk._native_itch",
    '#include "itch_records.h"\n#include "itch_ops.h"\n',
    sources=[common.source_path("itch_records.c"), common.source_path("itch_ops.c")],
    include_dirs=[common.source_path(".")],
    depends=[common.source_path("itch_records.h"), common.source_path("itch_ops.h"), common.source_path("itch_records.cdef")],
    extra_compile_args=_CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=bool(os.environ.get("VERBOSE")))
