"""Running the engine as a child process: events and log lines as they come, Cancel as SIGTERM.

Plain Python, no QGIS. Processing runs an algorithm in a worker thread; this reads the child's stdout
and stderr on two threads into one queue, hands each line to the caller on the caller's thread, and
asks ``is_canceled`` at least every ``poll_seconds``. On Cancel the child gets SIGTERM (the engine
stops within a second, keeping what finished, exit status 143), and is killed if it is still running
``kill_after`` seconds later."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from .events import EngineEvent, error_line, parse_event

_STDOUT, _STDERR, _CLOSED = "stdout", "stderr", "closed"


@dataclass
class EngineRun:
    """What a finished (or stopped) engine run gave."""

    exit_code: int
    cancelled: bool
    events: list[EngineEvent] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    pid: int = 0
    seconds_to_exit: float | None = None  # from the Cancel to the child's exit

    @property
    def finished(self) -> EngineEvent | None:
        return next((e for e in reversed(self.events) if e.kind == "finished"), None)

    @property
    def error(self) -> str | None:
        """The engine's one-line error when the run failed (``None`` when it went through)."""
        failed = next((e for e in reversed(self.events) if e.kind == "error"), None)
        if failed is not None and failed.message:
            return failed.message
        if self.exit_code == 0 and self.finished is not None:
            return None
        return error_line(self.stderr, self.exit_code)


def _pump(stream: IO[str], name: str, lines: queue.Queue[tuple[str, str]]) -> None:
    try:
        for line in stream:
            lines.put((name, line.rstrip("\r\n")))
    finally:
        lines.put((_CLOSED, name))


def run_engine(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    on_event: Callable[[EngineEvent], None],
    on_log: Callable[[str], None],
    is_canceled: Callable[[], bool],
    on_start: Callable[[int], None] | None = None,
    poll_seconds: float = 0.1,
    kill_after: float = 5.0,
) -> EngineRun:
    """Run ``argv`` to its end or until ``is_canceled()``; every stdout event goes to ``on_event``,
    every other line (stderr, or a stray stdout line) to ``on_log``."""
    flags = subprocess.CREATE_NO_WINDOW if sys.platform.startswith("win") else 0
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        creationflags=flags,
    )
    run = EngineRun(exit_code=0, cancelled=False, pid=proc.pid)
    if on_start is not None:
        on_start(proc.pid)
    lines: queue.Queue[tuple[str, str]] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, _STDOUT, lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, _STDERR, lines), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    open_streams, cancelled_at, killed = 2, None, False
    while open_streams or proc.poll() is None:
        if cancelled_at is None and is_canceled():
            cancelled_at = time.monotonic()
            run.cancelled = True
            proc.terminate()  # SIGTERM: the engine keeps what finished
        elif cancelled_at is not None and not killed and time.monotonic() - cancelled_at > kill_after:
            proc.kill()
            killed = True
        try:
            name, line = lines.get(timeout=poll_seconds)
        except queue.Empty:
            continue
        if name == _CLOSED:
            open_streams -= 1
            continue
        event = parse_event(line) if name == _STDOUT else None
        if event is not None:
            run.events.append(event)
            on_event(event)
        elif line.strip():
            if name == _STDERR:
                run.stderr.append(line)
            on_log(line)
    run.exit_code = proc.wait()
    if cancelled_at is not None:
        run.seconds_to_exit = time.monotonic() - cancelled_at
    for pump in pumps:
        pump.join(timeout=1)
    proc.stdout.close()
    proc.stderr.close()
    return run
