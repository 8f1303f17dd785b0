"""Shared model fixtures: a tiny random GeoChat checkpoint (published layout) and its converted copy.

Both are built once per test session; tests must not modify them (copy first: ``shutil.copytree``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rsvg_desktop.core.model.convert import convert_geochat
from rsvg_desktop.core.model.testmodel import write_tiny_clip, write_tiny_geochat


@pytest.fixture(scope="session")
def tiny_geochat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GeoChat checkpoint in the original layout (float16 .bin shards, tokenizer.model)."""
    return write_tiny_geochat(tmp_path_factory.mktemp("tiny") / "geochat-original", seed=0)


@pytest.fixture(scope="session")
def tiny_converted_dir(tiny_geochat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_geochat_dir`` converted to a transformers LlavaForConditionalGeneration folder (float16)."""
    out = tmp_path_factory.mktemp("tiny-converted") / "geochat-llava"
    convert_geochat(tiny_geochat_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP (CLIPModel layout, 336 px) matching the tiny GeoChat's vision dims."""
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip", seed=1)
