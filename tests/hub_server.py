"""A local stand-in for a model hub (tests only): serves a folder at
``/{owner}/{name}/resolve/{revision}/{file}`` over HTTP on 127.0.0.1, with ``Range`` requests, the
``X-Repo-Commit`` header and, optionally, ``X-Linked-Size``/``X-Linked-Etag`` like the real hub's large
files. ``cut_after`` makes the next responses stop after that many bytes (a dropped connection)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class HubState:
    def __init__(self, root: Path, repository: str, revision: str = "main") -> None:
        self.root = root
        self.repository = repository
        self.revision = revision
        self.commit = "0123456789abcdef0123456789abcdef01234567"
        self.linked = False
        self.cut_after: int | None = None
        self.delay_per_chunk = 0.0
        self.requests: list[tuple[str, str | None]] = []


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            prefix = f"/{state.repository}/resolve/{state.revision}/"
            state.requests.append((self.path, self.headers.get("Range")))
            if not self.path.startswith(prefix):
                self.send_error(404)
                return
            path = state.root / self.path[len(prefix) :]
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            if state.cut_after is not None:
                body = body[: state.cut_after]
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("X-Repo-Commit", state.commit)
            if state.linked:
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.end_headers()
            import time

            for i in range(0, len(body), 1 << 16):
                if state.delay_per_chunk:
                    time.sleep(state.delay_per_chunk)
                try:
                    self.wfile.write(body[i : i + (1 << 16)])
                except (BrokenPipeError, ConnectionResetError):
                    return
            if state.cut_after is not None:
                self.close_connection = True

    return Handler


@contextmanager
def serve_hub(root: Path, repository: str, revision: str = "main") -> Iterator[tuple[str, HubState]]:
    """``(endpoint URL, state)`` of a running stand-in hub serving ``root``."""
    state = HubState(root, repository, revision)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
