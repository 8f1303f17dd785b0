"""Finding the model (explicit path, env var, settings, Hugging Face cache) and failing downloads fast."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rsvg_desktop.core.model.locate import (
    ENV_MODEL_DIR,
    GEOCHAT_REPO_ID,
    LocatedModel,
    ModelKind,
    find_model,
)
from rsvg_desktop.errors import ModelNotFoundError


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RSVG_MODEL_DIR, and an empty Hugging Face cache folder (returned)."""
    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    return cache


def _fake_hf_cache(cache: Path, model_dir: Path, repo_id: str = GEOCHAT_REPO_ID) -> Path:
    """Lay ``model_dir`` out as huggingface_hub's cache does: refs/main → snapshots/<commit>/files."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    return snapshot


def test_explicit_path_and_kind(tiny_geochat_dir: Path, tiny_converted_dir: Path, no_env: Path) -> None:
    found = find_model(tiny_geochat_dir, cache_dir=no_env)
    assert found.path == tiny_geochat_dir and found.kind is ModelKind.GEOCHAT_ORIGINAL
    assert found.source == "explicit" and found.needs_conversion
    assert Path(found) == tiny_geochat_dir and os.fspath(found) == str(tiny_geochat_dir)
    conv = find_model(str(tiny_converted_dir), cache_dir=no_env)
    assert conv.kind is ModelKind.LLAVA_CONVERTED and not conv.needs_conversion


def test_explicit_path_is_authoritative(
    tmp_path: Path, tiny_converted_dir: Path, monkeypatch: pytest.MonkeyPatch, no_env: Path
) -> None:
    monkeypatch.setenv(ENV_MODEL_DIR, str(tiny_converted_dir))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        find_model(tmp_path / "nowhere", cache_dir=no_env)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"not-a-model: not a GeoChat model folder \(no config"):
        find_model(tmp_path / "not-a-model", cache_dir=no_env)


def test_env_var_then_settings(
    tiny_geochat_dir: Path, tiny_converted_dir: Path, monkeypatch: pytest.MonkeyPatch, no_env: Path
) -> None:
    found = find_model(settings_dir=tiny_geochat_dir, cache_dir=no_env)
    assert found.source == "settings" and found.kind is ModelKind.GEOCHAT_ORIGINAL
    monkeypatch.setenv(ENV_MODEL_DIR, str(tiny_converted_dir))
    found = find_model(settings_dir=tiny_geochat_dir, cache_dir=no_env)
    assert found.source == "env" and found.kind is ModelKind.LLAVA_CONVERTED


def test_unusable_env_falls_through(
    tmp_path: Path, tiny_geochat_dir: Path, monkeypatch: pytest.MonkeyPatch, no_env: Path
) -> None:
    monkeypatch.setenv(ENV_MODEL_DIR, str(tmp_path / "gone"))
    found = find_model(settings_dir=tiny_geochat_dir, cache_dir=no_env)
    assert found.source == "settings"


def test_hf_cache_offline(tiny_geochat_dir: Path, no_env: Path) -> None:
    snapshot = _fake_hf_cache(no_env, tiny_geochat_dir)
    found = find_model(cache_dir=no_env)
    assert found.source == "hf-cache" and found.kind is ModelKind.GEOCHAT_ORIGINAL
    assert found.path.resolve() == snapshot.resolve()


def test_identified_by_config_not_name(tmp_path: Path, tiny_converted_dir: Path, no_env: Path) -> None:
    misleading = tmp_path / "geochat-7B-original-pytorch_model.bin"
    shutil.copytree(tiny_converted_dir, misleading)
    assert find_model(misleading, cache_dir=no_env).kind is ModelKind.LLAVA_CONVERTED


def test_not_found_lists_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: Path) -> None:
    monkeypatch.setenv(ENV_MODEL_DIR, str(tmp_path / "env-dir"))
    (tmp_path / "settings-dir").mkdir()
    with pytest.raises(ModelNotFoundError) as info:
        find_model(settings_dir=tmp_path / "settings-dir", cache_dir=no_env)
    message = str(info.value)
    assert f"${ENV_MODEL_DIR}: {tmp_path / 'env-dir'} (does not exist)" in message
    assert f"settings: {tmp_path / 'settings-dir'}" in message
    assert f"Hugging Face cache {no_env} for {GEOCHAT_REPO_ID}: not downloaded" in message
    assert isinstance(info.value, FileNotFoundError)


def test_nothing_set(no_env: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=rf"\${ENV_MODEL_DIR}: not set; settings: not set"):
        find_model(cache_dir=no_env)


def test_located_model_is_frozen(tiny_geochat_dir: Path) -> None:
    found = LocatedModel(tiny_geochat_dir, ModelKind.GEOCHAT_ORIGINAL, "explicit")
    with pytest.raises(AttributeError):
        found.path = Path("/")  # type: ignore[misc]
