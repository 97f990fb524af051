"""`efsdk sim` as a process: how it ends its trading day on a signal (loopback only)."""

from __future__ import annotations

import signal
import time

import pytest

from efsdk.sim.process import SimProcess


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_closes_the_day_cleanly_even_mid_flow(sig):
    """Busy background flow, stopped at varying moments: every stop closes the day and writes the record.

    A signal used to raise KeyboardInterrupt wherever it landed; landing inside
    a book's SortedDict update left it inconsistent and closing the day failed
    with a KeyError (seen in CI).  SIGTERM used to kill it with no record at all.
    """
    for delay in (0.2, 0.45, 0.7):
        with SimProcess(("AAPL", "MSFT"), args=["--flow-rate", "20000"]) as sim:
            time.sleep(delay)
            sim._proc.send_signal(sig)
            record = sim.stop()  # waits for the exit, then reads the record; raises if there is none
            assert sim._proc.returncode == 0
        stats = record["stats"]
        assert stats["flow_actions"] > 0 and stats["itch_messages"] > 0, stats
