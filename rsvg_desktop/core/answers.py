"""The answer log: one JSON object per answered tile, one per line (JSON Lines, UTF-8).

The log is the raw record of a run: which window of which scene was asked what, and what the model
answered, word for word. Everything else (boxes, polygons, exports) can be rebuilt from it, so it is
written so that a killed process loses at most the line it was writing:

- :class:`AnswerLogWriter` appends one complete line per record and flushes it (optionally
  ``os.fsync``) before returning. Opening a log whose last line was cut off repairs it first.
- :func:`read_answer_log` skips a cut-off *last* line with a warning and is strict everywhere else:
  a malformed line raises :class:`~rsvg_desktop.errors.AnswerLogError` naming the file, the line
  number and what is wrong.

Keys a reader does not know are kept in :attr:`AnswerRecord.extra` and written back unchanged, so
older code can copy newer logs. The schema is documented in ``docs/answer_log.md``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rsvg_desktop.core.jsonl_tail import repair_tail
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import AnswerLogError, AnswerLogNotFoundError, AnswerLogWriteError

__all__ = [
    "SCHEMA_VERSION",
    "AnswerLogWriter",
    "AnswerRecord",
    "check_crs",
    "read_answer_log",
    "utc_now_iso",
]

log = logging.getLogger(__name__)

#: The version of the record layout this module writes.
SCHEMA_VERSION = 1

_REQUIRED = ("scene", "col_off", "row_off", "width", "height", "task", "query", "answer")


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a ``Z`` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- field checks ------------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float)) and not isinstance(value, bool)


def _check_str(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise AnswerLogError(f"field {name!r} must be a string, got {_type_name(value)}")


#: Largest magnitude of a pixel offset or size: GDAL counts raster pixels in 32-bit signed integers,
#: so nothing larger can name a real window (and a 400-digit number must not reach numpy or GDAL).
MAX_PIXELS = 2**31 - 1


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} digits)"


def _check_int(
    name: str, value: Any, optional: bool, minimum: int | None = None, maximum: int | None = MAX_PIXELS
) -> None:
    if value is None and optional:
        return
    if not _is_int(value):
        raise AnswerLogError(f"field {name!r} must be an integer, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise AnswerLogError(f"field {name!r} must be >= {minimum}, got {_short(value)}")
    if maximum is not None and abs(value) > maximum:
        raise AnswerLogError(f"field {name!r} is out of range (|value| <= {maximum}), got {_short(value)}")


@functools.lru_cache(maxsize=64)
def check_crs(text: str) -> None:
    """Refuse a ``crs`` that PROJ cannot read (checked once per distinct text)."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(text)
    except CRSError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise AnswerLogError(
            f"field 'crs' is not a coordinate reference system PROJ can read: {shown!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """One answered tile: where it is, what was asked, what the model said, and how it ran.

    Required: ``scene`` (path of the scene file), ``col_off``, ``row_off``, ``width``, ``height`` (the
    tile's window in scene pixels; GeoChat's 0–100 grid spans it), ``task``, ``query`` (the analyst's
    text as typed, without task wording) and ``answer`` (the model's raw text).

    Optional: ``tile_row``/``tile_col`` (grid id), ``tile_size`` (side of the model's input image),
    the grid settings of the run (``overlap`` in scene pixels, ``target_gsd`` in metres or ``None`` for
    the native resolution, ``max_nodata_fraction``: tiles with more nodata than this were skipped),
    ``run_id``, ``model``, ``precision``, ``device``, ``angle_convention`` (``"ccw"``/``"cw"``:
    direction of θ), ``crs`` (WKT, ``None`` for pixel mode or unknown), ``transform`` (the scene's
    affine ``a, b, c, d, e, f``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``),
    ``pixel_mode``, ``input_tokens``, ``output_tokens``, ``seconds`` (generation time), ``time``
    (ISO 8601 UTC, filled in by the writer when ``None``), ``schema`` (record layout version) and
    ``extra`` (keys this version does not know, kept as read).

    Invalid values raise :class:`~rsvg_desktop.errors.AnswerLogError` on construction.
    """

    scene: str
    col_off: int
    row_off: int
    width: int
    height: int
    task: str
    query: str
    answer: str
    tile_row: int | None = None
    tile_col: int | None = None
    tile_size: int = 504
    overlap: int | None = None
    target_gsd: float | None = None
    max_nodata_fraction: float | None = None
    run_id: str | None = None
    model: str | None = None
    precision: str | None = None
    device: str | None = None
    angle_convention: str | None = None
    crs: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    pixel_mode: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    seconds: float | None = None
    time: str | None = None
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("scene", "task", "query", "answer"):
            _check_str(name, getattr(self, name), optional=False)
        for name in ("run_id", "model", "precision", "device", "angle_convention", "crs", "time"):
            _check_str(name, getattr(self, name), optional=True)
        _check_int("col_off", self.col_off, optional=False)
        _check_int("row_off", self.row_off, optional=False)
        _check_int("width", self.width, optional=False, minimum=1)
        _check_int("height", self.height, optional=False, minimum=1)
        _check_int("tile_row", self.tile_row, optional=True, minimum=0)
        _check_int("tile_col", self.tile_col, optional=True, minimum=0)
        _check_int("tile_size", self.tile_size, optional=False, minimum=1)
        _check_int("overlap", self.overlap, optional=True, minimum=0)
        for name in ("target_gsd", "max_nodata_fraction"):
            value = getattr(self, name)
            if value is None:
                continue
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise AnswerLogError(f"field {name!r} must be a positive number or null, got {value!r}")
            object.__setattr__(self, name, float(value))
        _check_int("input_tokens", self.input_tokens, optional=True, minimum=0)
        _check_int("output_tokens", self.output_tokens, optional=True, minimum=0)
        _check_int("schema", self.schema, optional=False, minimum=1)
        if not isinstance(self.pixel_mode, bool):
            got = _type_name(self.pixel_mode)
            raise AnswerLogError(f"field 'pixel_mode' must be true or false, got {got}")

        if self.seconds is not None:
            if not _is_number(self.seconds):
                raise AnswerLogError(f"field 'seconds' must be a number, got {_type_name(self.seconds)}")
            if not math.isfinite(self.seconds) or self.seconds < 0:
                raise AnswerLogError(f"field 'seconds' must be finite and >= 0, got {self.seconds}")
            object.__setattr__(self, "seconds", float(self.seconds))

        if self.transform is not None:
            t = self.transform
            if isinstance(t, str | bytes) or not hasattr(t, "__len__") or len(t) != 6:
                raise AnswerLogError("field 'transform' must be a list of 6 numbers or null")
            try:
                values = tuple(float(v) for v in t if _is_number(v))
            except OverflowError:  # an integer too large for a float
                values = ()
            if len(values) != 6 or not all(math.isfinite(v) for v in values):
                raise AnswerLogError("field 'transform' must hold 6 finite numbers")
            a, b, _c, d, e, _f = values
            if a * e - b * d == 0.0:
                raise AnswerLogError(
                    f"field 'transform' {list(values)} is degenerate (zero pixel size): it places no "
                    "pixel on the map"
                )
            object.__setattr__(self, "transform", values)

        if not isinstance(self.extra, Mapping):
            raise AnswerLogError(f"'extra' must be a mapping, got {_type_name(self.extra)}")
        extra = dict(self.extra)
        clash = sorted(k for k in extra if not isinstance(k, str) or k in _FIELD_NAMES)
        if clash:
            raise AnswerLogError(f"extra keys clash with record fields or are not strings: {clash}")
        object.__setattr__(self, "extra", extra)

    # --- conveniences --------------------------------------------------------------------------
    @classmethod
    def for_tile(
        cls, scene: str | os.PathLike[str], tile: Tile, task: str, query: str, answer: str, **kwargs: Any
    ) -> AnswerRecord:
        """A record for ``tile`` of ``scene``: window, grid id and input size taken from the tile."""
        return cls(
            scene=os.fspath(scene),
            col_off=tile.col_off,
            row_off=tile.row_off,
            width=tile.width,
            height=tile.height,
            task=task,
            query=query,
            answer=answer,
            tile_row=tile.row,
            tile_col=tile.col,
            tile_size=tile.size,
            **kwargs,
        )

    @property
    def window(self) -> tuple[int, int, int, int]:
        """``(col_off, row_off, width, height)`` in scene pixels."""
        return (self.col_off, self.row_off, self.width, self.height)

    @property
    def tile(self) -> Tile | None:
        """The :class:`Tile` this record answers, or ``None`` when the grid id was not recorded."""
        if self.tile_row is None or self.tile_col is None:
            return None
        return Tile(
            self.tile_row, self.tile_col, self.col_off, self.row_off, self.width, self.height, self.tile_size
        )

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record: every field (``null`` where unset), then the extra keys."""
        out: dict[str, Any] = {}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            out[name] = list(value) if name == "transform" and value is not None else value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> AnswerRecord:
        """Build a record from a decoded JSON object; unknown keys go to ``extra``.

        Raises AnswerLogError for a missing required field or a value of the wrong type.
        """
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise AnswerLogError(f"missing field{plural} {', '.join(map(repr, missing))}")
        known = {k: v for k, v in obj.items() if k in _FIELD_NAMES}
        extra = {k: v for k, v in obj.items() if k not in _FIELD_NAMES}
        return cls(**known, extra=extra)


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(AnswerRecord) if f.name != "extra")


def _encode(record: AnswerRecord) -> bytes:
    obj = record.to_dict()
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: let JSON escape them
        text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(", ", ": "))
        return (text + "\n").encode("ascii")
    except (TypeError, ValueError) as exc:
        raise AnswerLogError(f"record cannot be written as JSON: {exc}") from exc


# --- writing -----------------------------------------------------------------------------------
class AnswerLogWriter:
    """Append :class:`AnswerRecord` lines to a JSON Lines file, one complete line per record.

    The file is opened in append mode (created if missing; its folder must exist). Each
    :meth:`write` writes one line and flushes it; with ``fsync=True`` it also asks the OS to put it
    on disk, so a power cut loses nothing written before. Not for several writers at once.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._count = 0
        repair_tail(self._path)
        try:
            # Unbuffered: each record goes to the OS in one write() loop, so a failure (a full disk)
            # can be undone to the last complete line and leaves nothing pending for close().
            self._file: IO[bytes] | None = open(self._path, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise AnswerLogWriteError(
                f"cannot write the answer log {self._path}: {exc.strerror or exc}"
            ) from exc

    @property
    def path(self) -> Path:
        """The file written to."""
        return self._path

    @property
    def count(self) -> int:
        """How many records this writer has written."""
        return self._count

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, record: AnswerRecord) -> AnswerRecord:
        """Append ``record`` as one line and flush it; returns the record as written.

        A record whose ``time`` is ``None`` is written with the current UTC time.
        """
        if self._file is None:
            raise AnswerLogError(f"answer log {self._path} is closed")
        if not isinstance(record, AnswerRecord):
            raise TypeError(f"expected AnswerRecord, got {type(record).__name__}")
        if record.time is None:
            record = replace(record, time=utc_now_iso())
        data = _encode(record)
        fd = self._file.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        except OSError as exc:
            try:  # keep the log valid up to its last complete line
                os.ftruncate(fd, start)
            except OSError:  # pragma: no cover - readers skip a cut-off last line anyway
                log.debug("could not cut %s back to %d bytes", self._path, start, exc_info=True)
            raise AnswerLogWriteError(
                f"writing the answer log {self._path} failed: {exc.strerror or exc}; it holds "
                f"every complete line written before ({self._count} by this run)"
            ) from exc
        self._count += 1
        return record

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._file is not None:
            try:
                self._file.flush()
                if self._fsync:
                    os.fsync(self._file.fileno())
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> AnswerLogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self._count} written"
        return f"AnswerLogWriter({str(self._path)!r}, {state})"


# --- reading -----------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def read_answer_log(path: str | os.PathLike[str]) -> Iterator[AnswerRecord]:
    """Iterate over the records of an answer log, in file order.

    Blank lines are skipped. A cut-off last line (no newline, not decodable as JSON) is skipped with
    a logged warning; any other bad line raises AnswerLogError ``"{path}:{line}: {what is wrong}"``.
    A missing file raises :class:`~rsvg_desktop.errors.AnswerLogNotFoundError` at once (also a
    ``FileNotFoundError``); iteration is lazy, so errors in lines come while iterating.
    """
    p = Path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed by the generator
    except FileNotFoundError:
        raise AnswerLogNotFoundError(f"answer log not found: {p}") from None
    except OSError as exc:
        raise AnswerLogError(f"cannot read answer log {p}: {exc.strerror or exc}") from exc
    return _iter_records(p, f)


def _iter_records(p: Path, f: IO[bytes]) -> Iterator[AnswerRecord]:
    warned_schema = False
    with f:
        for lineno, raw in enumerate(f, start=1):
            terminated = raw.endswith(b"\n")
            body = raw[:-1] if terminated else raw
            if body.endswith(b"\r"):
                body = body[:-1]
            if lineno == 1 and body.startswith(b"\xef\xbb\xbf"):
                body = body[3:]
            if not body.strip():
                continue
            try:
                text = body.decode("utf-8")
                obj = json.loads(text, parse_constant=_reject_constant)
            except UnicodeDecodeError as exc:
                if not terminated:
                    log.warning("%s:%d: skipped a cut-off last line (not complete UTF-8)", p, lineno)
                    return
                raise AnswerLogError(f"{p}:{lineno}: not UTF-8 text ({exc.reason})") from None
            except json.JSONDecodeError as exc:
                if not terminated:
                    log.warning("%s:%d: skipped a cut-off last line (%d bytes)", p, lineno, len(body))
                    return
                raise AnswerLogError(f"{p}:{lineno}: not JSON ({exc.msg} at column {exc.colno})") from None
            except ValueError as exc:  # NaN / Infinity, an integer of more than 4300 digits
                raise AnswerLogError(f"{p}:{lineno}: not strict JSON ({exc})") from None
            except RecursionError:
                raise AnswerLogError(f"{p}:{lineno}: JSON nested too deeply to be a record") from None
            if not isinstance(obj, dict):
                raise AnswerLogError(f"{p}:{lineno}: expected a JSON object, got {_json_kind(obj)}")
            try:
                record = AnswerRecord.from_dict(obj)
            except AnswerLogError as exc:
                raise AnswerLogError(f"{p}:{lineno}: {exc}") from None
            if record.schema > SCHEMA_VERSION and not warned_schema:
                log.warning(
                    "%s:%d: schema %d is newer than %d; unknown keys are kept in 'extra'",
                    p,
                    lineno,
                    record.schema,
                    SCHEMA_VERSION,
                )
                warned_schema = True
            yield record


def _json_kind(obj: Any) -> str:
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    return "a number"
