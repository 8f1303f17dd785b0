"""GDAL errors and messages: which exceptions GDAL reads raise, one-line messages, GDAL's warnings routed
to Python logging, and read failures reported with the file and the window."""

from __future__ import annotations

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


__all__ = ["GDAL_ERRORS", "one_line", "reading_errors", "route_gdal_messages"]

#: What a GDAL call through rasterio raises when it fails.
GDAL_ERRORS = (RasterioError, CPLE_BaseError)


def one_line(err: BaseException) -> str:
    """The error's message on one line (its type name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


_thread_env = threading.local()


def route_gdal_messages() -> None:
    """Send GDAL's (and libtiff's) warnings from this thread to Python logging (logger
    ``rasterio._env``) instead of GDAL's default printing to stderr. GDAL error handlers are per
    thread, and rasterio only installs its logging handler inside a ``rasterio.Env``: this enters one
    for the rest of the thread's life when none is active. Cheap; called before every read."""
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
            f"width={width}, height={height}): {err}"
        )
        error.path = path  # type: ignore[attr-defined]
        error.window = window  # type: ignore[attr-defined]
        raise error from err
