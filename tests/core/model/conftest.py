"""Shared model fixtures: a tiny random GeoChat checkpoint (published layout) and its converted copy.

Both are copies of the machine's cached build (``tests/model_cache.py``), made once per test session;
tests must not modify them (copy first: ``shutil.copytree``). ``test_convert.py`` converts afresh
wherever the conversion itself is under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from model_cache import copy_of

from rsvg_desktop.core.model.testmodel import write_tiny_clip


@pytest.fixture(scope="session")
def tiny_geochat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GeoChat checkpoint in the original layout (float16 .bin shards, tokenizer.model)."""
    return copy_of("original", tmp_path_factory.mktemp("tiny") / "geochat-original")


@pytest.fixture(scope="session")
def tiny_converted_dir(tiny_geochat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_geochat_dir`` converted to a transformers LlavaForConditionalGeneration folder (float16):
    the cached conversion of that very checkpoint."""
    return copy_of("converted", tmp_path_factory.mktemp("tiny-converted") / "geochat-llava")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP (CLIPModel layout, 336 px) matching the tiny GeoChat's vision dims."""
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip", seed=1)
