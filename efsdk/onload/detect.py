"""Is Onload here, loaded, and accelerating this process's sockets?

Every filesystem lookup takes ``root`` (default ``/``) so tests and chroot
inspections can point /sys, /dev and /proc at another tree.  Nothing here
raises on a missing file: a VM lacks most of them.

Two facts from the Onload source shape the API (see the reference notes):

* ``onload_is_present()`` returns 1 whenever libonload is *preloaded*, even
  when every socket fell back to the kernel (drivers missing), so it is
  reported but never taken as proof of acceleration.  It is looked up in the
  global scope (``ctypes.CDLL(None)``): a handle to libonload_ext.so would find
  its weak stub, which always returns 0.
* Only ``onload_fd_stat()`` on a bound or connected socket says whether that
  socket is accelerated: :func:`socket_accelerated`.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LAUNCHER = "onload"
LIBONLOAD = "libonload.so"
# Library dirs searched under an Onload prefix and the system, in order.
_LIB_DIRS = ("lib64", "lib", "lib/x86_64-linux-gnu", "usr/lib64", "usr/lib", "usr/lib/x86_64-linux-gnu")
# Bytes handed to onload_fd_stat: struct onload_stat is a few tens of bytes and its layout
# varies by version, so pass a generous zeroed buffer instead of declaring it.
_FD_STAT_BUF = 512
_VERSION_TIMEOUT = 5.0  # seconds for `onload --version` (a sh script; fast, but never hang doctor)


def _p(root: str | os.PathLike[str], path: str) -> Path:
    return Path(root) / path.lstrip("/")


def read_text(root: str | os.PathLike[str], path: str) -> str | None:
    """The stripped contents of ``root``/``path``, or None if it can't be read."""
    try:
        return _p(root, path).read_text(errors="replace").strip()
    except OSError:
        return None


def _prefixes() -> list[Path]:
    return [Path(os.environ[v]) for v in ("ONLOAD_PREFIX", "EFSDK_ONLOAD_PREFIX") if os.environ.get(v)]


def find_launcher(path: str | None = None) -> str | None:
    """The ``onload`` launcher: first on ``path`` (default $PATH), then ``$ONLOAD_PREFIX/bin``."""
    found = shutil.which(LAUNCHER, path=path)
    if found:
        return found
    for prefix in _prefixes():
        cand = prefix / "bin" / LAUNCHER
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def find_libonload(root: str | os.PathLike[str] = "/") -> str | None:
    """libonload.so under ``$ONLOAD_PREFIX`` / ``$EFSDK_ONLOAD_PREFIX``, then the system library dirs."""
    for base in [*_prefixes(), Path(root)]:
        for d in _LIB_DIRS:
            cand = base / d / LIBONLOAD
            if cand.is_file():
                return str(cand)
    return None


def drivers_loaded(root: str | os.PathLike[str] = "/") -> bool:
    """True if the Onload char device exists (the launcher refuses to run without it)."""
    return _p(root, "/dev/onload").exists()


def launcher_version(launcher: str) -> tuple[str | None, str | None]:
    """(first line, last line) of ``onload --version``: ``Onload <version>`` and the module's version
    or ``[onload module not loaded]``.  Works without drivers; (None, None) if it can't be run."""
    try:
        out = subprocess.run(
            [launcher, "--version"], capture_output=True, text=True, timeout=_VERSION_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    lines = [ln.strip() for ln in (out.stdout or out.stderr).splitlines() if ln.strip()]
    if not lines:
        return None, None
    return lines[0], lines[-1] if len(lines) > 1 else None


def preloaded(root: str | os.PathLike[str] = "/") -> str | None:
    """How libonload is in this process: ``"maps"`` (mapped: /proc/self/maps), ``"LD_PRELOAD"`` (named
    there but not seen mapped, e.g. without /proc), or None."""
    maps = read_text(root, "/proc/self/maps")
    if maps is not None and "libonload.so" in maps:
        return "maps"
    if maps is None and "libonload" in os.environ.get("LD_PRELOAD", ""):
        return "LD_PRELOAD"
    return None


def _global_symbol(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None


def onload_is_present() -> int:
    """``onload_is_present()`` from the process's global scope; 0 when the symbol doesn't exist.

    1 means libonload is preloaded, not that anything is accelerated."""
    fn = _global_symbol("onload_is_present")
    if fn is None:
        return 0
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return int(fn())


def socket_accelerated(sock: Any) -> bool | None:
    """Is this socket (or fd) accelerated by Onload?  Check after ``bind()``/``connect()``.

    False when libonload is not preloaded into this process; None when it is but
    ``onload_fd_stat`` isn't exported or errs (can't tell).  A diagnostic, not a
    hot-path call: Onload allocates the stat's stack name, which is not freed here.
    """
    fd = sock if isinstance(sock, int) else sock.fileno()
    if not onload_is_present():
        return False
    fn = _global_symbol("onload_fd_stat")
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p]
    buf = ctypes.create_string_buffer(_FD_STAT_BUF)
    rc = int(fn(fd, buf))
    if rc < 0:
        return None
    return rc == 1


@dataclass(frozen=True)
class OnloadStatus:
    """What this host and this process have of Onload.  ``accelerable`` = a launched app would get Onload."""

    launcher: str | None
    launcher_version: str | None
    launcher_module_line: str | None
    libonload: str | None
    module_version: str | None
    dev_onload: bool
    dev_sfc_char: bool
    preloaded: str | None
    is_present: int
    reasons: list[str] = field(default_factory=list)

    @property
    def accelerable(self) -> bool:
        return (self.launcher is not None or self.libonload is not None) and self.dev_onload

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accelerable": self.accelerable}


def why_not(launcher: str | None, libonload: str | None, dev_onload: bool) -> list[str]:
    """Human reasons a launched app would not be accelerated (empty if it would)."""
    reasons = []
    if launcher is None and libonload is None:
        reasons.append("no `onload` launcher on PATH or in $ONLOAD_PREFIX/bin (and no libonload.so)")
    if not dev_onload:
        reasons.append("Onload drivers not loaded: /dev/onload missing")
    return reasons


HOW_TO_GET = (
    "install Onload (github.com/Xilinx-CNS/onload or AMD's packages) with its bin/ on PATH or ONLOAD_PREFIX set, "
    "and load its drivers (`onload_tool reload`) on a host with a Solarflare/AMD NIC"
)


def onload_status(
    root: str | os.PathLike[str] = "/", path: str | None = None, run_version: bool = True
) -> OnloadStatus:
    """Collect everything: launcher (``path`` = search PATH), its version, module, devices, this process."""
    launcher = find_launcher(path)
    first, last = launcher_version(launcher) if (launcher and run_version) else (None, None)
    lib = find_libonload(root)
    dev_onload = drivers_loaded(root)
    return OnloadStatus(
        launcher=launcher,
        launcher_version=first,
        launcher_module_line=last,
        libonload=lib,
        module_version=read_text(root, "/sys/module/onload/version"),
        dev_onload=dev_onload,
        dev_sfc_char=_p(root, "/dev/sfc_char").exists(),
        preloaded=preloaded(root),
        is_present=onload_is_present(),
        reasons=why_not(launcher, lib, dev_onload),
    )
