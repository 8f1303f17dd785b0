"""What the model panel says about a model folder and a loaded model (Qt-free, no torch).

:func:`check_model_folder` reads only ``config.json`` (never the folder's name) to tell the analyst
whether a folder can be loaded, needs converting first, or is something else. :func:`describe_loaded`
turns the worker's ``ModelLoaded.info`` into the lines the panel shows; anything from a random-weights
model says so.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GUIDANCE",
    "FolderCheck",
    "LoadedSummary",
    "check_model_folder",
    "describe_loaded",
    "format_bytes",
    "process_rss_bytes",
]

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_LABEL = "test model (random weights)"

GUIDANCE = (
    "<b>No GeoChat model is set.</b> <i>Get a model…</i> downloads GeoChat-7B (≈14 GB, "
    "<code>MBZUAI/geochat-7B</code>), converts and checks it here. Offline, copy a converted "
    "folder to this machine and choose it with <i>Browse…</i>. "
    "Or try the <b>test model (random weights)</b> to see the flow work: its answers are meaningless."
)


@dataclass(frozen=True, slots=True)
class FolderCheck:
    """``ok``: loadable as is; ``message``: one line for the panel; ``needs_conversion``: an original
    GeoChat checkpoint; ``random_weights``: a test model."""

    ok: bool
    message: str
    needs_conversion: bool = False
    random_weights: bool = False


def check_model_folder(path: str | os.PathLike[str] | None) -> FolderCheck:
    """Whether ``path`` holds a model the worker can load (see module doc)."""
    if not path:
        return FolderCheck(False, "No model folder chosen.")
    folder = Path(path)
    if not folder.is_dir():
        return FolderCheck(False, f"{folder} does not exist or is not a folder.")
    config_path = folder / "config.json"
    if not config_path.is_file():
        return FolderCheck(False, f"{folder} has no config.json: not a model folder.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return FolderCheck(False, f"{config_path} cannot be read: {exc}")
    if not isinstance(config, dict):
        return FolderCheck(False, f"{config_path} is not a JSON object.")
    random_weights = bool(config.get("rsvg_random_weights") or config.get("random_weights"))
    manifest = folder / "rsvg_manifest.json"
    if manifest.is_file():
        try:
            text = manifest.read_text(encoding="utf-8")
            random_weights = random_weights or '"random_weights": true' in text
        except OSError:
            log.debug("cannot read %s", manifest)
    archs = config.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    model_type = config.get("model_type")
    tag = " — RANDOM WEIGHTS (test model)" if random_weights else ""
    if model_type == "llava" or "LlavaForConditionalGeneration" in archs:
        return FolderCheck(True, f"Converted GeoChat (LLaVA layout){tag}.", random_weights=random_weights)
    if model_type == "geochat" or "GeoChatLlamaForCausalLM" in archs:
        hint = f"`rsvg model convert {folder} -o CONVERTED_DIR`, then choose CONVERTED_DIR."
        return FolderCheck(
            False,
            "This is the original GeoChat checkpoint: convert it once with " + hint + tag,
            needs_conversion=True,
            random_weights=random_weights,
        )
    return FolderCheck(False, f"config.json describes model_type {model_type!r}, not GeoChat.")


def format_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def process_rss_bytes(pid: int | None) -> int | None:
    """Resident memory of a process (Linux ``/proc``), or None where unknown."""
    if not pid:
        return None
    try:
        with open(f"/proc/{int(pid)}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True, slots=True)
class LoadedSummary:
    headline: str  # e.g. "NF4 on NVIDIA H100 80GB HBM3"
    details: tuple[str, ...]
    random_weights: bool
    device_name: str


def describe_loaded(info: Any) -> LoadedSummary:
    """Lines for a ``ModelLoaded.info`` (any object with the contract's attributes)."""
    precision = str(getattr(info, "precision", "?"))
    precision = getattr(precision, "value", precision)
    device_name = str(getattr(info, "device_name", "") or getattr(info, "device", "?"))
    dtype = getattr(info, "dtype", None)
    random_weights = bool(getattr(info, "random_weights", False))
    headline = f"{str(precision).upper()} on {device_name}"
    if random_weights:
        headline += " — RANDOM WEIGHTS"
    details = []
    if dtype:
        details.append(f"compute dtype {str(dtype).removeprefix('torch.')}")
    param_bytes = getattr(info, "param_bytes", None)
    if param_bytes:
        details.append(f"weights {format_bytes(param_bytes)}")
    seconds = getattr(info, "load_seconds", None)
    if seconds is not None:
        details.append(f"loaded in {float(seconds):.1f} s")
    notes = tuple(str(n) for n in (getattr(info, "notes", ()) or ()))
    return LoadedSummary(headline, (*details, *notes), random_weights, device_name)
