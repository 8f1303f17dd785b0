"""Ctrl-C (SIGINT) or SIGTERM during a run: the first stops it, and what finished is written; a second
signal must not cut that write short.

Both take the same path (:class:`KeyboardInterrupt`); SIGTERM's is :class:`Terminated`, so that the exit
status says which: 130 (128 + SIGINT) or 143 (128 + SIGTERM), as a shell reports them.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

#: The exit status of a run stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: The exit status of a run stopped by SIGTERM (128 + SIGTERM): what a QGIS Cancel or ``kill`` sends.
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as on Ctrl-C. Its text says which signal it was."""

    def __init__(self) -> None:
        super().__init__("terminated (SIGTERM)")


#: The signal that stopped the last run (``None``: none did).
_received: int | None = None


def exit_status(exc: BaseException | None = None) -> int:
    """The exit status for a run stopped by ``exc`` (a :class:`KeyboardInterrupt`), or, without one, by
    the last signal :func:`first_interrupt_stops` received (where the engine caught the exception)."""
    if exc is not None:
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    return EXIT_TERMINATED if _received == signal.SIGTERM else EXIT_INTERRUPTED


@contextmanager
def first_interrupt_stops() -> Iterator[None]:
    """For the block, the first Ctrl-C raises :class:`KeyboardInterrupt` as usual, the first SIGTERM
    :class:`Terminated`; every later one is only acknowledged on stderr, so writing the finished results
    (in ``finally`` blocks and generator clean-up) completes. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _received
    _received = None
    seen = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        global _received
        if seen:
            print("rsvg: still writing the finished results; please wait", file=sys.stderr, flush=True)
            return
        seen = True
        _received = signum
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous_int = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def show_until_interrupted(
    events: Generator[Any, None, None],
    show: Callable[[Any], None],
    writer: Any,
    *,
    end_bar: Callable[[], None],
    interrupted: Callable[[], str],
) -> int | None:
    """Show every event of a job (``show``, and ``writer``, the ``--progress json`` writer, when there is
    one) to its end: None. On the first Ctrl-C or SIGTERM the bar ends, the job is closed (it writes what
    finished before returning), ``interrupted()``'s line is said on stderr and to the writer, and the exit
    status is returned."""
    with first_interrupt_stops():  # a second Ctrl-C cannot cut short the writing of what finished
        try:
            for event in events:
                show(event)
                if writer is not None:
                    writer.engine_event(event)
        except KeyboardInterrupt as exc:
            end_bar()
            events.close()
            text = interrupted()
            print(text, file=sys.stderr)
            if writer is not None:
                writer.error(text.removeprefix("rsvg: "), exit_status(exc))
            return exit_status(exc)
    return None


def exit_at_once(code: int) -> NoReturn:
    """End the process now with ``code``, once the standard streams are flushed, logging shut down and
    the ``atexit`` handlers run: the interpreter's own teardown (about a second once torch has run a
    model) is skipped, so that a run stopped by SIGTERM exits within a second. Only for the ``rsvg``
    process itself, after the finished results are written."""
    import atexit
    import contextlib
    import logging
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed stream
            stream.flush()
    logging.shutdown()
    atexit._run_exitfuncs()
    os._exit(code)
