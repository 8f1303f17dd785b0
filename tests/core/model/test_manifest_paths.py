"""Issue 22: a manifest's file names stay inside the model folder on every platform."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rsvg_desktop.core.model.manifest import check_file_name, file_path_in, load_manifest
from rsvg_desktop.errors import ManifestError

REFUSED = [
    "",
    "C:/x",
    "C:x",
    "c:\\windows\\system32",
    "\\\\host\\share\\x",
    "//host/share/x",
    "\\x",
    "sub\\x.bin",
    "/etc/passwd",
    "../x",
    "a/../../x",
    "a/..",
    "./x",
    "a//b",
    "a/",
    "x.bin:stream",
    "NUL",
    "con.json",
    "sub/COM1.txt",
    "trailing.",
    "trailing ",
    "a\x00b",
    "line\nbreak",
]
ACCEPTED = [
    "config.json",
    "pytorch_model-00001-of-00002.bin",
    "sub/dir/x.safetensors",
    ".gitattributes",
    "a..b",
]


@pytest.mark.parametrize("name", REFUSED)
def test_names_that_leave_the_folder_on_some_platform_are_refused(name: str) -> None:
    with pytest.raises(ManifestError, match="must be a relative path inside the model folder"):
        check_file_name(name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_plain_relative_names_pass(name: str, tmp_path: Path) -> None:
    assert check_file_name(name) == name
    assert file_path_in(tmp_path, name) == tmp_path / name


@pytest.mark.parametrize("name", ["C:/x", "C:x", "\\\\host\\share", "../x"])
def test_a_manifest_with_such_a_name_is_refused_naming_the_key(name: str, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    hub = {"endpoint": "https://h", "repository": "a/b", "revision": "main"}
    path.write_text(json.dumps({"format": 1, "id": "x", "name": "x", "hub": hub, "files": [{"name": name}]}))
    with pytest.raises(ManifestError, match=r"mine\.json\.files\[0\]: file name"):
        load_manifest(path)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_a_link_inside_the_folder_that_leads_out_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ManifestError, match="leads outside"):
        file_path_in(folder, "sub/x.bin")
