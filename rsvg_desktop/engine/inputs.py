"""What a batch runs over: the input rasters (files, folders, globs), their georeferencing, and the
questions (one on the command line, or many from a file).

Inputs
    :func:`expand_inputs` turns command-line arguments into a sorted, de-duplicated tuple of absolute
    paths. A file is taken as given (whatever its extension: the user named it). A folder is searched
    recursively for rasters by extension (:data:`RASTER_SUFFIXES`, case-insensitive); hidden files and
    folders (name starting with ``.``) and sidecars (world files, ``.aux.xml``, ``.prj``, ``.ovr``...)
    are left out. An argument with ``*``, ``?`` or ``[`` that is not an existing path is a glob
    (``**`` matches folders recursively); folders it matches are searched like folders. Order: the
    arguments' order, each argument's files sorted by their path components; a file reached twice keeps
    its first place. An argument that matches nothing is a :class:`~rsvg_desktop.errors.ConfigError`
    (a typo should not silently shrink an overnight run). Paths are made absolute without resolving
    symbolic links, so resuming works from any working directory.

Identity (:func:`content_id`, :func:`batch_root`)
    The run store knows an input by its absolute path, by its content and by its path relative to the
    batch root (the deepest folder holding every input). The content id is the file size plus a
    BLAKE2b hash of the whole file when it is small (up to :data:`WHOLE_FILE_LIMIT`), else of its
    first and last 64 KiB and 16 samples of 4 KiB spread evenly between (so any file costs at most
    about 200 KiB of reads). An input not found under its path is looked up by (relative path,
    content id), then by content id alone when exactly one stored input has it and that input's old
    path is gone: a moved or renamed archive resumes instead of starting from zero.

Georeferencing (:func:`georeference`), in this order:
    1. the raster's own CRS as GDAL reads it: GeoTIFF tags, or for PNG/JPEG/TIFF a world file
       (``.pgw``, ``.jgw``, ``.tfw``, ``.wld``...) for the transform plus an ``.aux.xml`` with an SRS;
    2. a world file's transform with an ESRI ``.prj`` sidecar (``name.prj``) holding the CRS (GDAL
       does not read ``.prj`` files for these formats; this module does);
    3. a world file's transform with the CRS given by ``--assume-crs`` (``assume_crs``);
    4. otherwise pixel mode: polygons in the image's pixel coordinates (x right, y down), flagged
       ``pixel_mode`` in the store and kept in layers of their own. A world file without any CRS
       falls here too: a transform alone does not say where on Earth the numbers are.

Queries
    :func:`read_queries` reads a file of questions: one per line (plain text, asked with the default
    task), or JSON Lines objects ``{"task": ..., "query": ..., "classes": [...]}`` (``task`` and
    ``classes`` optional). Lines may mix both forms; blank lines and lines starting with ``#`` are
    skipped. Every question is checked with the prompt builder before anything runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.core.geo.transform import is_identity
from rsvg_desktop.core.prompt import build_query, get_task
from rsvg_desktop.errors import ConfigError

__all__ = [
    "RASTER_SUFFIXES",
    "Georeferencing",
    "Query",
    "batch_root",
    "content_id",
    "expand_inputs",
    "georeference",
    "parse_crs",
    "read_queries",
]

log = logging.getLogger(__name__)

#: File name endings recognised as rasters when a folder or glob is searched (lower case).
RASTER_SUFFIXES: frozenset[str] = frozenset(
    {
        ".tif",
        ".tiff",
        ".gtif",
        ".png",
        ".jpg",
        ".jpeg",
        ".jp2",
        ".j2k",
        ".img",
        ".vrt",
        ".bmp",
        ".webp",
    }
)
_GLOB_CHARS = frozenset("*?[")


def _is_glob(arg: str) -> bool:
    return any(c in _GLOB_CHARS for c in arg)


def _is_raster_name(name: str) -> bool:
    if name.startswith("."):
        return False
    return os.path.splitext(name)[1].lower() in RASTER_SUFFIXES


def _walk(folder: str) -> list[str]:
    """Raster files under ``folder``, recursively; hidden files and folders skipped."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder, onerror=lambda err: log.warning("cannot list %s", err)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in files if _is_raster_name(f))
    return found


def _sort_key(path: str) -> tuple[str, ...]:
    return Path(path).parts


def expand_inputs(args: Sequence[str | os.PathLike[str]]) -> tuple[str, ...]:
    """Absolute paths of the rasters named by ``args`` (files, folders, globs); see the module doc."""
    if not args:
        raise ConfigError("no inputs: give scene files, folders or glob patterns")
    out: dict[str, None] = {}
    for raw in args:
        arg = os.fspath(raw)
        if os.path.isdir(arg):
            files = _walk(arg)
            if not files:
                raise ConfigError(
                    f"{arg}: the folder holds no raster files ({', '.join(sorted(RASTER_SUFFIXES))})"
                )
        elif os.path.exists(arg):
            files = [arg]
        elif _is_glob(arg):
            files = []
            for match in glob.glob(arg, recursive=True):
                if os.path.isdir(match):
                    files.extend(_walk(match))
                elif _is_raster_name(os.path.basename(match)):
                    files.append(match)
            if not files:
                raise ConfigError(f"{arg}: the pattern matches no raster files")
        else:
            raise ConfigError(f"{arg}: no such file or folder")
        for f in sorted((os.path.abspath(f) for f in files), key=_sort_key):
            out.setdefault(f, None)
    return tuple(out)


# --- identity ------------------------------------------------------------------------------------
#: Files up to this size are hashed whole; larger ones by head, tail and evenly spaced samples.
WHOLE_FILE_LIMIT = 256 * 1024
_EDGE = 64 * 1024
_SAMPLE = 4 * 1024
_SAMPLES = 16


def content_id(path: str | os.PathLike[str]) -> str:
    """``"<size>-<hash>"``: the input's identity by content (see the module doc); OSError when the file
    cannot be read."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= WHOLE_FILE_LIMIT:
            h.update(f.read())
        else:
            h.update(f.read(_EDGE))
            span = size - 2 * _EDGE - _SAMPLE
            for k in range(_SAMPLES):
                f.seek(_EDGE + span * k // (_SAMPLES - 1))
                h.update(f.read(_SAMPLE))
            f.seek(size - _EDGE)
            h.update(f.read(_EDGE))
    return f"{size}-{h.hexdigest()}"


def batch_root(paths: Sequence[str]) -> str:
    """The deepest folder that holds every input (absolute paths): relative paths below it survive a
    move of the whole archive."""
    if not paths:
        return ""
    return os.path.commonpath([os.path.dirname(p) for p in paths])


# --- georeferencing ------------------------------------------------------------------------------
def parse_crs(text: str) -> str:
    """The WKT of a CRS given as ``EPSG:32633``, a PROJ string or WKT; ConfigError when unusable."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(text).to_wkt()
    except CRSError as exc:
        raise ConfigError(f"not a usable CRS: {text!r} ({exc})") from None


def _prj_sidecar(path: str) -> str | None:
    """The CRS (WKT) of an ESRI ``.prj`` file next to ``path`` (``name.prj``), if there is a usable one."""
    stem, _ = os.path.splitext(path)
    for candidate in (stem + ".prj", stem + ".PRJ"):
        if os.path.isfile(candidate):
            try:
                text = Path(candidate).read_text(encoding="utf-8", errors="replace").strip()
                return parse_crs(text)
            except (OSError, ConfigError) as exc:
                log.warning("%s: ignoring %s (%s)", path, candidate, exc)
                return None
    return None


@dataclass(frozen=True, slots=True)
class Georeferencing:
    """Where an input's pixels are on the map.

    ``crs_wkt`` ``None`` means pixel mode (polygons in the image's own pixel coordinates).
    ``transform`` is the file's affine (the identity for an image without georeferencing).
    ``source``: ``"file"`` (GDAL read a CRS), ``"prj"`` (world file + ``.prj`` sidecar), ``"assumed"``
    (world file + ``--assume-crs``) or ``"none"`` (pixel mode; ``has_transform`` says whether a world
    file or other geotransform was there but no CRS).
    """

    crs_wkt: str | None
    transform: tuple[float, float, float, float, float, float]
    source: str
    has_transform: bool

    @property
    def pixel_mode(self) -> bool:
        return self.crs_wkt is None


def georeference(info: SceneInfo, assume_crs: str | None = None) -> Georeferencing:
    """The georeferencing of a scene opened with ``pixel_mode=True`` (see the module doc).

    ``assume_crs`` is a WKT (see :func:`parse_crs`) applied to inputs that have a geotransform but no
    CRS and no ``.prj`` sidecar.
    """
    transform = tuple(info.transform)
    has_transform = not is_identity(transform)
    if info.crs_wkt is not None:
        return Georeferencing(info.crs_wkt, transform, "file", True)  # type: ignore[arg-type]
    if has_transform:
        prj = _prj_sidecar(info.path)
        if prj is not None:
            return Georeferencing(prj, transform, "prj", True)  # type: ignore[arg-type]
        if assume_crs is not None:
            return Georeferencing(assume_crs, transform, "assumed", True)  # type: ignore[arg-type]
    return Georeferencing(None, transform, "none", has_transform)  # type: ignore[arg-type]


# --- queries -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Query:
    """One question of a batch: the task, the user's text, and the class list for ``classify``."""

    task: str
    query: str
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        get_task(self.task)  # ConfigError for an unknown task
        build_query(self.task, self.query, classes=self.classes or None)

    def label(self) -> str:
        return f"{self.task}: {self.query}" if self.query else self.task


def _query_from_json(obj: object, default_task: str) -> Query:
    if not isinstance(obj, dict):
        raise ConfigError("a JSON line must be an object with 'query' (and optionally 'task', 'classes')")
    unknown = sorted(set(obj) - {"task", "query", "classes"})
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; use 'task', 'query' and 'classes'")
    task = obj.get("task", default_task)
    query = obj.get("query", "")
    classes = obj.get("classes", ())
    if not isinstance(task, str) or not isinstance(query, str):
        raise ConfigError("'task' and 'query' must be strings")
    if (
        isinstance(classes, str)
        or not isinstance(classes, list | tuple)
        or not all(isinstance(c, str) for c in classes)
    ):
        raise ConfigError("'classes' must be a list of strings")
    return Query(task, query, tuple(classes))


def read_queries(path: str | os.PathLike[str], default_task: str = "refer") -> tuple[Query, ...]:
    """The questions in a queries file (see the module doc); ConfigError naming ``file:line``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{p}: queries file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the queries file ({exc})") from None
    queries: list[Query] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            if stripped.startswith("{"):
                try:
                    obj = json.loads(stripped)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"not JSON ({exc.msg} at column {exc.colno})") from None
                queries.append(_query_from_json(obj, default_task))
            else:
                queries.append(Query(default_task, stripped))
        except ConfigError as exc:
            raise ConfigError(f"{p}:{lineno}: {exc}") from None
    if not queries:
        raise ConfigError(f"{p}: the queries file holds no questions")
    return unique_queries(queries)


def unique_queries(queries: Iterable[Query]) -> tuple[Query, ...]:
    """``queries`` without repeats (first kept; a repeat is logged)."""
    seen: dict[Query, None] = {}
    for q in queries:
        if q in seen:
            log.warning("question asked twice, kept once: %s", q.label())
        seen.setdefault(q, None)
    return tuple(seen)
