"""Downloading a model's files from a hub, resumably, with progress, cancel and integrity checks.

The hub's protocol is spoken by ``huggingface_hub`` (:mod:`rsvg_desktop.core.model.hub_client`): a ``HEAD``
of ``{endpoint}/{repository}/resolve/{revision}/{name}`` gives the commit, size and hash as the hub states
them (on its redirect response for large files), then the bytes are read from where it points.

- **One revision**: the first file's answer pins the commit (``commit`` in ``rsvg-download.json``); every
  later file, in this run or a resumed one, is asked for at that commit, so a download never mixes
  revisions even when the manifest tracks a branch that moves.
- **Resume**: data goes to ``<name>.part``; a later call continues it with ``Range`` and checks that
  ``Content-Range`` continues it (else it starts the file over). A file is renamed into place only once
  complete and checked, so nothing half-made ever looks finished.
- **Integrity**: the size and sha256 come from the manifest when it has them, else from the hub
  (``X-Linked-Size`` / ``X-Linked-Etag``, or the git blob sha1 of small files), else from the record of
  the first complete download (trust on first use). Each file's sha256 is recorded. A mismatch deletes
  the file and raises :class:`~rsvg_desktop.errors.IntegrityError` naming it.
- **The Hugging Face cache**: a file already in the user's standard cache (``HF_HUB_CACHE``, ``HF_HOME``,
  e.g. from ``huggingface-cli download``) is linked or copied from there, checked against the hash its
  cache entry is named by, instead of being downloaded again.
- **Cancel**: ``should_stop`` is polled for each chunk as it arrives;
  :class:`~rsvg_desktop.errors.CancelledError` leaves only ``.part`` files (resumed next time).
- **Offline**: ``HF_HUB_OFFLINE`` (read at each call) or an unreachable host is one
  :class:`~rsvg_desktop.errors.OfflineError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvg_desktop.core.model.hub_client import (
    HubFile,
    RangeRefused,
    effective_endpoint,
    file_metadata,
    file_url,
    stream_file,
)
from rsvg_desktop.core.model.manifest import Component, ManifestFile
from rsvg_desktop.errors import CancelledError, IntegrityError, ModelError, OfflineError

__all__ = [
    "RECORD_NAME",
    "DownloadProgress",
    "download_component",
    "hf_cache_dir",
    "is_complete",
    "read_record",
    "reference_is_first_download",
    "verify_component",
]

log = logging.getLogger(__name__)

RECORD_NAME = "rsvg-download.json"
_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


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


@dataclass(frozen=True, slots=True)
class _Expected:
    """What one file must be: size, sha256 or git blob sha1, and where that comes from."""

    size: int | None
    size_from: str
    sha256: str | None
    git_sha1: str | None
    hash_from: str


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


def reference_is_first_download(component: Component) -> bool:
    """Whether some file of ``component`` has no sha256 in its manifest, so that the record of the first
    download (and what the hub stated then) is what later checks compare against."""
    return any(f.sha256 is None for f in component.files)


def hf_cache_dir() -> Path:
    """The user's standard Hugging Face cache, read from the environment at each call."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _sha256_of(path: Path, should_stop: Callable[[], bool] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if should_stop is not None and should_stop():
                raise CancelledError(f"checking {path.name} cancelled")
            h.update(chunk)
    return h.hexdigest()


def _git_sha1_of(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _expected(entry: ManifestFile, meta: HubFile | None, known: dict[str, Any] | None) -> _Expected:
    """The manifest first, then what the hub states, then the record of the first download."""
    first = f"the first download ({RECORD_NAME})"
    etag = (meta.etag or "").strip('"').lower() if meta is not None else ""
    size, size_from = entry.bytes, "the manifest"
    if size is None and meta is not None and meta.size is not None:
        size, size_from = meta.size, "the hub"
    if size is None and known:
        size, size_from = known.get("bytes"), first
    if entry.sha256 is not None:
        return _Expected(size, size_from, entry.sha256, None, "the manifest")
    if _SHA256.match(etag):
        return _Expected(size, size_from, etag, None, "the hub")
    if _SHA1.match(etag):
        return _Expected(size, size_from, None, etag, "the hub (git blob sha1)")
    sha = known.get("sha256") if known else None
    return _Expected(size, size_from, sha, None, first if sha else "")


@contextlib.contextmanager
def _hub_errors(name: str, entry: str, url: str, endpoint: str, pinned: str | None) -> Iterator[None]:
    """``huggingface_hub``'s and the HTTP client's errors as this project's, one line each."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        yield
    except OfflineModeIsEnabled:
        raise OfflineError(f"cannot download {name}: offline mode is on (HF_HUB_OFFLINE)") from None
    except HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        if code in (401, 403, 404):
            where = f" at the pinned commit {pinned} (see {RECORD_NAME})" if pinned else ""
            raise ModelError(f"{name}: {entry} is not available at {url}{where} (HTTP {code})") from None
        raise ModelError(f"{name}: downloading {entry} failed (HTTP {code})") from None
    except (httpx2.TransportError, OSError) as exc:
        raise OfflineError(
            f"cannot download {name}: {endpoint} is not reachable ({exc or type(exc).__name__}). Check the "
            "network or proxy, or copy the model folder to this machine."
        ) from None


def _from_cache(component: Component, revision: str, entry: ManifestFile) -> tuple[Path, str | None] | None:
    """``(blob, commit)`` of ``entry`` in the user's Hugging Face cache at ``revision``, when it is there."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            component.hub.repository, entry.name, cache_dir=hf_cache_dir(), revision=revision
        )
    except Exception as exc:  # an odd cache is no reason to fail a download
        log.debug("Hugging Face cache not usable: %s", exc)
        return None
    if not isinstance(found, str) or not os.path.isfile(found):
        return None
    parts = Path(found).parts
    commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
    return Path(os.path.realpath(found)), commit


class _Run:
    """One call of :func:`download_component`: the folder, the record so far and the progress figures."""

    def __init__(
        self,
        component: Component,
        folder: Path,
        name: str,
        progress: Callable[[DownloadProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        timeout: float,
    ) -> None:
        self.component = component
        self.folder = folder
        self.name = name
        self.progress = progress
        self.should_stop = should_stop
        self.timeout = timeout
        record = read_record(folder) or {}
        files = record.get("files")
        self.recorded: dict[str, Any] = files if isinstance(files, dict) else {}
        # a record written before commits were pinned kept the commit it saw as ``revision_seen``
        commit = record.get("commit", record.get("revision_seen"))
        self.commit: str | None = commit if isinstance(commit, str) and commit else None
        self.endpoint = effective_endpoint(component.hub.endpoint)
        self.seen: dict[str, dict[str, Any]] = {}
        self.done_before = 0
        self.fetched = 0
        self.started = time.monotonic()
        self.index = 0

    @property
    def revision(self) -> str:
        return self.commit or self.component.hub.revision

    def report(self, file: str, done: int) -> None:
        if self.progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        total = max(self.component.size_hint or 0, done) or None
        n = len(self.component.files)
        self.progress(DownloadProgress(file, done, total, self.fetched / elapsed, self.index, n))

    def stop_if_asked(self, entry: str, written: int) -> None:
        if self.should_stop is not None and self.should_stop():
            raise CancelledError(
                f"download of {self.name} cancelled at {entry} ({written} bytes kept to resume)"
            )

    def pin(self, commit: str | None) -> None:
        if commit and self.commit is None:
            self.commit = commit
            log.info("%s: pinned to commit %s", self.name, commit)

    def keep(self, entry: str, size: int, sha256: str, source: str) -> None:
        self.seen[entry] = {"bytes": size, "sha256": sha256, "checked_against": source}
        self.done_before += size
        # recorded at once: a cancel or crash later never costs this file again
        self.write(complete=False)

    def write(self, *, complete: bool) -> None:
        files = self.seen if complete else {**self.recorded, **self.seen}
        _write_record(self.folder, self.component, self.endpoint, files, self.commit, complete=complete)


def _fail(part: Path, target: Path, problem: str) -> IntegrityError:
    with contextlib.suppress(OSError):
        part.unlink()
    return IntegrityError(f"{target}: corrupted download ({problem}); deleted, download again")


def _check(written: int, digest: str, git_sha1: str | None, want: _Expected) -> str | None:
    if want.size is not None and written != want.size:
        return f"{written} bytes, expected {want.size} from {want.size_from}"
    if want.sha256 is not None and digest != want.sha256:
        return f"sha256 {digest[:12]}…, expected {want.sha256[:12]}… from {want.hash_from}"
    if want.git_sha1 is not None and git_sha1 != want.git_sha1:
        return f"git sha1 {(git_sha1 or '')[:12]}…, expected {want.git_sha1[:12]}… from {want.hash_from}"
    return None


def _take_from_cache(run: _Run, entry: ManifestFile, blob: Path, commit: str | None) -> bool:
    """Link (or copy) a file from the Hugging Face cache into place, checked against the hash its cache
    entry is named by; False when it does not match (then it is downloaded)."""
    target = run.folder / entry.name
    part = target.with_name(target.name + ".part")
    with contextlib.suppress(OSError):
        part.unlink()
    try:
        os.link(blob, part)
    except OSError:
        shutil.copyfile(blob, part)
    digest = _sha256_of(part, run.should_stop)
    named = blob.name.lower()
    stated = named if _SHA256.match(named) else None
    git = named if _SHA1.match(named) else None
    want = _expected(entry, HubFile(commit, None, stated or git, ""), run.recorded.get(entry.name))
    if _check(part.stat().st_size, digest, _git_sha1_of(part) if want.git_sha1 else None, want):
        log.warning("%s: %s in the Hugging Face cache does not match; downloading it", run.name, entry.name)
        part.unlink()
        return False
    run.pin(commit)
    os.replace(part, target)
    run.keep(entry.name, target.stat().st_size, digest, f"the Hugging Face cache ({want.hash_from})")
    return True


def _fetch_file(run: _Run, entry: ManifestFile) -> None:
    """Download one file into place (resuming its ``.part``), checked against what it must be."""
    target = run.folder / entry.name
    part = target.with_name(target.name + ".part")
    hub = run.component.hub
    url = file_url(run.endpoint, hub.repository, run.revision, entry.name)
    with _hub_errors(run.name, entry.name, url, run.endpoint, run.commit):
        meta = file_metadata(run.endpoint, url, run.timeout)
    if run.commit is not None and meta.commit and meta.commit != run.commit:
        raise ModelError(
            f"{run.name}: the hub answered {entry.name} at commit {meta.commit}, not the pinned {run.commit}"
        )
    run.pin(meta.commit)
    want = _expected(entry, meta, run.recorded.get(entry.name))
    start = part.stat().st_size if part.is_file() else 0
    if want.size is not None and start > want.size:
        part.unlink()
        start = 0
    if want.size is None or start < want.size:
        try:
            digest = _stream_into(run, entry.name, meta, part, start, want.size)
        except RangeRefused as exc:
            log.info("%s: %s: %s; starting the file over", run.name, entry.name, exc)
            part.unlink()
            digest = _stream_into(run, entry.name, meta, part, 0, want.size)
    else:
        digest = _sha256_of(part, run.should_stop)  # complete before: only the check was missing
    written = part.stat().st_size
    problem = _check(written, digest, _git_sha1_of(part) if want.git_sha1 else None, want)
    if problem is not None:
        raise _fail(part, target, problem)
    os.replace(part, target)
    run.keep(entry.name, written, digest, want.hash_from or "nothing (no hash known)")


def _stream_into(run: _Run, entry: str, meta: HubFile, part: Path, start: int, size: int | None) -> str:
    """Append the bytes from ``start`` on to ``part`` (from 0 when the server sends the whole file);
    returns the sha256 of the whole file, hashed as the bytes arrive."""
    written = start
    h = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        with _hub_errors(run.name, entry, meta.location, run.endpoint, run.commit):
            offset, chunks = stack.enter_context(
                stream_file(run.endpoint, meta.location, start, size, run.timeout)
            )
        with open(part, "r+b" if part.exists() else "wb") as out:
            while out.tell() < offset and (kept := out.read(min(_CHUNK, offset - out.tell()))):
                h.update(kept)
            out.seek(offset)
            out.truncate()
            written = offset
            while (chunk := _next_chunk(chunks, run.name, entry, written)) is not None:
                run.stop_if_asked(entry, written)
                out.write(chunk)
                h.update(chunk)
                written += len(chunk)
                run.fetched += len(chunk)
                run.report(entry, run.done_before + written)
            run.stop_if_asked(entry, written)
    if size is not None and written < size:
        raise OfflineError(
            f"download of {run.name} interrupted at {entry} after {written} bytes (the connection "
            "closed early); run it again to resume"
        )
    return h.hexdigest()


def _next_chunk(chunks: Iterator[bytes], name: str, entry: str, written: int) -> bytes | None:
    """The next chunk (``None`` at the end); a dropped connection is one :class:`OfflineError`."""
    import httpx2

    try:
        return next(chunks)
    except StopIteration:
        return None
    except (httpx2.TransportError, OSError) as exc:
        raise OfflineError(
            f"download of {name} interrupted at {entry} after {written} bytes "
            f"({type(exc).__name__}); run it again to resume"
        ) from None


def _cached_plan(run: _Run) -> dict[str, tuple[Path, str | None]]:
    """The files still to get that the Hugging Face cache holds, at the pinned commit once there is one."""
    plan: dict[str, tuple[Path, str | None]] = {}
    commit = run.commit
    for entry in run.component.files:
        if _already_here(run, entry) is not None:
            continue
        found = _from_cache(run.component, commit or run.component.hub.revision, entry)
        if found is not None:
            plan[entry.name] = found
            commit = commit or found[1]
    return plan


def _already_here(run: _Run, entry: ManifestFile) -> dict[str, Any] | None:
    target = run.folder / entry.name
    known = run.recorded.get(entry.name)
    if target.is_file() and isinstance(known, dict) and target.stat().st_size == known.get("bytes"):
        return known
    return None


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
    run = _Run(component, folder, name, progress, should_stop, timeout)
    cached = _cached_plan(run)
    missing = [f for f in component.files if _already_here(run, f) is None and f.name not in cached]
    if missing and _offline():
        raise OfflineError(
            f"cannot download {name}: offline mode is on (HF_HUB_OFFLINE). Copy the model folder to this "
            "machine and choose it instead."
        )
    folder.mkdir(parents=True, exist_ok=True)
    for index, entry in enumerate(component.files):
        run.index = index
        (folder / entry.name).parent.mkdir(parents=True, exist_ok=True)
        known = _already_here(run, entry)
        if known is not None:
            run.seen[entry.name] = known  # complete before; `verify_component` re-hashes on demand
            run.done_before += known["bytes"]
            continue
        found = cached.get(entry.name)
        usable = found is not None and (run.commit is None or found[1] in (None, run.commit))
        if usable and found is not None and _take_from_cache(run, entry, *found):
            continue
        run.stop_if_asked(entry.name, 0)
        _fetch_file(run, entry)
    run.index = len(component.files)
    run.report("", run.done_before)
    run.write(complete=True)
    return folder


def _write_record(
    folder: Path,
    component: Component,
    endpoint: str,
    files: dict[str, dict[str, Any]],
    commit: str | None,
    *,
    complete: bool,
) -> None:
    data = {
        "complete": complete,
        "repository": component.hub.repository,
        "revision": component.hub.revision,
        "commit": commit,
        "revision_seen": commit,
        "endpoint": endpoint,
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
        if sha is None:
            problems.append(f"{path}: no sha256 recorded to check it against")
        elif _sha256_of(path, should_stop) != sha:
            source = "the manifest" if entry.sha256 else "the record of the download"
            problems.append(f"{path}: sha256 differs from {source}")
    return problems
