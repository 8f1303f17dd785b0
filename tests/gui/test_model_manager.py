"""The model manager in the app: download (progress, cancel, resume), convert, verify, use — against a
local stand-in hub serving a tiny checkpoint in GeoChat's published layout (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_server import serve_hub

from rsvg_desktop.core.model.testmodel import write_tiny_geochat
from rsvg_desktop.gui.main_window import MainWindow

REPO = "someone/geochat-tiny"


@pytest.fixture(scope="module")
def tiny_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_geochat(tmp_path_factory.mktemp("hub") / "geochat-tiny")


def _manifest(folder: Path, endpoint: str, original: Path) -> None:
    files = sorted(p.relative_to(original).as_posix() for p in original.rglob("*") if p.is_file())
    manifest = {
        "format": 1,
        "id": "geochat-tiny",
        "name": "Tiny GeoChat (random weights)",
        "license": "test data",
        "hub": {"endpoint": endpoint, "repository": REPO, "revision": "main"},
        "files": [{"name": f} for f in files],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "geochat-tiny.json").write_text(json.dumps(manifest))


def _select(dialog, model_id: str) -> None:
    for i in range(dialog.list.count()):
        if dialog.list.item(i).data(256) == model_id:  # Qt.ItemDataRole.UserRole
            dialog.list.setCurrentRow(i)
            return
    raise AssertionError(f"{model_id} not listed")


def test_download_convert_verify_and_use(
    qtbot, window: MainWindow, tiny_original: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSVG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serve_hub(tiny_original, REPO) as (url, _):
        _manifest(tmp_path / "data" / "models", url, tiny_original)
        window.model_panel.get_button.click()
        dialog = window.models.manager
        assert dialog is not None and dialog.isVisible()
        _select(dialog, "geochat-tiny")
        assert dialog.download_button.isEnabled() and not dialog.convert_button.isEnabled()
        dialog.download_button.click()
        qtbot.waitUntil(lambda: "Downloaded and checked" in dialog.status.text(), timeout=30000)
    assert dialog.convert_button.isEnabled() and not dialog.download_button.isEnabled()
    assert "Checked against: the record of its first download at commit" in dialog.details.text()
    dialog.convert_button.click()
    qtbot.waitUntil(lambda: dialog.status.text().startswith("Converted"), timeout=60000)
    converted = tmp_path / "data" / "models" / "geochat-tiny" / "converted"
    assert (converted / "rsvg_manifest.json").is_file()
    dialog.verify_button.click()
    qtbot.waitUntil(lambda: "Every file matches" in dialog.status.text(), timeout=30000)
    assert dialog.use_button.isEnabled()
    dialog.use_button.click()
    assert window.model_panel.folder_edit.text() == str(converted)
    assert window.model_panel.folder_radio.isChecked()


def test_cancel_mid_download_keeps_the_window_responsive_and_resumes(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSVG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "config.json").write_text("{}")
    (hub / "weights.bin").write_bytes(b"x" * (4 << 20))
    with serve_hub(hub, REPO) as (url, state):
        state.delay_per_chunk = 0.02  # 64 KiB every 20 ms: a slow link
        _manifest(tmp_path / "data" / "models", url, hub)
        dialog = window.models.open_manager()
        _select(dialog, "geochat-tiny")
        dialog.download_button.click()
        qtbot.waitUntil(lambda: "weights.bin" in dialog.status.text(), timeout=10000)
        assert dialog.cancel_button.isEnabled() and not dialog.list.isEnabled()
        dialog.cancel_button.click()
        qtbot.waitUntil(lambda: dialog.status.text().startswith("Cancelled"), timeout=3000)
        folder = tmp_path / "data" / "models" / "geochat-tiny" / "download"
        assert not (folder / "weights.bin").exists() and (folder / "weights.bin.part").exists()
        assert "partly downloaded" in dialog.list.currentItem().text()
        state.delay_per_chunk = 0.0
        state.requests.clear()
        dialog.download_button.click()
        qtbot.waitUntil(lambda: "Downloaded and checked" in dialog.status.text(), timeout=30000)
    assert any(r and r.startswith("bytes=") for _, r in state.requests)  # resumed, not restarted
    assert (folder / "weights.bin").stat().st_size == 4 << 20


def test_offline_is_one_line_pointing_to_the_manual_path(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSVG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dialog = window.models.open_manager()
    _select(dialog, "geochat-7b")
    dialog.download_button.click()
    qtbot.waitUntil(lambda: "offline" in dialog.status.text(), timeout=10000)
    text = dialog.status.text()
    assert "MBZUAI/geochat-7B" in text and "Browse" in text and "\n" not in text
