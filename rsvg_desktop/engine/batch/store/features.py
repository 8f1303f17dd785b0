"""Writing features into the run store's spatial layers: the boxes of answered tiles (one row per
box, GeoPackage geometry blobs) and tile footprints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.export import detections_frame
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.batch.store.records import TileAnswer
from rsvg_desktop.engine.batch.store.schema import DET_COLUMNS, FOOTPRINT_COLUMNS, det_columns
from rsvg_desktop.engine.batch.store.transactions import StoreDb

#: One footprint: run id, input id, scene, tile, polygon, skipped, skip reason, number of boxes.
FootprintRow = tuple[str, int, str, Tile, Any, bool, str | None, int]


def insert_detections(db: StoreDb, layer: str, answers: Sequence[TileAnswer], crs: Any | None) -> None:
    """Add the detections of answered tiles to ``layer`` (inside a transaction), widening its extent."""
    txn = db.require_txn()
    table = DetectionTable.concat([a.detections for a in answers])
    frame = detections_frame(table, crs=crs)
    area_name = "area_px" if "area_px" in frame.columns else "area_m2"
    input_ids = np.concatenate([np.full(len(a.detections), a.input_id, dtype=np.int64) for a in answers])
    box_index = np.concatenate([np.arange(len(a.detections), dtype=np.int64) for a in answers])
    pixel = layer.endswith("_pixel")
    geoms = table.geometry
    blobs = gpkg.geometry_blobs(geoms, db.layers[layer].srs_id)
    boxes, wins = table.boxes, table.windows
    angles = [None if math.isnan(a) else a for a in boxes[:, 4].tolist()]
    tile_rows, tile_cols = table.tile_row.tolist(), table.tile_col.tolist()
    tile_ids = [f"r{r}c{c}" for r, c in zip(tile_rows, tile_cols, strict=True)]
    w = wins.astype(np.int64)
    n = len(table)
    rows = list(
        zip(
            blobs,
            table.run_id.tolist(),
            input_ids.tolist(),
            table.scene.tolist(),
            table.task.tolist(),
            table.query.tolist(),
            table.phrase.tolist(),
            tile_rows,
            tile_cols,
            tile_ids,
            box_index.tolist(),
            angles,
            boxes[:, 0].tolist(),
            boxes[:, 1].tolist(),
            boxes[:, 2].tolist(),
            boxes[:, 3].tolist(),
            w[:, 0].tolist(),
            w[:, 1].tolist(),
            w[:, 2].tolist(),
            w[:, 3].tolist(),
            table.model.tolist(),
            table.precision.tolist(),
            [table.angle_convention.value] * n,
            frame[area_name].to_numpy(dtype=np.float64).tolist(),
            [int(pixel)] * n,
            strict=True,
        )
    )
    names = ", ".join(f'"{c}"' for c, _ in det_columns(pixel))
    marks = ", ".join("?" * (len(DET_COLUMNS) + 1))
    db.con.executemany(f'INSERT INTO "{layer}" ("geom", {names}) VALUES ({marks})', rows)
    db.layers[layer].widen_to_geometries(geoms)
    txn.touched.add(layer)


def insert_footprints(db: StoreDb, items: Sequence[FootprintRow]) -> None:
    """Add tile footprints to ``tile_footprints`` (inside a transaction; a tile already there is kept)."""
    txn = db.require_txn()
    layer = db.layers["tile_footprints"]
    geoms = np.asarray([it[4] for it in items], dtype=object)
    blobs = gpkg.geometry_blobs(geoms, layer.srs_id)
    rows = [
        (
            blob,
            run_id,
            input_id,
            scene,
            t.id,
            t.row,
            t.col,
            t.col_off,
            t.row_off,
            t.width,
            t.height,
            t.size,
            int(skipped),
            reason,
            n,
        )
        for blob, (run_id, input_id, scene, t, _, skipped, reason, n) in zip(blobs, items, strict=True)
    ]
    names = ", ".join(f'"{c}"' for c, _ in FOOTPRINT_COLUMNS)
    marks = ", ".join("?" * (len(FOOTPRINT_COLUMNS) + 1))
    db.con.executemany(f'INSERT OR IGNORE INTO "tile_footprints" ("geom", {names}) VALUES ({marks})', rows)
    layer.widen_to_geometries(geoms)
    txn.touched.add("tile_footprints")
