"""Vector overlays placed on a scene's pixels (issue 10 §4) and the export format check (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely

from rsvg_desktop.core.geo.export import ExportFormat, format_for_path
from rsvg_desktop.core.geo.overlay import read_overlay
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.geo.transform import pixel_to_map
from rsvg_desktop.errors import ConfigError, OverlayError


def _data(data_dir: Path, name: str) -> Path:
    """A file of the shared test data; a missing one fails the test (it must not pass or skip)."""
    path = data_dir / name
    if not path.is_file():
        pytest.fail(f"test data file {path} not found")
    return path


def test_overlay_reprojected_onto_scene_pixels(tmp_path: Path, data_dir: Path) -> None:
    import geopandas as gpd

    with open_scene(_data(data_dir, "spacenet_uint16.tif")) as scene:
        info = scene.info
    # a square of known pixels, written in lon/lat (a different CRS than the scene's UTM)
    xs, ys = pixel_to_map(info.transform, [100, 200, 200, 100], [50, 50, 150, 150])
    square = shapely.Polygon(zip(xs, ys, strict=True))
    frame = gpd.GeoDataFrame({"name": ["a"]}, geometry=[square], crs=info.crs_wkt).to_crs(4326)
    path = tmp_path / "square.gpkg"
    frame.to_file(path, layer="truth", engine="pyogrio")
    overlay = read_overlay(path, crs_wkt=info.crs_wkt, transform=info.transform)
    assert overlay.layer == "truth" and overlay.features == 1
    ring = overlay.parts[0].xy
    assert overlay.parts[0].kind == "polygon"
    assert ring[:, 0].min() == pytest.approx(100, abs=1e-3) and ring[:, 0].max() == pytest.approx(
        200, abs=1e-3
    )
    assert ring[:, 1].min() == pytest.approx(50, abs=1e-3) and ring[:, 1].max() == pytest.approx(
        150, abs=1e-3
    )

    buildings = read_overlay(
        _data(data_dir, "spacenet_uint16_buildings.geojson"), crs_wkt=info.crs_wkt, transform=info.transform
    )
    assert buildings.features == 43
    xy = np.concatenate([p.xy for p in buildings.parts])
    assert xy[:, 0].min() >= -1 and xy[:, 0].max() <= info.width + 1
    assert xy[:, 1].min() >= -1 and xy[:, 1].max() <= info.height + 1


def test_overlay_refusals(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(OverlayError, match="no such file"):
        read_overlay(tmp_path / "missing.gpkg", crs_wkt=None, transform=None)
    (tmp_path / "bad.geojson").write_text("not json")
    with pytest.raises(OverlayError, match=r"bad\.geojson"):
        read_overlay(tmp_path / "bad.geojson", crs_wkt=None, transform=None)
    # a layer with a CRS cannot be placed on a pixel-mode scene
    with pytest.raises(OverlayError, match="pixel mode"):
        read_overlay(_data(data_dir, "spacenet_uint16_buildings.geojson"), crs_wkt=None, transform=None)


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_overlay_without_crs_on_pixel_mode_scene_is_in_pixels(tmp_path: Path) -> None:
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"v": [1]}, geometry=[shapely.box(0, 0, 2, 1)], crs=None)
    path = tmp_path / "pixels.gpkg"
    frame.to_file(path, engine="pyogrio")
    assert pyogrio.read_info(path)["crs"] is None
    overlay = read_overlay(path, crs_wkt=None, transform=(100.0, 0, 0, 0, 100.0, 0))
    ring = overlay.parts[0].xy
    assert ring[:, 0].max() == pytest.approx(2) and ring[:, 1].max() == pytest.approx(1)


def test_export_format_and_extension_must_agree() -> None:
    assert format_for_path("out.shp") is ExportFormat.SHAPEFILE
    assert format_for_path("out.shp", "shp") is ExportFormat.SHAPEFILE
    assert format_for_path("out.json", "geojson") is ExportFormat.GEOJSON
    assert format_for_path("out.data", "gpkg") is ExportFormat.GPKG  # no known extension: as asked
    with pytest.raises(ConfigError, match=r"out\.shp.*Shapefile.*GeoJSON"):
        format_for_path("out.shp", "geojson")
    with pytest.raises(ConfigError, match="GeoPackage"):
        format_for_path("a.gpkg", "shp")
