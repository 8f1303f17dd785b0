"""``rsvg info``: the pixel size in map units and on the ground (geodesic, at the scene's centre)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyproj import Geod, Transformer

from rsvg_desktop.cli.main import main


def _ground_pixel(info: dict) -> tuple[float, float]:
    """pyproj's geodesic lengths of one pixel step right and down from the centre."""
    a, b, c, d, e, f = info["transform"]
    cx, cy = info["width"] / 2, info["height"] / 2
    px, py = np.array([cx, cx + 1, cx]), np.array([cy, cy, cy + 1])
    tr = Transformer.from_crs(info["crs"], "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(a * px + b * py + c, d * px + e * py + f)
    geod = Geod(ellps="WGS84")
    return geod.inv(lon[0], lat[0], lon[1], lat[1])[2], geod.inv(lon[0], lat[0], lon[2], lat[2])[2]


@pytest.mark.parametrize("name", ["cogeo.tif", "manila_drone.tif", "RGB.byte.tif"])
def test_info_json_reports_the_ground_pixel_size(data_dir, capsys, name):
    assert main(["info", str(data_dir / name), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pixel_size_unit"] == "metre"
    assert info["pixel_size_m"] == pytest.approx(_ground_pixel(info), rel=1e-9)


def test_info_text_shows_map_units_and_ground_metres(data_dir, capsys):
    assert main(["info", str(data_dir / "cogeo.tif")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("pixel size"))
    assert (
        line.split(None, 2)[2]
        == "0.5972 × 0.5972 (map units: metre), 0.4733 × 0.4713 m on the ground at the centre"
    )
    assert main(["info", str(data_dir / "RGB.byte.tif")]) == 0  # UTM: the two read the same
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("pixel size"))
    assert line.split(None, 2)[2] == "300 × 300 m (map units and on the ground)"


def test_info_of_a_geographic_scene(tmp_path, capsys):
    import rasterio
    from affine import Affine

    path = tmp_path / "lonlat.tif"
    profile = dict(driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:4326")
    with rasterio.open(path, "w", transform=Affine(1e-4, 0, 7.0, 0, -1e-4, 45.0), **profile) as dst:
        dst.write(np.ones((1, 8, 8), dtype=np.uint8))
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pixel_size_unit"] == "degree" and info["pixel_size"] == pytest.approx([1e-4, 1e-4])
    assert info["pixel_size_m"] == pytest.approx(_ground_pixel(info), rel=1e-9)
    assert main(["info", str(path)]) == 0
    assert "0.0001 × 0.0001 (map units: degree), 7.885 × 11.11 m on the ground" in capsys.readouterr().out
