"""One writer per run store: an exclusive advisory lock on its answer log, held while the store is open."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from rsvg_desktop.errors import ConfigError

try:  # POSIX advisory lock: one writer per store
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_store(log_path: Path, path: Path) -> int | None:
    """Hold an exclusive lock on the answer log for the life of the store (one writer per store)."""
    if fcntl is None:  # pragma: no cover - Windows: no advisory lock
        return None
    fd = os.open(log_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"{path} is being written by another rsvg batch process") from None
    return fd


def unlock_store(fd: int | None) -> None:
    """Release a lock taken by :func:`lock_store` (``None``: nothing held)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases the flock
