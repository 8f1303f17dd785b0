"""Ctrl-C during a run: the first stops it, and what finished is written; a second Ctrl-C must not cut
that write short."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def first_interrupt_stops() -> Iterator[None]:
    """For the block, the first Ctrl-C raises :class:`KeyboardInterrupt` as usual; every later one is
    only acknowledged on stderr, so writing the finished results (in ``finally`` blocks and generator
    clean-up) completes. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = False

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        if seen:
            print("rsvg: still writing the finished results; please wait", file=sys.stderr, flush=True)
            return
        seen = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
