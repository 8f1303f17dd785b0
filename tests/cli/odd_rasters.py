"""A small corpus of odd rasters nobody here would make on purpose, generated in the tests.

Each entry is a file (or a non-file: FIFO, links) that a user may hand to ``rsvg``: complex data types,
georeferencing by ground control points only, a huge declared size with almost no content, unusual
coordinate reference systems, corrupt headers. The CLI must answer every one of them with exit 0, 2
or 3, never a traceback, one stderr line for exit 2, and nothing half-written.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.transform import from_origin

#: Side of the small rasters (pixels).
SMALL = 64
#: Side of the raster that declares a huge size but holds almost nothing (sparse tiles).
HUGE = 300_000


def _write(path: Path, data: np.ndarray, **profile: object) -> Path:
    bands, height, width = data.shape
    base: dict[str, object] = dict(
        driver="GTiff", width=width, height=height, count=bands, dtype=data.dtype.name
    )
    base.update(profile)
    with rasterio.open(path, "w", **base) as dst:
        dst.write(data)
    return path


def _georef() -> dict[str, object]:
    return {"crs": CRS.from_epsg(32633), "transform": from_origin(500_000, 4_600_000, 10, 10)}


def _complex(folder: Path, dtype: str) -> Path:
    rng = np.random.default_rng(1)
    real = rng.integers(1, 200, (SMALL, SMALL))
    if dtype in ("cint16", "cint32"):
        # numpy and rasterio have no complex integers: a raw file described by a GDAL VRT.
        width = 2 if dtype == "cint16" else 4
        pairs = np.stack([real, real[::-1]], axis=-1).astype(f"<i{width}")
        raw = folder / f"complex_{dtype}.raw"
        raw.write_bytes(pairs.tobytes())
        gdal_type = "CInt16" if dtype == "cint16" else "CInt32"
        path = folder / f"complex_{dtype}.vrt"
        path.write_text(
            f'<VRTDataset rasterXSize="{SMALL}" rasterYSize="{SMALL}">'
            "<SRS>EPSG:32633</SRS><GeoTransform>500000, 10, 0, 4600000, 0, -10</GeoTransform>"
            f'<VRTRasterBand dataType="{gdal_type}" band="1" subClass="VRTRawRasterBand">'
            f'<SourceFilename relativetoVRT="1">{raw.name}</SourceFilename>'
            f"<ImageOffset>0</ImageOffset><PixelOffset>{2 * width}</PixelOffset>"
            f"<LineOffset>{2 * width * SMALL}</LineOffset><ByteOrder>LSB</ByteOrder>"
            "</VRTRasterBand></VRTDataset>"
        )
        return path
    data = (real + 1j * real[::-1])[None].astype(dtype)
    return _write(folder / f"complex_{dtype}.tif", data, **_georef())


def _gcp_only(folder: Path) -> Path:
    data = np.full((3, SMALL, SMALL), 90, dtype="uint8")
    gcps = [
        GroundControlPoint(row=0, col=0, x=10.0, y=50.0),
        GroundControlPoint(row=0, col=SMALL, x=10.1, y=50.0),
        GroundControlPoint(row=SMALL, col=0, x=10.0, y=49.9),
    ]
    path = folder / "gcp_only.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=SMALL, height=SMALL, count=3, dtype="uint8",
        gcps=gcps, crs=CRS.from_epsg(4326),
    ) as dst:  # fmt: skip
        dst.write(data)
    return path


def _huge_sparse(folder: Path, *, georeferenced: bool, dtype: str = "uint16") -> Path:
    """A tiled, sparse GeoTIFF declaring ``HUGE × HUGE`` pixels with one written tile (a few MiB)."""
    name = "huge_sparse_geo.tif" if georeferenced else "huge_sparse_nocrs.tif"
    path = folder / name
    profile: dict[str, object] = dict(
        driver="GTiff", width=HUGE, height=HUGE, count=1, dtype=dtype, tiled=True, blockxsize=1024,
        blockysize=1024, sparse_ok=True, bigtiff="YES", compress="deflate",
    )  # fmt: skip
    if georeferenced:
        profile.update(_georef())
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 1024, 1024), 500, dtype=dtype), window=((0, 1024), (0, 1024)))
    return path


def _crs(folder: Path, name: str, crs: CRS) -> Path:
    data = np.arange(3 * SMALL * SMALL, dtype="uint16").reshape(3, SMALL, SMALL) % 1000
    return _write(folder / name, data, crs=crs, transform=from_origin(0, 0, 0.001, 0.001))


def _corrupt(folder: Path) -> list[Path]:
    good = _write(folder / "_good.tif", np.full((1, SMALL, SMALL), 7, dtype="uint8"), **_georef())
    raw = good.read_bytes()
    good.unlink()
    out = []
    truncated = folder / "corrupt_truncated.tif"
    truncated.write_bytes(raw[: len(raw) // 2])
    out.append(truncated)
    bad_ifd = folder / "corrupt_bad_ifd.tif"
    bad_ifd.write_bytes(raw[:4] + struct.pack("<I", 0x7FFFFFF0) + raw[8:])
    out.append(bad_ifd)
    header_only = folder / "corrupt_header_only.tif"
    header_only.write_bytes(b"II*\x00")
    out.append(header_only)
    empty = folder / "empty.tif"
    empty.write_bytes(b"")
    out.append(empty)
    noise = folder / "noise.tif"
    noise.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out.append(noise)
    # An Erdas Imagine header with non-UTF-8 bytes where GDAL expects text.
    img = folder / "corrupt.img"
    img.write_bytes(b"EHFA_HEADER_TAG\x00" + bytes(range(128, 256)) * 8)
    out.append(img)
    return out


def build_corpus(folder: Path) -> dict[str, Path]:
    """Write the corpus into ``folder``; returns name → path (also non-regular files and links)."""
    folder.mkdir(parents=True, exist_ok=True)
    items: dict[str, Path] = {}
    for dtype in ("cint16", "cint32", "complex64", "complex128"):
        p = _complex(folder, dtype)
        items[p.stem] = p
    items["gcp_only"] = _gcp_only(folder)
    items["huge_sparse_geo"] = _huge_sparse(folder, georeferenced=True)
    items["huge_sparse_nocrs"] = _huge_sparse(folder, georeferenced=False)
    items["crs_geographic_3d"] = _crs(folder, "crs_geographic_3d.tif", CRS.from_epsg(4979))
    items["crs_ob_tran"] = _crs(
        folder,
        "crs_ob_tran.tif",
        CRS.from_proj4("+proj=ob_tran +o_proj=longlat +o_lon_p=0 +o_lat_p=30 +lon_0=10"),
    )
    items["crs_engineering"] = _crs(
        folder,
        "crs_engineering.tif",
        CRS.from_wkt(
            'LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
        ),
    )
    for p in _corrupt(folder):
        items[p.stem] = p
    fifo = folder / "fifo.tif"
    os.mkfifo(fifo)
    items["fifo"] = fifo
    loop = folder / "loop.tif"
    os.symlink(loop, loop)
    items["link_loop"] = loop
    dangling = folder / "dangling.tif"
    os.symlink(folder / "does-not-exist.tif", dangling)
    items["link_dangling"] = dangling
    return items
