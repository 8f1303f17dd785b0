"""Finding the GeoChat model on this machine, and downloading it.

:func:`find_model` looks, in order, at: the path given explicitly, the ``RSVG_MODEL_DIR`` environment
variable, the path the application's settings hold (the GUI/CLI reads QSettings and passes it in: no Qt
here), and the Hugging Face cache (offline, for ``MBZUAI/geochat-7B``). Each candidate is identified from its
``config.json`` (:func:`~rsvg_desktop.core.model.checkpoint.identify`), never from its name.

Downloading is :mod:`rsvg_desktop.core.model.fetch`, driven by the manifests in ``models/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rsvg_desktop.core.model.checkpoint import ModelKind, identify
from rsvg_desktop.errors import CheckpointError, ModelNotFoundError

log = logging.getLogger(__name__)

__all__ = [
    "ENV_MODEL_DIR",
    "GEOCHAT_FILES",
    "GEOCHAT_REPO_ID",
    "LocatedModel",
    "ModelKind",
    "find_model",
]

GEOCHAT_REPO_ID = "MBZUAI/geochat-7B"
ENV_MODEL_DIR = "RSVG_MODEL_DIR"
#: The files of the published checkpoint (nothing else in the repository is needed).
GEOCHAT_FILES = (
    "config.json",
    "generation_config.json",
    "pytorch_model.bin.index.json",
    "pytorch_model-*-of-*.bin",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class LocatedModel:
    """A model folder that was found, what it holds, and where the search found it.

    It is path-like (``os.fspath(found)``, ``Path(found)``, ``open_*(found)`` all work).
    """

    path: Path
    kind: ModelKind
    source: str
    """``"explicit"``, ``"env"``, ``"settings"`` or ``"hf-cache"``."""

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def needs_conversion(self) -> bool:
        return self.kind is ModelKind.GEOCHAT_ORIGINAL


def _check(path: Path) -> tuple[ModelKind | None, str]:
    """The kind of model at ``path``, or ``None`` and why not."""
    if not path.exists():
        return None, "does not exist"
    if not path.is_dir():
        return None, "is not a folder"
    if not (path / "config.json").is_file():
        return None, "no config.json"
    try:
        return identify(path), ""
    except CheckpointError as exc:
        return None, str(exc).removeprefix(f"{path / 'config.json'}: ")


def _hf_cache_snapshot(repo_id: str, cache_dir: Path | None) -> Path | None:
    """The newest cached snapshot of ``repo_id`` with a ``config.json``, looked up offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir)
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        log.debug("no cached snapshot of %s: %s", repo_id, exc)
        return None
    return Path(path)


def find_model(
    explicit: str | os.PathLike[str] | None = None,
    *,
    settings_dir: str | os.PathLike[str] | None = None,
    repo_id: str = GEOCHAT_REPO_ID,
    cache_dir: str | os.PathLike[str] | None = None,
    downloaded: Sequence[Path] = (),
) -> LocatedModel:
    """Find the model: ``explicit``, then ``$RSVG_MODEL_DIR``, then ``settings_dir``, then the folders
    of models downloaded by name (``downloaded``: converted folders first), then the HF cache.

    An explicit path is authoritative: if it is not a model folder, the search stops there. Other places
    that are set but unusable are skipped (and logged). ``cache_dir`` overrides the Hugging Face cache
    location (default: huggingface_hub's, e.g. ``$HF_HOME/hub``). Returns a :class:`LocatedModel` (path-like)
    telling whether the folder is an original GeoChat checkpoint or a converted Llava one. Raises
    :class:`ModelNotFoundError` listing every place searched and why each was rejected.
    """
    searched: list[str] = []

    if explicit is not None:
        path = Path(explicit).expanduser()
        kind, why = _check(path)
        if kind is not None:
            return LocatedModel(path, kind, "explicit")
        raise ModelNotFoundError(f"{path}: not a GeoChat model folder ({why})")

    candidates: list[tuple[str, str, Path | None]] = []
    env = os.environ.get(ENV_MODEL_DIR)
    candidates.append(("env", f"${ENV_MODEL_DIR}", Path(env).expanduser() if env else None))
    candidates.append(("settings", "settings", Path(settings_dir).expanduser() if settings_dir else None))
    candidates += [("downloaded", "downloaded", d) for d in downloaded if d.exists()]
    for source, label, candidate in candidates:
        if candidate is None:
            searched.append(f"{label}: not set")
            continue
        kind, why = _check(candidate)
        if kind is not None:
            log.info("model found via %s: %s (%s)", label, candidate, kind.value)
            return LocatedModel(candidate, kind, source)
        log.warning("%s points to %s, which is not a usable model folder: %s", label, candidate, why)
        searched.append(f"{label}: {candidate} ({why})")

    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    snapshot = _hf_cache_snapshot(repo_id, cache)
    where = f"Hugging Face cache{f' {cache}' if cache else ''} for {repo_id}"
    if snapshot is None:
        searched.append(f"{where}: not downloaded")
    else:
        kind, why = _check(snapshot)
        if kind is not None:
            return LocatedModel(snapshot, kind, "hf-cache")
        searched.append(f"{where}: {snapshot} ({why})")
    raise ModelNotFoundError(
        "no GeoChat model found; searched: "
        + "; ".join(searched)
        + f". Download it with `rsvg model download` (or the app's model manager), or set ${ENV_MODEL_DIR}."
    )
