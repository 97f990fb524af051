"""Onload profiles, environment precedence and detection (fake roots; no Onload on this host)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from efsdk.errors import ConfigError
from efsdk.onload import detect, launcher
from efsdk.onload.profiles import (
    BUILTIN,
    Profile,
    ProfileError,
    ProfileNotFound,
    load_profile_file,
    resolve,
)

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ profiles


def test_builtin_profiles_match_upstream():
    assert resolve("latency") == {"EF_POLL_USEC": "100000", "EF_TCP_FASTSTART_INIT": "0", "EF_TCP_FASTSTART_IDLE": "0"}
    best = resolve("latency-best")
    assert list(best) == [
        "EF_POLL_USEC", "EF_TCP_FASTSTART_INIT", "EF_TCP_FASTSTART_IDLE",
        "EF_CTPIO_MODE", "EF_CTPIO_SWITCH_BYPASS", "EF_EPOLL_MT_SAFE", "EF_TPH_MODE",
    ]  # fmt: skip
    assert best["EF_CTPIO_MODE"] == "ct" and best["EF_TPH_MODE"] == "2"
    assert resolve("zeromq") == {"EF_POLL_FAST_USEC": "0", "EF_POLL_NONBLOCK_FAST_USEC": "0"}
    assert "safe" not in BUILTIN and "cloud" not in BUILTIN  # settings unknown: not invented


def test_throughput_is_a_fragment():
    with pytest.raises(ProfileNotFound, match="fragment"):
        resolve("throughput")


def test_multiple_names_later_wins():
    user = {"slow": Profile(name="slow", env={"EF_POLL_USEC": "0"})}
    assert resolve("latency,slow", user)["EF_POLL_USEC"] == "0"
    assert resolve(["slow", "latency"], user)["EF_POLL_USEC"] == "100000"


def test_unknown_and_upstream_only_names():
    with pytest.raises(ProfileNotFound, match="no profile 'nope'.*latency-best"):
        resolve("nope")
    with pytest.raises(ProfileNotFound, match="does not carry"):
        resolve("safe")
    with pytest.raises(ProfileError, match="empty profile name"):
        resolve("latency,")


def test_profiles_are_frozen_and_strict():
    with pytest.raises(ValidationError):
        BUILTIN["latency"].env = {}  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Profile(name="x", env={"EF_X": 1})  # values are strings
    with pytest.raises(ValidationError):
        Profile(name="x", env={"ef_x": "1"})
    with pytest.raises(ValidationError):
        Profile(name="x", colour="red")  # type: ignore[call-arg]


def test_profile_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text(
        '[profiles.a]\ndescription = "d"\nimports = ["latency-best"]\n[profiles.a.env]\nEF_CTPIO_MODE = "sf"\n'
        '[profiles.latency.env]\nEF_POLL_USEC = "5"\n'  # shadows the built-in (and latency-best's import)
    )
    user = load_profile_file(f)
    env = resolve("a", user)
    assert env["EF_CTPIO_MODE"] == "sf" and env["EF_POLL_USEC"] == "5" and "EF_TCP_FASTSTART_INIT" not in env


@pytest.mark.parametrize(
    "text, match",
    [
        ('[profiles.a.env]\nEF_X = 1\n', r"profiles\.a\.env\.EF_X"),
        ('[profiles.a.env]\nPATH = "x"\n', "only EF_"),
        ('[profiles.a]\nimport = ["latency"]\n', r"profiles\.a\.import"),
        ('[profile.a]\n', "profile"),
        ("[profiles.a\n", "not valid TOML"),
    ],
)
def test_profile_file_errors(tmp_path, text, match):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(ProfileError, match=match):
        load_profile_file(f)


def test_profile_file_cycle_and_missing(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[profiles.a]\nimports = ["b"]\n[profiles.b]\nimports = ["a"]\n[profiles.c]\nimports = ["x"]\n')
    user = load_profile_file(f)
    with pytest.raises(ProfileError, match="cycle: a -> b -> a"):
        resolve("a", user)
    with pytest.raises(ProfileNotFound, match="no profile 'x'"):
        resolve("c", user)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile_file(tmp_path / "missing.toml")


# ------------------------------------------------------------------ environment precedence


def test_compose_env_precedence():
    base = {"EF_POLL_USEC": "7", "HOME": "/h"}
    prof = {"EF_POLL_USEC": "100000", "EF_TPH_MODE": "2"}
    assert launcher.compose_env(base, prof) == {"EF_POLL_USEC": "7", "HOME": "/h", "EF_TPH_MODE": "2"}
    assert launcher.compose_env(base, prof, force_profiles=True)["EF_POLL_USEC"] == "100000"
    assert launcher.compose_env(base, prof, {"EF_POLL_USEC": "1"}, True)["EF_POLL_USEC"] == "1"
    assert base == {"EF_POLL_USEC": "7", "HOME": "/h"}  # not mutated


def test_parse_env_assignments():
    assert launcher.parse_env_assignments(["EF_A=1", "B=x=y", "C="]) == {"EF_A": "1", "B": "x=y", "C": ""}
    for bad in ("EF_A", "=1", "1A=2", "A-B=1"):
        with pytest.raises(ConfigError):
            launcher.parse_env_assignments([bad])


def test_plan_decisions(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "onload").write_text("#!/bin/sh\nexec \"$@\"\n")
    (bindir / "onload").chmod(0o755)
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    env = {"PATH": str(bindir)}
    p = launcher.plan(["app", "-x"], env, root)
    assert not p.accelerated and p.argv == ["app", "-x"]
    assert p.reasons == ["Onload drivers not loaded: /dev/onload missing"]
    (root / "dev" / "onload").touch()
    p = launcher.plan(["app", "-x"], env, root)
    assert p.accelerated and p.via == "launcher" and p.argv == [str(bindir / "onload"), "app", "-x"]
    p = launcher.plan(["app"], {"PATH": str(tmp_path / "empty")}, root)
    assert not p.accelerated and "no `onload` launcher" in p.reasons[0]


# ------------------------------------------------------------------ detection


def test_status_on_this_host():
    st = detect.onload_status()
    if st.dev_onload or st.launcher:  # pragma: no cover - only on a real Onload host
        pytest.skip("Onload is installed here")
    assert not st.accelerable and st.is_present == 0 and st.preloaded is None
    assert len(st.reasons) == 2
    json.dumps(st.as_dict())


def test_status_against_fake_root(tmp_path):
    root = tmp_path
    for d in ("dev", "sys/module/onload", "proc/self"):
        (root / d).mkdir(parents=True)
    (root / "dev" / "onload").touch()
    (root / "dev" / "sfc_char").touch()
    (root / "sys/module/onload/version").write_text("8.1.2.26\n")
    (root / "proc/self/maps").write_text("7f00-7f01 r-xp 0 08:01 1 /opt/onload/lib64/libonload.so\n")
    st = detect.onload_status(root=root, path=str(tmp_path / "nobin"))
    assert st.dev_onload and st.dev_sfc_char and st.module_version == "8.1.2.26" and st.preloaded == "maps"
    assert st.launcher is None and not st.accelerable  # drivers without launcher or library
    assert st.reasons == ["no `onload` launcher on PATH or in $ONLOAD_PREFIX/bin (and no libonload.so)"]


def test_socket_accelerated_not_preloaded():
    assert detect.onload_is_present() == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        assert detect.socket_accelerated(s) is False
        assert detect.socket_accelerated(s.fileno()) is False


# ------------------------------------------------------------------ CLI


def efsdk(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EF_", "ONLOAD"))}
    env.update(COLUMNS="200", PATH="/usr/bin:/bin")
    return subprocess.run(
        [sys.executable, "-m", "efsdk.cli", *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env
    )


def test_cli_profile_export_format():
    proc = efsdk("onload", "profile", "latency,zeromq")
    assert proc.returncode == 0
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")]
    assert lines == [
        "export EF_POLL_USEC=100000", "export EF_TCP_FASTSTART_INIT=0", "export EF_TCP_FASTSTART_IDLE=0",
        "export EF_POLL_FAST_USEC=0", "export EF_POLL_NONBLOCK_FAST_USEC=0",
    ]  # fmt: skip
    listing = efsdk("onload", "profile").stdout
    assert "latency-best" in listing and "throughput" not in listing
    bad = efsdk("onload", "profile", "throughput")
    assert bad.returncode == 3 and "fragment" in bad.stderr


def test_cli_status():
    proc = efsdk("onload", "status", "--json")
    assert proc.returncode == 0
    st = json.loads(proc.stdout)
    assert set(st) == {
        "launcher", "launcher_version", "launcher_module_line", "libonload", "module_version",
        "dev_onload", "dev_sfc_char", "preloaded", "is_present", "reasons", "accelerable",
    }  # fmt: skip
    table = efsdk("onload", "status")
    assert table.returncode == 0 and "Onload status" in table.stdout and "/dev/onload" in table.stdout
    assert "onload" in efsdk("--help").stdout and "doctor" in efsdk("--help").stdout
