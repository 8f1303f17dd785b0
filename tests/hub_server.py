"""A local stand-in for a model hub (tests only), behaving like the real one where a downloader can tell.

The hub serves ``/{owner}/{name}/resolve/{revision}/{file}`` on 127.0.0.1 for ``HEAD`` and ``GET``, where
``revision`` is a branch (``main``) or a commit. Each commit is a folder (``HubState.commits``);
``HubState.move(folder)`` makes the branch point at a new commit, as a push to the repository does.

- Small files (and every file unless ``redirect`` is on) are answered by the hub itself, with
  ``X-Repo-Commit`` and an ``ETag`` that is the file's git blob sha1, as the real hub does for files not
  in LFS; ``linked`` adds ``X-Linked-Size``/``X-Linked-Etag`` to those answers.
- With ``redirect`` on, a file of ``redirect_min`` bytes or more is answered with a ``302`` to a second
  server on another loopback address (127.0.0.2, a stand-in CDN), with ``X-Linked-Etag`` (the sha256),
  ``X-Linked-Size`` and ``X-Repo-Commit`` on the redirect response only, as the real hub does for LFS files.
  ``cdn_corrupt`` makes the CDN send other bytes of the same size.
- Both honour ``Range`` (``206`` with ``Content-Range``; ``416`` past the end), unless ``ignore_range``
  (``200``, the whole file) or ``range_shift`` (a ``206`` from the wrong place) says otherwise.
  ``cut_after`` makes the next bodies stop after that many bytes (a dropped connection);
  ``delay_per_chunk`` slows them down.
- ``requests`` logs ``(path, Range)`` of every request to the hub; ``cdn_requests`` logs
  ``(path, Range)`` to the CDN; ``auth`` logs ``(server, Authorization)`` for both.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_CHUNK = 1 << 16


def _commit_id(n: int) -> str:
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()


class HubState:
    def __init__(self, root: Path, repository: str, revision: str = "main") -> None:
        self.repository = repository
        self.revision = revision
        self.commits: dict[str, Path] = {_commit_id(0): root}
        self._pushes = 0
        self.commit = _commit_id(0)  # where ``revision`` points now
        self.linked = False
        self.redirect = False
        self.redirect_min = 1000
        self.cdn_corrupt = False
        self.ignore_range = False  # answer a Range request with 200 and the whole file
        self.range_shift = 0  # answer a Range request with bytes from this much further on (a bad 206)
        self.cut_after: int | None = None
        self.delay_per_chunk = 0.0
        self.requests: list[tuple[str, str | None]] = []
        self.cdn_requests: list[tuple[str, str | None]] = []
        self.auth: list[tuple[str, str | None]] = []
        self.cdn_url = ""
        self._blobs: dict[str, Path] = {}

    @property
    def root(self) -> Path:
        return self.commits[self.commit]

    def move(self, root: Path) -> str:
        """Point the branch at a new commit holding ``root``; returns the commit id."""
        self._pushes += 1
        commit = _commit_id(self._pushes)
        self.commits[commit] = root
        self.commit = commit
        return commit

    def find(self, path: str) -> tuple[str, Path] | None:
        prefix = f"/{self.repository}/resolve/"
        if not path.startswith(prefix):
            return None
        revision, _, name = path[len(prefix) :].partition("/")
        commit = self.commit if revision == self.revision else revision
        root = self.commits.get(commit)
        if root is None or not (root / name).is_file():
            return None
        return commit, root / name

    def blob(self, data_path: Path) -> str:
        sha = hashlib.sha256(data_path.read_bytes()).hexdigest()
        self._blobs[sha] = data_path
        return sha


def _send_body(handler: BaseHTTPRequestHandler, state: HubState, data: bytes, head: bool) -> bool:
    """Status and range headers for ``data``; returns False when the answer is complete (416)."""
    start = 0
    rng = None if state.ignore_range else handler.headers.get("Range")
    if rng and rng.startswith("bytes="):
        start = int(rng[6:].split("-")[0]) + state.range_shift
        if start >= len(data):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(data)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return False
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
        handler.send_response(200)
    handler.send_header("Content-Length", str(len(data) - start))
    handler._body = data[start:]  # type: ignore[attr-defined]
    return True


def _write_body(handler: BaseHTTPRequestHandler, state: HubState) -> None:
    body: bytes = handler._body  # type: ignore[attr-defined]
    if state.cut_after is not None:
        body = body[: state.cut_after]
    for i in range(0, len(body), _CHUNK):
        if state.delay_per_chunk:
            time.sleep(state.delay_per_chunk)
        try:
            handler.wfile.write(body[i : i + _CHUNK])
        except (BrokenPipeError, ConnectionResetError):
            return
    if state.cut_after is not None:
        handler.close_connection = True


class _HeadGetHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 handler whose HEAD and GET both go to ``_answer(head)``, which each server's own
    handler defines."""

    protocol_version = "HTTP/1.1"
    _answer: Callable[[bool], None]

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(True)

    def do_GET(self) -> None:
        self._answer(False)

    def _not_found(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _hub_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(_HeadGetHandler):
        def _answer(self, head: bool) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            state.auth.append(("hub", self.headers.get("Authorization")))
            found = state.find(self.path)
            if found is None:
                self._not_found()
                return
            commit, path = found
            data = path.read_bytes()
            if state.redirect and len(data) >= state.redirect_min:
                sha = state.blob(path)
                self.send_response(302)
                self.send_header("Location", f"{state.cdn_url}/blobs/{sha}")
                self.send_header("X-Repo-Commit", commit)
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')  # not the file's hash
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not _send_body(self, state, data, head):
                return
            self.send_header("X-Repo-Commit", commit)
            git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            self.send_header("ETag", f'"{git_sha1}"')
            if state.linked:
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.end_headers()
            if not head:
                _write_body(self, state)

    return Handler


def _cdn_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(_HeadGetHandler):
        def _answer(self, head: bool) -> None:
            state.cdn_requests.append((self.path, self.headers.get("Range")))
            state.auth.append(("cdn", self.headers.get("Authorization")))
            path = state._blobs.get(self.path.rpartition("/")[2].partition("?")[0])
            if path is None:
                self._not_found()
                return
            data = path.read_bytes()
            if state.cdn_corrupt:
                data = bytes(b ^ 0x55 for b in data)
            if not _send_body(self, state, data, head):
                return
            self.send_header("ETag", '"cdn-object"')
            self.end_headers()
            if not head:
                _write_body(self, state)

    return Handler


@contextmanager
def serve_hub(root: Path, repository: str, revision: str = "main") -> Iterator[tuple[str, HubState]]:
    """``(endpoint URL, state)`` of a running stand-in hub serving ``root`` (and its stand-in CDN)."""
    state = HubState(root, repository, revision)
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _hub_handler(state))
    cdn = ThreadingHTTPServer(("127.0.0.2", 0), _cdn_handler(state))
    state.cdn_url = f"http://127.0.0.2:{cdn.server_address[1]}"
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (hub, cdn)]
    for t in threads:
        t.start()
    try:
        yield f"http://127.0.0.1:{hub.server_address[1]}", state
    finally:
        for s in (hub, cdn):
            s.shutdown()
            s.server_close()
