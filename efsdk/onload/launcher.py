"""Run an application under Onload when it can be accelerated, and say so clearly when not.

Why exec, not subprocess: once the decision is made (and the one warning is
printed) nothing is left to do afterwards, so :func:`exec_app` replaces this
Python process with the app (through the ``onload`` launcher when present).
Signals, the exit status, the pid and the terminal then belong to the app,
exactly as with ``onload CMD``; a wrapper process would have to forward
signals and would double the start-up footprint of a latency-sensitive app.

Environment precedence follows the ``onload`` launcher: profile variables are
set only where the variable is UNSET in the caller's environment, unless
``force_profiles``; explicit ``--env`` settings always win.  efsdk computes the
profile environment itself and runs the launcher without ``-p`` so that the
accelerated and the un-accelerated run see the same ``EF_*`` settings and user
TOML profiles work; the launcher still sources /etc/openonload.sh and
~/.openonload.sh.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from efsdk.errors import ConfigError, EfsdkError
from efsdk.onload import detect

EXIT_NOT_FOUND = 127  # as `onload` and the shell: command not found
EXIT_NOT_EXECUTABLE = 126  # shell convention: found but cannot be executed


class OnloadUnavailable(EfsdkError, RuntimeError):
    """Onload was required (``--require``) but a launched app would not be accelerated."""


def parse_env_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["EF_X=1", ...]`` -> dict; any variable name is allowed, the value may contain '='."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ConfigError(f"--env wants NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def compose_env(
    base: Mapping[str, str],
    profile_env: Mapping[str, str],
    explicit: Mapping[str, str] | None = None,
    force_profiles: bool = False,
) -> dict[str, str]:
    """The app's environment: ``base``, then profile settings where unset (all if ``force_profiles``),
    then ``explicit``, which always wins."""
    env = dict(base)
    for k, v in profile_env.items():
        if force_profiles or k not in base:
            env[k] = v
    env.update(explicit or {})
    return env


@dataclass(frozen=True)
class Plan:
    """What :func:`exec_app` will run: ``argv[0]`` is looked up on the app env's PATH."""

    argv: list[str]
    env: dict[str, str]
    accelerated: bool
    via: str  # "launcher", "preload" or "kernel"
    reasons: list[str]


def plan(
    cmd: Sequence[str],
    env: Mapping[str, str],
    root: str | os.PathLike[str] = "/",
) -> Plan:
    """Decide how to run ``cmd`` with ``env`` (already composed): under the launcher when it and the
    drivers exist, with libonload preloaded when only the library is found, else plain."""
    launcher = detect.find_launcher(env.get("PATH", os.defpath))
    lib = None if launcher else detect.find_libonload(root)
    loaded = detect.drivers_loaded(root)
    reasons = detect.why_not(launcher, lib, loaded)
    if not reasons and launcher:
        return Plan([launcher, *cmd], dict(env), True, "launcher", [])
    if not reasons and lib:
        preload = " ".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
        return Plan(list(cmd), {**env, "LD_PRELOAD": preload}, True, "preload", [])
    return Plan(list(cmd), dict(env), False, "kernel", reasons)


def warning_text(reasons: Sequence[str]) -> str:
    """The one-line warning printed when an app runs without Onload."""
    return (
        f"efsdk onload run: warning: running WITHOUT Onload acceleration (kernel sockets): {'; '.join(reasons)}. "
        f"To accelerate: {detect.HOW_TO_GET}. Pass --require to make this an error."
    )


def resolve_command(cmd: str, path: str | None) -> str | None:
    """Where ``cmd`` would be executed from (a path with '/' is taken as is), or None."""
    if "/" in cmd:
        return cmd if os.path.exists(cmd) else None
    return shutil.which(cmd, path=path)


def exec_app(p: Plan, require: bool = False) -> int:
    """Replace this process with the planned app; returns only on failure, with the exit code.

    Prints exactly one warning to stderr when the app runs un-accelerated;
    raises :class:`OnloadUnavailable` instead when ``require``.
    """
    app = p.argv[1] if p.via == "launcher" else p.argv[0]
    app_path = resolve_command(app, p.env.get("PATH", os.defpath))
    if app_path is None:
        print(f"efsdk onload run: {app}: command not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    if not p.accelerated:
        if require:
            raise OnloadUnavailable(
                f"Onload required (--require) but {app} would run on kernel sockets: {'; '.join(p.reasons)}. "
                f"To get it: {detect.HOW_TO_GET}"
            )
        print(warning_text(p.reasons), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()  # exec discards Python's buffers
    try:
        os.execvpe(p.argv[0], p.argv, p.env)
    except PermissionError as exc:
        print(f"efsdk onload run: {p.argv[0]}: {exc.strerror}", file=sys.stderr)
        return EXIT_NOT_EXECUTABLE
    except OSError as exc:  # ENOENT after the check (race), ENOEXEC, ...
        print(f"efsdk onload run: {p.argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
    raise AssertionError("unreachable: execvpe returned")  # pragma: no cover
