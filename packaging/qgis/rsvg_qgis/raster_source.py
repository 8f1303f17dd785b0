"""The file the engine reads for a raster layer: the layer's own file, or (WMS, XYZ, a database) a
temporary GeoTIFF of the requested extent at the layer's native resolution."""

from __future__ import annotations

import re

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
)

from .engine_cli import Box, local_file, pixel_window

#: The largest side, in pixels, of a temporary GeoTIFF written from a layer that is not a file.
MAX_SIDE = 20000


def _box(rect: QgsRectangle) -> Box:
    return Box(rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())


def scene_for_layer(
    layer: QgsRasterLayer,
    extent: QgsRectangle | None,
    context: QgsProcessingContext,
    feedback: QgsProcessingFeedback,
) -> tuple[str, tuple[int, int, int, int] | None]:
    """The file to give the engine and the pixel window of ``extent`` (in the layer's CRS) in it
    (``None``: the whole file)."""
    path = local_file(layer.providerType(), layer.source())
    has_extent = extent is not None and not extent.isNull() and not extent.isEmpty()
    if path is not None:
        if not has_extent:
            return path, None
        try:
            return path, pixel_window(_box(extent), _box(layer.extent()), layer.width(), layer.height())
        except ValueError:
            raise QgsProcessingException(f"EXTENT does not meet the layer {layer.name()}") from None
    area = layer.extent().intersect(extent) if has_extent else layer.extent()
    if area.isEmpty():
        raise QgsProcessingException(f"EXTENT does not meet the layer {layer.name()}")
    return write_temporary_geotiff(layer, area, context, feedback), None


def native_resolution(layer: QgsRasterLayer) -> float:
    """Map units per pixel at the layer's finest native resolution (tile services list theirs)."""
    provider = layer.dataProvider()
    resolutions = [r for r in provider.nativeResolutions() if r > 0]
    if resolutions:
        return min(resolutions)
    if provider.capabilities() & QgsRasterDataProvider.Size and layer.width() > 0:
        return layer.rasterUnitsPerPixelX()
    raise QgsProcessingException(f"{layer.name()} has no native resolution to write it at")


def write_temporary_geotiff(
    layer: QgsRasterLayer, area: QgsRectangle, context: QgsProcessingContext, feedback: QgsProcessingFeedback
) -> str:
    resolution = native_resolution(layer)
    cols = max(1, round(area.width() / resolution))
    rows = max(1, round(area.height() / resolution))
    if max(cols, rows) > MAX_SIDE:
        raise QgsProcessingException(
            f"{layer.name()} is not a local file, and its extent at native resolution ({resolution:g} map "
            f"units per pixel) is {cols} x {rows} pixels: choose a smaller EXTENT"
        )
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", layer.name()) or "layer"
    path = QgsProcessingUtils.generateTempFilename(f"{safe}.tif")
    feedback.pushInfo(
        f"{layer.name()} is not a local file ({layer.providerType()}): writing the extent to a temporary "
        f"GeoTIFF at its native resolution ({cols} x {rows} pixels): {path}"
    )
    pipe = QgsRasterPipe()
    if not pipe.set(layer.dataProvider().clone()):
        raise QgsProcessingException(f"cannot read {layer.name()}")
    writer = QgsRasterFileWriter(path)
    writer.setOutputFormat("GTiff")
    error = writer.writeRaster(pipe, cols, rows, area, layer.crs(), context.transformContext())
    if error != QgsRasterFileWriter.NoError:
        raise QgsProcessingException(f"cannot write {layer.name()} to {path} (raster writer error {error})")
    return path
