"""Benchmark: GeoChat boxes → polygons → seam merge → GeoPackage, at scene scale.

A synthetic scene of ``--grid`` × ``--grid`` tiles (504 px, 64 px overlap, 0.3 m pixels in UTM 18N)
holds ``--n`` boxes written on the tiles' 0–100 integer grid, as GeoChat writes them; about
``--dup`` of them are second copies of an object whose centre lies in the overlap of two tiles (the
seam duplicates merging must remove; where both tiles cut the object, each holds a fragment that
the stitch pass must join). ``--pairs`` more pairs of *distinct* neighbouring objects of one phrase lie
side by side across a seam (a gap of 0–8 px, the same rows), each seen by both tiles: merging must
not fuse them. Prints the time of every stage; asserts nothing about time.

``--single 2000,5000,20000`` instead measures merging one answer that holds that many boxes (one
tile; small and large boxes and repeats), each size in a fresh process: time and peak memory of the merge.

    .venv/bin/python benchmarks/bench_boxes.py [--n 100000] [--grid 40] [--dup 0.2] [--pairs 1000]
    .venv/bin/python benchmarks/bench_boxes.py --single 2000,5000,20000
"""

from __future__ import annotations

import argparse
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rsvg_desktop.core.geo.boxes import boxes_to_pixel_corners, grid_boxes_to_polygons
from rsvg_desktop.core.geo.detections import DetectionTable, RunInfo, tile_records
from rsvg_desktop.core.geo.export import export_detections
from rsvg_desktop.core.geo.merge import MergeConfig, MergeReason, apply_merge, merge_boxes, merge_detections
from rsvg_desktop.core.types import Tile

log = logging.getLogger("bench_boxes")

TILE, OVERLAP = 504, 64
STRIDE = TILE - OVERLAP
TRANSFORM = (0.3, 0.0, 580_000.0, 0.0, -0.3, 2_700_000.0)  # 0.3 m, north-up, UTM 18N
CRS = 32618
PHRASES = np.array(["airplane", "ship", "storage tank", "vehicle", None], dtype=object)


def make_scene(n: int, grid: int, dup: float, rng: np.random.Generator):
    """Boxes on the tiles' integer grid, with ``dup`` of them seam duplicates."""
    side = (grid - 1) * STRIDE + TILE
    n_dup = round(n * dup)
    n_obj = n - n_dup
    # Objects: centre, size 20–100 px, angle 90 (upright, as GeoChat mostly writes) or any 0–90.
    cx, cy = rng.uniform(0, side, n_obj), rng.uniform(0, side, n_obj)
    w, h = rng.uniform(20, 100, n_obj), rng.uniform(20, 100, n_obj)
    angle = np.where(rng.random(n_obj) < 0.6, 90.0, rng.integers(0, 91, n_obj).astype(float))
    phrase = PHRASES[rng.integers(0, len(PHRASES), n_obj)]

    # Tiles whose window holds the centre: the last one along each axis, and the one before it when
    # the centre is in their overlap.
    def tiles_along(c):
        last = np.minimum(np.floor(c / STRIDE), grid - 1).astype(np.int64)
        prev = last - 1
        in_prev = (prev >= 0) & (c < prev * STRIDE + TILE)
        return last, prev, in_prev

    col, pcol, in_pcol = tiles_along(cx)
    row, prow, in_prow = tiles_along(cy)
    seam = np.flatnonzero(in_pcol | in_prow)
    if len(seam) < n_dup:
        raise SystemExit(f"only {len(seam)} objects on seams for {n_dup} duplicates: lower --dup")
    dup_of = rng.choice(seam, n_dup, replace=False)
    # The duplicate comes from the neighbouring tile along an axis where the centre is in an overlap.
    use_col = in_pcol[dup_of] & (~in_prow[dup_of] | (rng.random(n_dup) < 0.5))
    d_col = np.where(use_col, pcol[dup_of], col[dup_of])
    d_row = np.where(use_col, row[dup_of], prow[dup_of])

    idx = np.r_[np.arange(n_obj), dup_of]
    t_row = np.r_[row, d_row]
    t_col = np.r_[col, d_col]
    col_off, row_off = t_col * STRIDE, t_row * STRIDE
    ocx, ocy, ow, oh, oa = cx[idx], cy[idx], w[idx], h[idx], angle[idx]
    # What the tile sees of an upright object (angle 0 or 90): its extent clipped to the window.
    ex0, ex1 = np.clip(ocx - ow / 2, col_off, col_off + TILE), np.clip(ocx + ow / 2, col_off, col_off + TILE)
    ey0, ey1 = np.clip(ocy - oh / 2, row_off, row_off + TILE), np.clip(ocy + oh / 2, row_off, row_off + TILE)
    upright = (oa == 0) | (oa == 90)
    vcx = np.where(upright, (ex0 + ex1) / 2, ocx)
    vcy = np.where(upright, (ey0 + ey1) / 2, ocy)
    vw = np.where(upright, ex1 - ex0, ow)
    vh = np.where(upright, ey1 - ey0, oh)
    # At 90° the written rectangle is the turned one: its width is the visible height and vice versa.
    # Where that written rectangle would leave the 0–100 grid (near a tile edge), write it at 0°.
    off_x, off_y = vcx - col_off, vcy - row_off
    leaves = (off_x - vh / 2 < 0) | (off_x + vh / 2 > TILE) | (off_y - vw / 2 < 0) | (off_y + vw / 2 > TILE)
    oa = np.where((oa == 90) & leaves, 0.0, oa)
    ww = np.where(oa == 90, vh, vw)
    wh = np.where(oa == 90, vw, vh)

    def g(v, off):  # scene pixels → the tile's integer 0–100 grid, as GeoChat writes it
        return np.clip(np.rint((v - off) / TILE * 100), 0, 100)

    x1, x2 = g(vcx - ww / 2, col_off), g(vcx + ww / 2, col_off)
    y1, y2 = g(vcy - wh / 2, row_off), g(vcy + wh / 2, row_off)
    boxes = np.column_stack([x1, y1, x2, y2, oa])
    windows = np.column_stack([col_off, row_off, np.full(n, TILE), np.full(n, TILE)]).astype(float)
    order = rng.permutation(n)  # answers arrive tile by tile, not object by object: shuffle anyway
    return boxes[order], windows[order], phrase[idx][order], t_row[order], t_col[order], idx[order]


def make_neighbours(pairs: int, grid: int, first_obj: int, rng: np.random.Generator):
    """``pairs`` pairs of distinct upright objects of one phrase side by side across a column seam
    (at most one pair per tile row and seam). Object ids: ``first_obj + 2 * pair + (0 for P, 1 for Q)``.

    P ends and Q starts within 40 px of the seam band (gap 0–8 px, same rows ± 2 px); each object is
    written by both tiles of the seam, clipped to the tile, as in :func:`make_scene`.
    """
    # One pair per (tile row, seam) slot, so that pairs never touch each other.
    slot = rng.choice(grid * (grid - 1), pairs, replace=False)
    r, c = slot // (grid - 1), slot % (grid - 1) + 1  # the seam between tile columns c-1 and c
    band_lo, band_hi = c * STRIDE, (c - 1) * STRIDE + TILE
    contact = rng.uniform(band_lo - 40, band_hi + 40)
    gap = rng.uniform(0, 8, pairs)
    wp, wq = rng.uniform(30, 100, pairs), rng.uniform(30, 100, pairs)
    y0 = r * STRIDE + rng.uniform(20, TILE - 120, pairs)
    hgt = rng.uniform(20, 90, pairs)
    objs = [
        (contact - gap / 2 - wp, y0, contact - gap / 2, y0 + hgt),
        (contact + gap / 2, y0 + rng.uniform(-2, 2, pairs), contact + gap / 2 + wq, y0 + hgt),
    ]
    phrase = PHRASES[rng.integers(0, len(PHRASES), pairs)]
    out = []
    for k, (x0, oy0, x1, oy1) in enumerate(objs):
        for tc in (c - 1, c):
            off = tc * STRIDE
            ex0, ex1 = np.clip(x0, off, off + TILE), np.clip(x1, off, off + TILE)
            seen = ex1 - ex0 > 4  # the tile sees a piece of it

            def g(v, o):
                return np.clip(np.rint((v - o) / TILE * 100), 0, 100)

            boxes = np.column_stack(
                [g(ex0, off), g(oy0, r * STRIDE), g(ex1, off), g(oy1, r * STRIDE), np.zeros(pairs)]
            )
            windows = np.column_stack([off, r * STRIDE, np.full(pairs, TILE), np.full(pairs, TILE)]).astype(
                float
            )
            ids = first_obj + 2 * np.arange(pairs) + k
            out.append((boxes[seen], windows[seen], phrase[seen], r[seen], tc[seen], ids[seen]))
    return tuple(np.concatenate([o[i] for o in out]) for i in range(6))


def make_single_answer(n: int, rng: np.random.Generator, shape: str = "mixed"):
    """One answer with ``n`` boxes in one 504 px tile. ``mixed``: 70 % small boxes (1–8 grid units),
    20 % large ones (10–60 units) and 10 % repeats of 20 of the boxes. ``loop``: a model stuck in a
    loop, every box one of 5 boxes moved by up to ±1 grid unit (nearly every pair overlaps)."""
    if shape == "loop":
        base = np.array(
            [[10, 10, 40, 30, 90], [50, 20, 80, 60, 90], [5, 60, 45, 95, 0], [60, 70, 90, 90, 45]]
        )
        base = np.concatenate([base, [[30, 30, 70, 70, 90]]]).astype(float)
        boxes = base[rng.integers(0, len(base), n)]
        boxes[:, :4] += rng.integers(-1, 2, (n, 4))
        windows = np.tile(np.array([0.0, 0.0, TILE, TILE]), (n, 1))
        return boxes, windows, np.full(n, "tennis courts", dtype=object)
    m = n - n // 10
    x, y = rng.uniform(0, 95, m), rng.uniform(0, 95, m)
    large = rng.random(m) < 0.2 / 0.9
    w = np.where(large, rng.uniform(10, 60, m), rng.uniform(1, 8, m))
    h = np.where(large, rng.uniform(10, 60, m), rng.uniform(1, 8, m))
    angle = np.where(rng.random(m) < 0.7, 90.0, rng.integers(0, 91, m).astype(float))
    boxes = np.rint(np.column_stack([x, y, np.minimum(x + w, 100), np.minimum(y + h, 100), angle]))
    boxes = np.concatenate([boxes, boxes[rng.integers(0, 20, n - m)]])
    phrases = PHRASES[:3][rng.integers(0, 3, n)]
    windows = np.tile(np.array([0.0, 0.0, TILE, TILE]), (n, 1))
    return boxes, windows, phrases


def single_answer_child(n: int, shape: str) -> None:
    """Merge one answer of ``n`` boxes; print ``n seconds peak-growth-MB kept`` (run in a fresh process)."""
    boxes, windows, phrases = make_single_answer(n, np.random.default_rng(n), shape)
    corners = boxes_to_pixel_corners(boxes, windows)
    zeros = np.zeros(n, dtype=np.int64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    res = merge_boxes(corners, windows, phrases, zeros, zeros, MergeConfig())
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(n, f"{dt:.3f}", f"{(peak - before) / 1024:.1f}", f"{peak / 1024:.1f}", len(res.kept))


def single_answer(sizes: list[int]) -> None:
    print("one answer, one tile: merge time and peak memory (each size in a fresh process)")
    head = ("shape", "boxes", "seconds", "peak RSS growth", "peak RSS", "kept")
    print("  " + " ".join(f"{h:>{w}s}" for h, w in zip(head, (6, 7, 9, 16, 10, 7), strict=True)))
    for shape in ("mixed", "loop"):
        for n in sizes:
            cmd = [sys.executable, __file__, "--single-child", str(n), "--single-shape", shape]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            cells = (shape, out[0], out[1], out[2] + " MB", out[3] + " MB", out[4])
            print("  " + " ".join(f"{c:>{w}s}" for c, w in zip(cells, (6, 7, 9, 16, 10, 7), strict=True)))


def timed(label: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    print(f"  {label:<44s} {dt:8.3f} s")
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="boxes in all (default 100000)")
    ap.add_argument("--grid", type=int, default=40, help="tiles per side (default 40)")
    ap.add_argument("--dup", type=float, default=0.2, help="fraction of seam duplicates (default 0.2)")
    ap.add_argument("--pairs", type=int, default=1000, help="distinct neighbour pairs across seams (1000)")
    ap.add_argument(
        "--single", default=None, help="comma-separated sizes: merge one answer of that many boxes"
    )
    ap.add_argument("--single-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--single-shape", default="mixed", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="folder for the exports (default: a temp folder)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.single_child is not None:
        single_answer_child(args.single_child, args.single_shape)
        return
    if args.single:
        single_answer([int(v) for v in args.single.split(",")])
        return

    rng = np.random.default_rng(args.seed)
    boxes, windows, phrases, rows, cols, obj = make_scene(args.n, args.grid, args.dup, rng)
    n_scene = len(boxes)
    n_scene_obj = len(np.unique(obj))
    if args.pairs:
        nb = make_neighbours(args.pairs, args.grid, n_scene_obj + (n_scene_obj % 2), rng)
        boxes, windows, phrases, rows, cols, obj = (
            np.concatenate([a, b])
            for a, b in zip((boxes, windows, phrases, rows, cols, obj), nb, strict=True)
        )
    n_obj = len(np.unique(obj))
    side = (args.grid - 1) * STRIDE + TILE
    print(
        f"scene {side}×{side} px, {args.grid}×{args.grid} tiles of {TILE} px (overlap {OVERLAP}); "
        f"{n_scene} boxes = {n_scene_obj} objects + {n_scene - n_scene_obj} seam duplicates; "
        f"plus {len(boxes) - n_scene} boxes of {args.pairs} distinct neighbour pairs"
    )

    print("stages:")
    geoms, t_poly = timed(
        "boxes → polygons (scene CRS, EPSG:32618)", grid_boxes_to_polygons, boxes, windows, TRANSFORM, CRS
    )
    _, t_wgs = timed(
        "boxes → polygons (reprojected to EPSG:4326)",
        grid_boxes_to_polygons,
        boxes,
        windows,
        TRANSFORM,
        CRS,
        4326,
    )
    table, t_tab = timed(
        "columnar DetectionTable",
        DetectionTable.from_columns,
        phrase=phrases,
        task="grounding",
        query="[grounding] describe the image",
        tile_row=rows,
        tile_col=cols,
        boxes=boxes,
        windows=windows,
        geometry=geoms,
        model="geochat-7b",
        precision="bf16",
        run_id="bench",
        scene="synthetic.tif",
    )
    res, t_merge = timed(
        "merge (IoU 0.5 + IoS 0.8 + stitch, STRtree)", merge_detections, table, MergeConfig()
    )
    kept, t_apply = timed("stitched polygons", apply_merge, table, res)
    t_merge += t_apply
    n_iou = int(np.count_nonzero(res.reason == MergeReason.IOU))
    n_ios = int(np.count_nonzero(res.reason == MergeReason.IOS))
    n_stitch = int(np.count_nonzero(res.reason == MergeReason.STITCH))
    grid = range(args.grid)
    tiles = [Tile(r, c, c * STRIDE, r * STRIDE, TILE, TILE) for r in grid for c in grid]
    recs, t_tiles = timed("tile footprints", tile_records, tiles, TRANSFORM, CRS, skipped=[(0, 0)])

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        run = RunInfo(
            run_id="bench",
            scene="synthetic.tif",
            model="geochat-7b",
            precision="bf16",
            device="CPU",
            overlap=OVERLAP,
            random_weights=True,
        )
        _, t_gpkg = timed(
            f"GeoPackage export ({len(kept)} detections + tiles)",
            export_detections,
            out / "bench.gpkg",
            kept,
            crs=CRS,
            tiles=recs,
            run=run,
            overwrite=True,
        )
        _, t_json = timed(
            "GeoJSON export (RFC 7946, reprojected)",
            export_detections,
            out / "bench.geojson",
            kept,
            crs=CRS,
            run=run,
            overwrite=True,
        )
        _, t_shp = timed(
            "Shapefile export", export_detections, out / "bench.shp", kept, crs=CRS, run=run, overwrite=True
        )
        size = (out / "bench.gpkg").stat().st_size / 2**20

    # Against the truth: a drop is right when the absorbing box shows the same object.
    dropped = res.dropped
    same_obj = obj[res.absorbed_by[dropped]] == obj[dropped]
    objects_kept = len(np.unique(obj[res.kept]))
    scene_kept = res.kept[res.kept < n_scene]
    scene_left = len(scene_kept) - len(np.unique(obj[scene_kept]))
    n_dup = n_scene - n_scene_obj
    # Neighbour pairs: a drop that gives a box of one object of a pair to the other one fuses them.
    nb_drop = dropped[dropped >= n_scene]
    first_nb = n_scene_obj + (n_scene_obj % 2)
    partner = (obj[nb_drop] - first_nb) ^ 1
    fused = np.unique((obj[nb_drop] - first_nb)[obj[res.absorbed_by[nb_drop]] - first_nb == partner] // 2)
    stitched = dropped[res.reason[dropped] == MergeReason.STITCH]
    wrong_stitch = int(np.count_nonzero(obj[res.absorbed_by[stitched]] != obj[stitched]))
    print("summary:")
    print(
        f"  drops of a copy of the same object: {int(same_obj.sum())}; of a different object: "
        f"{int((~same_obj).sum())} (by stitching: {wrong_stitch}); objects with a survivor: "
        f"{objects_kept} of {n_obj}"
    )
    print(
        f"  seam copies left (random scene): {scene_left} of {n_dup} "
        f"({100 * scene_left / max(n_dup, 1):.2f} %); "
        f"neighbour pairs fused: {len(fused)} of {args.pairs}"
    )
    print(
        f"  merge kept {len(res.kept)} of {len(boxes)} (dropped {n_iou} by IoU, {n_ios} by IoS, "
        f"{n_stitch} stitched); objects generated: {n_obj}"
    )
    print(
        f"  boxes→polygons→merge→GeoPackage: {t_poly + t_tab + t_merge + t_gpkg:.3f} s "
        f"(GeoPackage {size:.1f} MiB)"
    )
    print(
        f"  other: WGS84 polygons {t_wgs:.3f} s, tiles {t_tiles:.3f} s, GeoJSON {t_json:.3f} s, "
        f"Shapefile {t_shp:.3f} s"
    )


if __name__ == "__main__":
    main()
