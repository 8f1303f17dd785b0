"""Where and how export files are written: target checks, atomic replacement, Shapefile sets.

Writing is atomic: the file is written under a temporary name in the destination folder and renamed
over the target (``os.replace``) only when complete, so a failure leaves neither half a file nor a
damaged old one. A Shapefile set is written in a temporary folder and its files moved one by one, the
``.shp`` last. Existing outputs (for a Shapefile: any of its sidecars) are refused unless
``overwrite=True`` (:class:`OutputExistsError`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd

from rsvg_desktop.core.geo.export.formats import FORMAT_EXTS, ExportFormat, check_shapefile_path
from rsvg_desktop.errors import ExportError, OutputExistsError, RsvgError

__all__ = [
    "SHAPEFILE_SIDECARS",
    "ShapefileWriter",
    "check_output",
    "quiet_pixel_mode",
    "replace_atomically",
    "shapefile_set",
    "write_output",
    "write_shapefile_set",
]

log = logging.getLogger(__name__)

#: Files that belong to a Shapefile ``name.shp`` (checked before writing, replaced or removed on overwrite).
SHAPEFILE_SIDECARS: tuple[str, ...] = (
    ".shp",
    ".shx",
    ".dbf",
    ".prj",
    ".cpg",
    ".qml",
    ".qix",
    ".sbn",
    ".sbx",
    ".shp.xml",
    ".qmd",
    ".fix",
)

#: Writes a Shapefile set ``(tmpdir, stem, frame, path)``: ``tmpdir/stem.shp`` and its sidecars.
ShapefileWriter = Callable[[Path, str, gpd.GeoDataFrame, Path], None]


@contextmanager
def quiet_pixel_mode() -> Iterator[None]:
    """pyogrio warns about a missing CRS; pixel mode is deliberate and logged once by us."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
        yield


def _temp_name(path: Path, suffix: str) -> Path:
    """A hidden, unique sibling of ``path`` to write into before the rename."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _remove_quietly(*paths: Path) -> None:
    """Remove temporary files and their sqlite side files, logging (not raising) what cannot be."""
    for p in paths:
        for q in (
            p,
            p.with_name(p.name + "-journal"),
            p.with_name(p.name + "-wal"),
            p.with_name(p.name + "-shm"),
        ):
            if not os.path.lexists(q):
                continue  # never made (e.g. the folder is read-only): nothing to say
            try:
                q.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - best effort clean-up
                log.warning("could not remove temporary file %s: %s", q, exc)


def _check_target(path: Path, overwrite: bool, extra: Sequence[Path] = ()) -> None:
    """Refuse a target that cannot be written (a folder, a missing or read-only folder) and, unless
    ``overwrite``, one that exists (``path`` or any of ``extra``)."""
    if path.is_dir():
        raise ExportError(f"{path} is a folder, not a file name")
    if not path.parent.is_dir():
        raise ExportError(f"the folder of {path} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {path}: its folder {path.parent} is not writable")
    if overwrite:
        return
    for p in (path, *extra):
        if p.exists() or p.is_symlink():
            raise OutputExistsError(f"{p} exists (use --overwrite to replace it)")


def shapefile_set(path: Path) -> list[Path]:
    """Every file of the Shapefile ``path`` (``name.shp`` first, then its sidecars)."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return [path.with_name(stem + ext) for ext in SHAPEFILE_SIDECARS]


def replace_atomically(path: Path, suffix: str, overwrite: bool, write: Callable[[Path], None]) -> None:
    """Write a one-file format to a temporary sibling with ``write(tmp)``, then rename it over ``path``:
    a failure never leaves half a file, and an existing file stays intact until the new one is complete."""
    tmp = _temp_name(path, suffix)
    try:
        write(tmp)
        if not overwrite and path.exists():
            raise OutputExistsError(f"{path} exists (use --overwrite to replace it)")
        os.replace(tmp, path)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, RsvgError) or not isinstance(exc, Exception):
            raise
        raise ExportError(f"writing {path} failed: {exc}") from exc


def write_shapefile_set(
    path: Path, frame: gpd.GeoDataFrame, overwrite: bool, write: ShapefileWriter
) -> tuple[Path, ...]:
    """Write a Shapefile set with ``write`` in a temporary folder beside ``path``, then move it into
    place (the ``.shp`` last, stale sidecars of a replaced set removed); returns the files written."""
    stem = path.name[: -len(path.suffix)]
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc} in {path.parent}") from exc
    try:
        try:
            write(tmpdir, stem, frame, path)
        except Exception as exc:
            if isinstance(exc, RsvgError):
                raise
            raise ExportError(f"writing {path} failed: {exc}") from exc
        written = sorted(tmpdir.iterdir(), key=lambda p: p.suffix.lower() == ".shp")  # .shp last
        _move_set_into_place(path, written, overwrite)
        return tuple(path.with_name(p.name) for p in written)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _move_set_into_place(path: Path, written: list[Path], overwrite: bool) -> None:
    """Move the ``written`` files (``.shp`` last) beside ``path``, removing the files of the replaced
    set that the new one does not have."""
    names = {p.name for p in written}
    if not overwrite:
        for p in shapefile_set(path):
            if p.exists():
                raise OutputExistsError(f"{p} exists (use --overwrite to replace it)")
    try:
        for p in written[:-1]:
            os.replace(p, path.with_name(p.name))
        for old in shapefile_set(path):  # stale sidecars of the replaced set (old index, old .prj)
            if old.name not in names and old.exists():
                old.unlink()
        os.replace(written[-1], path.with_name(written[-1].name))
    except OSError as exc:
        raise ExportError(f"moving the Shapefile set into place as {path} failed: {exc}") from exc


def check_output(path: Path, kind: ExportFormat, overwrite: bool) -> None:
    """Before anything is computed: a Shapefile path ends in ``.shp``, and the target (for a Shapefile,
    every file of its set) can be written and, unless ``overwrite``, does not exist."""
    check_shapefile_path(path, kind)
    _check_target(path, overwrite, shapefile_set(path)[1:] if kind is ExportFormat.SHAPEFILE else [])


def write_output(
    path: Path,
    kind: ExportFormat,
    overwrite: bool,
    *,
    write_file: Callable[[Path], None],
    shapefile: tuple[gpd.GeoDataFrame, ShapefileWriter],
) -> tuple[Path, ...]:
    """Write ``path`` atomically: a GeoPackage or GeoJSON with ``write_file(tmp)``, a Shapefile set with
    ``shapefile = (frame, writer)``. Returns every file written."""
    if kind is ExportFormat.SHAPEFILE:
        frame, writer = shapefile
        return write_shapefile_set(path, frame, overwrite, writer)
    replace_atomically(path, FORMAT_EXTS[kind], overwrite, write_file)
    return (path,)
