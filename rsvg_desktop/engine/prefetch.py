"""Read ahead in a background thread, so tile reads overlap with the model.

``Prefetch(source, depth)`` iterates ``source`` in one background thread and hands its items over a
bounded queue (at most ``depth`` items wait, so memory stays flat). An exception raised by the source
is re-raised by ``next()`` at the position where it happened; items before it are delivered first.
:meth:`Prefetch.close` stops the thread and waits for it — call it (or use ``with``) before closing
what the source reads from. The source is advanced by the background thread only, never
concurrently: a rasterio dataset (not thread-safe) may be read through it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class Prefetch(Generic[T]):
    """See the module docs. ``depth`` ≥ 1 items are read ahead."""

    def __init__(self, source: Iterable[T], depth: int = 4, *, name: str = "rsvg-read-ahead") -> None:
        self._queue: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        #: Items read but never taken (after :meth:`close`): a caller can release what they hold.
        self.dropped: list[T] = []
        self._thread = threading.Thread(target=self._run, args=(iter(source),), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: tuple[bool, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put((True, item)):
                    self.dropped.append(item)
                    return
            self._put((False, _END))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((False, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        ok, value = self._queue.get()
        if ok:
            return value  # type: ignore[return-value]
        self._finished = True
        if value is _END:
            raise StopIteration
        raise value  # type: ignore[misc]

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (items not taken are dropped)."""
        self._stop.set()
        self._finished = True
        self._thread.join()
        queued: list[T] = []
        while True:
            try:
                ok, value = self._queue.get_nowait()
            except queue.Empty:
                break
            if ok:
                queued.append(value)  # type: ignore[arg-type]
        self.dropped = queued + self.dropped  # the one the thread held came after the queued ones

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
