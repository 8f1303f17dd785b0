"""Model manifests: what a known model is, where its files are, and how to check them (no torch).

A manifest is a JSON file (``models/<id>.json`` in the project, bundled with the app, or the user's own in
``<data folder>/models/``); the format is documented in ``models/README.md``. Manifests are data: adding a
GeoChat-compatible fine-tune needs no code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from rsvg_desktop.errors import ManifestError

__all__ = [
    "MANIFEST_FORMAT",
    "Component",
    "HubRef",
    "ManifestFile",
    "ModelManifest",
    "bundled_manifest_dirs",
    "check_file_name",
    "file_path_in",
    "known_models",
    "load_manifest",
]

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Names Windows gives to devices in every folder (``NUL.json`` is the null device there).
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{d}{i}" for d in ("com", "lpt") for i in (*"123456789", "¹", "²", "³")}
)


def _file_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain relative path on every platform, or ``None`` when it is one."""
    if not name:
        return "it is empty"
    if any(ord(c) < 32 for c in name):
        return "it holds a control character"
    if "\\" in name:
        return "it holds a backslash (a folder separator on Windows: use '/')"
    if ":" in name:
        return "it holds ':' (a drive letter or a stream on Windows)"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).root:
        return "it is absolute"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "it has an empty, '.' or '..' part"
    if any(part.split(".")[0].rstrip(" ").lower() in _WINDOWS_DEVICES for part in parts):
        return "it names a Windows device (CON, NUL, COM1, ...)"
    if any(part.endswith((" ", ".")) for part in parts):
        return "a part ends with a space or '.' (Windows drops them)"
    return None


def check_file_name(name: str, where: str = "manifest") -> str:
    """``name`` if it is a relative path that stays inside the model folder on every platform ('/'
    between folders; no drive letter (``C:/x``, ``C:x``), UNC (``\\\\host\\share``), backslash,
    absolute path, ``..`` or ``.`` part, or Windows device name); else :class:`ManifestError` naming
    ``where`` and the reason. Apply it to every file name that comes from outside (a manifest, a record
    of a download, a hub's file list) before joining it to a folder."""
    problem = _file_name_problem(name)
    if problem is not None:
        raise ManifestError(
            f"{where}: file name {name!r} must be a relative path inside the model folder: {problem}"
        )
    return name


def file_path_in(folder: str | os.PathLike[str], name: str, where: str = "manifest") -> Path:
    """``folder / name`` after :func:`check_file_name`, refused too when the folder's own links take it
    outside ``folder``."""
    base = Path(folder)
    target = base / check_file_name(name, where)
    resolved_base = base.resolve()
    if not target.resolve().is_relative_to(resolved_base):
        raise ManifestError(f"{where}: file name {name!r} leads outside {base} (through a link)")
    return target


@dataclass(frozen=True, slots=True)
class HubRef:
    """Where files live: ``{endpoint}/{repository}/resolve/{revision}/{file}``."""

    endpoint: str
    repository: str
    revision: str

    def url(self, name: str) -> str:
        return f"{self.endpoint.rstrip('/')}/{self.repository}/resolve/{self.revision}/{name}"


@dataclass(frozen=True, slots=True)
class ManifestFile:
    name: str
    bytes: int | None = None
    sha256: str | None = None
    approx_bytes: int | None = None

    @property
    def size_hint(self) -> int | None:
        return self.bytes if self.bytes is not None else self.approx_bytes


@dataclass(frozen=True, slots=True)
class Component:
    """A set of files from one hub repository (the model itself, or the vision tower it needs)."""

    hub: HubRef
    files: tuple[ManifestFile, ...]

    @property
    def size_hint(self) -> int | None:
        sizes = [f.size_hint for f in self.files]
        known = [s for s in sizes if s is not None]
        return sum(known) if known else None


@dataclass(frozen=True, slots=True)
class ModelManifest:
    id: str
    name: str
    description: str
    license: str
    homepage: str
    model: Component
    vision_tower: Component | None
    conversion_kind: str
    source: Path

    @property
    def hub_label(self) -> str:
        """``MBZUAI/geochat-7B`` (the repository, as people search for it)."""
        return self.model.hub.repository

    def components(self) -> tuple[tuple[str, Component], ...]:
        """``("model", …)`` then ``("clip", …)`` when a vision tower is needed."""
        out: list[tuple[str, Component]] = [("model", self.model)]
        if self.vision_tower is not None:
            out.append(("clip", self.vision_tower))
        return tuple(out)


def _get(
    data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, *, required: bool = True
) -> Any:
    if key not in data:
        if required:
            raise ManifestError(f"{where}: missing key {key!r}")
        return None
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ManifestError(f"{where}: {key!r} must be {_kind_name(kind)}, not {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {str: "a string", int: "an integer", list: "a list", dict: "an object"}.get(k, k.__name__)
        for k in kinds
    )


def _hub(data: Any, where: str) -> HubRef:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: 'hub' must be an object")
    endpoint = _get(data, "endpoint", str, f"{where}.hub")
    if not endpoint.startswith(("https://", "http://")):
        raise ManifestError(f"{where}.hub: endpoint {endpoint!r} is not an http(s) URL")
    repo = _get(data, "repository", str, f"{where}.hub")
    if repo.count("/") != 1 or ".." in repo:
        raise ManifestError(f"{where}.hub: repository {repo!r} must look like owner/name")
    return HubRef(endpoint, repo, _get(data, "revision", str, f"{where}.hub"))


def _files(data: Any, where: str) -> tuple[ManifestFile, ...]:
    if not isinstance(data, list) or not data:
        raise ManifestError(f"{where}: 'files' must be a non-empty list")
    out = []
    for i, item in enumerate(data):
        w = f"{where}.files[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{w}: must be an object")
        name = check_file_name(_get(item, "name", str, w), w)
        size = _get(item, "bytes", int, w, required=False)
        sha = _get(item, "sha256", str, w, required=False)
        if sha is not None and not _SHA256.match(sha.lower()):
            raise ManifestError(f"{w}: sha256 {sha!r} is not 64 hexadecimal digits")
        approx = _get(item, "approx_bytes", int, w, required=False)
        for label, value in (("bytes", size), ("approx_bytes", approx)):
            if value is not None and value < 0:
                raise ManifestError(f"{w}: {label} must not be negative")
        out.append(ManifestFile(name, size, None if sha is None else sha.lower(), approx))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ManifestError(f"{where}: a file is listed twice")
    return tuple(out)


def load_manifest(path: str | os.PathLike[str]) -> ModelManifest:
    """Read and check one manifest; :class:`ManifestError` names the file and the key at fault."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{p}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{p}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    where = p.name
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: a manifest is a JSON object")
    fmt = _get(data, "format", int, where)
    if fmt > MANIFEST_FORMAT:
        raise ManifestError(f"{where}: manifest format {fmt} needs a newer rsvg-desktop")
    model_id = _get(data, "id", str, where)
    if not _ID.match(model_id):
        raise ManifestError(f"{where}: id {model_id!r} must be lower-case letters, digits, '.', '_' or '-'")
    tower = data.get("vision_tower")
    vision = None
    if tower is not None:
        if not isinstance(tower, dict):
            raise ManifestError(f"{where}: 'vision_tower' must be an object")
        vision = Component(
            _hub(tower.get("hub"), f"{where}.vision_tower"),
            _files(tower.get("files"), f"{where}.vision_tower"),
        )
    conversion = data.get("conversion") or {}
    kind = conversion.get("kind", "geochat-llava") if isinstance(conversion, dict) else "geochat-llava"
    if kind != "geochat-llava":
        raise ManifestError(f"{where}: conversion kind {kind!r} is not supported (only 'geochat-llava')")
    return ModelManifest(
        id=model_id,
        name=_get(data, "name", str, where),
        description=data.get("description", "") if isinstance(data.get("description", ""), str) else "",
        license=data.get("license", "not stated") if isinstance(data.get("license"), str) else "not stated",
        homepage=data.get("homepage", "") if isinstance(data.get("homepage", ""), str) else "",
        model=Component(_hub(data.get("hub"), where), _files(data.get("files"), where)),
        vision_tower=vision,
        conversion_kind=kind,
        source=p,
    )


def bundled_manifest_dirs() -> list[Path]:
    """Where the shipped manifests are: the frozen app's bundle, else the project's ``models/``."""
    out = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        out.append(Path(bundle) / "models")
    out.append(Path(__file__).resolve().parents[3] / "models")
    return [d for d in out if d.is_dir()]


def known_models(
    dirs: Iterable[Path] | None = None, *, user_dir: Path | None = None
) -> dict[str, ModelManifest]:
    """Every readable manifest by id: the bundled ones, then the user's (``user_dir``), which override
    bundled ones of the same id. A broken user manifest is logged and skipped, not fatal."""
    search: Sequence[Path] = list(dirs) if dirs is not None else bundled_manifest_dirs()
    if user_dir is not None:
        search = [*search, user_dir]
    found: dict[str, ModelManifest] = {}
    for d in search:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.json")):
            try:
                m = load_manifest(path)
            except ManifestError as exc:
                log.warning("skipping model manifest: %s", exc)
                continue
            found[m.id] = m
    return found
