"""A large scene for timing a whole-scene run: the bundled sample scene repeated to SIZE × SIZE px.

``benchmarks/gpu.sh`` times ``rsvg detect`` on a 10,000 × 10,000 px scene made by this script. The
source (default ``resources/sample_scene.tif``: 1024 px, 3 × uint8, EPSG:3857) is repeated across the
scene, every other copy mirrored so that no seam is a hard edge, and written as a 512 px tiled,
DEFLATE-compressed GeoTIFF with the source's CRS, origin and pixel size, one row of blocks at a time
(memory stays at one strip, ≈ 15 MB for 10,000 px). No nodata: every tile goes to the model. Built
once: an existing output of the asked size is kept.

Usage::

    python benchmarks/make_scene.py --size 10000 -o build/gpu-work/scene_10000.tif
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample_scene.tif"
BLOCK = 512

logger = logging.getLogger("make_scene")


def mirrored(index: np.ndarray, n: int) -> np.ndarray:
    """Indices 0..n-1, n-1..0, 0..n-1, ... for any non-negative ``index`` (a mirrored repeat)."""
    i = index % (2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def make_scene(size: int, out: Path, source: Path = SAMPLE) -> Path:
    """Write (once) a ``size`` × ``size`` px GeoTIFF repeating ``source``; returns ``out``."""
    import rasterio

    if out.is_file():
        with rasterio.open(out) as done:
            if done.width == size and done.height == size:
                logger.info("%s exists (%d × %d px): kept", out, size, size)
                return out
    with rasterio.open(source) as src:
        chip = src.read()
        crs = src.crs
        transform = src.transform
        dtype = chip.dtype
    bands, n_rows, n_cols = chip.shape
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial.tif")
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    cols = mirrored(np.arange(size), n_cols)
    t0 = time.perf_counter()
    with rasterio.open(tmp, "w", **profile) as dst:
        for row0 in range(0, size, BLOCK):
            height = min(BLOCK, size - row0)
            rows = mirrored(np.arange(row0, row0 + height), n_rows)
            strip = chip[:, rows[:, None], cols[None, :]]
            dst.write(strip, window=rasterio.windows.Window(0, row0, size, height))
    tmp.replace(out)
    logger.info("wrote %s (%d × %d px) in %.1f s", out, size, size, time.perf_counter() - t0)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (also checked by ``benchmarks/gpu.sh --dry-run``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=10000, help="side of the scene in pixels (10000)")
    parser.add_argument("--source", type=Path, default=SAMPLE, help="raster to repeat (the sample scene)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the GeoTIFF to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.size < 1:
        build_parser().error(f"--size must be positive, got {args.size}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    make_scene(args.size, args.output, args.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
