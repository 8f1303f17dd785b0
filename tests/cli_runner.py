"""``rsvg`` run in the test's own process: the same ``main(argv)`` the console script calls, with stdout and
stderr captured and the exit status returned as a subprocess would give it.

A separate Python process costs several seconds of imports (torch, transformers) per call on these
2-core machines and proves nothing more for most commands. What C libraries (GDAL, PROJ) write straight
to file descriptors 1 and 2 is captured too, so "no library chatter on stderr" is still checked. Keep a
real process where the process is what is tested: the console script itself, signals, a closed pipe, a
frozen app, or a library that reads the environment only at import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CliResult:
    """What a finished ``rsvg`` command gave: its exit status and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """``main`` configures the root logger for its own stderr; put the test's logging back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    showwarning = warnings.showwarning
    try:
        yield
    finally:
        logging.captureWarnings(False)
        warnings.showwarning = showwarning
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lvl in levels.items():
            logging.getLogger(name).setLevel(lvl)


@contextlib.contextmanager
def _file_descriptors(out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    """Point fds 1 and 2 at temporary files for the call and append what landed there (C libraries'
    own writes) to ``out``/``err``."""
    with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()  # type: ignore[union-attr]
        saved = os.dup(1), os.dup(2)
        os.dup2(fd_out.fileno(), 1)
        os.dup2(fd_err.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for captured, into in ((fd_out, out), (fd_err, err)):
                captured.seek(0)
                into.write(captured.read().decode("utf-8", "replace"))


def run_rsvg(
    *args: str | os.PathLike[str], env: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> CliResult:
    """``rsvg ARGS...`` in process. ``env`` replaces the environment for the call (as ``subprocess``'s
    ``env`` does); ``cwd`` is the working folder."""
    from rsvg_desktop.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environment(env))
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(_logging_restored())
        stack.enter_context(_file_descriptors(out, err))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            code = main([os.fspath(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors, --help, --version
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                err.write(exc.code + "\n")
    return CliResult(code, out.getvalue(), err.getvalue())


def run_rsvg_process(
    *args: str | os.PathLike[str], env: Mapping[str, str] | None = None, timeout: float = 300
) -> CliResult:
    """``rsvg ARGS...`` in a new Python process, for what only a process shows (a hang cut by a timeout,
    a closed pipe, environment read at import)."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "rsvg_desktop.cli.main", *map(os.fspath, args)],
        capture_output=True, text=True, timeout=timeout, env=None if env is None else dict(env),
    )  # fmt: skip
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
