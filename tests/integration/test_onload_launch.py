"""``efsdk onload run`` end to end: real subprocesses, real loopback sockets, no mocks of efsdk.

This machine has no Onload and no Solarflare NIC, so the un-accelerated path
is the real one here.  The "Onload present" path is exercised against a
STAND-IN launcher: a tmp ``onload`` shell script on PATH that records its argv
and environment and then execs the rest (what the real launcher does after
setting LD_PRELOAD), plus a fake root tree holding ``dev/onload`` passed with
the hidden ``--root``.  That tests efsdk's decisions and environment handling
against a stand-in, not Onload itself, which cannot exist on this host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WARNING = "running WITHOUT Onload acceleration"

# A legacy app that knows nothing of efsdk: UDP echo and TCP client/server on 127.0.0.1,
# then prints what it saw (and its EF_*/LD_PRELOAD environment) and exits with argv[1].
APP = textwrap.dedent(
    """
    import json, os, socket, sys, threading

    def udp_echo():
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("127.0.0.1", 0)); srv.settimeout(5)
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); cli.settimeout(5)
        cli.sendto(b"ping", srv.getsockname())
        data, peer = srv.recvfrom(64); srv.sendto(data.upper(), peer)
        reply = cli.recv(64); srv.close(); cli.close()
        return reply.decode()

    def tcp_roundtrip():
        lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1); lst.settimeout(5)
        def serve():
            conn, _ = lst.accept()
            with conn:
                conn.sendall(conn.recv(64)[::-1])
        t = threading.Thread(target=serve); t.start()
        cli = socket.create_connection(lst.getsockname(), timeout=5)
        cli.sendall(b"abc"); reply = cli.recv(64); cli.close(); t.join(5); lst.close()
        return reply.decode()

    from efsdk.onload import socket_accelerated
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); probe.bind(("127.0.0.1", 0))
    env = {k: v for k, v in os.environ.items() if k.startswith("EF_") or k in ("LD_PRELOAD", "FAKE_SEEN")}
    print(json.dumps({"udp": udp_echo(), "tcp": tcp_roundtrip(), "accelerated": socket_accelerated(probe), "env": env}))
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """
)

FAKE_ONLOAD = """#!/bin/sh
# Stand-in for Onload's `onload` launcher (see the module docstring): record, then exec the app.
if [ "$1" = "--version" ]; then echo "Onload 9.9.9-fake"; echo "[onload module not loaded]"; exit 0; fi
printf '%s\\n' "$@" > "$FAKE_ONLOAD_LOG.argv"
env > "$FAKE_ONLOAD_LOG.env"
FAKE_SEEN=1 exec "$@"
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment: no onload on PATH, no EF_* leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EF_", "ONLOAD", "EFSDK_ONLOAD"))}
    env.pop("LD_PRELOAD", None)
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def onload_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "efsdk.cli", "onload", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env or base_env(),
    )


def app_output(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_legacy_app_runs_unaccelerated_with_one_warning(app):
    proc = onload_run("--", sys.executable, str(app), "5")
    assert proc.returncode == 5, proc.stderr  # the app's exit code
    out = app_output(proc)
    assert out["udp"] == "PING" and out["tcp"] == "cba"
    assert out["accelerated"] is False  # libonload not preloaded
    assert proc.stderr.count(WARNING) == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "/dev/onload missing" in proc.stderr and "no `onload` launcher" in proc.stderr
    assert "onload_tool reload" in proc.stderr  # how to get it


def test_exit_code_zero_and_dashdash_optional(app):
    proc = onload_run(sys.executable, str(app))
    assert proc.returncode == 0 and app_output(proc)["udp"] == "PING"


def test_require_fails_with_reason_and_no_traceback(app):
    proc = onload_run("--require", "--", sys.executable, str(app))
    assert proc.returncode == 1
    assert proc.stdout == ""  # the app never ran
    assert "Onload required (--require)" in proc.stderr and "/dev/onload missing" in proc.stderr
    assert "Traceback" not in proc.stderr and WARNING not in proc.stderr


def test_command_not_found_is_127():
    proc = onload_run("--", "efsdk-no-such-command-xyz")
    assert proc.returncode == 127
    assert "command not found" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_profile_is_3_like_onload(app):
    proc = onload_run("-p", "no-such-profile", "--", sys.executable, str(app))
    assert proc.returncode == 3 and "no profile 'no-such-profile'" in proc.stderr
    proc = onload_run("-p", "throughput", "--", sys.executable, str(app))
    assert proc.returncode == 3 and "fragment" in proc.stderr


def test_profile_sets_only_unset_variables(app):
    env = base_env(EF_POLL_USEC="7")  # the user's own setting
    proc = onload_run("-p", "latency-best", "--", sys.executable, str(app), env=env)
    assert proc.returncode == 0, proc.stderr
    got = app_output(proc)["env"]
    assert got["EF_POLL_USEC"] == "7"  # not overridden
    assert got["EF_TCP_FASTSTART_INIT"] == "0" and got["EF_CTPIO_MODE"] == "ct" and got["EF_TPH_MODE"] == "2"


def test_force_profiles_overrides_and_env_always_wins(app):
    env = base_env(EF_POLL_USEC="7", EF_TCP_FASTSTART_IDLE="9")
    proc = onload_run(
        "-p", "latency", "--force-profiles", "--env", "EF_TCP_FASTSTART_IDLE=42", "--env", "EF_CUSTOM=a=b",
        "--", sys.executable, str(app), env=env,
    )  # fmt: skip
    got = app_output(proc)["env"]
    assert got["EF_POLL_USEC"] == "100000"  # forced over the user's 7
    assert got["EF_TCP_FASTSTART_IDLE"] == "42"  # --env beats the forced profile
    assert got["EF_CUSTOM"] == "a=b"


def test_user_profile_file(app, tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[profiles.desk]\nimports = ["zeromq"]\n[profiles.desk.env]\nEF_SPIN_USEC = "-1"\n')
    proc = onload_run("-p", "desk", "--profile-file", str(f), "--", sys.executable, str(app))
    got = app_output(proc)["env"]
    assert got == {"EF_POLL_FAST_USEC": "0", "EF_POLL_NONBLOCK_FAST_USEC": "0", "EF_SPIN_USEC": "-1"}
    f.write_text('[profiles.bad.env]\nLD_PRELOAD = "x"\n')
    proc = onload_run("-p", "bad", "--profile-file", str(f), "--", sys.executable, str(app))
    assert proc.returncode == 1 and "only EF_* variables" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def fake_onload(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(bin dir holding the stand-in launcher, fake root, log prefix)."""
    bindir = tmp_path / "onload-bin"
    bindir.mkdir()
    launcher = bindir / "onload"
    launcher.write_text(FAKE_ONLOAD)
    launcher.chmod(0o755)
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    return bindir, root, tmp_path / "log"


def test_present_path_execs_the_launcher(app, fake_onload):
    bindir, root, log = fake_onload
    (root / "dev" / "onload").touch()  # "drivers loaded"
    env = base_env(FAKE_ONLOAD_LOG=str(log), EF_POLL_USEC="7")
    env["PATH"] = f"{bindir}:{env['PATH']}"
    proc = onload_run("--root", str(root), "-p", "latency", "--", sys.executable, str(app), "9", env=env)
    assert proc.returncode == 9, proc.stderr  # the app's code, through the launcher
    assert WARNING not in proc.stderr and proc.stderr == ""
    assert Path(f"{log}.argv").read_text().splitlines() == [sys.executable, str(app), "9"]
    launcher_env = dict(line.split("=", 1) for line in Path(f"{log}.env").read_text().splitlines() if "=" in line)
    assert launcher_env["EF_POLL_USEC"] == "7" and launcher_env["EF_TCP_FASTSTART_INIT"] == "0"
    out = app_output(proc)
    assert out["env"]["FAKE_SEEN"] == "1" and out["udp"] == "PING"


def test_launcher_without_drivers_is_not_invoked(app, fake_onload):
    bindir, root, log = fake_onload  # no root/dev/onload
    env = base_env(FAKE_ONLOAD_LOG=str(log))
    env["PATH"] = f"{bindir}:{env['PATH']}"
    proc = onload_run("--root", str(root), "--", sys.executable, str(app), env=env)
    assert proc.returncode == 0
    assert proc.stderr.count(WARNING) == 1 and "/dev/onload missing" in proc.stderr
    assert "no `onload` launcher" not in proc.stderr  # it was found; the drivers are what's missing
    assert not Path(f"{log}.argv").exists()  # the real launcher would exit 1 here: don't call it
    assert "FAKE_SEEN" not in app_output(proc)["env"]


def test_onload_prefix_launcher_and_status(fake_onload):
    bindir, root, _ = fake_onload
    (root / "dev" / "onload").touch()
    (root / "sys" / "module" / "onload").mkdir(parents=True)
    (root / "sys" / "module" / "onload" / "version").write_text("9.9.9\n")
    prefix = bindir.parent / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "onload").write_text(FAKE_ONLOAD)
    (prefix / "bin" / "onload").chmod(0o755)
    proc = subprocess.run(
        [sys.executable, "-m", "efsdk.cli", "onload", "status", "--json", "--root", str(root)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=base_env(ONLOAD_PREFIX=str(prefix)),
    )  # fmt: skip
    st = json.loads(proc.stdout)
    assert st["launcher"] == str(prefix / "bin" / "onload")
    assert st["launcher_version"] == "Onload 9.9.9-fake"
    assert st["launcher_module_line"] == "[onload module not loaded]"
    assert st["module_version"] == "9.9.9" and st["dev_onload"] is True and st["accelerable"] is True
    assert st["reasons"] == [] and st["is_present"] == 0


def test_libonload_only_is_preloaded(app, tmp_path):
    """Drivers + libonload.so but no launcher: efsdk preloads the library itself.  The file is a stand-in
    (ld.so reports it can't preload it and carries on), so the check is the app's LD_PRELOAD."""
    prefix = tmp_path / "prefix"
    (prefix / "lib64").mkdir(parents=True)
    (prefix / "lib64" / "libonload.so").write_bytes(b"not an ELF")
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "onload").touch()
    proc = onload_run("--root", str(root), "--", sys.executable, str(app), env=base_env(ONLOAD_PREFIX=str(prefix)))
    assert proc.returncode == 0 and WARNING not in proc.stderr
    assert app_output(proc)["env"]["LD_PRELOAD"] == str(prefix / "lib64" / "libonload.so")
