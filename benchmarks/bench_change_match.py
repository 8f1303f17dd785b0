"""Benchmark: matching two dates' objects (``rsvg change``'s step 3) at scene scale.

A synthetic 20,000 × 20,000 px scene holds ``--n`` small rotated rectangles (8–40 px long, 0.3–0.6 as
wide, any angle) of a few phrases, in clusters (parking lots, harbours) and scattered. The after date
keeps ``--persist`` of them, each moved by a jitter of about a pixel and turned a few degrees (boxes
drawn again by the model), its phrase sometimes in another form ("Ships" for "ship"), and adds new
objects up to the same count. Prints the matching time (median of ``--repeat`` runs) and the counts;
asserts nothing about time.

    .venv/bin/python benchmarks/bench_change_match.py [--n 10000] [--persist 0.7] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np
import shapely

from rsvg_desktop.core.geo.change.matching import match_objects
from rsvg_desktop.core.geo.change.types import TargetGrid
from rsvg_desktop.engine.change.verify_windows import group_questions

log = logging.getLogger("bench_change_match")

SIDE = 20_000.0
PHRASES = np.array(["ship", "airplane", "vehicle", "storage tank", "building"], dtype=object)
VARIANTS = {"ship": "Ships", "airplane": "airplanes", "vehicle": "Vehicles"}


def rectangles(cx: np.ndarray, cy: np.ndarray, length: np.ndarray, width: np.ndarray, angle: np.ndarray):
    """Rotated rectangles as shapely polygons (vectorised)."""
    c, s = np.cos(angle), np.sin(angle)
    hx, hy = length / 2, width / 2
    corners = np.empty((len(cx), 5, 2))
    for k, (u, v) in enumerate([(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]):
        corners[:, k, 0] = cx + u * hx * c - v * hy * s
        corners[:, k, 1] = cy + u * hx * s + v * hy * c
    return shapely.polygons(corners)


def objects(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` objects: half in 200 clusters of 300 px radius, half scattered."""
    n_clustered = n // 2
    centres = rng.uniform(500, SIDE - 500, size=(200, 2))
    pick = rng.integers(0, len(centres), n_clustered)
    xy = np.concatenate(
        [
            centres[pick] + rng.normal(0, 150, size=(n_clustered, 2)),
            rng.uniform(0, SIDE, size=(n - n_clustered, 2)),
        ]
    )
    length = rng.uniform(8, 40, n)
    return {
        "cx": xy[:, 0],
        "cy": xy[:, 1],
        "length": length,
        "width": length * rng.uniform(0.3, 0.6, n),
        "angle": rng.uniform(0, np.pi, n),
        "phrase": PHRASES[rng.integers(0, len(PHRASES), n)],
    }


def make_dates(n: int, persist: float, rng: np.random.Generator):
    """Before and after geometries and phrases."""
    before = objects(n, rng)
    kept = rng.random(n) < persist
    fresh = objects(n - int(kept.sum()), rng)
    after = {k: np.concatenate([before[k][kept], fresh[k]]) for k in before}
    m = int(kept.sum())
    after["cx"][:m] += rng.normal(0, 1.0, m)
    after["cy"][:m] += rng.normal(0, 1.0, m)
    after["angle"][:m] += np.radians(rng.normal(0, 3.0, m))
    after["length"][:m] *= rng.uniform(0.9, 1.1, m)
    variant = rng.random(len(after["phrase"])) < 0.3
    after["phrase"] = np.array(
        [VARIANTS.get(p, p) if v else p for p, v in zip(after["phrase"], variant, strict=True)], dtype=object
    )
    order = rng.permutation(len(after["cx"]))
    after = {k: v[order] for k, v in after.items()}
    geoms = [rectangles(d["cx"], d["cy"], d["length"], d["width"], d["angle"]) for d in (before, after)]
    return geoms[0], list(before["phrase"]), geoms[1], list(after["phrase"]), m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="objects a date")
    ap.add_argument("--persist", type=float, default=0.7, help="share of before objects still there after")
    ap.add_argument("--min-iou", type=float, default=0.3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(args.seed)
    bg, bp, ag, ap_, kept = make_dates(args.n, args.persist, rng)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        m = match_objects(bg, bp, ag, ap_, min_iou=args.min_iou)
        times.append(time.perf_counter() - t0)
    log.info(
        "%d before, %d after objects (%d persisting by construction): %d pairs, %d appeared, %d disappeared",
        len(bg),
        len(ag),
        kept,
        len(m.pairs),
        len(m.appeared),
        len(m.disappeared),
    )
    log.info("matching: %.3f s (median of %d; min %.3f s)", statistics.median(times), len(times), min(times))
    questions(m, bg, bp, ag, ap_)


def questions(m, bg, bp, ag, ap_) -> None:  # type: ignore[no-untyped-def]
    """How many questions verification asks about the unmatched objects, with 504 px tiles: one per
    object, against small neighbours of one phrase sharing one (``engine/change/verify_windows.py``)."""
    grid = TargetGrid(None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), SIDE, SIDE)  # pixel grid: coordinates are px
    t0 = time.perf_counter()
    asked = [
        group_questions(grid, 504, own, other, [(int(r), str(phrases[r]), geoms[r]) for r in rows])
        for own, other, rows, geoms, phrases in (
            ("before", "after", m.disappeared, bg, bp),
            ("after", "before", m.appeared, ag, ap_),
        )
    ]
    seconds = time.perf_counter() - t0
    unmatched = len(m.disappeared) + len(m.appeared)
    n = sum(len(q) for q in asked)
    log.info(
        "verification: %d unmatched objects -> %d questions (%.2f per object; windows placed in %.2f s)",
        unmatched,
        n,
        n / max(unmatched, 1),
        seconds,
    )


if __name__ == "__main__":
    main()
