"""The cut-off last line of a JSON Lines file that a killed process was writing.

One repair and one test for every append-only JSON Lines file the project writes (the answer log,
``rsvg bench run``'s answer files): :func:`repair_tail` before appending; :func:`cut_off` tells a
reader that a line is such a tail (no newline, not a whole JSON object), to be skipped with a
warning rather than refused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["cut_off", "repair_tail"]

log = logging.getLogger(__name__)


def cut_off(raw: bytes) -> bool:
    """Whether ``raw`` (one line as read, newline included when present) is a cut-off last line."""
    if raw.endswith(b"\n") or not raw.strip():
        return False
    try:
        return not isinstance(json.loads(raw.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return True


def repair_tail(path: Path) -> None:
    """Make ``path`` end with a complete line before appending to it.

    A last line without its newline was cut off while being written: if it still decodes as a JSON
    object it only lost the newline (one is added); otherwise it is removed, with a warning.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        # Find the start of the last line, reading backwards in blocks.
        block = 65536
        end = size
        start = 0
        while end > 0:
            begin = max(0, end - block)
            f.seek(begin)
            chunk = f.read(end - begin)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                start = begin + nl + 1
                break
            end = begin
        f.seek(start)
        tail = f.read()
        try:
            complete = isinstance(json.loads(tail.decode("utf-8")), dict)
        except (UnicodeDecodeError, ValueError):
            complete = False
        if complete:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
            log.warning("%s: last line had no newline; added one", path)
        else:
            f.truncate(start)
            log.warning("%s: removed a cut-off last line (%d bytes) before appending", path, len(tail))
