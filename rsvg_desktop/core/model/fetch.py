"""Downloading a model's files from a hub, resumably, with progress, cancel and integrity checks.

Files are fetched from ``{endpoint}/{repository}/resolve/{revision}/{name}`` (the Hugging Face layout;
any mirror or a plain web server with that layout works) with the standard library's HTTP client:

- **Resume**: data goes to ``<name>.part``; a later call continues it with an HTTP ``Range`` request (a
  server that ignores the range restarts the file). A file is renamed into place only once complete and
  checked, so nothing half-made ever looks finished.
- **Integrity**: the size and sha256 are checked against the manifest when it has them, else against
  what the hub states (``X-Linked-Size`` / ``X-Linked-Etag`` of large files), else against the record
  of the first complete download (trust on first use: ``rsvg-download.json`` in the folder). A
  mismatch deletes the file and raises :class:`~rsvg_desktop.errors.IntegrityError` naming it.
- **Cancel**: ``should_stop`` is polled between 1 MiB chunks; :class:`~rsvg_desktop.errors.CancelledError`
  leaves only ``.part`` files (resumed next time) and no record.
- **Offline**: ``HF_HUB_OFFLINE`` or an unreachable host is one :class:`~rsvg_desktop.errors.OfflineError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvg_desktop.core.model.manifest import Component, ManifestFile
from rsvg_desktop.errors import CancelledError, IntegrityError, ModelError, OfflineError

__all__ = [
    "RECORD_NAME",
    "DownloadProgress",
    "download_component",
    "is_complete",
    "read_record",
    "verify_component",
]

log = logging.getLogger(__name__)

RECORD_NAME = "rsvg-download.json"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """Where a download stands. ``total`` may be an estimate (``None`` before any size is known)."""

    file: str
    done: int
    total: int | None
    bytes_per_s: float
    files_done: int
    files_total: int

    @property
    def seconds_left(self) -> float | None:
        if self.total is None or self.bytes_per_s <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.bytes_per_s)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished download (every file fetched and checked)."""
    record = read_record(folder)
    return bool(record and record.get("complete"))


def read_record(folder: Path) -> dict[str, Any] | None:
    """The download record of ``folder`` (``None`` when there is none or it is unreadable)."""
    try:
        data = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _sha256_of(path: Path, should_stop: Callable[[], bool] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if should_stop is not None and should_stop():
                raise CancelledError(f"checking {path.name} cancelled")
            h.update(chunk)
    return h.hexdigest()


def _request(url: str, start: int, timeout: float) -> Any:
    headers = {"User-Agent": "rsvg-desktop"}
    token = os.environ.get("HF_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _expected(
    entry: ManifestFile, headers: Any, recorded: dict[str, Any] | None
) -> tuple[int | None, str | None, str]:
    """(size, sha256, what they come from) for one file."""
    if entry.bytes is not None or entry.sha256 is not None:
        return entry.bytes, entry.sha256, "the manifest"
    linked_size = headers.get("X-Linked-Size") if headers is not None else None
    linked_etag = (headers.get("X-Linked-Etag") or "").strip('"').lower() if headers is not None else ""
    if linked_size or len(linked_etag) == 64:
        size = int(linked_size) if linked_size and linked_size.isdigit() else None
        return size, linked_etag if len(linked_etag) == 64 else None, "the hub"
    if recorded:
        return recorded.get("bytes"), recorded.get("sha256"), f"the first download ({RECORD_NAME})"
    return None, None, ""


def download_component(
    component: Component,
    dest: str | os.PathLike[str],
    *,
    progress: Callable[[DownloadProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout: float = 30.0,
    label: str = "",
) -> Path:
    """Fetch every file of ``component`` into ``dest`` (see the module doc); returns ``dest``.
    Files already complete and matching are not fetched again."""
    folder = Path(dest)
    name = label or component.hub.repository
    if _offline():
        raise OfflineError(
            f"cannot download {name}: offline mode is on (HF_HUB_OFFLINE). Copy the model folder to this "
            "machine and choose it instead."
        )
    folder.mkdir(parents=True, exist_ok=True)
    record = read_record(folder) or {}
    recorded_files: dict[str, Any] = record.get("files", {}) if isinstance(record.get("files"), dict) else {}
    total_hint = component.size_hint
    done_before = 0
    seen: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    fetched = 0
    revision_seen = record.get("revision_seen")
    for index, entry in enumerate(component.files):
        target = folder / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        known = recorded_files.get(entry.name)
        if target.is_file() and known and target.stat().st_size == known.get("bytes"):
            seen[entry.name] = known  # complete before; `verify_component` re-hashes on demand
            done_before += target.stat().st_size
            continue
        part = target.with_name(target.name + ".part")
        start = part.stat().st_size if part.is_file() else 0
        url = component.hub.url(entry.name)
        try:
            response = _request(url, start, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # the .part already holds the whole file
                response = None
            elif exc.code in (401, 403, 404):
                raise ModelError(
                    f"{name}: {entry.name} is not available at {url} (HTTP {exc.code})"
                ) from None
            else:
                raise ModelError(f"{name}: downloading {entry.name} failed (HTTP {exc.code})") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OfflineError(
                f"cannot download {name}: {component.hub.endpoint} is not reachable ({reason}). Check the "
                "network or proxy, or copy the model folder to this machine."
            ) from None
        headers = None if response is None else response.headers
        if headers is not None and headers.get("X-Repo-Commit"):
            revision_seen = headers.get("X-Repo-Commit")
        size, sha, source = _expected(entry, headers, known)
        mode = "ab"
        if response is not None and start and response.status != 206:
            start, mode = 0, "wb"  # the server ignored the range: start over
        h = hashlib.sha256()
        if start:
            with open(part, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        written = start
        if response is not None:
            with response, open(part, mode) as out:
                while True:
                    if should_stop is not None and should_stop():
                        raise CancelledError(
                            f"download of {name} cancelled at {entry.name} ({written} bytes kept to resume)"
                        )
                    try:
                        chunk = response.read(_CHUNK)
                    except (http.client.HTTPException, OSError) as exc:
                        raise OfflineError(
                            f"download of {name} interrupted at {entry.name} after {written} bytes "
                            f"({type(exc).__name__}); run it again to resume"
                        ) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    written += len(chunk)
                    fetched += len(chunk)
                    if progress is not None:
                        elapsed = max(time.monotonic() - started, 1e-6)
                        progress(
                            DownloadProgress(
                                entry.name,
                                done_before + written,
                                max(total_hint or 0, done_before + written) or None,
                                fetched / elapsed,
                                index,
                                len(component.files),
                            )
                        )
        length = headers.get("Content-Length") if headers is not None else None
        if length is not None and length.isdigit() and written < start + int(length):
            raise OfflineError(
                f"download of {name} interrupted at {entry.name} after {written} bytes (the connection "
                "closed early); run it again to resume"
            )
        digest = h.hexdigest()
        problem = None
        if size is not None and written != size:
            problem = f"{written} bytes, expected {size} from {source}"
        elif sha is not None and digest != sha:
            problem = f"sha256 {digest[:12]}…, expected {sha[:12]}… from {source}"
        if problem is not None:
            with contextlib.suppress(OSError):
                part.unlink()
            raise IntegrityError(
                f"{folder / entry.name}: corrupted download ({problem}); deleted, download again"
            )
        os.replace(part, target)
        seen[entry.name] = {"bytes": written, "sha256": digest}
        done_before += written
        # recorded at once: a cancel or crash later never costs this file again
        _write_record(folder, component, {**recorded_files, **seen}, revision_seen, complete=False)
    if progress is not None:
        elapsed = max(time.monotonic() - started, 1e-6)
        progress(
            DownloadProgress(
                "", done_before, done_before, fetched / elapsed, len(component.files), len(component.files)
            )
        )
    _write_record(folder, component, seen, revision_seen, complete=True)
    return folder


def _write_record(
    folder: Path, component: Component, files: dict[str, dict[str, Any]], revision: Any, *, complete: bool
) -> None:
    data = {
        "complete": complete,
        "repository": component.hub.repository,
        "revision": component.hub.revision,
        "revision_seen": revision,
        "endpoint": component.hub.endpoint,
        "completed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    tmp = folder / (RECORD_NAME + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / RECORD_NAME)


def verify_component(
    component: Component, folder: str | os.PathLike[str], *, should_stop: Callable[[], bool] | None = None
) -> list[str]:
    """Re-hash every file of a completed download against the manifest or its record; the problems
    found, one line each (empty: all good)."""
    root = Path(folder)
    record = read_record(root)
    if record is None or not record.get("complete"):
        return [f"{root}: no complete download here ({RECORD_NAME} missing or partial)"]
    files = record.get("files", {})
    problems = []
    for entry in component.files:
        path = root / entry.name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        known = files.get(entry.name, {}) if isinstance(files, dict) else {}
        size = entry.bytes if entry.bytes is not None else known.get("bytes")
        sha = entry.sha256 or known.get("sha256")
        actual = path.stat().st_size
        if size is not None and actual != size:
            problems.append(f"{path}: {actual} bytes, expected {size}")
            continue
        if sha is not None and _sha256_of(path, should_stop) != sha:
            problems.append(f"{path}: sha256 differs from the first download")
    return problems
