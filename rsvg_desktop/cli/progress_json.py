"""``--progress json``: a command's run as JSON Lines on stdout, one event a line (docs/progress.md).

:class:`EventWriter` is the one writer every command shares: it turns the engine's events
(:mod:`rsvg_desktop.engine.events`, single runs and batches) into ``started``, ``progress``, ``warning``,
``finished`` and ``error`` lines. While it is active the command's other stdout (result lines) goes to
stderr, so that stdout holds events only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, TextIO

from rsvg_desktop.core.progress import RunProgress
from rsvg_desktop.engine.events import (
    BatchFinished,
    BatchProgress,
    BatchStarted,
    InputFinished,
    ModelLoaded,
    RunFinished,
    RunStarted,
    TileDone,
)

#: Events that end a run: after one of them, no other is written.
_FINAL = ("finished", "error")


def _number(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


class EventWriter:
    """Writes a command's events to ``stream`` as JSON Lines (flushed after each line)."""

    def __init__(self, command: str, stream: TextIO) -> None:
        self.command = command
        self.stream = stream
        self.ended = False
        self._progress = RunProgress()
        self._stage = ""  # rsvg change: the part now counted (before, after, verify)
        self._reused = 0

    def emit(self, event: str, **fields: Any) -> None:
        """One line ``{"event": event, "command": ..., **fields}``; nothing after a final event."""
        if self.ended:
            return
        self.ended = event in _FINAL
        line = json.dumps({"event": event, "command": self.command, **fields}, default=str, allow_nan=False)
        self.stream.write(line + "\n")
        self.stream.flush()

    # --- the generic events ---------------------------------------------------------------------
    def started(self, total: int | None = None, **fields: Any) -> None:
        self._progress.start(total or 0)
        self.emit("started", total=total, **fields)

    def progress(self, done: int, total: int, **fields: Any) -> None:
        self._progress.update(done, total)
        p = self._progress
        self.emit(
            "progress",
            done=done,
            total=total,
            rate=_number(p.rate),
            seconds_left=_number(p.remaining, 1),
            **fields,
        )

    def warning(self, message: str) -> None:
        self.emit("warning", message=" ".join(message.split()))

    def finished(self, exit_code: int = 0, **outputs: Any) -> None:
        self.emit("finished", exit_code=exit_code, outputs=outputs)

    def error(self, message: str, exit_code: int) -> None:
        self.emit("error", message=" ".join(message.split()), exit_code=exit_code)

    # --- the engine's events --------------------------------------------------------------------
    def engine_event(self, event: object) -> None:
        """An engine event as the lines it means (some, such as ``TileStarted``, mean none)."""
        if isinstance(event, ModelLoaded):
            self._progress.restart_clock()  # the load is not tiles' time
            if event.info.random_weights:
                self.warning("model: RANDOM WEIGHTS (test model): answers are noise")
        elif self.command == "change" and self._change_event(event):
            return
        elif isinstance(event, RunStarted):
            self.started(
                event.total,
                scene=event.scene,
                run_id=event.run_id,
                skipped=event.skipped,
                answer_log=event.answer_log,
            )
        elif isinstance(event, TileDone):
            self.progress(event.done, event.total, tile=event.tile.id)
        elif isinstance(event, RunFinished):
            for message in event.errors:
                self.warning(message)
        elif isinstance(event, BatchStarted):
            self.started(
                None,
                inputs=event.inputs,
                output=event.output,
                answer_log=event.answer_log,
                runs=[{"run_id": r, "task": t, "query": q} for r, t, q in event.runs],
            )
        elif isinstance(event, BatchProgress):
            self.progress(
                event.tiles_done,
                max(event.tiles_expected, event.tiles_done),
                inputs_finished=event.inputs_finished,
                inputs_total=event.inputs_total,
            )
        elif isinstance(event, InputFinished) and event.status == "failed":
            self.warning(f"{event.path} failed ({event.stage}): {event.reason}")
        elif isinstance(event, BatchFinished) and event.summary.message:
            self.warning(event.summary.message)

    def _change_event(self, event: object) -> bool:
        """``rsvg change``'s events: one ``started`` for the comparison, then ``progress`` lines whose
        ``stage`` says which part they count (``before``, ``after``: that date's tiles; ``verify``: the
        verification's questions); ``done``/``total`` start again at each stage. False: not one of them."""
        from rsvg_desktop.engine import change as ch

        if isinstance(event, ch.ChangeStarted):
            self.started(
                None,
                before=event.before,
                after=event.after,
                grid=event.grid,
                compared_fraction=_number(event.compared_fraction, 4),
                shift_dx=_number(event.shift_dx),
                shift_dy=_number(event.shift_dy),
                output=event.output,
                answer_logs=list(event.answer_logs),
            )
        elif isinstance(event, ch.DateStarted):
            self._stage = event.date
        elif isinstance(event, RunStarted):
            self._reused = event.reused
            self._progress.start(event.total + event.reused, done=event.reused)
            self.progress(event.reused, event.total + event.reused, stage=self._stage, reused=event.reused)
        elif isinstance(event, TileDone):
            total = event.total + self._reused
            self.progress(self._reused + event.done, total, stage=self._stage, tile=event.tile.id)
        elif isinstance(event, ch.VerifyStarted):
            self._stage = "verify"
            self._progress.start(event.total, done=event.reused)
            self.progress(event.reused, event.total, stage="verify", reused=event.reused)
        elif isinstance(event, ch.VerifyProgress):
            self.progress(event.done, event.total, stage="verify", confirmed=event.confirmed)
        elif isinstance(event, ch.ChangeWarning):
            self.warning(event.message)
        else:
            return isinstance(event, ch.ChangeFinished)
        return True


#: The writer of the command now running with ``--progress json`` (``None``: not in that mode).
_current: EventWriter | None = None


def current() -> EventWriter | None:
    """The active writer, for code that reports errors (``run_guarded``)."""
    return _current


class json_progress:
    """For the block: ``writer`` is the active one, and stdout (``sys.stdout``) goes to stderr; the
    events go to the stdout there was before."""

    def __init__(self, writer: EventWriter | None) -> None:
        self.writer = writer
        self._saved: TextIO | None = None

    def __enter__(self) -> EventWriter | None:
        global _current
        if self.writer is not None:
            _current = self.writer
            self._saved = sys.stdout
            sys.stdout = sys.stderr
        return self.writer

    def __exit__(self, *exc: object) -> None:
        global _current
        if self.writer is not None:
            sys.stdout = self._saved
            _current = None


def writer_for(command: str, mode: str | None) -> EventWriter | None:
    """The writer for ``--progress MODE`` (``json``), on the current stdout; ``None`` otherwise."""
    return EventWriter(command, sys.stdout) if mode == "json" else None


#: The commands that take ``--progress json``.
PROGRESS_COMMANDS = ("detect", "batch", "export", "tiles", "change")


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        choices=("bar", "json"),
        default="bar",
        help="bar: a progress bar on stderr (default); json: JSON Lines events on stdout and nothing "
        "else there (docs/progress.md)",
    )


def end_of_command(writer: EventWriter, code: int) -> None:
    """After the command: a ``finished`` or ``error`` event if it wrote none (exit status ``code``)."""
    if code == 0:
        writer.finished(code)
    else:
        writer.error(f"exit status {code}", code)
