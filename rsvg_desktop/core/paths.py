"""Checks on the files a command reads and writes, shared by every command and the app.

:func:`refuse_same_file` stops a command before it could replace one of its own inputs with its output
(``rsvg export LOG -o LOG --overwrite`` would otherwise destroy the answer log), through symbolic
links, hard links and different spellings of the same path.

:func:`is_remote_path` and :func:`refuse_remote` keep a path someone else wrote (an answer log's
``scene``) from making GDAL fetch from the network: URLs and GDAL's network file systems
(``/vsicurl/``, ``/vsis3/``, ...) are refused unless the user allows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from rsvg_desktop.errors import ConfigError

__all__ = [
    "RemotePathError",
    "SameFileError",
    "is_remote_path",
    "refuse_remote",
    "refuse_same_file",
    "same_file",
]


class SameFileError(ConfigError):
    """An output is the same file as an input of the command."""


class RemotePathError(ConfigError):
    """A path that would be read over the network, where only local files were expected."""


#: GDAL's virtual file systems that read local files (archives, memory); every other ``/vsi…/`` (curl,
#: s3, gs, az, adls, oss, swift, webhdfs, hdfs, their ``_streaming`` forms, stdin...) is refused.
_LOCAL_VSI = frozenset(
    {"vsizip", "vsitar", "vsigzip", "vsi7z", "vsirar", "vsimem", "vsisubfile", "vsisparse"}
)
#: URL schemes that name local files (rasterio's ``zip://``, ``file://``...); any other is remote.
_LOCAL_SCHEMES = frozenset({"file", "zip", "tar", "gzip", "zip+file", "tar+file", "gzip+file"})
_VSI = re.compile(r"[/\\](vsi[a-z0-9_]*)(?=[/\\?]|$)", re.IGNORECASE)
#: GDAL drivers whose "file name" is a network service (``WMS:…``, ``EEDAI:…``).
_NETWORK_DRIVERS = re.compile(r"^(WMS|WMTS|WCS|EEDA|EEDAI|PLSCENES|DAAS|NGW|OGCAPI):", re.IGNORECASE)
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


def is_remote_path(path: str | os.PathLike[str]) -> bool:
    """Whether GDAL would read ``path`` from somewhere other than this machine's files: a URL
    (``http://``, ``s3://``, ``zip+https://``...) or a GDAL network path (``/vsicurl/``, ``/vsis3/``,
    ``/vsizip//vsicurl/...``), anywhere in the path, or a GDAL network driver's name (``EEDAI:…``).
    Errs on the side of refusing: a local folder named like a GDAL network file system counts too."""
    text = os.fspath(path)
    if _NETWORK_DRIVERS.match(text):
        return True
    if any(m.group(1).lower() not in _LOCAL_SCHEMES for m in _SCHEME.finditer(text)):
        return True
    return any(m.group(1).lower() not in _LOCAL_VSI for m in _VSI.finditer(text))


def refuse_remote(
    path: str | os.PathLike[str], what: str, *, hint: str = "pass --allow-remote to read it anyway"
) -> None:
    """Raise :class:`RemotePathError` naming ``what`` when :func:`is_remote_path`."""
    if is_remote_path(path):
        raise RemotePathError(
            f"{what} {os.fspath(path)!r} is a URL or a GDAL network path: reading it would fetch data "
            f"from the network; {hint}"
        )


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
