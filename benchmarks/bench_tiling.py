"""Tile extraction throughput and memory: ``iter_tile_images`` versus a plain sequential rasterio read.

Builds (once, cached under ``build/bench/``) large scenes mosaicked from the real ``cogeo.tif``: 3×uint8,
internally tiled 512×512, JPEG (YCbCr), an internal mask with a nodata corner (so tiles get skipped),
and overviews like a COG. Then, each measurement in a fresh subprocess (so its peak RSS is its own):

* ``plain``: read the whole raster with rasterio, one full-width row of blocks at a time;
* ``tiles``: ``open_scene`` + ``plan_tiles`` (504 px tiles, 64 px overlap) + ``iter_tile_images`` over
  every kept tile (8-bit RGB image and exact mask per tile).

Throughput is scene megapixels per second of wall time (the tiles' overlap re-reads ~1.3× the pixels and
the mask, all counted against the tiler). Peak memory is the child's ``VmHWM`` (peak RSS) from /proc,
with ``GDAL_CACHEMAX`` fixed (default 256 MB) so the block cache is the same for every run. RSS includes
GDAL's block cache, which fills up to its cap on a large scene whatever the reader does, so a separate
memory run repeats the tiling with a small cache (``--mem-cache-mb``, default 32) and ``tracemalloc``
on (numpy's buffers are traced): the Python/numpy peak while tiling is the tiler's own memory.

Usage: ``python benchmarks/bench_tiling.py [--size 16384] [--small 4096] [--repeat 2]``. Prints figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (ROOT / ".." / "shared" / "data" / "cogeo.tif").resolve()
BUILD = ROOT / "build" / "bench"

logger = logging.getLogger("bench_tiling")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def build_scene(size: int) -> Path:
    """A ``size`` × ``size`` JPEG-tiled mosaic of cogeo.tif with an internal mask and overviews (cached)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    BUILD.mkdir(parents=True, exist_ok=True)
    path = BUILD / f"mosaic_{size}.tif"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.tif")
    t0 = time.perf_counter()
    with rasterio.open(SOURCE) as src:
        chip = src.read()
        transform = src.transform
        crs = src.crs
    n = chip.shape[1]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "JPEG",
        "photometric": "YCBCR",
        "jpeg_quality": 85,
        "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, n):
            for col in range(0, size, n):
                h, w = min(n, size - row), min(n, size - col)
                flipped = chip[:, :: -1 if (row // n) % 2 else 1, :: -1 if (col // n) % 2 else 1]
                dst.write(flipped[:, :h, :w], window=Window(col, row, w, h))
                # nodata corner: the triangle x + y < 0.6 * size (18 % of the scene)
                yy, xx = np.mgrid[row : row + h, col : col + w]
                mask = np.where(xx + yy < 0.6 * size, 0, 255).astype(np.uint8)
                dst.write_mask(mask, window=Window(col, row, w, h))
        factors = [f for f in (2, 4, 8, 16, 32, 64) if size // f >= 256]
        dst.build_overviews(factors, Resampling.average)
    tmp.rename(path)
    logger.info("built %s (%.0f MB) in %.1f s", path, path.stat().st_size / 1e6, time.perf_counter() - t0)
    return path


# --- measurements (each runs in its own subprocess) ----------------------------------------------------
def measure_plain(path: Path) -> dict:
    import rasterio
    from rasterio.windows import Window

    base = current_rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    checksum = 0
    with rasterio.open(path) as ds:
        block_h = ds.block_shapes[0][0]
        for row in range(0, ds.height, block_h):
            h = min(block_h, ds.height - row)
            data = ds.read(window=Window(0, row, ds.width, h))
            checksum += int(data[:, ::97, ::97].sum())
        pixels = ds.width * ds.height
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "mode": "plain",
        "seconds": seconds,
        "mpix_s": pixels / seconds / 1e6,
        "cpu_seconds": cpu,
        "cpu_mpix_s": pixels / cpu / 1e6,
        "base_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
        "checksum": checksum,
    }


def measure_tiles(path: Path) -> dict:
    from rsvg_desktop.core.geo.grid import iter_tile_images, plan_tiles
    from rsvg_desktop.core.geo.scene import open_scene

    trace = os.environ.get("BENCH_TRACEMALLOC") == "1"
    if trace:
        import tracemalloc

        tracemalloc.start()
    base = current_rss_mb()
    t0 = time.perf_counter()
    with open_scene(path) as scene:
        plan = plan_tiles(scene)
        t_plan = time.perf_counter() - t0
        plan_peak = None
        if trace:
            plan_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.reset_peak()
        t1 = time.perf_counter()
        c1 = time.process_time()
        n = 0
        valid_px = 0
        checksum = 0
        for _tile, image, valid in iter_tile_images(scene, plan.kept):
            n += 1
            valid_px += int(valid.sum())
            checksum += int(image[::97, ::97].sum())
        t_tiles = time.perf_counter() - t1
        cpu = time.process_time() - c1
        pixels = scene.info.width * scene.info.height
    total = t_plan + t_tiles
    return {
        "mode": "tiles",
        "seconds": t_tiles,
        "plan_seconds": t_plan,
        "mpix_s": pixels / t_tiles / 1e6,
        "cpu_seconds": cpu,
        "cpu_mpix_s": pixels / cpu / 1e6,
        "mpix_s_with_plan": pixels / total / 1e6,
        "tiles": plan.n_tiles,
        "kept": plan.n_kept,
        "skipped": plan.n_skipped,
        "tile_mpix_s": n * plan.tile_size**2 / t_tiles / 1e6,
        "base_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
        "checksum": checksum,
        "traced_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20 if trace else None,
        "plan_traced_peak_mb": plan_peak,
    }


def run_child(mode: str, path: Path, cache_mb: int, trace: bool = False) -> dict:
    env = dict(os.environ, GDAL_CACHEMAX=str(cache_mb), BENCH_TRACEMALLOC="1" if trace else "0")
    out = subprocess.run(
        [sys.executable, __file__, "--measure", mode, str(path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384, help="side of the large scene (px)")
    parser.add_argument("--small", type=int, default=4096, help="side of the small scene (px)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (best is reported)")
    parser.add_argument("--cache-mb", type=int, default=256, help="GDAL_CACHEMAX for the throughput runs")
    parser.add_argument("--mem-cache-mb", type=int, default=32, help="GDAL_CACHEMAX for the memory run")
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.measure:
        mode, path = args.measure
        result = measure_plain(Path(path)) if mode == "plain" else measure_tiles(Path(path))
        print(json.dumps(result))
        return

    import rasterio

    print(
        f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}, {os.cpu_count()} CPU(s), "
        f"GDAL_CACHEMAX={args.cache_mb} MB"
    )
    for size in (args.small, args.size):
        path = build_scene(size)
        with rasterio.open(path) as ds:
            print(
                f"\nscene {path.name}: {ds.width}x{ds.height} px = {ds.width * ds.height / 1e6:.0f} MPix, "
                f"3x uint8, {ds.compression.name} {ds.block_shapes[0]} blocks, "
                f"overviews {ds.overviews(1)}, {path.stat().st_size / 1e6:.0f} MB on disk"
            )
        runs: dict[str, list[dict]] = {"plain": [], "tiles": []}
        for _ in range(args.repeat):
            for mode in ("plain", "tiles"):
                runs[mode].append(run_child(mode, path, args.cache_mb))
        plain = max(runs["plain"], key=lambda r: r["mpix_s"])
        tiles = max(runs["tiles"], key=lambda r: r["mpix_s"])
        plain_cpu = max(r["cpu_mpix_s"] for r in runs["plain"])
        tiles_cpu = max(r["cpu_mpix_s"] for r in runs["tiles"])
        print(
            f"  plain sequential read : {plain['mpix_s']:7.1f} MPix/s ({plain['seconds']:.2f} s), "
            f"peak RSS {plain['peak_rss_mb']:.0f} MB (after imports {plain['base_rss_mb']:.0f} MB)"
        )
        print(
            f"  plan_tiles            : {tiles['plan_seconds']:.2f} s -> {tiles['tiles']} tiles, "
            f"{tiles['kept']} kept, {tiles['skipped']} skipped as nodata"
        )
        print(
            f"  iter_tile_images      : {tiles['mpix_s']:7.1f} MPix/s of scene ({tiles['seconds']:.2f} s; "
            f"{tiles['tile_mpix_s']:.1f} MPix/s of 504x504 tile images), "
            f"peak RSS {tiles['peak_rss_mb']:.0f} MB (after imports {tiles['base_rss_mb']:.0f} MB)"
        )
        print(
            f"  ratio tiles / plain   : {tiles['mpix_s'] / plain['mpix_s']:.2f} "
            f"(with planning: {tiles['mpix_s_with_plan'] / plain['mpix_s']:.2f})"
        )
        print(
            f"  on CPU time           : plain {plain_cpu:.1f} MPix/s, tiles {tiles_cpu:.1f} MPix/s, "
            f"ratio {tiles_cpu / plain_cpu:.2f} (robust to other processes sharing the cores)"
        )
        print(
            "  all runs MPix/s       : plain "
            + ", ".join(f"{r['mpix_s']:.1f}" for r in runs["plain"])
            + "; tiles "
            + ", ".join(f"{r['mpix_s']:.1f}" for r in runs["tiles"])
        )
        mem = run_child("tiles", path, args.mem_cache_mb, trace=True)
        print(
            f"  memory run (GDAL_CACHEMAX={args.mem_cache_mb} MB, tracemalloc): peak RSS "
            f"{mem['peak_rss_mb']:.0f} MB (after imports {mem['base_rss_mb']:.0f} MB); Python/numpy peak "
            f"{mem['plan_traced_peak_mb']:.1f} MB while planning, {mem['traced_peak_mb']:.1f} MB while "
            f"tiling ({mem['mpix_s']:.1f} MPix/s under tracemalloc)"
        )


if __name__ == "__main__":
    main()
