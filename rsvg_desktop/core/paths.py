"""Checks on the files a command reads and writes, shared by every command and the app.

:func:`refuse_same_file` stops a command before it could replace one of its own inputs with its output
(``rsvg export LOG -o LOG --overwrite`` would otherwise destroy the answer log), through symbolic
links, hard links and different spellings of the same path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rsvg_desktop.errors import ConfigError

__all__ = ["SameFileError", "refuse_same_file", "same_file"]


class SameFileError(ConfigError):
    """An output is the same file as an input of the command."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()  # follows links
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same inode when both exist (links included),
    else the same absolute path once links in their folders are resolved."""
    pa, pb = Path(a), Path(b)
    ia, ib = _identity(pa), _identity(pb)
    if ia is not None and ib is not None:
        return ia == ib
    return os.path.realpath(pa) == os.path.realpath(pb)


def refuse_same_file(
    outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Raise :class:`SameFileError` when any output is the same file as any input."""
    ins = [Path(p) for p in inputs]
    for out in outputs:
        for inp in ins:
            if same_file(out, inp):
                raise SameFileError(
                    f"{out}: the output is the same file as the input {inp}; writing it would destroy "
                    "the input: choose another output name"
                )
