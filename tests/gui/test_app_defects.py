"""Issue 16 and issue 10 §4 in the real window: pixel-mode orientation, north-up rotated scenes, exports
whose format follows the name, the grid settings carried to exports, small windows, wording, the
Results unit, small scenes, the runs folder and vector overlays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from PySide6.QtCore import QPointF, QSettings

from rsvg_desktop.core.answers import AnswerRecord, read_answer_log
from rsvg_desktop.core.geo.transform import pixel_to_map
from rsvg_desktop.gui.logic.geometry import view_orientation
from rsvg_desktop.gui.logic.messages import app_message
from rsvg_desktop.gui.main_window import MainWindow
from rsvg_desktop.gui.settings import Settings

pytestmark = pytest.mark.gui


def _data(data_dir: Path, name: str) -> Path:
    """A file of the shared test data; a missing one fails the test (it must not pass or skip)."""
    path = data_dir / name
    if not path.is_file():
        pytest.fail(f"test data file {path} not found")
    return path


def _open(qtbot, window: MainWindow, path: Path, *, pixel_mode: bool = False) -> None:
    with qtbot.waitSignal(window.sceneOpened, timeout=20000):
        window.open_scene(path, pixel_mode=pixel_mode)


def _screen_value(window: MainWindow, x: float, y: float) -> int:
    """Grey level drawn on screen at scene pixel position (x, y)."""
    image = window.map.viewport().grab().toImage()
    return image.pixelColor(window.map.mapFromScene(QPointF(x, y))).red()


def _load(qtbot, window: MainWindow) -> None:
    window.model_panel.test_radio.setChecked(True)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20000):
        window.model_panel.load_button.click()
    qtbot.waitUntil(lambda: window.query_panel.run_button.isEnabled(), timeout=5000)


def _run(qtbot, window: MainWindow, task: str, text: str) -> object:
    window.query_panel.set_task(task)
    window.query_panel.query_edit.setText(text)
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000) as blocker:
        window.query_panel.run_button.click()
    return blocker.args[0]


# --- one pixel convention ----------------------------------------------------------------------------
def test_orientation_convention() -> None:
    assert view_orientation((1.0, 0.0, 0.0, 0.0, -1.0, 0.0), True) == (1.0, 0.0, 0.0, 1.0)
    # a positive-y transform (float_nan.tif) in pixel mode keeps row 0 at the top
    assert view_orientation((100.0, 0.0, 0.0, 0.0, 100.0, 0.0), False) == (1.0, 0.0, 0.0, 1.0)
    # ... but a georeferenced south-up scene is turned north-up (mirrored rows)
    assert view_orientation((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), True) == (1.0, 0.0, 0.0, -1.0)


def test_pixel_mode_row0_is_drawn_on_top_and_exported_on_row0(
    qtbot, window: MainWindow, fake_workers, tmp_path: Path, data_dir: Path
) -> None:
    path = _data(data_dir, "float_nan.tif")
    _open(qtbot, window, path, pixel_mode=True)
    info = window.info
    assert info is not None and info.crs_wkt is None
    qtbot.wait(100)
    # file row 0 is (1.41, 1.23, NaN), row 1 (0.32, -0.23, -1.88): row 0 is brighter, and on top
    top, below = window.map.mapFromScene(QPointF(0.5, 0.5)), window.map.mapFromScene(QPointF(0.5, 1.5))
    assert top.y() < below.y()
    assert _screen_value(window, 0.5, 0.5) > _screen_value(window, 0.5, 1.5)
    assert window.formatter is not None and window.formatter.format(0.5, 0.5).startswith("px 0, 0")

    # a scope drawn on row 0 stays on row 0
    window.map.draw_rectangle("scope", (0.0, 0.0, 3.0, 1.0))
    assert window.map.scope_rect == (0.0, 0.0, 3.0, 1.0)

    _load(qtbot, window)
    fake_workers[0].answer = lambda config, tile: "{<0><0><1><1>|<0>}"
    _run(qtbot, window, "refer", "spot")
    assert window.results.rowCount() == 1
    x0, y0, _x1, y1 = window.results.rows[0].pixel_bounds()
    assert y0 == pytest.approx(0.0) and y1 > y0
    assert window.map.mapFromScene(QPointF(x0, y0)).y() <= top.y()

    dialog = window.open_export_dialog()
    assert dialog is not None
    out = tmp_path / "row0.gpkg"
    dialog.set_path(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=20000):
        dialog.start_export()
    frame = pyogrio.read_dataframe(out, layer="detections")
    _minx, miny, _maxx, maxy = frame.geometry.iloc[0].bounds
    assert miny == pytest.approx(0.0) and maxy == pytest.approx(y1)


def test_rotated_scene_is_drawn_north_up(qtbot, window: MainWindow, data_dir: Path) -> None:
    path = _data(data_dir, "rotated.tif")
    _open(qtbot, window, path, pixel_mode=True)
    info = window.info
    assert info is not None
    qtbot.wait(100)
    view = window.map
    origin = view.mapFromScene(QPointF(0, 0))
    mx0, my0 = pixel_to_map(info.transform, 0, 0)
    scale = view.current_scale() / np.sqrt(
        abs(info.transform[0] * info.transform[4] - info.transform[1] * info.transform[3])
    )
    for px, py in ((10, 0), (0, 15), (10, 15), (4.5, 7.5)):
        screen = view.mapFromScene(QPointF(px, py))
        mx, my = pixel_to_map(info.transform, px, py)
        # east is right, north is up, one scale
        assert screen.x() - origin.x() == pytest.approx(float(mx - mx0) * scale, abs=2)
        assert screen.y() - origin.y() == pytest.approx(-float(my - my0) * scale, abs=2)
    # the polygon of a detection on pixel (9, 0) lands on that pixel's colour on screen (values 0..149)
    import shapely

    key = (0, 0, 0)
    window.results.reset(crs_wkt=None, transform=info.transform, answer_log=None, run_id=None)
    poly = shapely.box(9, 0, 10, 1)
    window.map.detections.add(key, np.asarray(poly.exterior.coords), "")
    centre = window.map.detections.items[key].polygon().boundingRect().center()
    assert centre.x() == pytest.approx(9.5) and centre.y() == pytest.approx(0.5)
    window.map.set_layer_visible("detections", False)
    window.map.set_layer_visible("grid", False)
    qtbot.wait(50)
    # pixel (9, 0) (value 9) is darker than pixel (0, 14) (value 140), wherever they are drawn
    assert _screen_value(window, 9.5, 0.5) < _screen_value(window, 0.5, 14.5)


# --- exports ----------------------------------------------------------------------------------------
def test_export_dialog_follows_the_extension(qtbot, window: MainWindow, fake_workers, tmp_path: Path) -> None:
    _open(qtbot, window, Path(__file__).resolve().parents[2] / "resources" / "sample_scene.tif")
    _load(qtbot, window)
    _run(qtbot, window, "refer", "tanks")
    dialog = window.open_export_dialog()
    assert dialog is not None
    dialog.set_format("geojson")
    out = tmp_path / "out.shp"
    dialog.path_edit.setText(str(out))  # typed over the GeoJSON name
    with qtbot.waitSignal(dialog.exported, timeout=20000):
        dialog.start_export()
    assert dialog.fmt == "shp"
    assert not out.read_bytes().lstrip().startswith(b"{")  # a real shapefile, not GeoJSON text
    assert pyogrio.read_info(out)["driver"] == "ESRI Shapefile"


def test_app_export_records_the_grid_the_run_used(qtbot, window: MainWindow, tmp_path: Path) -> None:
    _open(qtbot, window, Path(__file__).resolve().parents[2] / "resources" / "sample_scene.tif")
    tile_size, overlap = window.query_panel.grid()
    assert overlap > 0
    _load(qtbot, window)
    run = _run(qtbot, window, "refer", "tanks")
    records = list(read_answer_log(run.answer_log))
    assert records and all(r.overlap == overlap for r in records)
    assert all(r.max_nodata_fraction is not None for r in records)
    for name in ("re.gpkg", "re.geojson"):
        dialog = window.open_export_dialog()
        assert dialog is not None
        dialog.set_path(str(tmp_path / name))
        with qtbot.waitSignal(dialog.exported, timeout=20000):
            dialog.start_export()
        dialog.close()
    table = pyogrio.read_dataframe(tmp_path / "re.gpkg", layer="run", read_geometry=False)
    assert int(table.overlap[0]) == overlap and int(table.tile_size[0]) == tile_size
    foreign = json.loads((tmp_path / "re.geojson").read_text())
    assert [r["overlap"] for r in foreign["rsvg_runs"]] == [overlap]


def test_cli_export_refuses_a_format_the_name_contradicts(tmp_path: Path, capsys) -> None:
    from rsvg_desktop.cli.main import main

    log = tmp_path / "a.answers.jsonl"
    rec = AnswerRecord(
        scene="x.tif",
        col_off=0,
        row_off=0,
        width=100,
        height=100,
        task="refer",
        query="car",
        answer="{<10><10><20><20>|<0>}",
        pixel_mode=True,
        overlap=64,
    )
    log.write_text(json.dumps(rec.to_dict()) + "\n")
    code = main(["export", str(log), "-o", str(tmp_path / "out.shp"), "--format", "geojson"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "out.shp" in err[0] and "Shapefile" in err[0]
    assert not (tmp_path / "out.shp").exists()


def test_grid_settings_reach_the_log_and_the_export(qtbot, tmp_path: Path) -> None:
    from rsvg_desktop.engine.results import export_answer_log

    log = tmp_path / "a.answers.jsonl"
    rec = AnswerRecord(
        scene="x.tif",
        col_off=0,
        row_off=0,
        width=100,
        height=100,
        task="refer",
        query="car",
        answer="{<10><10><20><20>|<0>}",
        pixel_mode=True,
        transform=(1, 0, 0, 0, 1, 0),
        overlap=64,
        target_gsd=0.5,
        max_nodata_fraction=0.9,
    )
    log.write_text(json.dumps(rec.to_dict()) + "\n")
    back = next(iter(read_answer_log(log)))
    assert (back.overlap, back.target_gsd, back.max_nodata_fraction) == (64, 0.5, 0.9)
    out = tmp_path / "out.gpkg"
    export_answer_log(log, out)
    run = pyogrio.read_dataframe(out, layer="run", read_geometry=False)
    assert int(run.overlap[0]) == 64 and float(run.target_gsd[0]) == 0.5
    assert float(run.max_nodata_fraction[0]) == 0.9


# --- layout, wording, units, small scenes, runs folder ------------------------------------------------
@pytest.mark.parametrize("size", [(1366, 768), (800, 500)])
def test_small_windows_show_map_ask_and_run(qtbot, window: MainWindow, size: tuple[int, int]) -> None:
    window.resize(*size)
    qtbot.waitUntil(lambda: window.width() == size[0], timeout=2000)
    qtbot.wait(50)
    assert window.map.height() >= 200 and window.map.width() >= 300
    button = window.query_panel.run_button
    assert button.isVisible() and not button.visibleRegion().isEmpty()
    assert window.results_dock.height() < window.map.height()


def test_messages_speak_of_the_app() -> None:
    text = app_message(
        "/d/a.tif: no CRS; open it in pixel mode (--pixel-mode, or pixel_mode=True) to work in pixels"
    )
    assert "--" not in text and "=True" not in text and text.startswith("/d/a.tif")
    assert app_message("/o.gpkg exists (use --overwrite, or overwrite=True, to replace it)") == (
        "/o.gpkg exists (choose to replace it)"
    )
    assert "previous exception" not in app_message("/c.tif: read failed. See previous exception for details.")


def test_results_unit_follows_the_open_scene(qtbot, window: MainWindow, data_dir: Path) -> None:
    from PySide6.QtCore import Qt

    def header() -> str:
        names = [str(window.results.headerData(i, Qt.Orientation.Horizontal)) for i in range(5)]
        return next(n for n in names if n.startswith("Area"))

    assert header() == "Area"
    with qtbot.waitSignal(window.sceneFailed, timeout=20000):
        window.open_scene(_data(data_dir, "all-nodata.tif"))
    assert header() == "Area"
    _open(qtbot, window, Path(__file__).resolve().parents[2] / "resources" / "sample_scene.tif")
    assert header() == "Area (m²)"


def test_small_scene_padding_and_fit(qtbot, window: MainWindow, data_dir: Path) -> None:
    _open(qtbot, window, _data(data_dir, "float_nan.tif"), pixel_mode=True)
    grid = window.map.grid
    assert grid.padding is not None
    assert all(item.rect().right() <= 3 and item.rect().bottom() <= 2 for item in grid._items.values())
    centre = window.map.mapToScene(window.map.viewport().rect().center())
    assert centre.x() == pytest.approx(1.5, abs=0.2) and centre.y() == pytest.approx(1.0, abs=0.2)
    assert window.map.current_scale() > 50  # 3 × 2 px fill the view


def test_runs_folder_beside_the_settings_file(tmp_path: Path) -> None:
    settings = Settings(QSettings(str(tmp_path / "profile" / "s.ini"), QSettings.Format.IniFormat))
    assert Path(settings.runs_dir) == (tmp_path / "profile" / "runs").resolve()
    settings.runs_dir = str(tmp_path / "elsewhere")
    assert settings.runs_dir == str(tmp_path / "elsewhere")


# --- vector overlays ----------------------------------------------------------------------------------
def test_vector_overlay_is_reprojected_and_toggled(qtbot, window: MainWindow, data_dir: Path) -> None:
    scene = _data(data_dir, "spacenet_uint16.tif")
    vector = _data(data_dir, "spacenet_uint16_buildings.geojson")
    _open(qtbot, window, scene)
    with qtbot.waitSignal(window.overlayAdded, timeout=20000) as blocker:
        window.add_overlay(vector)
    name = blocker.args[0]
    item = window.map.overlays.overlays[name]
    box = item.path().boundingRect()
    info = window.info
    assert info is not None
    # the 43 footprints lie on the scene's pixels (reprojected from lon/lat when the file is RFC 7946)
    assert box.left() >= 0 and box.right() <= info.width and box.top() >= 0 and box.bottom() <= info.height
    assert item.path().elementCount() > 43 * 4
    window.overlay_actions[name].setChecked(False)
    assert not item.isVisible()
    window.layer_actions["overlays"].setChecked(False)
    assert not window.map.layer_visible("overlays")
