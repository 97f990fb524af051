"""stop_on_signals (efsdk/cli/_signals.py): real signals sent to a real child process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

PRELUDE = """
import os, signal, time
from efsdk.cli._signals import stop_on_signals
stops = []
"""


def _run(body: str) -> subprocess.CompletedProcess[str]:
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_first_signal_asks_to_stop_and_handlers_come_back_after():
    proc = _run("""
        before = signal.getsignal(signal.SIGTERM)
        with stop_on_signals(lambda: stops.append(1)):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            print("alive", len(stops))
        print("restored", signal.getsignal(signal.SIGTERM) is before)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["alive", "1", "restored", "True"]


def test_a_second_signal_of_the_other_kind_ends_the_process_at_once():
    proc = _run("""
        with stop_on_signals(lambda: stops.append(1)):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            print("asked", len(stops), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
            print("still running")
    """)
    assert proc.stdout.split() == ["asked", "1"]
    assert proc.returncode == -signal.SIGTERM


def test_an_ignored_signal_stays_ignored():
    proc = _run("""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with stop_on_signals(lambda: stops.append(1)):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        print(len(stops), signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "True"]
