"""Shared plumbing for the ``rsvg`` command line: logging set-up, what the commands say on stderr
(:func:`notice`), error reporting, progress output."""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import TextIO

from rsvg_desktop.core.progress import RunProgress, format_duration
from rsvg_desktop.errors import RsvgError

log = logging.getLogger("rsvg_desktop.cli")
#: What a command tells the user on stderr besides its result ("4 tiles to answer", "model: loaded in
#: 3 s"): shown as is, without a level prefix; info lines are silenced by ``-q``, warnings are not.
_notices = logging.getLogger("rsvg_desktop.cli.notice")

EXIT_OK = 0
EXIT_FAILED_INPUTS = 3  # some inputs of a batch failed (listed in the summary)
EXIT_USAGE = 2  # bad arguments or bad input: argparse uses 2 as well
EXIT_INTERNAL = 1  # a bug: unexpected exception
#: The reader of stdout went away (``rsvg info X --json | head -c 10``): what a shell reports for a Unix
#: tool that SIGPIPE ended (128 + 13), with nothing said.
EXIT_BROKEN_PIPE = 128 + getattr(signal, "SIGPIPE", 13)

#: OSErrors that are the machine's answer rather than a bug: exit 2 with the file named.
_ENVIRONMENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


#: Loggers of the libraries underneath: GDAL/libtiff warnings arrive through rasterio's; Python
#: warnings (``py.warnings``) are captured into logging too.
LIBRARY_LOGGERS = (
    "py",
    "rasterio",
    "fiona",
    "pyogrio",
    "urllib3",
    "httpx",
    "huggingface_hub",
    "transformers",
)


class LibraryFilter(logging.Filter):
    """What libraries log reaches stderr only on request: not at all by default (a GDAL/libtiff
    ``CPLE_AppDefined`` warning about an odd tag is not the user's business unless they ask), their
    warnings and errors with ``-v``, and the traceback text some of them attach (rasterio logs one for
    an undecodable GDAL message) only with ``-vv``."""

    def __init__(self, verbosity: int) -> None:
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] not in LIBRARY_LOGGERS:
            return True
        if self.verbosity < 1:
            return False
        if self.verbosity < 2 and (record.exc_info or record.exc_text or record.stack_info):
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
                record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def setup_logging(verbosity: int) -> None:
    """-q → errors only, default → warnings, -v → info, -vv → debug. Log lines go to stderr; results and
    progress are printed by the commands themselves. Library messages: see :class:`LibraryFilter`."""
    level = (
        logging.ERROR
        if verbosity < 0
        else logging.WARNING
        if verbosity == 0
        else logging.INFO
        if verbosity == 1
        else logging.DEBUG
    )
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(LibraryFilter(verbosity))
    # Third-party libraries are chatty at INFO.
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    _notices.handlers[:] = [_StderrHandler()]
    _notices.propagate = False
    _notices.setLevel(logging.WARNING if verbosity < 0 else logging.INFO)


class _StderrHandler(logging.Handler):
    """The message alone on whatever ``sys.stderr`` is when it is written."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - a closed stderr
            self.handleError(record)


def notice(text: str) -> None:
    """An info line on stderr ("4 tiles to answer"); ``-q`` silences it."""
    _notices.info(text)


def notice_warning(text: str) -> None:
    """A line on stderr that ``-q`` keeps (e.g. that the model has random weights)."""
    _notices.warning(text)


def _reader_gone(stream: object) -> bool:
    """Whether ``stream`` writes to a pipe whose reading end is closed (``poll`` reports an error on it).
    Where there is no ``poll`` (Windows), a broken pipe is taken to be the output's."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    poll = getattr(select, "poll", None)
    if poll is None:  # pragma: no cover - Windows
        return True
    poller = poll()
    poller.register(fd, 0)  # errors and hang-ups are always reported
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _closed_output() -> bool:
    """After a ``BrokenPipeError``: whether it was stdout's or stderr's reader that went away (not a
    socket's). Stdout then points at the null device, so that Python's last flush at exit finds no
    pipe to complain about."""
    stdout_gone = _reader_gone(sys.stdout)
    if stdout_gone:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # pragma: no cover - no fd to replace
            pass
    return stdout_gone or _reader_gone(sys.stderr)


def _flushed(func: Callable[[], int]) -> Callable[[], int]:
    """``func``, then stdout flushed while errors are still reported (a closed pipe shows up here)."""

    def run() -> int:
        code = func()
        sys.stdout.flush()
        return code

    return run


def _failed(line: str, message: str, code: int) -> int:
    """``line`` on stderr and, with ``--progress json``, an ``error`` event of ``message``; ``code``."""
    from rsvg_desktop.cli.progress_json import current

    print(line, file=sys.stderr)
    writer = current()
    if writer is not None:
        writer.error(message, code)
    return code


def run_guarded(func: Callable[[], int], *, debug: bool = False) -> int:
    """Run a command; turn errors into one line on stderr and an exit status (no traceback). A closed
    stdout (its reader went away) ends the command quietly with :data:`EXIT_BROKEN_PIPE`. With
    ``--progress json`` the line is also an ``error`` event (:mod:`~rsvg_desktop.cli.progress_json`)."""
    try:
        return _flushed(func)()
    except RsvgError as exc:
        message = " ".join(str(exc).split())  # one line, whatever a library put in the message
        return _failed(f"rsvg: error: {message}", message, EXIT_USAGE)
    except KeyboardInterrupt as exc:
        from rsvg_desktop.cli.interrupts import exit_status

        message = "interrupted; finished results are kept"
        return _failed(f"rsvg: {message}", message, exit_status(exc))
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _closed_output():
            return EXIT_BROKEN_PIPE
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
            # what the machine refused (no permission, a read-only or full disk), not a bug
            where = f"{exc.filename}: " if exc.filename else ""
            message = f"{where}{exc.strerror or exc}"
            return _failed(f"rsvg: error: {message}", message, EXIT_USAGE)
        if debug:
            raise
        message = f"internal error: {type(exc).__name__}: {exc}"
        return _failed(f"rsvg: {message} (rerun with --debug for details)", message, EXIT_INTERNAL)


class Progress:
    """A one-line progress bar on a terminal (counts, rate, time left); silent when quiet or not a TTY
    unless forced. Updates at most ten times a second. The arithmetic is :class:`RunProgress`, the same
    the app shows: ``done`` tiles finished before the bar starts (a resumed run) and, after
    :meth:`restart_clock`, the model's load do not count as speed; the rate shows ``-`` until known."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "",
        stream: TextIO | None = None,
        enabled: bool = True,
        done: int = 0,
    ):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._progress = RunProgress()
        self._progress.start(max(total, 0), done=max(done, 0))
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._ended = True  # no line open: none written yet, or the last one was final
        self._shown = -1  # the count of the last line written

    @property
    def total(self) -> int:
        return self._progress.total

    @total.setter
    def total(self, value: int) -> None:
        self._progress.total = max(value, 0)

    @property
    def done(self) -> int:
        return self._progress.done

    def restart_clock(self) -> None:
        """Measure the rate from now on (the model has just been loaded)."""
        self._progress.restart_clock()

    def update(self, done: int, *, extra: str = "") -> None:
        self._progress.update(done)
        if not self.enabled:
            return
        now = time.monotonic()
        final = done >= self.total
        if final and self._ended and done == self._shown:
            return  # that final line is out already
        if not final and now - self._last < (0.1 if self._tty else 5.0):
            return
        self._write(extra, final=final)

    def finish(self, done: int | None = None, *, extra: str = "") -> None:
        """The last line at ``done`` (default: as things stand), ended: a stopped run's bar keeps its
        count, no jump to 100 %. Nothing when no line is open (none written, or a final one)."""
        if done is not None:
            self._progress.update(done)
        if self.enabled and not self._ended:
            self._write(extra, final=True)

    def _write(self, extra: str, *, final: bool) -> None:
        self._last = time.monotonic()
        self._shown = self.done
        self.stream.write(("\r" if self._tty else "") + self.line(extra) + ("" if self._tty else "\n"))
        self._ended = final
        if final and self._tty:
            self.stream.write("\n")
        self.stream.flush()

    def line(self, extra: str = "") -> str:
        p = self._progress
        rate, left = p.rate, p.remaining
        width = 24
        filled = int(width * min(p.fraction, 1.0)) if p.total else width
        bar = "#" * filled + "-" * (width - filled)
        eta = "--:--" if left is None else format_duration(left)
        speed = "-" if rate is None else f"{rate:.2f}"
        text = f"{self.label} [{bar}] {p.done}/{p.total} {speed}/s left {eta}"
        return f"{text} {extra}".rstrip()
