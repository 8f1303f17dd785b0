"""Ctrl-C (SIGINT) or SIGTERM during a run: the first stops it, and what finished is written; a second
signal must not cut that write short.

Both take the same path (:class:`KeyboardInterrupt`); SIGTERM's is :class:`Terminated`, so that the exit
status says which: 130 (128 + SIGINT) or 143 (128 + SIGTERM), as a shell reports them.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The exit status of a run stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: The exit status of a run stopped by SIGTERM (128 + SIGTERM): what a QGIS Cancel or ``kill`` sends.
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as on Ctrl-C."""


def exit_status(exc: BaseException) -> int:
    """The exit status for a run stopped by ``exc`` (a :class:`KeyboardInterrupt`)."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


@contextmanager
def first_interrupt_stops() -> Iterator[None]:
    """For the block, the first Ctrl-C raises :class:`KeyboardInterrupt` as usual, the first SIGTERM
    :class:`Terminated`; every later one is only acknowledged on stderr, so writing the finished results
    (in ``finally`` blocks and generator clean-up) completes. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        if seen:
            print("rsvg: still writing the finished results; please wait", file=sys.stderr, flush=True)
            return
        seen = True
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous_int = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
