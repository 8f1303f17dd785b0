"""The model worker must not outlive the app that started it.

A worker holds the whole model in (GPU) memory. If the app dies without stopping it (SIGKILL, a crash,
the desktop session ending), the worker would be re-parented and wait on its command queue forever.
:func:`watch_parent` starts a daemon thread that waits on the parent's process sentinel
(``multiprocessing.parent_process().sentinel``: a pipe end on POSIX, a process handle on Windows, so it
works wherever ``spawn`` does, the frozen app included) and, when the parent is gone, asks the worker
to wind down (a run in progress is cancelled: its finished tiles are already in the answer log) and
ends the process after a short grace period.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable

__all__ = ["EXIT_ORPHANED", "watch_parent"]

log = logging.getLogger(__name__)

#: Exit status of a worker that ended because its app was gone.
EXIT_ORPHANED = 4


def watch_parent(
    on_gone: Callable[[], float] | None = None, *, exit: Callable[[int], None] = os._exit
) -> threading.Thread | None:
    """Watch the parent process (None when this process has no multiprocessing parent). ``on_gone``
    is called when the parent ends and returns how many seconds to allow before ``exit`` (default
    ``os._exit``: nothing of this process is worth keeping once its app is gone)."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return None

    def wait() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        log.warning("the app (pid %s) is gone: the model worker ends", parent.pid)
        grace = 0.0
        if on_gone is not None:
            try:
                grace = max(0.0, float(on_gone()))
            except Exception:  # never let the watch die before the exit
                log.exception("winding down the worker failed")
        if grace:
            time.sleep(grace)
        exit(EXIT_ORPHANED)

    thread = threading.Thread(target=wait, name="rsvg-lifeline", daemon=True)
    thread.start()
    return thread
