"""Which ``rsvg`` engine to run, with which environment and which arguments.

Plain Python, no QGIS: the plugin talks to the engine only through its command line (arguments in,
JSON events and files out, docs/progress.md), and the tests call these functions without QGIS."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Where to get the engine, said in the one line a missing engine gives.
INSTALL_HINT = (
    "rsvg engine not found: install rsvg-desktop (https://github.com/rsvg-desktop/rsvg-desktop: "
    "`make venv` gives .venv/bin/rsvg, `make package` gives dist/rsvg-desktop/rsvg) and put `rsvg` on "
    "PATH, or set its path in Processing ▸ Options ▸ Providers ▸ rsvg ▸ rsvg engine"
)

#: Tasks the algorithms offer (the engine's names), the first the engine's default.
TASKS = ("refer", "grounding", "classify", "vqa")
#: The tasks ``rsvg change`` asks of both dates (those that find objects).
CHANGE_TASKS = ("refer", "grounding")
#: The engine's precisions (``rsvg detect --help``), its default first.
PRECISIONS = ("nf4", "int8", "bf16", "fp16", "fp32", "fp4", "int8wo", "int4wo", "fp8", "q4cal")
#: Output formats the engine writes, by extension.
VECTOR_EXTENSIONS = ("gpkg", "geojson", "shp")

# What QGIS puts in its own environment that must not reach the engine's Python, GDAL or PROJ.
_DROPPED_NAMES = frozenset(
    {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "QT_PLUGIN_PATH"}
)
_DROPPED_PREFIXES = ("GDAL_", "PROJ_", "QGIS_", "OGR_", "CPL_", "DYLD_", "GRASS_", "OSGEO4W_", "SAGA_")
_QGIS_LIBRARY_DIR = re.compile(r"qgis|grass|osgeo4w", re.IGNORECASE)


class EngineNotFoundError(Exception):
    """No ``rsvg`` engine where the plugin looks; the message is one line saying how to install it."""


def installed_app_candidates(
    platform: str = sys.platform, home: Path | None = None, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """Where the packaged app's ``rsvg`` lives once installed (packaging/README.md), most likely first."""
    home = Path.home() if home is None else home
    environ = os.environ if environ is None else environ
    if platform.startswith("win"):
        roots = [environ.get(name) for name in ("ProgramW6432", "ProgramFiles", "LOCALAPPDATA")]
        found = [Path(root) / "rsvg-desktop" / "rsvg.exe" for root in roots if root]
        return [*found, Path(r"C:\Program Files\rsvg-desktop\rsvg.exe")]
    if platform == "darwin":
        return [
            Path("/Applications/rsvg-desktop.app/Contents/MacOS/rsvg"),
            home / "Applications/rsvg-desktop.app/Contents/MacOS/rsvg",
        ]
    return [
        Path("/opt/rsvg-desktop/rsvg"),
        home / ".local/share/rsvg-desktop/rsvg",
        home / ".local/bin/rsvg",
    ]


def _is_program(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_engine(
    setting: str | None,
    *,
    which: Callable[[str], str | None] = shutil.which,
    candidates: Iterable[Path] | None = None,
) -> str:
    """The engine to run: the provider setting, else ``rsvg`` on PATH, else the installed app's.

    A setting that names no program is an error (it is what the user asked for), not a reason to run
    some other engine."""
    if setting and setting.strip():
        path = Path(setting.strip()).expanduser()
        if path.is_dir():
            path = path / ("rsvg.exe" if sys.platform.startswith("win") else "rsvg")
        if not _is_program(path):
            raise EngineNotFoundError(
                f"the rsvg engine set in Processing ▸ Options ▸ Providers ▸ rsvg ({setting}) is not a program"
            )
        return str(path)
    on_path = which("rsvg")
    if on_path:
        return on_path
    for path in installed_app_candidates() if candidates is None else candidates:
        if _is_program(path):
            return str(path)
    raise EngineNotFoundError(INSTALL_HINT)


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The engine's environment: QGIS's own, less what would make the engine's Python, GDAL or PROJ load
    QGIS's (``PYTHONPATH``, ``PYTHONHOME``, ``GDAL_*``, ``PROJ_*``, ``QGIS_*``, …, and QGIS's entries in
    ``LD_LIBRARY_PATH``); ``PATH``, ``HOME``, the locale and ``RSVG_*`` are kept. Output is UTF-8."""
    env = {
        name: value
        for name, value in environ.items()
        if name not in _DROPPED_NAMES and not name.startswith(_DROPPED_PREFIXES)
    }
    if "LD_LIBRARY_PATH" in env:
        kept = [p for p in env["LD_LIBRARY_PATH"].split(os.pathsep) if p and not _QGIS_LIBRARY_DIR.search(p)]
        if kept:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(kept)
        else:
            del env["LD_LIBRARY_PATH"]
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def local_file(provider: str, source: str) -> str | None:
    """The local file a raster layer reads (``None`` for WMS, XYZ, a database or a URL): GDAL layers
    whose source, less any ``|option``, is a file on disk."""
    if provider != "gdal":
        return None
    path = source.split("|", 1)[0]
    if re.match(r"^[a-z][a-z0-9+.-]*://", path, re.IGNORECASE) or path.startswith("/vsi"):
        return None
    return path if os.path.isfile(path) else None


@dataclass(frozen=True)
class Box:
    """A rectangle in map units (the layer's CRS): ``xmin, ymin, xmax, ymax``."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


def pixel_window(extent: Box, layer: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixel window ``(col, row, width, height)`` of a north-up raster of ``width`` x ``height``
    pixels covering ``layer`` that ``extent`` meets (cut to the raster). Raises ``ValueError`` when the
    extent misses the raster."""
    px, py = (layer.xmax - layer.xmin) / width, (layer.ymax - layer.ymin) / height
    c0 = max(0, int((extent.xmin - layer.xmin) // px))
    c1 = min(width, int(-((layer.xmin - extent.xmax) // px)))  # ceil
    r0 = max(0, int((layer.ymax - extent.ymax) // py))
    r1 = min(height, int(-((extent.ymin - layer.ymax) // py)))
    if c1 <= c0 or r1 <= r0:
        raise ValueError("the extent does not meet the layer")
    return c0, r0, c1 - c0, r1 - r0


def _model_options(model: str | None, test_model: bool, precision: str, device: str) -> list[str]:
    args = ["--smoke"] if test_model else (["--model", model] if model else [])
    return [*args, "--precision", precision, "--device", device or "auto"]


def _grid_options(tile_size: int, overlap: int) -> list[str]:
    return ["--tile-size", str(tile_size), "--overlap", str(overlap)]


def _classes_option(classes: str | None) -> list[str]:
    return ["--classes", classes] if classes and classes.strip() else []


def detect_args(
    scene: str,
    output: str,
    *,
    query: str,
    task: str = "refer",
    classes: str | None = None,
    model: str | None = None,
    test_model: bool = False,
    precision: str = "nf4",
    device: str = "auto",
    tile_size: int = 504,
    overlap: int = 64,
    window: Sequence[int] | None = None,
) -> list[str]:
    """``rsvg detect``'s arguments (after the program) for one scene into ``output`` (replaced)."""
    args = ["detect", scene, "--query", query, "--task", task, *_classes_option(classes)]
    args += _model_options(model, test_model, precision, device)
    args += _grid_options(tile_size, overlap)
    if window is not None:
        args += ["--window", *(str(int(v)) for v in window)]
    return [*args, "-o", output, "--overwrite", "--progress", "json"]


def batch_args(
    inputs: Sequence[str],
    output: str,
    *,
    query: str,
    task: str = "refer",
    classes: str | None = None,
    model: str | None = None,
    test_model: bool = False,
    precision: str = "nf4",
    device: str = "auto",
) -> list[str]:
    """``rsvg batch``'s arguments: never ``--overwrite``, so the same run resumes in the same store."""
    args = ["batch", *inputs, "--query", query, "--task", task, *_classes_option(classes)]
    args += _model_options(model, test_model, precision, device)
    return [*args, "-o", output, "--progress", "json"]


def change_args(
    before: str,
    after: str,
    output: str,
    *,
    query: str,
    task: str = "refer",
    model: str | None = None,
    test_model: bool = False,
    precision: str = "nf4",
    device: str = "auto",
    grid: str = "before",
    match_iou: float = 0.3,
    verify: bool = True,
    tile_size: int = 504,
    overlap: int = 64,
    replace: bool = False,
) -> list[str]:
    """``rsvg change``'s arguments for two dates into the change GeoPackage ``output``. ``--overwrite``
    only with ``replace`` (the output exists: a finished comparison is replaced), so that a comparison
    stopped before its output was written resumes from its answer logs."""
    args = ["change", before, after, "--query", query, "--task", task]
    args += _model_options(model, test_model, precision, device)
    args += ["--grid", grid, "--match-iou", repr(float(match_iou))]
    args += _grid_options(tile_size, overlap)
    if not verify:
        args.append("--no-verify")
    args += ["-o", output, *(["--overwrite"] if replace else []), "--progress", "json"]
    return args


def export_args(answer_log: str, output: str) -> list[str]:
    return ["export", answer_log, "-o", output, "--overwrite", "--progress", "json"]


def tiles_args(scene: str, output: str, *, tile_size: int = 504, overlap: int = 64) -> list[str]:
    args = ["tiles", scene, *_grid_options(tile_size, overlap)]
    return [*args, "-o", output, "--overwrite", "--progress", "json"]


def answer_log_of(output: str) -> str:
    """The answer log the engine writes next to an output: ``out.gpkg`` → ``out.answers.jsonl``."""
    path = Path(output)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return str(path.with_name(f"{stem}.answers.jsonl"))


def has_vector_extension(path: str) -> bool:
    return Path(path).suffix.lower().lstrip(".") in VECTOR_EXTENSIONS
