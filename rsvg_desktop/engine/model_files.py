"""Model housekeeping the app and CLI share: the data folder and the built-in test model.

The test model is a tiny GeoChat checkpoint with RANDOM WEIGHTS, generated here and converted with the
real conversion code, so the whole flow (load at every precision, batched generation, polygons,
exports) can be seen working without the 14 GB download. Its answers are noise; everything that shows
it says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

TEST_MODEL_LABEL = "test model (random weights)"


def data_dir() -> Path:
    """Where rsvg-desktop keeps its own files: ``$RSVG_DATA_DIR``, else ``$XDG_DATA_HOME/rsvg-desktop``
    (``~/.local/share/rsvg-desktop``)."""
    env = os.environ.get("RSVG_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rsvg-desktop"


def ensure_test_model(root: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The converted tiny random-weights model, built once under ``root`` (default: the data folder)
    and reused. Building takes a few seconds on a CPU."""
    from rsvg_desktop.core.model.convert import convert_geochat
    from rsvg_desktop.core.model.testmodel import write_tiny_geochat

    base = Path(root) if root is not None else data_dir() / "test-model"
    converted = base / f"tiny-geochat-random-seed{seed}-llava"
    if (converted / "rsvg_manifest.json").is_file():
        return converted
    base.mkdir(parents=True, exist_ok=True)
    log.info("building the %s under %s", TEST_MODEL_LABEL, converted)
    with tempfile.TemporaryDirectory(prefix=".tiny-geochat.", dir=base) as tmp:
        original = write_tiny_geochat(Path(tmp) / "original", seed=seed)
        staged = Path(tmp) / "converted"
        convert_geochat(original, staged)
        if converted.exists():  # a half-built leftover from a killed process
            shutil.rmtree(converted)
        os.replace(staged, converted)
    return converted
