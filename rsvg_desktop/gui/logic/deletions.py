"""The detections an analyst deleted from a run, kept with the run (Qt-free).

Deleting false positives in the results table curates a run; the curation lives beside the run's answer
log, in ``<stem>.deleted.json`` (``run.answers.jsonl`` → ``run.deleted.json``), so reopening the log
(even in a later session) brings the table back as it was left, and a new run does not lose it.

The file holds the run id and the keys ``(tile row, tile column, index of the box in the tile's
answer)`` that the engine's export understands as ``exclude``. A file written for another run (an
answer log overwritten by a new run of the same name) is ignored. No deletion: no file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["deletions_path", "read_deletions", "write_deletions"]

log = logging.getLogger(__name__)

Key = tuple[int, int, int]
_LOG_SUFFIXES = (".answers.jsonl", ".jsonl")


def deletions_path(answer_log: str | os.PathLike[str]) -> Path:
    """The file beside ``answer_log`` that keeps its run's deletions."""
    path = Path(answer_log)
    stem = path.name
    for suffix in _LOG_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return path.with_name(f"{stem}.deleted.json")


def read_deletions(answer_log: str | os.PathLike[str], run_id: str | None) -> frozenset[Key]:
    """The keys deleted from the run of ``answer_log`` (empty when none were, or the file is of another
    run or unreadable: an unreadable file is logged, never fatal — the run still opens)."""
    path = deletions_path(answer_log)
    if not path.is_file():
        return frozenset()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if run_id is not None and data.get("run_id") not in (None, run_id):
            log.info("%s: deletions of run %s, not of %s: ignored", path, data.get("run_id"), run_id)
            return frozenset()
        return frozenset((int(r), int(c), int(i)) for r, c, i in data["deleted"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("%s: cannot read the deleted detections (%s); the run opens without them", path, exc)
        return frozenset()


def write_deletions(answer_log: str | os.PathLike[str], run_id: str | None, keys: Iterable[Key]) -> Path:
    """Keep ``keys`` as the run's deletions (the file is removed when there are none). Raises OSError."""
    path = deletions_path(answer_log)
    deleted = sorted({(int(r), int(c), int(i)) for r, c, i in keys})
    if not deleted:
        path.unlink(missing_ok=True)
        return path
    payload = {"answer_log": Path(answer_log).name, "run_id": run_id, "deleted": [list(k) for k in deleted]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
