"""Checks before work: one set of checks every command (and the app's worker) runs before anything loads
or is written, so a command that cannot succeed stops at once and leaves nothing behind that would
block the corrected command.

What is checked, in the order a command needs it:

- numbers (:func:`check_run_numbers`, :func:`check_grid`; both on a job's config:
  :func:`check_run_settings`): tile size (at least :data:`MIN_TILE_SIZE`), overlap, nodata fraction,
  target GSD, tiles per batch, answer tokens;
- output names and places (:func:`check_output_file`, :func:`check_output_folder`,
  :func:`check_writable_file`): a file name (not ``.``, not a folder), a format the name and the scene
  allow (GeoJSON needs a CRS: no pixel mode), a folder that exists or can be made and can be written,
  no existing output unless overwriting;
- the machine (:func:`check_machine`): the device exists, the precision runs on it, ``--compiled`` has
  a CUDA GPU.

Every refusal is an :class:`~rsvg_desktop.errors.RsvgError` whose message names the file or the option
and says what to do: the command line prints it as one line and exits with status 2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from rsvg_desktop.core.geo.export import ExportFormat
from rsvg_desktop.core.geo.export.formats import format_for_path
from rsvg_desktop.errors import ConfigError, ExportError, OutputExistsError, PrecisionError

__all__ = [
    "MIN_TILE_SIZE",
    "check_grid",
    "check_machine",
    "check_output_file",
    "check_output_folder",
    "check_output_name",
    "check_run_numbers",
    "check_run_settings",
    "check_writable_file",
]

#: The smallest tile side the commands accept. The vision tower sees 14 px patches of a tile scaled to
#: 336 px: a tile below 32 px holds too little to ask about, and laying a grid of 1 px tiles over a
#: scene plans for minutes (one tile per pixel).
MIN_TILE_SIZE = 32


# --- numbers ----------------------------------------------------------------------------------
def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    return value


def check_grid(
    *,
    tile_size: int,
    overlap: int,
    target_gsd: float | None = None,
    max_nodata_fraction: float = 1.0,
) -> None:
    """ConfigError for a tile grid that cannot be laid (or would be absurdly fine)."""
    tile_size = _integer("--tile-size", tile_size)
    overlap = _integer("--overlap", overlap)
    if tile_size < MIN_TILE_SIZE:
        raise ConfigError(f"--tile-size must be at least {MIN_TILE_SIZE} pixels, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ConfigError(f"--overlap must be from 0 to --tile-size - 1 ({tile_size - 1}), got {overlap}")
    if target_gsd is not None and not target_gsd > 0:
        raise ConfigError(f"--target-gsd must be positive, got {target_gsd}")
    if not 0.0 < max_nodata_fraction <= 1.0:
        raise ConfigError(f"--max-nodata must be in (0, 1], got {max_nodata_fraction}")


def check_run_numbers(*, batch_size: int | None, max_new_tokens: int) -> None:
    """ConfigError for tiles per batch or answer tokens below 1."""
    if batch_size is not None and _integer("--batch-size", batch_size) < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if _integer("--max-new-tokens", max_new_tokens) < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")


class RunSettings(Protocol):
    """The grid and run numbers of a job's config (``RunConfig``, ``BatchConfig``, ``ChangeConfig``)."""

    @property
    def tile_size(self) -> int: ...
    @property
    def overlap(self) -> int: ...
    @property
    def target_gsd(self) -> float | None: ...
    @property
    def max_nodata_fraction(self) -> float: ...
    @property
    def batch_size(self) -> int | None: ...
    @property
    def max_new_tokens(self) -> int: ...


def check_run_settings(config: RunSettings) -> None:
    """:func:`check_grid` and :func:`check_run_numbers` on a job's config."""
    check_grid(
        tile_size=config.tile_size,
        overlap=config.overlap,
        target_gsd=config.target_gsd,
        max_nodata_fraction=config.max_nodata_fraction,
    )
    check_run_numbers(batch_size=config.batch_size, max_new_tokens=config.max_new_tokens)


# --- outputs ----------------------------------------------------------------------------------
def check_output_name(path: str | os.PathLike[str]) -> None:
    """A path that names a file: not ``.``, ``..``, ``/`` or empty, not an existing folder."""
    text = os.fspath(path)
    if Path(text).name in ("", ".", "..") or text.endswith(os.sep):
        raise ConfigError(f"{text!r} is not a file name: give the output a name such as out.gpkg")
    if Path(text).is_dir():
        raise ExportError(f"{text} is a folder, not a file name: give the output a file name inside it")


def _existing_ancestor(folder: Path) -> Path:
    """``folder`` or the nearest folder above it that exists (what a ``mkdir -p`` would write into)."""
    here = folder.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def _check_folder_writable(folder: Path, what: Path) -> None:
    """ExportError unless ``folder`` exists, or could be made, and can be written."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise ExportError(f"cannot write {what}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {what}: its folder {base} is not writable")


def check_output_file(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    fmt: str | None = None,
    pixel_mode: bool = False,
    also: Iterable[Path] = (),
) -> ExportFormat:
    """The export format of ``path``; refused (before any work) when it is no file name, a folder, of
    no known format, GeoJSON for a scene in pixel coordinates, in a folder that cannot be written, or
    when it (or a file of ``also``, such as its answer log) exists and ``overwrite`` is not set."""
    out = Path(path)
    check_output_name(out)
    kind = format_for_path(out, fmt)
    if kind is ExportFormat.GEOJSON and pixel_mode:
        raise ExportError(
            f"cannot write {out}: GeoJSON (RFC 7946) needs WGS 84 longitude/latitude and this scene is "
            "in pixel coordinates (no CRS); name the output .gpkg or .shp instead"
        )
    _check_folder_writable(out.parent, out)
    if not overwrite:
        for p in (out, *also):
            if p.exists() or p.is_symlink():
                raise OutputExistsError(f"{p} exists (use --overwrite to replace the run's outputs)")
    return kind


def check_writable_file(path: str | os.PathLike[str], what: str) -> None:
    """A file the command writes at the end (``--summary``): a file name in an existing, writable folder."""
    out = Path(path)
    if out.name in ("", ".", "..") or out.is_dir():
        raise ConfigError(f"{what} {os.fspath(path)}: a file name is needed, not a folder")
    if not out.absolute().parent.is_dir():
        raise ConfigError(f"{what} {os.fspath(path)}: its folder does not exist")
    if not os.access(out.absolute().parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {os.fspath(path)}: its folder is not writable")


def check_output_folder(path: str | os.PathLike[str]) -> None:
    """An output folder (``bench`` reports): a folder, or a name one can be made under, that is writable."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file: the output must be a folder")
    target = out if out.is_dir() else out.parent
    _check_folder_writable(target, out)


# --- the machine ------------------------------------------------------------------------------
@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Fallback notes of a trial plan stay unsaid: the real load says them once."""
    lg = logging.getLogger(logger)
    disabled, lg.disabled = lg.disabled, True
    try:
        yield
    finally:
        lg.disabled = disabled


def check_machine(
    device: str, precision: str, *, compiled: bool = False, group_size: int | None = None
) -> None:
    """PrecisionError when ``device`` does not exist here or ``precision`` cannot run on it (fp8 needs a
    recent GPU; bitsandbytes or torchao missing; a bad int4 group size), ConfigError when ``compiled``
    is asked for without a CUDA GPU. Imports torch; reads no weights."""
    from rsvg_desktop.core.model.precision import plan_precision
    from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE

    size = DEFAULT_INT4_GROUP_SIZE if group_size is None else group_size
    with _quiet("rsvg_desktop.core.model.precision"):
        plan = plan_precision(precision, device, group_size=size)
    if compiled and not plan.device.is_cuda:
        raise ConfigError(
            f"the compiled generation path needs a CUDA GPU, not {plan.device.name}: run without --compiled"
        )


def check_device_name(device: str) -> None:
    """PrecisionError for a device name no machine has (``gpu``); torch is not imported."""
    key = device.strip().lower()
    if key in ("auto", "cpu", "cuda") or (key.startswith("cuda:") and key[5:].isdigit()):
        return
    raise PrecisionError(f"unknown device {device!r}; valid devices: auto, cpu, cuda, cuda:N")
