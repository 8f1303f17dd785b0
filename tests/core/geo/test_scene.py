"""Scene reading on the real rasters of ../shared/data: metadata, bands, masks, stretch, preview, errors."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from rsvg_desktop.core.geo.scene import Scene, SceneInfo, open_scene
from rsvg_desktop.core.geo.stretch import FILL_RGB, Stretch, compute_stretch, render_rgb
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import (
    BandSelectionError,
    ConfigError,
    EmptySceneError,
    NoCRSError,
    NotARasterError,
    RasterReadError,
    RsvgError,
    SceneNotFoundError,
)


def hwc(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(raw, 0, -1))


# --- metadata ---------------------------------------------------------------------------------------
def test_info_of_rgb_byte(data_dir):
    path = data_dir / "RGB.byte.tif"
    with open_scene(path) as scene:
        info = scene.info
    assert info.path == str(path)
    assert info.crs_name == "EPSG:32618"
    assert "WGS 84 / UTM zone 18N" in info.crs_wkt
    assert (info.width, info.height, info.count, info.dtype) == (791, 718, 3, "uint8")
    assert info.nodata == 0.0
    expected = (300.0379266750948, 0.0, 101985.0, 0.0, -300.041782729805, 2826915.0)
    assert info.transform == pytest.approx(expected)
    assert info.gsd == pytest.approx((300.0379266750948, 300.041782729805))
    # On the ground at the centre: UTM's scale factor there (~1.0006, 260 km west of the central meridian)
    assert info.gsd_unit == "metre"
    assert info.gsd_m == pytest.approx((299.8691390721291, 299.8726826670142), rel=1e-9)
    assert info.display_bands == (1, 2, 3)
    assert info.colorinterp == ("red", "green", "blue")
    assert info.mask_kind == "nodata"
    assert not info.pixel_mode and info.georeferenced
    assert info.bounds == pytest.approx((101985.0, 2611485.0, 339315.0, 2826915.0), abs=1.0)


def test_info_is_plain_and_picklable(data_dir):
    with open_scene(data_dir / "cogeo.tif") as scene:
        info = scene.info
    again = pickle.loads(pickle.dumps(info))
    assert again == info and hash(again) == hash(info)
    assert info.overviews == (2, 4, 8, 16, 32, 64)
    assert info.mask_kind == "per_dataset"
    assert info.block_shape == (512, 512)
    # NaN nodata still compares equal after a round trip
    with open_scene(data_dir / "float_nan.tif", pixel_mode=True) as scene:
        nan_info = scene.info
    assert math.isnan(nan_info.nodata)
    assert pickle.loads(pickle.dumps(nan_info)) == nan_info


def test_scene_is_a_closable_context_manager(data_dir):
    with open_scene(data_dir / "cogeo.tif") as scene:
        assert isinstance(scene, Scene) and not scene.closed
    assert scene.closed
    with pytest.raises(ValueError, match="closed"):
        scene.read_window((0, 0, 8, 8))
    scene.close()  # idempotent


def test_gsd_in_metres_for_a_geographic_crs(tmp_path):
    path = tmp_path / "wgs84.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=Affine(0.001, 0.0, 10.0, 0.0, -0.001, 1.0),
    ) as dst:
        dst.write(np.ones((1, 4, 4), dtype=np.uint8))
    with open_scene(path) as scene:
        gx, gy = scene.info.gsd_m
    assert scene.info.gsd == pytest.approx((0.001, 0.001))
    assert gx == pytest.approx(111.3, rel=0.01) and gy == pytest.approx(110.6, rel=0.01)


# --- display bands ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("RGBA.uint16.tif", (3, 2, 1)),  # blue, green, red, alpha
        ("spacenet_uint16.tif", (1, 1, 1)),  # grey, replicated
        ("all-nodata.tif", (3, 2, 1)),  # blue, green, red, undefined
    ],
)
def test_display_bands_from_colour_interpretation(data_dir, name, expected):
    with open_scene(data_dir / name) as scene:
        assert scene.info.display_bands == expected


def test_display_bands_override(data_dir):
    with open_scene(data_dir / "RGB.byte.tif", bands=[3, 2, 1]) as scene:
        assert scene.info.display_bands == (3, 2, 1)
        image, _ = scene.read_window((300, 300, 4, 4))
    with rasterio.open(data_dir / "RGB.byte.tif") as ds:
        raw = ds.read(window=((300, 304), (300, 304)))
    assert np.array_equal(image, hwc(raw[::-1]))
    with open_scene(data_dir / "RGB.byte.tif", bands=[2]) as scene:
        assert scene.info.display_bands == (2, 2, 2)


@pytest.mark.parametrize("bands", [[4], [0, 1, 2], [1, 2]])
def test_bad_display_bands_name_the_file(data_dir, bands):
    path = data_dir / "RGB.byte.tif"
    with pytest.raises(BandSelectionError, match=r"RGB\.byte\.tif") as info:
        open_scene(path, bands=bands)
    assert isinstance(info.value, ValueError)


# --- opening errors ---------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.tif"
    with pytest.raises(NotARasterError, match=r"nowhere\.tif") as info:
        open_scene(path)
    assert isinstance(info.value, SceneNotFoundError | FileNotFoundError)


def test_not_a_raster(data_dir, tmp_path):
    with pytest.raises(NotARasterError, match=r"OSBS_029\.xml"):
        open_scene(data_dir / "OSBS_029.xml")
    with pytest.raises(NotARasterError, match="is a directory"):
        open_scene(tmp_path)
    text = tmp_path / "notes.tif"
    text.write_text("not a tiff")
    with pytest.raises(NotARasterError, match=r"notes\.tif") as info:
        open_scene(text)
    assert isinstance(info.value, RsvgError)


@pytest.mark.parametrize("name", ["float_nan.tif", "rotated.tif"])
def test_no_crs_is_refused_with_a_pixel_mode_hint(data_dir, name):
    with pytest.raises(NoCRSError, match="pixel mode") as info:
        open_scene(data_dir / name)
    assert name in str(info.value)


def test_pixel_mode_keeps_the_files_own_transform(data_dir):
    with open_scene(data_dir / "rotated.tif", pixel_mode=True) as scene:
        info = scene.info
    assert info.pixel_mode and info.crs_wkt is None and info.crs_name is None and info.gsd_m is None
    with rasterio.open(data_dir / "rotated.tif") as ds:
        assert info.transform == tuple(ds.transform)[:6]
    # rotated affine: GSD is the length of the pixel's column and row vectors, not |a| and |e|
    assert info.gsd == pytest.approx((20.0, 10.0))


def test_pixel_mode_without_geotransform_is_identity(tmp_path):
    path = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        dst = rasterio.open(path, "w", driver="GTiff", width=5, height=3, count=1, dtype="uint8")
    with dst:
        dst.write(np.arange(15, dtype=np.uint8).reshape(1, 3, 5))
    with pytest.raises(NoCRSError):
        open_scene(path)
    with open_scene(path, pixel_mode=True) as scene:
        assert scene.info.transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def test_pixel_mode_does_not_drop_a_real_crs(data_dir):
    with open_scene(data_dir / "RGB.byte.tif", pixel_mode=True) as scene:
        assert scene.info.crs_name == "EPSG:32618" and not scene.info.pixel_mode


# --- reading, masks, fill ---------------------------------------------------------------------------
def test_uint8_passes_through_unchanged(data_dir):
    with open_scene(data_dir / "cogeo.tif") as scene:
        assert scene.stretch is None
        image, valid = scene.read_window((100, 200, 64, 32))
    with rasterio.open(data_dir / "cogeo.tif") as ds:
        raw = ds.read(window=((200, 232), (100, 164)))
    assert image.dtype == np.uint8 and image.shape == (32, 64, 3)
    assert np.array_equal(image, hwc(raw)) and valid.all()


def test_nodata_border_is_filled_and_masked(data_dir):
    with open_scene(data_dir / "RGB.byte.tif") as scene:
        tile = Tile(row=0, col=0, col_off=0, row_off=0, width=192, height=192, size=192)
        image, valid = scene.read_tile(tile)
    with rasterio.open(data_dir / "RGB.byte.tif") as ds:
        expected_valid = ds.dataset_mask(window=((0, 192), (0, 192))) > 0
        raw = ds.read(window=((0, 192), (0, 192)))
    assert np.array_equal(valid, expected_valid)
    assert 0 < valid.sum() < valid.size
    assert (image[~valid] == FILL_RGB).all()
    assert np.array_equal(image[valid], hwc(raw)[valid])


def test_alpha_mask_and_constant_16_bit_channel(data_dir):
    with open_scene(data_dir / "RGBA.uint16.tif") as scene:
        assert scene.info.mask_kind == "alpha"
        image, valid = scene.read_window((0, 0, scene.info.width, scene.info.height))
        stretch = scene.stretch
    with rasterio.open(data_dir / "RGBA.uint16.tif") as ds:
        alpha = ds.read(4)
    assert np.array_equal(valid, alpha > 0)
    # every colour value is 10000: a constant channel maps to mid-grey, not to a division by zero
    assert stretch.low == (9999.5,) * 3 and stretch.high == (10000.5,) * 3
    assert (image[valid] == 128).all() and (image[~valid] == FILL_RGB).all()


def test_float_nan_in_pixel_mode(data_dir):
    with open_scene(data_dir / "float_nan.tif", pixel_mode=True) as scene:
        image, valid = scene.read_window((0, 0, 3, 2))
        stretch = scene.stretch
    assert valid.tolist() == [[True, True, False], [True, True, True]]
    assert tuple(image[0, 2]) == FILL_RGB
    finite = np.array([1.41, 1.23, 0.32, -0.23, -1.88])
    assert stretch.low[0] == pytest.approx(np.percentile(finite, 2), rel=1e-5)
    assert stretch.high[0] == pytest.approx(np.percentile(finite, 98), rel=1e-5)
    assert image[0, 0, 0] > image[1, 0, 0]  # 1.41 brighter than 0.32


def test_window_past_the_edge_is_padded(data_dir):
    with open_scene(data_dir / "rotated.tif", pixel_mode=True) as scene:
        image, valid = scene.read_window((-2, -3, 16, 20))
    with rasterio.open(data_dir / "rotated.tif") as ds:
        raw = ds.read(1)
    assert image.shape == (20, 16, 3)
    assert valid[3:18, 2:12].all() and valid.sum() == 150
    assert np.array_equal(image[3:18, 2:12, 0], raw)
    assert (image[~valid] == FILL_RGB).all()


def test_resampled_tile_has_the_model_size(data_dir):
    with open_scene(data_dir / "manila_drone.tif") as scene:
        tile = Tile(row=0, col=0, col_off=0, row_off=0, width=2016, height=2016, size=504)
        image, valid = scene.read_tile(tile)
    assert image.shape == (504, 504, 3) and valid.shape == (504, 504) and valid.all()


# --- scene-wide stretch -----------------------------------------------------------------------------
def test_16_bit_stretch_is_computed_once_and_shared_by_all_tiles(data_dir, monkeypatch):
    calls = []
    original = Scene._compute_stretch

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(Scene, "_compute_stretch", counting)
    path = data_dir / "spacenet_uint16.tif"
    with open_scene(path) as scene, rasterio.open(path) as ds:
        tiles = [
            Tile(0, 0, 0, 0, 256, 256, 256),
            Tile(2, 2, 600, 600, 256, 256, 256),
            Tile(1, 1, 200, 200, 256, 256, 256),
        ]  # the third overlaps the first
        images = {t: scene.read_tile(t)[0] for t in tiles}
        raws = {
            t: ds.read(1, window=((t.row_off, t.row_off + 256), (t.col_off, t.col_off + 256))) for t in tiles
        }
        stretch = scene.stretch
    assert len(calls) == 1
    assert stretch.percentiles == (2.0, 98.0) and stretch.low[0] < stretch.high[0]
    # a raw value found in two distant tiles maps to the same 8-bit value in both
    a, b = tiles[0], tiles[1]
    common = np.intersect1d(raws[a], raws[b])
    assert common.size > 100
    for value in common[:: max(1, common.size // 50)]:
        in_a = images[a][..., 0][raws[a] == value]
        in_b = images[b][..., 0][raws[b] == value]
        assert (in_a == in_a[0]).all() and (in_b == in_a[0]).all()
        gain = 255.0 / (stretch.high[0] - stretch.low[0])
        expected = np.clip((float(value) - stretch.low[0]) * gain, 0, 255)
        assert abs(int(in_a[0]) - expected) <= 0.5 + 1e-3
    # overlapping tiles give identical pixels where they overlap
    assert np.array_equal(images[tiles[0]][200:, 200:], images[tiles[2]][:56, :56])
    # grey replicated to R, G, B
    img = images[a]
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])


def test_16_bit_stretch_ignores_nodata(data_dir):
    with open_scene(data_dir / "RGBA.uint16.tif") as scene:
        # alpha-masked pixels (raw colour 10000 too, but masked) never reach the percentiles
        assert scene.stretch.low[0] > 0


def test_a_given_stretch_is_used_as_is(data_dir, monkeypatch):
    given = Stretch((100.0,) * 3, (1100.0,) * 3)
    monkeypatch.setattr(Scene, "_compute_stretch", lambda self: pytest.fail("stretch recomputed"))
    with open_scene(data_dir / "spacenet_uint16.tif", stretch=given) as scene:
        image, _ = scene.read_window((0, 0, 16, 16))
        assert scene.stretch is given
    with rasterio.open(data_dir / "spacenet_uint16.tif") as ds:
        raw = ds.read(1, window=((0, 16), (0, 16))).astype(float)
    assert np.allclose(image[..., 0], np.clip((raw - 100) * 255 / 1000, 0, 255), atol=0.51)


def test_stretch_values():
    s = compute_stretch([np.arange(101, dtype=np.uint16)] * 2 + [np.full(5, 7.0)], (2.0, 98.0))
    assert s.low[:2] == (2.0, 2.0) and s.high[:2] == (98.0, 98.0)
    assert (s.low[2], s.high[2]) == (6.5, 7.5)
    with pytest.raises(ValueError):
        Stretch((1.0, 1.0, 1.0), (1.0, 2.0, 3.0))
    with pytest.raises(ValueError):
        compute_stretch([np.array([np.nan])] * 3)
    # the integer lookup table and the float path agree
    values = np.arange(0, 65536, 7, dtype=np.uint16).reshape(1, 1, -1)
    via_lut = render_rgb(values, (0, 0, 0), None, s)
    via_float = render_rgb(values.astype(np.float32), (0, 0, 0), None, s)
    assert np.array_equal(via_lut, via_float)
    signed = np.array([[[-300, 0, 50, 98, 30000]]], dtype=np.int16)
    assert render_rgb(signed, (0, 0, 0), None, s)[0, :, 0].tolist() == [0, 0, 128, 255, 255]


# --- preview through overviews ----------------------------------------------------------------------
def test_cog_preview_reads_an_overview(data_dir):
    path = data_dir / "cogeo.tif"
    with open_scene(path) as scene:
        assert scene.info.overviews  # the COG has overviews
        preview = scene.preview(256)
    assert preview.image.shape == (256, 256, 3) and preview.valid.shape == (256, 256)
    # the decimated read is exactly GDAL's overview at factor 4 (level 1): GDAL picked the overview
    with rasterio.open(path, overview_level=1) as ovr:
        assert (ovr.width, ovr.height) == (256, 256)
        overview = ovr.read()
    assert np.array_equal(preview.image, hwc(overview))
    a, b, c, d, e, f = scene.info.transform
    assert preview.transform == pytest.approx((a * 4, b * 4, c, d * 4, e * 4, f))


def test_preview_keeps_small_scenes_and_the_stretch(data_dir):
    with open_scene(data_dir / "spacenet_uint16.tif") as scene:
        small = scene.preview(300)
        tile_image, _ = scene.read_window((0, 0, 900, 900), (300, 300))
    assert small.image.shape == (300, 300, 3)
    assert np.abs(small.image.astype(int) - tile_image.astype(int)).max() <= 1
    with open_scene(data_dir / "rotated.tif", pixel_mode=True) as scene:
        full = scene.preview(1024)
        assert full.image.shape == (15, 10, 3) and full.transform == scene.info.transform


# --- failures naming the file and the window ----------------------------------------------------------
def test_corrupt_read_names_file_and_window(data_dir):
    path = data_dir / "corrupt.tif"
    with open_scene(path) as scene:  # the header opens
        scene.read_window((0, 0, 512, 512))  # an intact block
        with pytest.raises(RasterReadError) as info:
            scene.read_window((512, 512, 512, 512))
    message = str(info.value)
    assert str(path) in message
    assert "col_off=512, row_off=512, width=512, height=512" in message
    assert info.value.window == (512, 512, 512, 512) and info.value.path == str(path)
    assert isinstance(info.value, OSError)


def test_all_nodata_opens_but_has_nothing_to_show(data_dir):
    path = data_dir / "all-nodata.tif"
    with open_scene(path) as scene:
        assert (scene.info.width, scene.info.height, scene.info.count) == (71, 2475, 4)
        with pytest.raises(EmptySceneError, match="no valid pixels") as info:
            scene.preview(256)
        assert "all-nodata.tif" in str(info.value)
        assert not scene.window_has_valid((0, 0, 71, 2475))


def test_window_has_valid(data_dir):
    with open_scene(data_dir / "RGB.byte.tif") as scene:
        assert not scene.window_has_valid((0, 0, 20, 20))
        assert scene.window_has_valid((300, 300, 4, 4))
        assert not scene.window_has_valid((2000, 2000, 4, 4))


def test_scene_info_type():
    assert SceneInfo.__dataclass_params__.frozen


def test_bad_percentiles(data_dir):
    with pytest.raises(ConfigError):
        open_scene(data_dir / "spacenet_uint16.tif", percentiles=(98.0, 2.0))
    with open_scene(data_dir / "spacenet_uint16.tif", percentiles=(0.0, 100.0)) as scene:
        assert scene.stretch.low[0] == 54 and scene.stretch.high[0] == 6615  # the sample's min and max
