"""Model manifests and the resumable, checked downloader, against a local stand-in hub (no network)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hub_server import serve_hub

from rsvg_desktop.core.model.fetch import (
    RECORD_NAME,
    download_component,
    is_complete,
    read_record,
    verify_component,
)
from rsvg_desktop.core.model.manifest import Component, HubRef, ManifestFile, known_models, load_manifest
from rsvg_desktop.errors import CancelledError, IntegrityError, ManifestError, ModelError, OfflineError

REPO = "someone/tiny-model"


@pytest.fixture
def hub_files(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    root.mkdir()
    (root / "config.json").write_text('{"model_type": "tiny"}')
    (root / "big.bin").write_bytes(bytes(range(256)) * 2048)  # 512 KiB
    return root


def _component(endpoint: str, **big: object) -> Component:
    return Component(
        HubRef(endpoint, REPO, "main"), (ManifestFile("config.json"), ManifestFile("big.bin", **big))
    )  # type: ignore[arg-type]


def test_download_fetches_checks_and_records(tmp_path: Path, hub_files: Path) -> None:
    seen = []
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.linked = True
        out = download_component(_component(url), tmp_path / "dl", progress=seen.append)
    assert (out / "big.bin").read_bytes() == (hub_files / "big.bin").read_bytes()
    record = read_record(out)
    assert record is not None and record["complete"] and record["revision_seen"] == hub.commit
    assert (
        record["files"]["big.bin"]["sha256"]
        == hashlib.sha256((hub_files / "big.bin").read_bytes()).hexdigest()
    )
    assert seen[-1].done == seen[-1].total == 512 * 1024 + len('{"model_type": "tiny"}')
    assert not list(out.glob("*.part"))


def test_a_cut_off_download_resumes_where_it_stopped(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.cut_after = 100_000
        with pytest.raises(OfflineError, match=r"interrupted at big\.bin.*run it again to resume"):
            download_component(_component(url), dest)
        part = dest / "big.bin.part"
        assert part.stat().st_size == 100_000 and not (dest / "big.bin").exists()
        assert not is_complete(dest)
        hub.cut_after = None
        hub.requests.clear()
        download_component(_component(url), dest)
    assert (f"/someone/tiny-model/resolve/{hub.commit}/big.bin", None) in hub.requests  # the pinned commit
    assert (f"/someone/tiny-model/resolve/{hub.commit}/big.bin", "bytes=100000-") in hub.requests
    # the finished config.json was not fetched again
    assert not any(p.endswith("config.json") for p, _ in hub.requests)
    assert (dest / "big.bin").read_bytes() == (hub_files / "big.bin").read_bytes()
    assert is_complete(dest)


def test_a_corrupted_file_is_detected_and_deleted(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    with (
        serve_hub(hub_files, REPO) as (url, _),
        pytest.raises(IntegrityError, match=r"big\.bin: corrupted download \(sha256"),
    ):
        download_component(_component(url, sha256="0" * 64), dest)
    assert not (dest / "big.bin").exists() and not (dest / "big.bin.part").exists()
    assert not is_complete(dest)


def test_the_hub_stated_hash_is_checked(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.linked = True
        # a stale partial file with the wrong bytes: resuming it gives a file whose hash differs
        dest.mkdir()
        (dest / "big.bin.part").write_bytes(b"\xff" * 1000)
        with pytest.raises(IntegrityError, match=r"expected .* from the hub"):
            download_component(_component(url), dest)


def test_a_file_changed_after_download_fails_verification(tmp_path: Path, hub_files: Path) -> None:
    with serve_hub(hub_files, REPO) as (url, _):
        comp = _component(url)
        out = download_component(comp, tmp_path / "dl")
    assert verify_component(comp, out) == []
    data = bytearray((out / "big.bin").read_bytes())
    data[1000] ^= 0xFF
    (out / "big.bin").write_bytes(bytes(data))
    problems = verify_component(comp, out)
    assert len(problems) == 1 and "big.bin" in problems[0] and "sha256" in problems[0]


def test_cancel_mid_download_leaves_nothing_half_made(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    calls = []
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.delay_per_chunk = 0.01
        with pytest.raises(CancelledError, match="kept to resume"):
            download_component(
                _component(url),
                dest,
                progress=calls.append,
                should_stop=lambda: any(c.file == "big.bin" for c in calls),
            )
    assert not (dest / "big.bin").exists()  # only a .part, never a file that looks finished
    assert not is_complete(dest)
    record = read_record(dest)
    assert record is not None and "big.bin" not in record["files"]


def test_offline_and_unreachable_are_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    comp = _component("http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="offline mode is on"):
        download_component(comp, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(OfflineError, match=r"127\.0\.0\.1:9 is not reachable") as info:
        download_component(comp, tmp_path / "b", timeout=5)
    assert isinstance(info.value, ConnectionError)


def test_a_missing_file_names_it(tmp_path: Path, hub_files: Path) -> None:
    (hub_files / "big.bin").unlink()
    with (
        serve_hub(hub_files, REPO) as (url, _),
        pytest.raises(ModelError, match=r"big\.bin is not available .*HTTP 404"),
    ):
        download_component(_component(url), tmp_path / "dl")


def test_the_bundled_geochat_manifest_loads() -> None:
    models = known_models()
    geochat = models["geochat-7b"]
    assert geochat.model.hub.repository == "MBZUAI/geochat-7B"
    assert {f.name for f in geochat.model.files} >= {"config.json", "pytorch_model.bin.index.json"}
    assert geochat.vision_tower is not None and geochat.model.size_hint and geochat.model.size_hint > 14e9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"format": 1}', "missing key 'id'"),
        ('{"format": 1, "id": "Bad Id", "name": "x"}', "must be lower-case"),
        (
            '{"format": 1, "id": "x", "name": "x", "hub": {"endpoint": "https://h", "repository": "a/b",'
            ' "revision": "main"}, "files": [{"name": "../etc/passwd"}]}',
            "relative path",
        ),
        (
            '{"format": 1, "id": "x", "name": "x", "hub": {"endpoint": "https://h", "repository": "a/b",'
            ' "revision": "main"}, "files": [{"name": "a", "sha256": "xyz"}]}',
            "64 hexadecimal",
        ),
        ('{"format": 9, "id": "x"}', "newer rsvg-desktop"),
    ],
)
def test_bad_manifests_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mine.json"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(path)
    assert "mine.json" in str(info.value)


def test_a_user_manifest_overrides_and_a_broken_one_is_skipped(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    data = json.loads((Path(__file__).resolve().parents[3] / "models" / "geochat-7b.json").read_text())
    data["name"] = "GeoChat-7B (my mirror)"
    (user / "geochat-7b.json").write_text(json.dumps(data))
    (user / "broken.json").write_text("{")
    models = known_models(user_dir=user)
    assert models["geochat-7b"].name == "GeoChat-7B (my mirror)" and "broken" not in models
    assert RECORD_NAME == "rsvg-download.json"
