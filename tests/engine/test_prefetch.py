"""Read-ahead: order, errors at their position, bounded depth, clean stop."""

from __future__ import annotations

import threading
import time

import pytest

from rsvg_desktop.engine.prefetch import Prefetch


def test_items_in_order_then_stop():
    with Prefetch(range(10), depth=3) as it:
        assert list(it) == list(range(10))
        with pytest.raises(StopIteration):
            next(it)


def test_error_is_raised_where_it_happened():
    def source():
        yield 1
        yield 2
        raise OSError("window (0, 0, 504, 504) unreadable")

    with Prefetch(source(), depth=4) as it:
        assert next(it) == 1 and next(it) == 2
        with pytest.raises(OSError, match="unreadable"):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


def test_reads_ahead_at_most_depth_and_runs_in_another_thread():
    produced = []
    threads = set()

    def source():
        for i in range(100):
            threads.add(threading.get_ident())
            produced.append(i)
            yield i

    it = Prefetch(source(), depth=2)
    assert next(it) == 0
    time.sleep(0.2)
    # one taken + 2 waiting in the queue + at most 1 blocked in put
    assert len(produced) <= 4
    assert threading.get_ident() not in threads
    it.close()
    assert not it._thread.is_alive()


def test_close_midway_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            yield from range(1000)
        finally:
            closed.set()

    it = Prefetch(source(), depth=2)
    next(it)
    it.close()
    assert closed.is_set()


def test_items_not_taken_are_handed_back_on_close():
    it = Prefetch(iter(range(5)), depth=3)
    assert next(it) == 0
    time.sleep(0.2)
    it.close()
    assert it.dropped and it.dropped == sorted(it.dropped) and set(it.dropped) <= {1, 2, 3, 4}
