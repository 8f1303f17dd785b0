"""The scene job: tiles → batched generation → answer log → polygons → merged export.

:func:`run_scene` is a generator of :mod:`~rsvg_desktop.engine.events`: every yield is a progress
report and a cancellation point (closing the generator, or ``cancel()`` returning true, stops it after
the batch in flight). Whatever happens — success, cancel, an error — the answer log holds every tile
answered so far (one line per tile, flushed as it finishes), and the export at the end is written from
the tiles that finished. The CLI (``rsvg detect``), the model worker process and the GUI drive it.

Per-tile work outside the model is kept small: the prompt template, the processor and the generation
config are built once (in :class:`GeoChatGenerator`); tiles are read with windowed reads one batch ahead
in a background thread (:class:`~rsvg_desktop.engine.prefetch.Prefetch`), so reading overlaps with the
model; polygons are built vectorised per tile; merging runs once at the end.

Its steps, one module each: :mod:`.planning` (outputs, tile grid, scope, the run's fixed facts),
:mod:`.answering` (one batch of tiles asked in one call), :mod:`.recording` (an answer → its answer-log
line, polygons and event), :mod:`.finishing` (merging, the export, the last event); :mod:`.job` holds
the loop that drives them.
"""

from rsvg_desktop.engine.detect.answering import AnswerGenerator
from rsvg_desktop.engine.detect.job import run_scene
from rsvg_desktop.engine.detect.planning import answer_log_path, tiles_in_scope

__all__ = ["AnswerGenerator", "answer_log_path", "run_scene", "tiles_in_scope"]
