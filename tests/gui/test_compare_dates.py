"""Comparison mode end to end with the in-process fake worker: a real pair of dates (a crop of
``cogeo.tif`` and its second date reprojected to UTM and shifted, :mod:`change_scenes`), the engine's
real comparison job with a stand-in detector that finds the painted squares."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest
from change_scenes import make_pair
from test_main_window import load_model, open_sample, transcript_texts

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.engine.change import date_answer_log
from rsvg_desktop.gui.main_window import MainWindow

pytestmark = pytest.mark.gui

CHANGE_LAYERS = {"appeared", "disappeared", "persisting", "unknown_area", "before", "after", "run"}


@pytest.fixture(scope="module")
def pair(data_dir, tmp_path_factory) -> tuple[Path, Path]:
    return make_pair(data_dir, tmp_path_factory.mktemp("pair"))


@pytest.fixture
def comparing(qtbot, window: MainWindow, pair) -> MainWindow:
    """The before scene open, the model loaded, comparison mode with the after scene."""
    open_sample(qtbot, window, pair[0])
    load_model(qtbot, window)
    with qtbot.waitSignal(window.compare.modeChanged, timeout=20000) as blocker:
        window.compare.compare_with(pair[1])
    assert blocker.args == [True]
    return window


def ask_both(qtbot, window: MainWindow, text: str = "car", *, timeout: int = 60000) -> object:
    panel = window.query_panel
    panel.set_task("refer")
    panel.query_edit.setText(text)
    with qtbot.waitSignal(window.compare.changeShown, timeout=timeout) as blocker:
        panel.run_button.click()
    return blocker.args[0]


def test_compare_is_offered_once_a_scene_is_open(qtbot, window: MainWindow, pair) -> None:
    actions = window.compare.actions
    assert not actions.compare.isEnabled() and not actions.stop.isEnabled()
    open_sample(qtbot, window, pair[0])
    assert actions.compare.isEnabled()
    assert not actions.date_menu.isEnabled() and not actions.export.isEnabled()


def test_enter_switch_dates_keep_the_view_and_stop(qtbot, comparing: MainWindow, pair) -> None:
    window, compare = comparing, comparing.compare
    before_info = window.info
    assert window.map.raster.info is before_info
    assert compare.indicator.isVisible()
    assert (
        "before.tif (before)" in compare.indicator.text() and "after.tif (after)" in compare.indicator.text()
    )
    titles = [window.transcript_model.item(r).text() for r in range(window.transcript_model.rowCount())]
    assert titles[-1] == "Comparison 1: before.tif ↔ after.tif"
    window.map.zoom_by(2.0)
    scale, centre = window.map.current_scale(), window.map.visible_rect_f().center()

    compare.actions.switch.trigger()  # D
    after_info = window.map.raster.info
    assert after_info is not None and after_info.warped and Path(after_info.path) == pair[1]
    assert (after_info.width, after_info.height, after_info.transform) == (
        before_info.width,
        before_info.height,
        before_info.transform,
    )
    assert compare.actions.date["after"].isChecked() and "showing After" in compare.indicator.text()
    assert window.map.current_scale() == pytest.approx(scale)
    assert (window.map.visible_rect_f().center() - centre).manhattanLength() < 1.0
    # the warped date's display tiles are read through the same warp
    with window.map.raster._pool.scene() as scene:  # type: ignore[union-attr]
        assert scene.info.warped and scene.info.transform == before_info.transform

    compare.actions.date["before"].trigger()
    assert window.map.raster.info is before_info

    compare.actions.switch.trigger()
    with qtbot.waitSignal(compare.modeChanged) as blocker:
        compare.actions.stop.trigger()
    assert blocker.args == [False]
    assert window.map.raster.info is before_info and not compare.indicator.isVisible()
    assert window.info is before_info


def test_refused_when_the_scenes_do_not_overlap(qtbot, window: MainWindow, pair, data_dir) -> None:
    open_sample(qtbot, window, pair[0])
    info = window.info
    with qtbot.waitSignal(window.compare.refused, timeout=20000) as blocker:
        window.compare.compare_with(data_dir / "RGB.byte.tif")  # the Bahamas: far from Korea
    assert "do not overlap" in blocker.args[0] and "\n" not in blocker.args[0]
    assert not window.compare.active and window.info is info and window.map.raster.info is info


def test_refused_when_one_scene_has_no_crs(qtbot, window: MainWindow, pair, data_dir) -> None:
    open_sample(qtbot, window, pair[0])
    with qtbot.waitSignal(window.compare.refused, timeout=20000) as blocker:
        window.compare.compare_with(data_dir / "float_nan.tif")
    assert "has none" in blocker.args[0]
    assert not window.compare.active


def test_a_comparison_shows_the_change_layers_counts_and_exports(
    qtbot, comparing: MainWindow, fake_workers, tmp_path: Path
) -> None:
    window, compare = comparing, comparing.compare
    finished = ask_both(qtbot, window)
    (config,) = fake_workers[0].change_configs
    assert config.before == window.info.path and config.grid == "before" and config.query == "car"
    output = Path(finished.output)
    assert output.parent == Path(window.settings.runs_dir) / "before" and output.name.endswith("-change.gpkg")
    assert not window.query_panel.cancel_button.isEnabled() and window.query_panel.run_button.isEnabled()

    panel = compare.panel
    assert panel.isVisible()
    assert (panel.count("appeared"), panel.count("disappeared"), panel.count("persisting")) == (1, 1, 3)
    assert compare.layer.parts == {"appeared": 1, "disappeared": 1, "persisting": 3, "before": 4, "after": 4}
    for name in ("appeared", "disappeared", "persisting"):
        assert compare.layer.is_visible(name)
    # the objects of the date shown, and only those
    assert compare.layer.is_visible("before") and not compare.layer.is_visible("after")
    compare.actions.switch.trigger()
    assert compare.layer.is_visible("after") and not compare.layer.is_visible("before")
    panel.dates_box.setChecked(False)
    assert not compare.layer.is_visible("after") and not compare.layer.is_visible("before")
    compare.actions.switch.trigger()
    assert not compare.layer.is_visible("before")
    panel.boxes["disappeared"].setChecked(False)
    assert (
        not compare.layer.is_visible("disappeared") and not compare.actions.layers["disappeared"].isChecked()
    )
    compare.actions.layers["disappeared"].setChecked(True)
    assert compare.layer.is_visible("disappeared") and panel.boxes["disappeared"].isChecked()
    assert any("Appeared 1, disappeared 1, persisting 3" in t for t in transcript_texts(window))

    assert compare.actions.export.isEnabled() and panel.export_button.isEnabled()
    exported = compare.export(tmp_path / "exported")
    assert exported == tmp_path / "exported.gpkg"
    assert set(pyogrio.list_layers(exported)[:, 0]) >= CHANGE_LAYERS
    assert len(pyogrio.read_dataframe(exported, layer="appeared")) == 1


def test_other_tasks_ask_the_open_scene_and_show_it(qtbot, comparing: MainWindow, fake_workers) -> None:
    from test_main_window import run_query

    comparing.compare.show_date("after")
    run = run_query(qtbot, comparing, "classify")
    assert run.config.scene == comparing.info.path and not fake_workers[0].change_configs
    assert any("the before date) only" in t for t in transcript_texts(comparing))
    assert comparing.compare.shown == "before" and comparing.map.raster.info is comparing.info


def test_cancel_keeps_the_answers_and_a_rerun_resumes(qtbot, comparing: MainWindow, fake_workers) -> None:
    window, compare, worker = comparing, comparing.compare, fake_workers[0]
    panel = window.query_panel
    panel.set_task("refer")
    panel.query_edit.setText("car")
    worker.tile_seconds = 0.3
    with qtbot.waitSignal(compare.runningChanged, timeout=5000):
        panel.run_button.click()
    assert panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.progress_label.text().startswith("Before 0/"), timeout=10000)
    assert "After 0/" in panel.progress_label.text() and window.progress_label.text().startswith("Before")
    assert panel.progress.format().endswith(" questions")  # both dates' tiles and the verification's
    before_log = date_answer_log(worker.change_configs[0].output, "before")
    qtbot.waitUntil(
        lambda: before_log.is_file() and len(list(read_answer_log(before_log))) >= 1, timeout=20000
    )
    with qtbot.waitSignal(compare.runningChanged, timeout=5000) as blocker:
        panel.cancel_button.click()
    assert blocker.args == [False] and compare.finished is None
    kept = len(list(read_answer_log(before_log)))
    assert kept >= 1
    assert any("Cancelled" in t for t in transcript_texts(window))

    worker.tile_seconds = 0.01
    ask_both(qtbot, window)
    first, second = worker.change_configs
    assert second.output == first.output  # the same comparison again goes on from its answer logs
    assert any("resuming" in t for t in transcript_texts(window))
    assert len(list(read_answer_log(before_log))) >= kept
    assert compare.panel.count("appeared") == 1


def test_the_worker_dying_mid_comparison_is_reported(qtbot, comparing: MainWindow, fake_workers) -> None:
    window, compare, worker = comparing, comparing.compare, fake_workers[0]
    worker.hold = True  # the first tile "takes forever"
    panel = window.query_panel
    panel.set_task("refer")
    panel.query_edit.setText("car")
    with qtbot.waitSignal(compare.runningChanged, timeout=5000):
        panel.run_button.click()
    with qtbot.waitSignal(compare.runningChanged, timeout=10000) as blocker:
        worker.kill()
    assert blocker.args == [False] and not compare.running and compare.finished is None
    assert any("model worker stopped" in t for t in transcript_texts(window, "error"))
    assert compare.active and compare.actions.stop.isEnabled()


def test_a_new_nodata_value_keeps_comparison_mode(qtbot, comparing: MainWindow) -> None:
    """The open scene read again (another nodata value): the before date follows, the date shown stays."""
    window, compare = comparing, comparing.compare
    compare.show_date("after")
    old = window.info
    with qtbot.waitSignal(window.loader.reread_done, timeout=20000):
        window.scene_nodata.apply("0")
    assert window.info is not old and compare.dates.before.info is window.info
    assert compare.shown == "after" and window.map.raster.info is compare.dates.after.info
    compare.show_date("before")
    assert window.map.raster.info is window.info


def test_during_a_comparison_no_other_scene_opens_and_quitting_asks(
    qtbot, comparing: MainWindow, fake_workers, sample_scene: Path
) -> None:
    window, compare, worker = comparing, comparing.compare, fake_workers[0]
    worker.hold = True
    panel = window.query_panel
    panel.set_task("refer")
    panel.query_edit.setText("car")
    with qtbot.waitSignal(compare.runningChanged, timeout=5000):
        panel.run_button.click()
    info = window.info
    window.open_scene(sample_scene)
    assert window.info is info and compare.active
    assert not compare.actions.stop.isEnabled() and not compare.actions.compare.isEnabled()
    questions: list[str] = []
    window.ask_question = lambda title, text: questions.append(title) is not None  # "No"
    window.close()
    assert questions == ["Quit during a run?"] and window.isVisible()
    worker.hold = False
    with qtbot.waitSignal(compare.changeShown, timeout=60000):
        pass
    window.ask_question = lambda title, text: True
