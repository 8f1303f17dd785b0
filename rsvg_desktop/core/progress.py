"""Run progress arithmetic: done / total, tiles per second, time left (Qt-free)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RunProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``."""
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


@dataclass
class RunProgress:
    """Progress of one run. ``rate`` is tiles finished per second since the clock started (the model
    answers tiles in batches that finish together, so shorter windows jump); unknown before the first
    tile is done. The clock starts with :meth:`start`, or again with :meth:`restart_clock` once the
    model is loaded, so that neither the load nor tiles done before (a resumed run) count as speed."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    started: float = 0.0
    #: Tiles already done when the clock started: not part of the rate.
    base: int = 0

    def start(self, total: int, skipped: int = 0, done: int = 0) -> None:
        """A new run of ``total`` tiles, ``done`` of them finished before (not counted in the rate)."""
        self.total, self.skipped, self.done = total, skipped, done
        self.restart_clock()

    def restart_clock(self) -> None:
        """Measure the rate from now on (e.g. once the model is loaded): what is done so far does not
        count."""
        self.started = self.clock()
        self.base = self.done

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.done = done

    @property
    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.started)

    @property
    def rate(self) -> float | None:
        """Tiles per second since the clock started, or ``None`` before a tile is done since then."""
        counted = self.done - self.base
        if counted <= 0:
            return None
        dt = self.clock() - self.started
        return counted / dt if dt > 0 else None

    @property
    def remaining(self) -> float | None:
        rate = self.rate
        if rate is None or rate <= 0:
            return None
        return max(0, self.total - self.done) / rate

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def text(self) -> str:
        """``3 / 9 tiles · 1.2 tiles/s · 0:05 left`` (rate and time once known)."""
        parts = [f"{self.done} / {self.total} tiles"]
        rate = self.rate
        if rate is not None:
            parts.append(f"{rate:.2f} tiles/s" if rate < 10 else f"{rate:.0f} tiles/s")
            remaining = self.remaining
            if remaining is not None and self.done < self.total:
                parts.append(f"{format_duration(remaining)} left")
        else:
            parts.append(f"{format_duration(self.elapsed)} elapsed")
        return " · ".join(parts)
