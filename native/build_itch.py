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

import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _path(name: str) -> str:
    """Path of a file next to this script, relative to the cwd when inside it.

    setuptools wants extension sources relative to the project root (absolute
    ones leak into sdist file lists and object-file paths); fall back to an
    absolute path when the build runs from somewhere else.
    """
    p = HERE / name
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


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
    sources=[_path("itch_records.c"), _path("itch_ops.c")],
    include_dirs=[_path(".")],
    depends=[_path("itch_records.h"), _path("itch_ops.h"), _path("itch_records.cdef")],
    extra_compile_args=_CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=bool(os.environ.get("VERBOSE")))
