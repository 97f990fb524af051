"""Ctrl-C and SIGTERM that end a command at its next loop turn instead of raising mid-update."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


class StopRequest:
    """Set by :func:`stop_on_signals`; loops look at :attr:`requested` once per turn."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True


@contextlib.contextmanager
def stop_on_signals(on_stop: Callable[[], None]) -> Iterator[None]:
    """Call ``on_stop`` on the first SIGINT or SIGTERM; a second one (either) interrupts at once.

    A signal the process ignores (SIG_IGN) is left ignored.

    Raised as KeyboardInterrupt wherever it lands, a signal can stop a book's
    SortedDict between its dict and its sorted keys, and whatever reads that
    book next (closing the day, final snapshots) fails on it (seen as
    ``KeyError`` in ``efsdk sim``'s ``close_session``).
    """

    def on_signal(signum: int, frame: object) -> None:
        on_stop()
        for sig in previous:  # the stop is asked for: the next signal, of either kind, is not a polite one
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

    # A signal ignored on purpose (nohup, a background job's SIGINT) stays ignored.
    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
