"""One tiny random-weights GeoChat per machine, shared by every test run.

Building it (writing the checkpoint, then the real conversion, tokenizer included) takes 15–20 s on these
2-core machines; a test run used to build it three times. The pair (original checkpoint, its conversion)
is built once into ``$RSVG_TEST_CACHE`` (default ``~/.cache/rsvg-desktop-tests``), keyed by the source of
the code that generates and converts it and by the versions of the libraries that write it, and each test
session copies it (a few MB) so that no test can change the cached copy. Changing the generator or the
converter, or upgrading transformers, builds a fresh one; older entries are removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import rsvg_desktop

ROOT = Path(rsvg_desktop.__file__).resolve().parent
PREFIX = "tiny-geochat-seed0-"
CONVERTED_NAME = "tiny-geochat-random-seed0-llava"  # the name ensure_test_model gives it
_LIBRARIES = ("torch", "transformers", "tokenizers", "sentencepiece", "safetensors", "numpy")


def cache_root() -> Path:
    env = os.environ.get("RSVG_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rsvg-desktop-tests"


def generator_key() -> str:
    """What the cached model depends on: the model code (checkpoint writer, converter, tower and
    tokenizer handling; calibration and downloads excluded) and the library versions."""
    digest = hashlib.sha256(rsvg_desktop.__version__.encode())
    model = ROOT / "core" / "model"
    for path in sorted(model.rglob("*.py")):
        rel = path.relative_to(model).as_posix()
        if rel.startswith("calibrate/") or rel in ("fetch.py", "hub_client.py"):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    for name in _LIBRARIES:
        digest.update(f"{name}=={metadata.version(name)}\n".encode())
    return digest.hexdigest()[:16]


def _build(into: Path) -> None:
    from rsvg_desktop.core.model.convert import convert_geochat
    from rsvg_desktop.core.model.testmodel import write_tiny_geochat

    original = write_tiny_geochat(into / "original", seed=0)
    tower_log = logging.getLogger("rsvg_desktop.core.model.tower")
    level = tower_log.level
    tower_log.setLevel(logging.ERROR)  # the tiny tower's name-vs-tensors warning is expected
    try:
        convert_geochat(original, into / CONVERTED_NAME)
    finally:
        tower_log.setLevel(level)


def cached_tiny_model() -> Path:
    """The cache entry holding ``original/`` and ``tiny-geochat-random-seed0-llava/``, built if missing.
    Safe when several test processes race (the first complete build wins)."""
    root = cache_root()
    entry = root / f"{PREFIX}{generator_key()}"
    if (entry / CONVERTED_NAME / "rsvg_manifest.json").is_file():
        return entry
    root.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        _build(staged)
        try:
            staged.rename(entry)
        except OSError:  # another process finished first, or a broken leftover
            if not (entry / CONVERTED_NAME / "rsvg_manifest.json").is_file():
                shutil.rmtree(entry, ignore_errors=True)
                staged.rename(entry)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    for old in root.glob(f"{PREFIX}*"):
        if old != entry:
            shutil.rmtree(old, ignore_errors=True)
    return entry


def copy_of(part: str, dest: Path) -> Path:
    """A private copy of the cached ``original`` or converted model at ``dest``."""
    source = cached_tiny_model() / (CONVERTED_NAME if part == "converted" else "original")
    shutil.copytree(source, dest)
    return dest
