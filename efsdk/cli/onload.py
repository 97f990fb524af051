"""``efsdk onload run|profile|status``: run apps under Onload, show profiles, report what's present."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from efsdk.errors import ConfigError

_RUN_DESCRIPTION = """\
Run CMD under Onload (the `onload` launcher) when Onload and its drivers are present;
otherwise run it un-accelerated on kernel sockets with one warning on stderr saying
why (or fail with --require). The exit code is CMD's (127: command not found; 3: no
such profile, as `onload`). Profile variables are set only where unset in your
environment unless --force-profiles; --env always wins.

  efsdk onload run --profile latency -- python app.py --port 9000
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("onload", help="run apps under Onload, show profiles and Onload status")
    sub = p.add_subparsers(dest="onload_command", metavar="ONLOAD")

    r = sub.add_parser(
        "run",
        help="run a command under Onload (or un-accelerated with a warning)",
        description=_RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _profile_args(r, required=False)
    r.add_argument("--require", action="store_true", help="fail instead of running without acceleration")
    r.add_argument(
        "--force-profiles", action="store_true", help="profile settings override variables already set"
    )
    r.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="set a variable (wins over everything)"
    )
    r.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: fake /dev, /sys tree
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS]", help="the command to run")
    r.set_defaults(func=run_cmd)

    pr = sub.add_parser("profile", help="print the EF_* variables a profile sets (shell export format)")
    pr.add_argument("names", metavar="NAME[,NAME]", nargs="?", help="profile(s); omit to list them")
    pr.add_argument("--profile-file", metavar="F", help="TOML file of user profiles ([profiles.NAME])")
    pr.set_defaults(func=profile_cmd)

    s = sub.add_parser("status", help="is Onload installed, loaded, preloaded into this process?")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--root", default="/", help="read /sys, /dev, /proc under DIR (default /)")
    s.set_defaults(func=status_cmd)

    def no_subcommand(_: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_subcommand)


def _profile_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "-p", "--profile", metavar="NAME[,NAME]", help="Onload profile(s): latency, latency-best, zeromq, ..."
    )
    p.add_argument("--profile-file", metavar="F", help="TOML file of user profiles ([profiles.NAME])")


def _user_profiles(path: str | None):
    from efsdk.onload.profiles import load_profile_file

    return load_profile_file(path) if path else None


def run_cmd(args: argparse.Namespace) -> int:
    from efsdk.onload import launcher
    from efsdk.onload.profiles import ProfileNotFound, resolve

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ConfigError("no command given: efsdk onload run [options] -- CMD [ARGS]")
    explicit = launcher.parse_env_assignments(args.env)
    try:
        profile_env = resolve(args.profile, _user_profiles(args.profile_file)) if args.profile else {}
    except ProfileNotFound as exc:
        print(f"efsdk onload run: error: {exc}", file=sys.stderr)
        return 3  # as `onload -p`: profile not found
    env = launcher.compose_env(os.environ, profile_env, explicit, args.force_profiles)
    plan = launcher.plan(cmd, env, root=args.root)
    return launcher.exec_app(plan, require=args.require)


def profile_cmd(args: argparse.Namespace) -> int:
    from efsdk.onload.profiles import ProfileNotFound, available, resolve

    user = _user_profiles(args.profile_file)
    if not args.names:
        for name, prof in sorted(available(user).items()):
            imports = f" (imports {', '.join(prof.imports)})" if prof.imports else ""
            print(f"{name:14} {prof.description}{imports}")
        return 0
    try:
        env = resolve(args.names, user)
    except ProfileNotFound as exc:
        print(f"efsdk onload profile: error: {exc}", file=sys.stderr)
        return 3
    print(f"# efsdk onload profile {args.names}: set only where unset (onload semantics) unless --force-profiles")
    for k, v in env.items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def status_cmd(args: argparse.Namespace) -> int:
    from efsdk.onload.detect import HOW_TO_GET, onload_status

    st = onload_status(root=args.root)
    if args.json:
        print(json.dumps(st.as_dict(), indent=2))
        return 0
    from rich.table import Table

    from efsdk.cli._format import console

    def yn(v: object) -> str:
        return "[green]yes[/]" if v else "[red]no[/]"

    t = Table(title="Onload status", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("launcher", st.launcher or "[red]not found[/] (PATH, $ONLOAD_PREFIX/bin)")
    t.add_row("launcher version", st.launcher_version or "-")
    t.add_row("launcher says (module)", st.launcher_module_line or "-")
    t.add_row("libonload.so", st.libonload or "-")
    t.add_row("kernel module", st.module_version or "[red]not loaded[/] (/sys/module/onload/version)")
    t.add_row("/dev/onload", yn(st.dev_onload))
    t.add_row("/dev/sfc_char (ef_vi)", yn(st.dev_sfc_char))
    t.add_row("this process preloaded", f"{yn(st.preloaded)}" + (f" ({st.preloaded})" if st.preloaded else ""))
    t.add_row("onload_is_present()", f"{st.is_present} (1 = preloaded, not proof of acceleration)")
    t.add_row("apps would be accelerated", yn(st.accelerable))
    out = console()
    out.print(t)
    if st.reasons:
        out.print("not accelerated: " + "; ".join(st.reasons))
        out.print("to get it: " + HOW_TO_GET)
    return 0
