"""The run store of ``rsvg batch``: one GeoPackage, written incrementally in sqlite transactions, plus
its answer log (``OUT.answers.jsonl``).

Why it survives ``kill -9``
    Every model batch is stored in **one transaction**: the ledger rows of the answered (tile,
    question) pairs, their raw detections, the tile footprints and, for every input whose last tile
    was in the batch, its seam-merged detections and its status. SQLite's rollback journal makes the
    transaction all or nothing, so a killed process leaves the file as it was after the last commit
    (the next open rolls back a half-written one). The ledger (``tiles``), not the log, says what is
    done. The answer log is written **after** the commit, from the ledger rows, each line carrying the
    row's ``store_seq`` (``extra`` key): when the process dies between the commit and the log lines,
    the next open repairs a cut-off last line and appends the rows whose ``store_seq`` is past the last
    one logged. So every stored answer is logged exactly once, and a logged answer is always stored.

Layout (GeoPackage 1.2; QGIS and GDAL read it as it is being written)
    ``detections``            merged detections of georeferenced inputs (output CRS), per (run, input)
    ``tile_detections``       every box of every answered tile, before merging (output CRS)
    ``tile_footprints``       tile windows of georeferenced inputs: answered, or skipped as nodata
    ``detections_pixel``      merged detections of inputs without CRS, in their pixel coordinates
                              (undefined Cartesian SRS, ``pixel_mode`` = 1), one layer for all of them
    ``tile_detections_pixel`` raw boxes of inputs without CRS
    ``tiles``                 the ledger: one row per (run, input, tile window), the raw answer, tokens,
                              time, device; ``status`` ``done`` or ``skipped`` (nodata)
    ``inputs``                one row per input file: size, CRS, where its georeferencing came from
    ``input_runs``            one row per (run, input): ``done`` or ``failed`` with the reason
    ``run``                   one row per run id: model, precision, task, query, prompt, grid, ...
    ``sessions``              one row per invocation, with its JSON summary
    ``layer_styles``          default QGIS styles; ``rsvg_batch_meta`` internal key/value metadata

    Spatial layers are created when first needed (the pixel layers only when an input without CRS
    comes). Their tables, SRS entry, R-tree index and triggers are created in one transaction.

Output CRS
    One per store: ``crs`` when given at creation, else the CRS of the first georeferenced input;
    every other georeferenced input is reprojected to it (see :meth:`BatchStore.set_output_crs`).

Geometries are written as GeoPackage binary (``GP`` header with an XY envelope, then ISO WKB). The
R-tree triggers GDAL and the spec define call ``ST_IsEmpty``/``ST_MinX``/...;
:mod:`rsvg_desktop.core.geo.gpkg` registers those SQL functions on the store's own connection.
``gpkg_contents`` extents are widened at every commit.

Modules
    ``batch_store``   :class:`BatchStore`: opening, the output CRS, transactions, the reads and writes
    ``records``       the values it takes and gives (:class:`RunRecord`, :class:`TileAnswer`, ...)
    ``schema``        tables and columns; creating a store, checking and updating an older one
    ``lock``          one writer per store (an advisory lock on the answer log)
    ``transactions``  the connection, its spatial layers and the transaction under way
    ``layers``        which spatial layers exist, their extents and default styles
    ``features``      boxes and tile footprints written into the spatial layers
    ``ledger``        the runs and the (tile, question) ledger: answered and skipped tiles, counts
    ``known_inputs``  the input files: found again after a move, their status per run
    ``seams``         an input's raw boxes merged across tile seams when it is finished
    ``answer_mirror`` the answer log kept up to date with the ledger
"""

from rsvg_desktop.engine.batch.store.batch_store import BatchStore
from rsvg_desktop.engine.batch.store.records import (
    InputOutcome,
    InputRecord,
    RunRecord,
    StoreTotals,
    TileAnswer,
)
from rsvg_desktop.engine.batch.store.schema import STORE_FORMAT

__all__ = [
    "STORE_FORMAT",
    "BatchStore",
    "InputOutcome",
    "InputRecord",
    "RunRecord",
    "StoreTotals",
    "TileAnswer",
]
