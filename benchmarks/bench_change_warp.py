"""Benchmark: the cost of reading the after date through the warp onto the before date's grid
(``rsvg change``'s step 1, rasterio's ``WarpedVRT``, bilinear) against reading it unwarped.

The before date is the sample scene repeated to ``--size`` px (``make_scene.py``: 3 × uint8, EPSG:3857,
512 px tiled, DEFLATE); the after date is the same scene moved by (0.6, −1.3) px and reprojected into
``--crs`` (default UTM 51N, the grid turned by a degree or so), written the same way. Every tile of a
grid (504 px, 64 px overlap) is read as the scene job reads it (``Scene.read_tile``): the after date
on its own grid (unwarped), then on the before grid (warped), and the before date on its own grid for
reference. Prints the best of ``--repeat`` passes (the first pass also warms the file cache) and the
warped/unwarped ratio per tile; asserts nothing about time.

    .venv/bin/python benchmarks/bench_change_warp.py [--size 4096] [--crs EPSG:32651] [--repeat 2]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import rasterio
from make_scene import make_scene
from rasterio.enums import Resampling
from rasterio.transform import Affine, array_bounds
from rasterio.warp import calculate_default_transform, reproject

from rsvg_desktop.core.geo.change import TargetGrid, choose_grid, common_area, estimate_shift
from rsvg_desktop.core.geo.grid import iter_grid
from rsvg_desktop.core.geo.scene import open_scene

log = logging.getLogger("bench_change_warp")

ROOT = Path(__file__).resolve().parents[1]
SHIFT = (0.6, -1.3)


def make_after(before: Path, out: Path, crs: str) -> Path:
    """``before`` moved by ``SHIFT`` px and reprojected into ``crs`` (built once)."""
    if out.is_file():
        return out
    with rasterio.open(before) as ds:
        data, profile = ds.read(), ds.profile
        placed = ds.transform @ Affine.translation(*SHIFT)
        h, w = ds.height, ds.width
        transform, width, height = calculate_default_transform(ds.crs, crs, w, h, *array_bounds(h, w, placed))
        target = np.zeros((data.shape[0], height, width), dtype=data.dtype)
        reproject(data, target, src_transform=placed, src_crs=ds.crs, dst_transform=transform, dst_crs=crs,
                  resampling=Resampling.bilinear, dst_nodata=0)  # fmt: skip
    profile.update(crs=crs, transform=transform, width=width, height=height, nodata=0)
    tmp = out.with_name(out.name + ".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(target)
    tmp.replace(out)
    return out


def read_all_tiles(path: Path, grid: TargetGrid | None) -> tuple[float, int]:
    """Seconds to read every tile of the grid (the scene's own when ``grid`` is None), and the count."""
    t0 = time.perf_counter()
    n = 0
    with open_scene(path, warp_to=grid) as scene:
        _ = scene.stretch
        for tile in iter_grid(scene.info.width, scene.info.height):
            scene.read_tile(tile)
            n += 1
    return time.perf_counter() - t0, n


def best(path: Path, grid: TargetGrid | None, repeat: int) -> tuple[float, int]:
    runs = [read_all_tiles(path, grid) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[0][1]


def placing_reads(before: Path, after: Path, grid: TargetGrid, *, coarse: bool) -> dict[str, float]:
    """Seconds of the reads a comparison makes of the warped date before its first tile: the preview
    (the app), the coarse validity (the tile plan), the common area and the residual shift; ``coarse``
    False sends every read through the full-resolution warp (how it was before ``coarse_warp.py``)."""
    import rsvg_desktop.core.geo.scene.coarse_warp as coarse_warp

    factor = coarse_warp.read_factor
    if not coarse:
        coarse_warp.read_factor = lambda *_args: 1  # type: ignore[assignment]
    seconds: dict[str, float] = {}
    try:
        with open_scene(before) as b, open_scene(after, warp_to=grid) as a:
            steps = {
                "preview": lambda: a.preview(1024),
                "coarse validity": a.coarse_validity,
                "common area": lambda: common_area(b, a),
            }
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                seconds[name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            estimate_shift(b, a, common_area(b, a))
            seconds["shift"] = time.perf_counter() - t0 - seconds["common area"]
    finally:
        coarse_warp.read_factor = factor
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=4096, help="side of the before scene in px")
    ap.add_argument("--crs", default="EPSG:32651", help="the after date's CRS")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench", help="where the scenes are built")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    before = make_scene(args.size, args.work / f"scene_{args.size}.tif")
    after = make_after(
        before, args.work / f"scene_{args.size}_after_{args.crs.replace(':', '')}.tif", args.crs
    )
    with open_scene(before) as b, open_scene(after) as a:
        grid = choose_grid(b.info, a.info)
        log.info("before %dx%d (%s), after %dx%d (%s)", b.info.width, b.info.height, b.info.crs_name,
                 a.info.width, a.info.height, a.info.crs_name)  # fmt: skip
    plain_s, plain_n = best(after, None, args.repeat)
    warped_s, warped_n = best(after, grid, args.repeat)
    ref_s, ref_n = best(before, None, args.repeat)
    rows = [
        ("after, unwarped (own grid)", plain_s, plain_n),
        ("after, warped onto the before grid", warped_s, warped_n),
        ("before, own grid (reference)", ref_s, ref_n),
    ]
    for name, seconds, n in rows:
        log.info("%-38s %4d tiles  %6.2f s  %6.1f ms/tile", name, n, seconds, 1000 * seconds / n)
    log.info("warp cost: %.2fx the unwarped read per tile", (warped_s / warped_n) / (plain_s / plain_n))
    full, coarse = (placing_reads(before, after, grid, coarse=c) for c in (False, True))
    log.info("reads of the warped date before the first tile: full-resolution warp -> coarse VRT")
    for name in full:
        log.info("  %-18s %6.2f s -> %5.2f s", name, full[name], coarse[name])
    log.info("  %-18s %6.2f s -> %5.2f s", "total", sum(full.values()), sum(coarse.values()))


if __name__ == "__main__":
    main()
