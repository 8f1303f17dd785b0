"""Open a georeferenced scene and read it in windows: tiles for the model, a preview for the map.

``open_scene(path)`` opens any raster GDAL reads (through rasterio) and returns a :class:`Scene`, a
context manager that keeps the dataset open for windowed reads. Its :class:`SceneInfo` is a small frozen,
picklable description (CRS, full affine transform, size, bands, nodata, ground sample distance,
overviews...). Pixels are only read on demand, one window at a time, so memory stays flat however large
the scene is.

Images produced here are always ``(h, w, 3)`` uint8 RGB plus an ``(h, w)`` bool *valid* mask:

* display bands: red/green/blue from the colour interpretation; a grey band is replicated; otherwise the
  first three non-alpha bands (or the first band, replicated); overridable with 1-based ``bands``;
* 8-bit data passes through unchanged; other types get one scene-wide linear stretch (2–98 %
  percentiles of a decimated sample, nodata ignored), never a per-tile one (see ``stretch.py``);
* validity follows GDAL's mask semantics (RFC 15): an internal mask band or alpha band, else the nodata
  value, and NaN is always invalid in float data; with a nodata value a pixel is valid when *any* display
  band is valid (rasterio's ``dataset_mask`` rule). Invalid pixels are painted :data:`FILL_RGB`.

Scenes without a CRS are refused with :class:`NoCRSError` unless ``pixel_mode=True``: the scene then keeps
the file's own geotransform (the identity when it has none, so coordinates are plain pixel coordinates)
and reports ``crs_wkt=None``. ``pixel_mode`` is a permission, not an override: a scene *with* a CRS keeps it.

A ``Scene`` wraps one rasterio dataset and is not thread-safe: use one per thread or process (pickle the
``SceneInfo`` and reopen with ``open_scene(info.path, ...)``).

Modules: ``opening`` (:func:`open_scene`, :func:`check_input_file`), ``info`` (:class:`SceneInfo`:
describing a scene), ``reading`` (:class:`Scene`: windowed reads, the preview, the stretch),
``validity`` (validity masks, :class:`CoarseValidity`) and ``gdal_errors`` (GDAL's errors and messages).
"""

from rsvg_desktop.core.geo.scene.gdal_errors import route_gdal_messages
from rsvg_desktop.core.geo.scene.info import SceneInfo
from rsvg_desktop.core.geo.scene.opening import check_input_file, open_scene
from rsvg_desktop.core.geo.scene.reading import Preview, Scene
from rsvg_desktop.core.geo.scene.validity import CoarseValidity
from rsvg_desktop.core.geo.stretch import FILL_RGB

__all__ = [
    "FILL_RGB",
    "CoarseValidity",
    "Preview",
    "Scene",
    "SceneInfo",
    "check_input_file",
    "open_scene",
    "route_gdal_messages",
]
