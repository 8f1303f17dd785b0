"""GDAL errors and messages: which exceptions GDAL reads raise, one-line messages, GDAL's warnings routed
to Python logging, and read failures reported with the file and the window."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import rasterio
from rasterio.errors import RasterioError

from rsvg_desktop.errors import RasterReadError

try:  # GDAL errors that rasterio does not translate derive from this private base class
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - layout of a future rasterio
    CPLE_BaseError = RasterioError


__all__ = ["GDAL_ERRORS", "one_line", "quiet_gdal_callback_errors", "reading_errors", "route_gdal_messages"]

#: What a GDAL call through rasterio raises when it fails: rasterio's errors, and a
#: ``UnicodeDecodeError`` when GDAL's message is not UTF-8 (rasterio decodes it to build its error).
GDAL_ERRORS = (RasterioError, CPLE_BaseError, UnicodeDecodeError)

#: Where rasterio logs GDAL's messages; an undecodable one is logged here too, with its bytes replaced.
_gdal_log = logging.getLogger("rasterio._env")
#: The name Cython gives rasterio's GDAL error callback when an exception escapes it.
_LOG_CALLBACK = "rasterio._env.log_error"


def one_line(err: BaseException) -> str:
    """The error's message on one line (its type name when it has none). A GDAL message that is not
    UTF-8 reads as GDAL's text with the undecodable bytes replaced, not as a codec error."""
    if isinstance(err, UnicodeDecodeError) and isinstance(err.object, bytes):
        return " ".join(err.object.decode("utf-8", "replace").split()) or type(err).__name__
    return " ".join(str(err).split()) or type(err).__name__


def _undecodable_text(exc: BaseException | None) -> str:
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
        return exc.object.decode("utf-8", "replace")
    return f"{type(exc).__name__}: {exc}"


def _quiet_unraisablehook(previous: object) -> object:
    """``sys.unraisablehook`` that takes what escaped rasterio's GDAL message callback (a message that is
    not UTF-8) to the log instead of ``Exception ignored in: 'rasterio._env.log_error'`` and a traceback
    on stderr; anything else goes to ``previous``."""

    def hook(unraisable: object) -> None:
        if getattr(unraisable, "object", None) == _LOG_CALLBACK:
            _gdal_log.warning("%s", _undecodable_text(getattr(unraisable, "exc_value", None)))
            return
        previous(unraisable)  # type: ignore[operator]

    hook._rsvg_gdal = True  # type: ignore[attr-defined]
    return hook


def _quiet_excepthook(previous: object) -> object:
    """``sys.excepthook`` that drops the copy of the same error Cython prints first: an exception that
    never passed through a Python frame (no traceback) raised by decoding a GDAL message. A real
    uncaught exception always has a traceback and goes to ``previous``."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
        if tb is None and isinstance(exc, UnicodeDecodeError):
            return  # logged by the unraisable hook that follows
        previous(exc_type, exc, tb)  # type: ignore[operator]

    hook._rsvg_gdal = True  # type: ignore[attr-defined]
    return hook


def quiet_gdal_callback_errors() -> None:
    """Keep rasterio's GDAL message callback from printing a traceback when a GDAL message is not UTF-8
    (a damaged file's names echoed in an error): Cython reports what escapes the callback through
    ``sys.excepthook`` and ``sys.unraisablehook``; wrap both, once (again if someone replaced them)."""
    if not getattr(sys.unraisablehook, "_rsvg_gdal", False):
        sys.unraisablehook = _quiet_unraisablehook(sys.unraisablehook)  # type: ignore[assignment]
    if not getattr(sys.excepthook, "_rsvg_gdal", False):
        sys.excepthook = _quiet_excepthook(sys.excepthook)  # type: ignore[assignment]


_thread_env = threading.local()


def route_gdal_messages() -> None:
    """Send GDAL's (and libtiff's) warnings from this thread to Python logging (logger
    ``rasterio._env``) instead of GDAL's default printing to stderr. GDAL error handlers are per
    thread, and rasterio only installs its logging handler inside a ``rasterio.Env``: this enters one
    for the rest of the thread's life when none is active, and keeps a GDAL message that is not UTF-8
    from printing a traceback (:func:`quiet_gdal_callback_errors`). Cheap; called before every read."""
    quiet_gdal_callback_errors()
    if getattr(_thread_env, "env", None) is None and not rasterio.env.hasenv():
        env = rasterio.Env()
        env.__enter__()
        _thread_env.env = env


@contextmanager
def reading_errors(path: str, window: tuple[int, int, int, int], what: str = "pixels") -> Iterator[None]:
    """Around a read of ``window`` of ``path``: route GDAL's messages first (reads may run in read-ahead
    threads), and turn a GDAL error into a :class:`RasterReadError` naming the file and the window
    (``err.path``, ``err.window``)."""
    route_gdal_messages()
    try:
        yield
    except GDAL_ERRORS as err:
        col_off, row_off, width, height = window
        error = RasterReadError(
            f"{path}: reading {what} failed in window (col_off={col_off}, row_off={row_off}, "
            f"width={width}, height={height}): {one_line(err)}"
        )
        error.path = path  # type: ignore[attr-defined]
        error.window = window  # type: ignore[attr-defined]
        raise error from err
