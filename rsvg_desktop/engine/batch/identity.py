"""The identity of a run: which model answers (:func:`model_fingerprint`, read without loading it)
and the deterministic run id of each question (:func:`run_identity`). Re-running the same command finds
the same run ids; changing anything that decides the answers starts new ones."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rsvg_desktop.core.prompt import IMAGE_TOKEN, LLAVA_V1, build_prompt
from rsvg_desktop.engine.batch.config import BatchConfig, ModelIdentity
from rsvg_desktop.engine.batch.store import RunRecord
from rsvg_desktop.engine.inputs import Query, parse_crs
from rsvg_desktop.errors import ConfigError

__all__ = ["PROMPT_VERSION", "model_fingerprint", "run_identity"]

#: Bump when the meaning of a run changes beyond what the prompt text shows (decoding, parsing...).
PROMPT_VERSION = 1


def model_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """A 16-hex fingerprint of a converted model folder, read without loading it.

    From ``rsvg_manifest.json`` (the converter's record of the source files' SHA-256 and the tool
    versions), leaving out when and where it was converted; a folder without a manifest is
    fingerprinted by its ``config.json`` and the names and sizes of its weight files.
    """
    folder = Path(model_dir)
    manifest = folder / "rsvg_manifest.json"
    h = hashlib.sha256()
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{manifest}: unreadable manifest ({exc})") from None
        if isinstance(data, dict):
            data.pop("created", None)
            if isinstance(data.get("source"), dict):
                data["source"].pop("path", None)
        h.update(json.dumps(data, sort_keys=True).encode())
    else:
        config = folder / "config.json"
        if config.is_file():
            h.update(config.read_bytes())
        for p in sorted(folder.glob("*.safetensors")):
            h.update(f"{p.name}:{p.stat().st_size}".encode())
        h.update(str(folder.resolve()).encode())
    return h.hexdigest()[:16]


def nodata_text(nodata: float) -> str:
    """``--nodata`` as the run store keeps it: ``"0"``, ``"-9999"``, ``"0.5"``, ``"nan"``."""
    return repr(nodata).removesuffix(".0") if nodata == nodata else "nan"


def run_identity(query: Query, model: ModelIdentity, config: BatchConfig) -> RunRecord:
    """The run of one question: its deterministic id and everything that went into it."""
    prompt = build_prompt(
        query.task, query.query, classes=query.classes or None, image_token=IMAGE_TOKEN, template=LLAVA_V1
    )
    prompt_sha = hashlib.sha256(prompt.encode()).hexdigest()
    assume = parse_crs(config.assume_crs) if config.assume_crs else None
    key = {
        "model_id": model.model_id,
        "precision": model.precision,
        "task": query.task,
        "query": query.query,
        "classes": list(query.classes),
        "prompt_sha256": prompt_sha,
        "prompt_version": PROMPT_VERSION,
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "target_gsd": config.target_gsd,
        "angle_convention": config.angle_convention,
        "max_new_tokens": config.max_new_tokens,
        "assume_crs": assume,
    }
    if config.nodata is not None:  # only then: runs without --nodata keep their ids
        key["nodata"] = nodata_text(config.nodata)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return RunRecord(
        run_id=f"{query.task}-{digest}",
        task=query.task,
        query=query.query,
        classes=query.classes,
        prompt=prompt,
        prompt_sha256=prompt_sha,
        model=model.model,
        model_id=model.model_id,
        precision=model.precision,
        angle_convention=config.angle_convention,
        tile_size=config.tile_size,
        overlap=config.overlap,
        target_gsd=config.target_gsd,
        max_new_tokens=config.max_new_tokens,
        assume_crs=config.assume_crs,
        random_weights=model.random_weights,
        nodata=None if config.nodata is None else nodata_text(config.nodata),
    )
