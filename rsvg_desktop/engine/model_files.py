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
from dataclasses import dataclass
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
        # The test model names CLIP ViT-L/14-336 like GeoChat's config but carries a tiny tower: the
        # converter's name-vs-tensors warning is expected here and would only alarm the user.
        tower_log = logging.getLogger("rsvg_desktop.core.model.tower")
        level = tower_log.level
        tower_log.setLevel(logging.ERROR)
        try:
            convert_geochat(original, staged)
        finally:
            tower_log.setLevel(level)
        if converted.exists():  # a half-built leftover from a killed process
            shutil.rmtree(converted)
        os.replace(staged, converted)
    return converted


def models_home() -> Path:
    """Where known models are downloaded and converted, ``<data folder>/models/``; the user's own model
    manifests (``*.json``, overriding bundled ones of the same id) live there too."""
    return data_dir() / "models"


@dataclass(frozen=True, slots=True)
class ModelPlace:
    """The folders of one known model under :func:`models_home`."""

    id: str
    root: Path

    @property
    def download(self) -> Path:
        """The original checkpoint as published."""
        return self.root / "download"

    @property
    def clip(self) -> Path:
        """The vision tower the conversion uses (when the manifest names one)."""
        return self.root / "clip"

    @property
    def converted(self) -> Path:
        """The converted model the app loads."""
        return self.root / "converted"


def model_place(model_id: str, root: Path | None = None) -> ModelPlace:
    return ModelPlace(model_id, (root or models_home()) / model_id)
