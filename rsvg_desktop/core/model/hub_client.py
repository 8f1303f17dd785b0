"""Talking to a model hub through ``huggingface_hub``: a file's metadata, its bytes, where the token goes.

``huggingface_hub`` knows the hub's protocol: a large file's request is redirected to another host (a CDN)
and the file's sha256 (``X-Linked-Etag``), size (``X-Linked-Size``) and commit (``X-Repo-Commit``) are on
the redirect response. :func:`file_metadata` asks it (a ``HEAD``); :func:`stream_file` then reads the
bytes from where the hub pointed, with ``Range`` to resume, chunk by chunk as they arrive (so a cancel
is seen within a second). Files the hub keeps in Xet storage are read the same way: the hub serves them
over plain HTTP too, which keeps resume, progress and cancel the same for every file. The endpoint is
always passed explicitly (``huggingface_hub`` reads ``HF_ENDPOINT`` once, when it is imported), and the
token is sent only to the endpoint's own host, never over plain ``http`` except to this machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "HubFile",
    "RangeRefused",
    "effective_endpoint",
    "file_metadata",
    "file_url",
    "hub_token",
    "stream_file",
]

log = logging.getLogger(__name__)

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_HUB = "https://huggingface.co"


@dataclass(frozen=True, slots=True)
class HubFile:
    """What the hub says about one file: the commit it resolved to, the size, the etag (a sha256 for
    files in LFS or Xet, the git blob sha1 for small files) and where to fetch the bytes."""

    commit: str | None
    size: int | None
    etag: str | None
    location: str


class RangeRefused(Exception):
    """The server answered a resumed request with bytes that do not continue the partial file."""


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def effective_endpoint(endpoint: str) -> str:
    """``endpoint`` without a trailing slash; a manifest naming the Hugging Face hub itself follows the
    user's ``HF_ENDPOINT`` mirror (read at each call, not when ``huggingface_hub`` was imported)."""
    endpoint = endpoint.rstrip("/")
    mirror = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if endpoint == _DEFAULT_HUB and mirror.startswith(("https://", "http://")):
        return mirror
    return endpoint


def hub_token(endpoint: str) -> str | None:
    """The user's Hugging Face token when ``endpoint`` may receive it: ``https``, or plain ``http`` to this
    machine only. ``None`` otherwise (and when there is no token)."""
    parts = urlsplit(endpoint)
    if parts.scheme != "https" and not (parts.scheme == "http" and _host(endpoint) in _LOCAL_HOSTS):
        return None
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception as exc:  # a broken token file is no reason to fail a public download
        log.debug("no Hugging Face token: %s", exc)
        return None


def file_url(endpoint: str, repository: str, revision: str, name: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repository, name, revision=revision, endpoint=endpoint.rstrip("/"))


def file_metadata(endpoint: str, url: str, timeout: float) -> HubFile:
    """The hub's answer to a ``HEAD`` of ``url`` (redirects to other hosts are not followed, so the
    headers are those of the hub's own response). Raises ``huggingface_hub``'s errors."""
    from huggingface_hub import get_hf_file_metadata

    token = hub_token(endpoint)
    meta = get_hf_file_metadata(url, token=token or False, timeout=timeout, endpoint=endpoint.rstrip("/"))
    return HubFile(meta.commit_hash, meta.size, meta.etag, meta.location)


def _headers_for(endpoint: str, url: str, start: int) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    same_host = _host(url) == _host(endpoint) and urlsplit(url).port == urlsplit(endpoint).port
    token = hub_token(endpoint) if same_host else None
    headers = build_hf_headers(token=token or False, library_name="rsvg-desktop")
    headers["Accept-Encoding"] = "identity"
    if start:
        headers["Range"] = f"bytes={start}-"
    return dict(headers)


@contextmanager
def stream_file(endpoint: str, url: str, start: int, size: int | None, timeout: float) -> Iterator[Any]:
    """An open response for the bytes of ``url`` from ``start`` on. Yields ``(offset, chunks)``: where the
    bytes begin (``start``, or 0 when the server sent the whole file) and an iterator of chunks. A resumed
    answer whose ``Content-Range`` does not continue the file raises :class:`RangeRefused`."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    session = get_session()
    with session.stream(
        "GET", url, headers=_headers_for(endpoint, url, start), timeout=timeout, follow_redirects=True
    ) as response:
        if start and response.status_code == 416:
            raise RangeRefused(f"range from {start} refused (HTTP 416)")
        hf_raise_for_status(response)
        offset = 0
        if start and response.status_code == 206:
            offset = _range_start(response.headers.get("Content-Range"), start, size)
        yield offset, response.iter_bytes()  # as they arrive: a dropped connection keeps them all


def _range_start(content_range: str | None, start: int, size: int | None) -> int:
    """``start`` when ``Content-Range`` says the bytes continue the file as asked."""
    try:
        unit, _, rest = (content_range or "").partition(" ")
        span, _, total = rest.partition("/")
        first = int(span.split("-")[0])
        whole = None if total == "*" else int(total)
    except ValueError:
        raise RangeRefused(f"unreadable Content-Range {content_range!r}") from None
    if unit != "bytes" or first != start or (size is not None and whole is not None and whole != size):
        raise RangeRefused(f"Content-Range {content_range!r} does not continue the {start} bytes kept")
    return start
