"""The results table's area column: areas on the ground (geodesic), as pyproj measures them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Geod, Transformer
from PySide6.QtCore import Qt

from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.types import Tile
from rsvg_desktop.gui.results_model import COLUMNS, SORT_ROLE, ResultsModel


def _pyproj_area(polygon: shapely.Polygon, crs: str) -> float:
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
        *np.asarray(polygon.exterior.coords).T
    )
    return abs(Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0])


@pytest.mark.parametrize("name", ["cogeo.tif", "manila_drone.tif", "RGB.byte.tif"])
def test_area_column_is_on_the_ground(qapp, data_dir: Path, name: str) -> None:
    with open_scene(data_dir / name) as scene:
        info = scene.info
    a, b, c, d, e, f = info.transform
    pixel_boxes = [shapely.box(10, 10, 40, 25), shapely.box(100, 50, 120, 90)]
    polygons = [shapely.affinity.affine_transform(p, [a, b, d, e, c, f]) for p in pixel_boxes]
    model = ResultsModel()
    model.reset(crs_wkt=info.crs_wkt, transform=info.transform, answer_log=None, run_id="r")
    tile = Tile(0, 0, 0, 0, 504, 504)
    rows = model.add_tile(tile, [p.wkb for p in polygons], ["car", "truck"], [None, 30.0], task="grounding")
    expected = [_pyproj_area(p, info.crs_wkt) for p in polygons]
    assert [r.area for r in rows] == pytest.approx(expected, rel=1e-9, abs=1e-4)
    area_col = COLUMNS.index("Area")
    assert model.headerData(area_col, Qt.Orientation.Horizontal) == "Area (m²)"
    assert "on the ground" in model.headerData(
        area_col, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole
    )
    assert model.data(model.index(0, area_col), SORT_ROLE) == pytest.approx(expected[0], rel=1e-9, abs=1e-4)
    if name == "cogeo.tif":  # Web Mercator at 37.7° N: the planar area is 1.6× the ground's
        assert polygons[0].area / rows[0].area == pytest.approx(1.6, abs=0.02)
