"""Onload profiles: named sets of ``EF_*`` variables, built in and user-defined.

The built-in table carries only profiles whose settings are known from the
public Onload source (see docs in ``/work/shared/reference/EFVI-ONLOAD.md``):
``latency``, ``latency-best`` and ``zeromq``.  Upstream also ships ``safe``,
``cloud`` and app-specific profiles; efsdk does not carry their settings rather
than guess them, and names them in the error instead.  ``throughput`` exists
upstream only as a fragment for other profiles to import (``onload -p
throughput`` fails with exit 3), so it is modelled as a known name that cannot
be resolved.

User profiles come from a TOML file::

    [profiles.mytrade]
    description = "latency + spin forever"
    imports = ["latency"]
    [profiles.mytrade.env]
    EF_SPIN_USEC = "-1"

Resolution is depth-first: imported profiles first, then the profile's own
settings; within one resolved chain (``-p a,b``) a later setting replaces an
earlier one.  User profiles shadow built-ins of the same name, as
``~/.openonload/profiles`` shadows the installed ones.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError, field_validator

from efsdk.errors import ConfigError

_EF_NAME = re.compile(r"^EF_[A-Z0-9_]+$")
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ProfileError(ConfigError):
    """A profile cannot be resolved (unknown, fragment, cycle, bad file)."""


class ProfileNotFound(ProfileError):
    """No profile of that name; ``onload`` exits 3 in the same case."""


class Profile(BaseModel):
    """One Onload profile: imports first, then its own ``EF_*`` settings in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    env: dict[str, StrictStr] = {}
    imports: tuple[str, ...] = ()
    description: str = ""
    # Upstream ships this name only as an importable fragment: `onload -p NAME` exits 3.
    fragment: bool = False

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _PROFILE_NAME.match(v):
            raise ValueError(f"bad profile name {v!r}: letters, digits, '_', '.', '-' only")
        return v

    @field_validator("env")
    @classmethod
    def _ef_only(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not _EF_NAME.match(k)]
        if bad:
            raise ValueError(f"only EF_* variables (upper case) may be set by a profile, not {', '.join(bad)}")
        return v


_LATENCY = Profile(
    name="latency",
    description="Spin (poll) for up to 100 ms before blocking; no TCP slow start.",
    env={"EF_POLL_USEC": "100000", "EF_TCP_FASTSTART_INIT": "0", "EF_TCP_FASTSTART_IDLE": "0"},
)

BUILTIN: Mapping[str, Profile] = MappingProxyType(
    {
        "latency": _LATENCY,
        "latency-best": Profile(
            name="latency-best",
            description=(
                "latency + cut-through CTPIO, switch bypass, MT-safe epoll, TPH. "
                "Upstream sets EF_CTPIO_MODE=ct only when no X2 adapter runs above 10 GbE; "
                "efsdk cannot see link speeds here, so on such hosts override it (--env EF_CTPIO_MODE=sf)."
            ),
            imports=("latency",),
            env={
                "EF_CTPIO_MODE": "ct",
                "EF_CTPIO_SWITCH_BYPASS": "1",
                "EF_EPOLL_MT_SAFE": "1",
                "EF_TPH_MODE": "2",
            },
        ),
        "zeromq": Profile(
            name="zeromq",
            description="For ZeroMQ apps: no fast-path polling in poll()/non-blocking poll().",
            env={"EF_POLL_FAST_USEC": "0", "EF_POLL_NONBLOCK_FAST_USEC": "0"},
        ),
        "throughput": Profile(
            name="throughput",
            description="Upstream ships this only as a fragment for other profiles to import.",
            fragment=True,
        ),
    }
)

# Upstream profiles whose settings efsdk does not carry (not in its reference): named in errors.
UPSTREAM_NOT_MODELLED = ("safe", "cloud")


class ProfileFileModel(BaseModel):
    """The TOML file: a ``profiles`` table of name -> {description, imports, env}."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    class Entry(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        description: str = ""
        imports: tuple[str, ...] = ()
        env: dict[str, StrictStr] = {}

    profiles: dict[str, Entry] = {}


def load_profile_file(path: str | Path) -> dict[str, Profile]:
    """Read user profiles from a TOML file; raises :class:`ProfileError` with the file and reason."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    try:
        model = ProfileFileModel.model_validate(data)
        return {
            name: Profile(name=name, description=e.description, imports=e.imports, env=e.env)
            for name, e in model.profiles.items()
        }
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ProfileError(
            f"{path}: {problems} (expected [profiles.NAME] with optional description, imports = [..], "
            f'and an env table of EF_NAME = "string value")'
        ) from None


def _lookup(name: str, table: Mapping[str, Profile]) -> Profile:
    try:
        return table[name]
    except KeyError:
        pass
    if name in UPSTREAM_NOT_MODELLED:
        raise ProfileNotFound(
            f"profile {name!r} is an upstream Onload profile whose settings efsdk does not carry; copy them "
            f"from your Onload install's profiles directory into a --profile-file"
        )
    known = ", ".join(sorted(n for n, p in table.items() if not p.fragment))
    raise ProfileNotFound(f"no profile {name!r} (known: {known}; add your own with --profile-file)")


def resolve(names: Iterable[str] | str, user: Mapping[str, Profile] | None = None) -> dict[str, str]:
    """The ordered ``EF_*`` environment that profiles ``names`` set (``"a,b"`` or ``["a", "b"]``).

    Raises :class:`ProfileNotFound` for unknown names and fragments, and
    :class:`ProfileError` for import cycles.
    """
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    table = {**BUILTIN, **(user or {})}
    env: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...], top: bool) -> None:
        if name in chain:
            raise ProfileError(f"profile import cycle: {' -> '.join((*chain, name))}")
        prof = _lookup(name, table)
        if prof.fragment and top:
            raise ProfileNotFound(
                f"profile {name!r} is only a fragment upstream (`onload -p {name}` fails with exit 3) and efsdk "
                f"does not carry its settings; define the settings you want in a --profile-file"
            )
        if prof.fragment:
            raise ProfileNotFound(
                f"profile {chain[-1]!r} imports {name!r}, an upstream fragment whose settings efsdk does not carry"
            )
        for imp in prof.imports:
            visit(imp, (*chain, name), False)
        for k, v in prof.env.items():
            env.pop(k, None)  # a later setting replaces an earlier one and moves to its position
            env[k] = v

    for raw in names:
        name = raw.strip()
        if not name:
            raise ProfileError("empty profile name (use --profile a,b without spaces or empty items)")
        visit(name, (), True)
    return env


def available(user: Mapping[str, Profile] | None = None) -> dict[str, Profile]:
    """Every resolvable profile by name (built-ins shadowed by ``user``), fragments excluded."""
    return {n: p for n, p in {**BUILTIN, **(user or {})}.items() if not p.fragment}
