"""What the cffi build scripts in native/ share: source paths and the by-hand build.

Each ``build_*.py`` loads this file by path (:func:`load`), since setuptools
runs the scripts from wherever the build happens, with native/ not importable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def source_path(name: str) -> str:
    """Path of a file in native/, relative to the cwd when inside it.

    setuptools wants extension sources relative to the project root (absolute
    ones leak into sdist file lists and object-file paths); fall back to an
    absolute path when the build runs from somewhere else.
    """
    p = HERE / name
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def absolute_path(name: str) -> str:
    """Path of a file in native/ for a build that compiles from a scratch directory."""
    return str(HERE / name)


def build_in_place(make_builder: Callable[[Callable[[str], str]], Any], what: str) -> Path:
    """Build one module by hand and put only its .so into efsdk/ (atomically).

    ``make_builder(path)`` returns the FFI builder, given how to name files
    in native/.  The build runs in a scratch directory, so it never touches
    or rebuilds the other native modules next to it.
    """
    with tempfile.TemporaryDirectory(prefix=f"efsdk-build-{what}-") as tmp:
        builder = make_builder(absolute_path)  # cffi compiles from inside tmp: absolute paths
        built = Path(builder.compile(tmpdir=tmp, verbose=bool(os.environ.get("VERBOSE"))))
        dest = HERE.parent / "efsdk" / built.name
        shutil.copy2(built, dest.with_suffix(".tmp"))
        os.replace(dest.with_suffix(".tmp"), dest)  # a running import never sees half a file
    return dest
