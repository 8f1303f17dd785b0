"""Run a plain function in a background thread and get its result back on the GUI thread.

Used for the short blocking jobs of the window: reading a scene's preview, planning its tile grid,
preparing the test model, writing an export. (The model itself runs in a separate process: see
:mod:`rsvg_desktop.gui.worker_bridge`.)

The threads are Python threads (``concurrent.futures``), not Qt's ``QThreadPool``: a Qt pool thread is
foreign to Python, which creates and destroys a thread state around every job, and libraries that keep
per-thread state in ``threading.local`` (pyproj's CRS cache and PROJ context, rasterio's GDAL
environment) then free it between jobs. In this environment that crashed pyproj on the second export
run in the same pool thread (a segmentation fault in ``CRS.__eq__``). Python threads keep their state
for their whole life.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal

__all__ = ["BackgroundCall", "run_in_background", "shared_executor"]

log = logging.getLogger(__name__)

_ACTIVE: set[BackgroundCall] = set()
_EXECUTOR: ThreadPoolExecutor | None = None


def shared_executor() -> ThreadPoolExecutor:
    """The window's pool of background threads (two: the machine's cores are shared with the model)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rsvg-gui")
    return _EXECUTOR


class BackgroundCall(QObject):
    """One call in the thread pool; :attr:`done` carries the return value, :attr:`failed` the exception.

    Both are emitted on the GUI thread (queued), exactly one of them, once.
    """

    done = Signal(object)
    failed = Signal(object)
    _result = Signal(bool, object)

    def __init__(self, fn: Callable[[], Any], name: str = "") -> None:
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "call")
        self.finished = False
        self._result.connect(self._deliver)

    def _deliver(self, ok: bool, value: object) -> None:
        self.finished = True
        _ACTIVE.discard(self)
        if ok:
            self.done.emit(value)
        else:
            self.failed.emit(value)

    def _run(self) -> None:
        try:
            value = self.fn()
        except Exception as exc:
            log.debug("background call %s failed", self.name, exc_info=True)
            self._result.emit(False, exc)
        else:
            self._result.emit(True, value)


def run_in_background(
    fn: Callable[[], Any],
    on_done: Callable[[Any], None] | None = None,
    on_failed: Callable[[BaseException], None] | None = None,
    *,
    name: str = "",
    executor: ThreadPoolExecutor | None = None,
) -> BackgroundCall:
    """Start ``fn()`` in a background thread and return its :class:`BackgroundCall`."""
    call = BackgroundCall(fn, name)
    if on_done is not None:
        call.done.connect(on_done)
    if on_failed is not None:
        call.failed.connect(on_failed)
    _ACTIVE.add(call)  # keep the QObject alive until its result is delivered
    (executor or shared_executor()).submit(call._run)
    return call
