"""Issue 21 §5 in the real window: deletions can be undone and stay with their run, each task keeps its
own query, a region larger than a tile reaches the model whole, and opening another scene leaves
nothing of the previous one live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.gui.logic.deletions import deletions_path
from rsvg_desktop.gui.main_window import MainWindow
from rsvg_desktop.gui.transcript import KIND_ROLE

pytestmark = pytest.mark.gui


def _open(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.sceneOpened, timeout=20000):
        window.open_scene(path)


def _load(qtbot, window: MainWindow) -> None:
    window.model_panel.test_radio.setChecked(True)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20000):
        window.model_panel.load_button.click()
    qtbot.waitUntil(lambda: window.query_panel.run_button.isEnabled(), timeout=5000)


def _choose_task(window: MainWindow, task: str) -> None:
    combo = window.query_panel.task_combo
    combo.setCurrentIndex(combo.findData(task))


def _run(qtbot, window: MainWindow, task: str, text: str | None = None):
    _choose_task(window, task)
    if text is not None:
        window.query_panel.query_edit.setText(text)
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000) as blocker:
        window.query_panel.run_button.click()
    return blocker.args[0]


def _texts(window: MainWindow, kind: str) -> list[str]:
    model, out = window.transcript_model, []
    for r in range(model.rowCount()):
        run = model.item(r)
        out += [run.child(c).text() for c in range(run.rowCount()) if run.child(c).data(KIND_ROLE) == kind]
    return out


def _delete_rows(qtbot, window: MainWindow, rows: list[int]) -> None:
    """Select rows of the results table with the mouse and press Delete."""
    view = window.results_table.view
    view.clearSelection()
    for n, row in enumerate(rows):
        modifier = Qt.KeyboardModifier.ControlModifier if n else Qt.KeyboardModifier.NoModifier
        view.scrollTo(view.model().index(row, 0), QAbstractItemView.ScrollHint.EnsureVisible)
        rect = view.visualRect(view.model().index(row, 0))
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())
    assert len(window.results_table.selected_keys()) == len(rows)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Delete)


@pytest.fixture
def ready(qtbot, window: MainWindow, sample_scene: Path) -> MainWindow:
    _open(qtbot, window, sample_scene)
    _load(qtbot, window)
    return window


# --- deletions -------------------------------------------------------------------------------------
def test_delete_can_be_undone_and_stays_with_its_run(
    qtbot, ready: MainWindow, settings, fake_factory, fake_test_model
) -> None:
    window, table = ready, ready.results_table
    first = _run(qtbot, window, "refer", "tanks")
    assert window.results.rowCount() == 18 and not table.restore_button.isEnabled()

    # the first delete: Restore is offered at once and the count is right
    _delete_rows(qtbot, window, [0])
    assert table.count_label.text() == "17 detections (before merging), 1 deleted"
    assert table.restore_button.isEnabled()
    _delete_rows(qtbot, window, [0, 3])
    assert table.count_label.text() == "15 detections (before merging), 3 deleted"
    assert len(window.map.detections.items) == 15
    sidecar = deletions_path(first.answer_log)
    kept = json.loads(sidecar.read_text())
    assert len(kept["deleted"]) == 3 and kept["run_id"] == window.results.run_id

    # undone: everything back, on the map too, and nothing left to keep
    table.restore_button.click()
    assert window.results.rowCount() == 18 and len(window.map.detections.items) == 18
    assert table.count_label.text() == "18 detections (before merging)"
    assert not table.restore_button.isEnabled() and not sidecar.exists()

    _delete_rows(qtbot, window, [1, 2])
    deleted = window.results.excluded
    assert len(deleted) == 2 and sidecar.is_file()

    # a new run replaces the table; the curated one stays with its run, and the transcript says where
    _run(qtbot, window, "refer", "cars")
    assert window.results.rowCount() == 18 and not window.results.excluded
    assert any(
        "2 deleted" in t and str(first.answer_log) in t.replace("\u200b", "") for t in _texts(window, "note")
    )
    assert sidecar.is_file()

    # reopening the first run brings it back as it was left
    with qtbot.waitSignal(window.runReopened, timeout=20000):
        window.open_run(first.answer_log)
    assert window.results.excluded == deleted and window.results.rowCount() == 16
    assert all(k not in window.map.detections.items for k in deleted)
    assert table.restore_button.isEnabled() and "2 deleted" in table.count_label.text()
    window.close()

    # ... also in a new session
    second = MainWindow(settings, worker_factory=fake_factory, test_model=fake_test_model)
    qtbot.addWidget(second)
    second.show()
    with qtbot.waitSignal(second.runReopened, timeout=20000):
        second.open_run(first.answer_log)
    assert second.results.excluded == deleted and second.results.rowCount() == 16
    assert len(second.map.detections.items) == 16
    dialog = second.open_export_dialog()
    assert dialog is not None and "2 deleted" in dialog.info_label.text()
    second.results_table.restore_button.click()
    assert second.results.rowCount() == 18 and not sidecar.exists()
    second.close()


# --- the query follows the task ------------------------------------------------------------------------
def test_each_task_keeps_its_own_query(qtbot, ready: MainWindow, fake_workers) -> None:
    window, panel = ready, ready.query_panel
    worker = fake_workers[0]
    _choose_task(window, "refer")
    panel.query_edit.setText("cars")

    # Grounded description: its default question, not "[grounding]cars"
    _choose_task(window, "grounding")
    assert panel.query_edit.text() == "" and "default" in panel.query_edit.placeholderText()
    _run(qtbot, window, "grounding")
    assert worker.configs[-1].task == "grounding" and worker.configs[-1].query == ""
    sent = {r.query for r in read_answer_log(window.runs.run.answer_log)}
    assert sent == {""}

    # classification: the class list alone, not "cars Classes: …"
    _choose_task(window, "classify")
    assert panel.query_edit.text() == ""
    _run(qtbot, window, "classify")
    assert worker.configs[-1].query == "" and worker.configs[-1].classes

    # each task finds its own text again
    _choose_task(window, "vqa")
    panel.query_edit.setText("Is there a harbour?")
    _choose_task(window, "refer")
    assert panel.query_edit.text() == "cars"
    _choose_task(window, "vqa")
    assert panel.query_edit.text() == "Is there a harbour?"
    # a region drawn on the map switches to Describe a region, whose box is empty
    window.map.draw_rectangle("region", (100.0, 100.0, 200.0, 200.0))
    assert panel.task == "identify" and panel.query_edit.text() == ""
    _choose_task(window, "refer")
    assert panel.query_edit.text() == "cars"


# --- a region larger than a tile --------------------------------------------------------------------
def test_a_region_larger_than_a_tile_reaches_the_model_whole(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    worker = fake_workers[0]
    region = (100.0, 120.0, 900.0, 880.0)  # 800 × 760 px of the 1,024 px scene: no 504 px tile holds it
    window.map.draw_rectangle("region", region)
    assert window.query_panel.task == "identify"
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000) as blocker:
        window.query_panel.run_button.click()
    run = blocker.args[0]
    config = worker.configs[-1]
    tile = config.tile
    assert tile is not None and tile.size == 504 and tile.width == tile.height >= 800
    assert tile.col_off <= 100 and tile.col_off + tile.width >= 900
    assert tile.row_off <= 120 and tile.row_off + tile.height >= 880
    # the region on the window's 0–100 grid (written turned a quarter): the whole region, not clamped
    box = config.region
    assert box is not None and box.angle == 90
    assert box.x2 - box.x1 == pytest.approx(760 / tile.width * 100, abs=1.0)
    assert box.y2 - box.y1 == pytest.approx(800 / tile.height * 100, abs=1.0)
    # one model input, read from that window (the fake generator checks it is 504 × 504)
    records = list(read_answer_log(run.answer_log))
    assert len(records) == 1 and records[0].window == tile.window and records[0].tile_size == 504
    notes = [t.replace("\u200b", "") for t in _texts(window, "note")]
    assert any("whole region reaches it" in t and "scaled down" in t for t in notes)
    assert _texts(window, "tile")[-1].endswith("a white storage tank")

    # a follow-up on that answer asks about the same window
    entry = window.transcript_model.tile_entries(run.key)[0]
    window.transcript.select_entry(entry)
    window.transcript.follow_edit.setText("What is next to it?")
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000):
        window.transcript.follow_button.click()
    assert worker.configs[-1].task == "chat" and worker.configs[-1].tile == tile
    assert worker.configs[-1].history[0][1] == "a white storage tank"


# --- another scene -----------------------------------------------------------------------------------
def test_opening_another_scene_leaves_nothing_of_the_previous_one(
    qtbot, ready: MainWindow, fake_workers, data_dir: Path
) -> None:
    window, panel, transcript = ready, ready.query_panel, ready.transcript
    worker = fake_workers[0]
    _run(qtbot, window, "classify")
    window.transcript.select_entry(window.transcript_model.tile_entries()[4])
    assert transcript.follow_button.isEnabled() and window.map.highlighted is not None
    transcript.follow_edit.setText("half-typed question")
    window.map.draw_rectangle("region", (600.0, 600.0, 700.0, 700.0))
    assert "px at" in panel.region_label.text() and panel.progress_label.text()

    other = data_dir / "RGB.byte.tif"
    if not other.is_file():
        pytest.fail(f"test data file {other} not found")
    _open(qtbot, window, other)
    # the transcript and the follow-up target are gone
    assert window.transcript_model.rowCount() == 0 and transcript.current_tile() is None
    assert not transcript.follow_button.isEnabled() and transcript.follow_edit.text() == ""
    assert "Select a tile's answer" in transcript.follow_label.text()
    assert window.map.highlighted is None
    # the drawn region is not reused, the Ask panel shows no old progress
    assert panel.region_label.text().startswith("none") and window.map.region_rect is None
    assert panel.progress_label.text() == "" and panel.progress.format() == "no run yet"
    n = len(worker.configs)
    _choose_task(window, "identify")
    panel.run_button.click()
    assert len(worker.configs) == n and "region" in panel.reason_label.text()

    # a run on the new scene starts a fresh transcript
    _run(qtbot, window, "vqa", "any water?")
    assert window.transcript_model.rowCount() == 1
    assert worker.configs[-1].scene == str(other)
