"""``rsvg batch``: GeoChat over whole archives (folders of scenes or pre-cut tiles), offline, resumable.

A batch is a set of inputs (see :mod:`~rsvg_desktop.engine.inputs`) and one or more questions. Each
question is a **run** with a deterministic run id (:func:`run_identity`): a hash of the model's
identity (:func:`model_fingerprint`), the precision, the task, the question (and class list), the full
prompt text and :data:`PROMPT_VERSION`, the tile grid (size, overlap, target GSD), the angle
convention, ``max_new_tokens`` and ``--assume-crs``. Re-running the same command finds the same run
ids in the store and goes on where it stopped; changing any of those starts new run ids next to the
old ones in the same store instead of mixing results.

How work flows
    Inputs are visited in order; an input whose runs are all ``done`` in the store is skipped without
    being opened. Otherwise it is opened (always with pixel mode allowed), georeferenced, tiled as in
    the geo core (:func:`~rsvg_desktop.core.geo.grid.plan_tiles`, nodata tiles skipped), and every
    (tile, question) pair not yet in the store's ledger becomes a request. Requests from consecutive
    inputs fill the same model batch, so a folder of single-tile images runs at full batch size.
    Each batch is answered by the generator, its answers are turned into polygons with the scene job's
    own functions (:func:`~rsvg_desktop.engine.results.detections_for_answer`), and stored in one
    transaction together with the seam-merged detections and status of every input that finished in
    it (:mod:`~rsvg_desktop.engine.batch.store`). The answer log follows the commit.

Failures
    An input that cannot be opened, tiled or read is recorded as ``failed`` (stage ``open``, ``plan``
    or ``read``, with the error) and the batch goes on; what it finished is kept and merged. A batch
    the model fails on (:class:`~rsvg_desktop.errors.GenerationError`) fails the inputs in it (stage
    ``model``); after :data:`MAX_CONSECUTIVE_MODEL_FAILURES` failed batches in a row the batch stops
    (``aborted``). Failed inputs are retried by the next run of the same command.

Memory stays flat: inputs are opened one at a time, tiles are read one at a time, at most one
batch of images is held, and per-tile results go to the store, not to memory.

Modules
    ``config``          :class:`BatchConfig`, :class:`ModelIdentity`, :class:`ModelForBatch`
    ``identity``        the model's fingerprint and the run ids
    ``job``             :class:`BatchJob` (drives the steps, records the session), :func:`run_batch`,
                        :func:`batch_detect`
    ``input_identity``  inputs known again by path or content (moved archives)
    ``work``            producing work: inputs opened, registered, tiled and read into work items
    ``dispatch``        work items to the model (a generator, or an Answerer with batches in flight)
    ``storing``         answers to polygons, committed with the inputs they finish
    ``summary``         progress events and the session's summary
    ``state``           what those steps share while a batch runs
    ``store``           the run store (a package of its own)
"""

from rsvg_desktop.engine.batch.config import BatchConfig, ModelForBatch, ModelIdentity, ModelLoader
from rsvg_desktop.engine.batch.dispatch import MAX_CONSECUTIVE_MODEL_FAILURES
from rsvg_desktop.engine.batch.identity import PROMPT_VERSION, model_fingerprint, run_identity
from rsvg_desktop.engine.batch.job import BatchJob, batch_detect, run_batch
from rsvg_desktop.engine.batch.summary import summary_json

__all__ = [
    "MAX_CONSECUTIVE_MODEL_FAILURES",
    "PROMPT_VERSION",
    "BatchConfig",
    "BatchJob",
    "ModelForBatch",
    "ModelIdentity",
    "ModelLoader",
    "batch_detect",
    "model_fingerprint",
    "run_batch",
    "run_identity",
    "summary_json",
]
