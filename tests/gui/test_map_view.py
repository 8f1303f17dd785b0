"""The map view: the raster pyramid reads only what is visible, navigation, drawing, selection, layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PySide6.QtCore import QPoint, QRectF, Qt
from rasterio import Affine

from rsvg_desktop.core.geo.grid import plan_tiles
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.gui.map_layers import phrase_color
from rsvg_desktop.gui.map_view import MapView
from rsvg_desktop.gui.raster_layer import CACHE_TILES, TILE_PX, rgba_image
from rsvg_desktop.gui.scene_loader import OpenedScene, _open

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6000 × 4000 px RGB GeoTIFF (tiled, compressed: a few hundred kB), nodata in one corner."""
    path = tmp_path_factory.mktemp("big") / "big.tif"
    width, height = 6000, 4000
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4600000.0),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=0,
    )
    with rasterio.open(path, "w", **profile) as ds:
        for row in range(0, height, 512):
            h = min(512, height - row)
            ys, xs = np.mgrid[row : row + h, 0:width]
            band = ((xs // 37 + ys // 53) % 200 + 30).astype(np.uint8)
            block = np.stack([band, band[:, ::-1], (band // 2 + 60).astype(np.uint8)])
            block[:, ys >= 3800] = 0
            ds.write(block, window=((row, row + h), (0, width)))
    return path


def show(qtbot, opened: OpenedScene) -> MapView:
    view = MapView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    qtbot.waitExposed(view)
    view.set_scene_raster(opened.info, opened.preview, opened.stretch)
    view.grid.set_grid(opened.plan.kept, opened.plan.skipped)
    qtbot.wait(20)
    return view


def test_pyramid_reads_only_what_is_visible(qtbot, big_scene: Path) -> None:
    opened = _open(str(big_scene), 504, 64, False)
    assert max(opened.preview.width(), opened.preview.height()) == 1024
    view = show(qtbot, opened)
    layer = view.raster
    # the whole scene on screen: the preview is sharp enough, nothing is read
    assert layer.level is None and layer.cached_tiles == 0 and not layer._pending
    # zoomed in a little: display tiles of a coarse pyramid level
    view.set_scale(0.3)
    qtbot.wait(20)
    assert layer.level == 1
    assert layer.wait_idle(20000)
    qtbot.waitUntil(lambda: not layer._pending, timeout=20000)
    assert 0 < layer.cached_tiles <= 12 * 8
    # zoom to 1:1 in the middle: level 0, only tiles around the view are read
    view.set_scale(1.0)
    view.centerOn(3000, 2000)
    qtbot.wait(20)
    assert layer.level == 0
    assert layer.wait_idle(20000)
    qtbot.waitUntil(lambda: not layer._pending, timeout=20000)
    visible = view.visible_rect_f().adjusted(-TILE_PX, -TILE_PX, TILE_PX, TILE_PX)
    fine = [k for k in layer._cache if k[0] == 0]
    assert 4 <= len(fine) <= 30
    for level, tx, ty in fine:
        (x0, y0, w, h), size = layer.tile_window((level, tx, ty))
        assert visible.intersects(QRectF(x0, y0, w, h))
        assert size == (w, h)
    assert layer.cached_tiles <= CACHE_TILES
    # the grid of the big scene: skipped tiles where all is nodata are drawn differently
    assert view.grid.count("skipped") == 0 or view.grid.count("skipped") < len(view.grid.tiles)
    view.raster.shutdown()


def test_nodata_is_transparent() -> None:
    image = np.full((2, 3, 3), 200, dtype=np.uint8)
    valid = np.array([[True, False, True], [True, True, False]])
    qimg = rgba_image(image, valid)
    assert qimg.pixelColor(1, 0).alpha() == 0 and qimg.pixelColor(0, 0).alpha() == 255


def test_keyboard_and_wheel_navigation(qtbot, sample_scene: Path) -> None:
    view = show(qtbot, _open(str(sample_scene), 504, 64, False))
    fit = view.current_scale()
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    assert view.current_scale() == pytest.approx(fit * 1.25)
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    h = view.horizontalScrollBar().value()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.horizontalScrollBar().value() > h
    v = view.verticalScrollBar().value()
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.verticalScrollBar().value() > v
    qtbot.keyClick(view, Qt.Key.Key_Minus)
    assert view.current_scale() == pytest.approx(fit * 1.25)
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.current_scale() == pytest.approx(fit, rel=0.05)
    view.zoom_by(1000)
    assert view.current_scale() == MapView.MAX_SCALE
    # a mouse drag on empty ground pans
    view.fit_scene()
    view.set_scale(2.0)
    qtbot.wait(10)
    before = view.horizontalScrollBar().value()
    centre = view.viewport().rect().center()
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(view.viewport(), pos=centre + QPoint(-40, 0))
    qtbot.mouseMove(view.viewport(), pos=centre + QPoint(-80, 0))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=centre + QPoint(-80, 0))
    assert view.horizontalScrollBar().value() > before
    view.raster.shutdown()


def test_scope_rectangle_tool_and_escape(qtbot, sample_scene: Path) -> None:
    view = show(qtbot, _open(str(sample_scene), 504, 64, False))
    drawn = []
    view.rectangleDrawn.connect(lambda tool, rect: drawn.append((tool, rect)))
    view.set_tool("scope")
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert view.tool == "pan"
    view.set_tool("scope")
    a, b = view.mapFromScene(100, 120), view.mapFromScene(400, 300)
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(view.viewport(), pos=b)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=b)
    assert len(drawn) == 1 and drawn[0][0] == "scope"
    x0, y0, x1, y1 = drawn[0][1]
    assert (x0, y0, x1, y1) == pytest.approx((100, 120, 400, 300), abs=3)
    assert view.scope_rect == drawn[0][1] and view.tool == "pan"
    # rectangles are clipped to the scene
    view.draw_rectangle("scope", (-50, 900, 2000, 1500))
    assert view.scope_rect == (0.0, 900.0, 1024.0, 1024.0)
    view.raster.shutdown()


def test_detections_layer_selection_and_labels(qtbot, sample_scene: Path) -> None:
    view = show(qtbot, _open(str(sample_scene), 504, 64, False))
    square = np.array([[10, 10], [60, 10], [60, 40], [10, 40], [10, 10]], dtype=float)
    view.detections.add((0, 0, 0), square, "plane")
    view.detections.add((0, 0, 1), square + 100, "plane")
    view.detections.add((1, 1, 0), square + 500, "")
    assert view.detections.items[(0, 0, 0)].label is not None
    assert view.detections.items[(1, 1, 0)].label is None
    assert phrase_color("plane") == phrase_color("PLANE") and phrase_color("plane").isValid()
    emitted = []
    view.detectionSelectionChanged.connect(emitted.append)
    view.select_keys([(0, 0, 1)])
    assert not emitted  # programmatic selection is not echoed
    assert view.detections.selected_keys() == [(0, 0, 1)]
    # a click on a polygon selects it (and the map says so)
    view.zoom_to((0, 0, 200, 200), margin=0.0)
    qtbot.wait(10)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.mapFromScene(35, 25))
    assert emitted and emitted[-1] == [(0, 0, 0)]
    # a click on empty ground deselects
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.mapFromScene(180, 180))
    assert emitted[-1] == []
    view.detections.set_labels_visible(False)
    assert not view.detections.items[(0, 0, 0)].label.isVisible()
    view.detections.remove([(0, 0, 0)])
    assert (0, 0, 0) not in view.detections.items
    deletes = []
    view.deleteRequested.connect(lambda: deletes.append(1))
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert deletes == [1]
    view.raster.shutdown()


def test_grid_states(qtbot, sample_scene: Path) -> None:
    view = show(qtbot, _open(str(sample_scene), 504, 64, False))
    with open_scene(sample_scene) as scene:
        plan = plan_tiles(scene)
    tile = plan.kept[4]
    view.grid.set_state(tile, "done")
    view.set_active_tiles([plan.kept[5]])
    assert view.grid.state(tile) == "done" and view.grid.count("done") == 1
    assert view.active_tiles() == [(plan.kept[5].row, plan.kept[5].col)]
    view.grid.reset_states()
    assert view.grid.count("pending") == 9
    view.highlight_tile(tile, center=True)
    assert view.highlighted == QRectF(tile.col_off, tile.row_off, tile.width, tile.height)
    view.raster.shutdown()
