"""How a batch knows its inputs again: by path, or (a moved or renamed archive) by the path relative
to the batch root and the content id (see :mod:`~rsvg_desktop.engine.inputs`); what the store records
about each file; and a warning when a file changed after it was processed."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from rsvg_desktop.engine.batch.store import BatchStore, InputRecord
from rsvg_desktop.engine.inputs import content_id

log = logging.getLogger(__name__)


class InputIdentity:
    """The identity of the inputs of one batch in its store; content ids are computed at most once per
    file and kept only until the file is recorded."""

    def __init__(self, store: BatchStore, root: str) -> None:
        self.store = store
        self.root = root  # the batch root (see :func:`~rsvg_desktop.engine.inputs.batch_root`)
        self._content: dict[str, str | None] = {}  # content ids computed by a lookup, until recorded

    def rel(self, path: str) -> str:
        """The input's path relative to the batch root (POSIX separators)."""
        return Path(os.path.relpath(path, self.root)).as_posix() if self.root else path

    def content_id(self, path: str) -> str | None:
        """The input's content id (``None`` when the file cannot be read)."""
        if path not in self._content:
            try:
                self._content[path] = content_id(path)
            except OSError:
                self._content[path] = None
        return self._content[path]

    def forget(self, path: str) -> None:
        """Drop the content id kept for ``path``."""
        self._content.pop(path, None)

    def lookup(self, path: str) -> int | None:
        """The stored input at ``path``, or the same file stored under another path (moved archive)."""
        return self.store.find_input(path, self.rel(path), lambda: self.content_id(path))

    def warn_if_changed(self, path: str, input_id: int) -> None:
        """Log a warning when the file's size or time differs from what the store recorded."""
        try:
            st = os.stat(path)
        except OSError:
            return
        size, mtime = self.store.input_fingerprint(input_id)
        if size is not None and (size, mtime) != (st.st_size, st.st_mtime_ns):
            log.warning(
                "%s changed since it was processed; its stored results are kept (use another output "
                "or --overwrite to redo it)",
                path,
            )

    def file_record(self, path: str, **kw: Any) -> InputRecord:
        """What the store keeps about the file: its size, time and identity, plus ``kw``."""
        rel = self.rel(path)
        cid = self.content_id(path)
        self.forget(path)
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            return InputRecord(path=path, size_bytes=None, mtime_ns=None, content_id=cid, rel_path=rel, **kw)
        return InputRecord(path=path, size_bytes=size, mtime_ns=mtime, content_id=cid, rel_path=rel, **kw)
