"""The downloader against a stand-in hub that behaves like the real one: large files redirected to a
second host (127.0.0.2) with the hash, size and commit on the redirect response only."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_rsvg
from hub_server import serve_hub

from rsvg_desktop.core.model.fetch import download_component, is_complete, read_record, verify_component
from rsvg_desktop.core.model.hub_client import hub_token
from rsvg_desktop.core.model.manifest import Component, HubRef, ManifestFile
from rsvg_desktop.errors import IntegrityError, ModelError, OfflineError

REPO = "someone/tiny-model"
CONFIG = b'{"model_type": "tiny"}'
BIG = bytes(range(256)) * 2048  # 512 KiB


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty Hugging Face cache of the test's own, and no token or offline mode from outside."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token file either


@pytest.fixture
def hub_files(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    root.mkdir()
    (root / "config.json").write_bytes(CONFIG)
    (root / "big.bin").write_bytes(BIG)
    return root


def _component(endpoint: str, **big: object) -> Component:
    return Component(
        HubRef(endpoint, REPO, "main"), (ManifestFile("config.json"), ManifestFile("big.bin", **big))
    )  # type: ignore[arg-type]


def _cut_short(url: str, hub: Any, dest: Path) -> None:
    """A first download into ``dest`` that the hub cuts after 100,000 bytes (OfflineError); the hub
    serves whole files again afterwards."""
    hub.cut_after = 100_000
    with pytest.raises(OfflineError):
        download_component(_component(url), dest)
    hub.cut_after = None


def test_a_redirected_download_is_checked_against_the_hub_and_pinned(tmp_path: Path, hub_files: Path) -> None:
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        out = download_component(_component(url), tmp_path / "dl")
    assert (out / "big.bin").read_bytes() == BIG and (out / "config.json").read_bytes() == CONFIG
    assert [p for p, _ in hub.cdn_requests] == [f"/blobs/{_sha(BIG)}"]  # the bytes came from the CDN
    record = read_record(out)
    assert record is not None and record["complete"] and record["commit"] == hub.commit
    big = record["files"]["big.bin"]
    assert big["sha256"] == _sha(BIG) and big["checked_against"] == "the hub"
    assert record["files"]["config.json"]["checked_against"] == "the hub (git blob sha1)"
    # the first file's answer pinned the commit: the second was asked for at that commit
    assert (f"/{REPO}/resolve/main/config.json", None) in hub.requests
    assert (f"/{REPO}/resolve/{hub.commit}/big.bin", None) in hub.requests
    assert verify_component(_component(url), out) == []


def test_bytes_that_differ_from_the_hub_hash_are_refused(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        hub.cdn_corrupt = True
        with pytest.raises(IntegrityError, match=r"big\.bin: corrupted download \(sha256 .* from the hub\)"):
            download_component(_component(url, bytes=len(BIG)), dest)  # a size alone turns no check off
    assert not (dest / "big.bin").exists() and not (dest / "big.bin.part").exists()
    assert not is_complete(dest)


def test_the_command_line_refuses_a_bad_file_in_one_line(tmp_path: Path, hub_files: Path) -> None:
    data_home = tmp_path / "data"
    (data_home / "models").mkdir(parents=True)
    env = {**os.environ, "RSVG_DATA_DIR": str(data_home)}
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        hub.cdn_corrupt = True
        manifest = {
            "format": 1,
            "id": "tiny",
            "name": "Tiny",
            "hub": {"endpoint": url, "repository": REPO, "revision": "main"},
            "files": [{"name": "config.json"}, {"name": "big.bin"}],
        }
        (data_home / "models" / "tiny.json").write_text(json.dumps(manifest))
        got = run_rsvg("-q", "model", "download", "tiny", env=env)
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "big.bin" in lines[0] and "corrupted download" in lines[0], got.stderr
    folder = data_home / "models" / "tiny" / "download"
    assert not (folder / "big.bin").exists() and not (folder / "big.bin.part").exists()


def test_a_cut_connection_to_the_cdn_resumes(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        hub.cut_after = 100_000
        with pytest.raises(OfflineError, match=r"interrupted at big\.bin.*run it again to resume"):
            download_component(_component(url), dest)
        assert (dest / "big.bin.part").stat().st_size == 100_000 and not is_complete(dest)
        hub.cut_after = None
        hub.cdn_requests.clear()
        download_component(_component(url), dest)
    assert hub.cdn_requests == [(f"/blobs/{_sha(BIG)}", "bytes=100000-")]
    assert (dest / "big.bin").read_bytes() == BIG and is_complete(dest)


def test_a_revision_that_moves_between_two_runs_is_not_mixed_in(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    newer = tmp_path / "hub2"
    newer.mkdir()
    (newer / "config.json").write_bytes(b'{"model_type": "tiny", "v": 2}')
    (newer / "big.bin").write_bytes(BIG[::-1])
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        first = hub.commit
        _cut_short(url, hub, dest)
        second = hub.move(newer)  # someone pushes to main between the two runs
        download_component(_component(url), dest)
        fresh = download_component(_component(url), tmp_path / "fresh")
    # the pinned commit is kept: the old config and the old weights, never one of each
    assert (dest / "config.json").read_bytes() == CONFIG and (dest / "big.bin").read_bytes() == BIG
    record = read_record(dest)
    assert record is not None and record["commit"] == first != second
    assert (f"/{REPO}/resolve/{first}/big.bin", None) in hub.requests
    assert (fresh / "big.bin").read_bytes() == BIG[::-1]
    fresh_record = read_record(fresh)
    assert fresh_record is not None and fresh_record["commit"] == second


def test_a_pinned_commit_the_hub_no_longer_has_is_said(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        _cut_short(url, hub, dest)
        pinned = hub.commit
        hub.commits.pop(pinned)  # history rewritten: the commit is gone
        hub.move(hub_files)
        with pytest.raises(ModelError, match=f"not available .* at the pinned commit {pinned}"):
            download_component(_component(url), dest)


def test_the_token_goes_to_the_hub_and_never_to_the_cdn(
    tmp_path: Path, hub_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_the_cdn")
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        download_component(_component(url), tmp_path / "dl")
    assert ("hub", "Bearer hf_not_for_the_cdn") in hub.auth
    cdn = [a for who, a in hub.auth if who == "cdn"]
    assert cdn and all(a is None for a in cdn)


def test_the_token_is_never_sent_over_plain_http_except_to_this_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert hub_token("https://huggingface.co") == "hf_secret"
    assert hub_token("http://127.0.0.1:8080") == "hf_secret"
    assert hub_token("http://localhost:8080") == "hf_secret"
    assert hub_token("http://mirror.example.org") is None
    assert hub_token("http://127.0.0.1.example.org") is None


def test_a_model_in_the_hugging_face_cache_is_not_downloaded_again(
    tmp_path: Path, hub_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import hf_hub_download

    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        for name in ("config.json", "big.bin"):  # as `huggingface-cli download` would, into the cache
            hf_hub_download(REPO, name, endpoint=url, cache_dir=tmp_path / "hf-cache", token=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dest = tmp_path / "dl"
    out = download_component(_component("http://127.0.0.1:9"), dest)  # no hub reachable, nor needed
    assert (out / "big.bin").read_bytes() == BIG and (out / "config.json").read_bytes() == CONFIG
    record = read_record(out)
    assert record is not None and record["complete"] and record["commit"] == hub.commit
    assert "Hugging Face cache" in record["files"]["big.bin"]["checked_against"]


def test_a_damaged_file_in_the_cache_is_downloaded_instead(tmp_path: Path, hub_files: Path) -> None:
    from huggingface_hub import hf_hub_download

    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        cached = hf_hub_download(REPO, "big.bin", endpoint=url, cache_dir=tmp_path / "hf-cache", token=False)
        blob = Path(os.path.realpath(cached))
        blob.write_bytes(b"\0" * len(BIG))
        hub.cdn_requests.clear()
        out = download_component(_component(url), tmp_path / "dl")
    assert (out / "big.bin").read_bytes() == BIG
    assert hub.cdn_requests == [(f"/blobs/{_sha(BIG)}", None)]


def test_model_list_says_what_the_files_are_checked_against(tmp_path: Path, hub_files: Path) -> None:
    data_home = tmp_path / "data"
    (data_home / "models").mkdir(parents=True)
    env = {**os.environ, "RSVG_DATA_DIR": str(data_home)}
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        hub_ref = {"endpoint": url, "repository": REPO, "revision": "main"}
        unhashed = {"format": 1, "id": "tiny", "name": "Tiny", "hub": hub_ref, "files": [{"name": "big.bin"}]}
        hashed = {**unhashed, "id": "tiny-hashed", "files": [{"name": "big.bin", "sha256": _sha(BIG)}]}
        for m in (unhashed, hashed):
            (data_home / "models" / f"{m['id']}.json").write_text(json.dumps(m))
        before = run_rsvg("model", "list", env=env)
        assert "the first download's record will be the reference" in before.stdout, before.stdout
        got = run_rsvg("-q", "model", "download", "tiny", env=env)
        assert got.returncode == 0, got.stderr
    listed = run_rsvg("model", "list", env=env)
    assert f"checked against: the record of its first download at commit {hub.commit}" in listed.stdout
    assert "checked against: the sha256 in its manifest" in listed.stdout
    rows = {m["id"]: m for m in json.loads(run_rsvg("model", "list", "--json", env=env).stdout)}
    assert rows["tiny"]["reference"] == "first download" and rows["tiny"]["commit"] == hub.commit
    assert rows["tiny-hashed"]["reference"] == "manifest"
    ok = run_rsvg("model", "verify", "tiny", env=env)
    assert ok.returncode == 0 and "every file matches" in ok.stdout


@pytest.mark.parametrize("misbehaviour", ["ignore_range", "range_shift"])
def test_a_resume_the_server_does_not_continue_starts_the_file_over(
    tmp_path: Path, hub_files: Path, misbehaviour: str
) -> None:
    dest = tmp_path / "dl"
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        _cut_short(url, hub, dest)
        if misbehaviour == "ignore_range":
            hub.ignore_range = True
        else:
            hub.range_shift = 5000  # a 206 whose Content-Range does not start where the .part ends
        download_component(_component(url), dest)
    assert (dest / "big.bin").read_bytes() == BIG and is_complete(dest)


def test_a_partial_file_longer_than_the_hub_says_is_not_taken_as_complete(
    tmp_path: Path, hub_files: Path
) -> None:
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "big.bin.part").write_bytes(b"\xff" * (len(BIG) + 10))  # the server would answer 416
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        download_component(_component(url), dest)
    assert (dest / "big.bin").read_bytes() == BIG


def test_a_manifest_naming_the_hub_follows_the_users_mirror(
    tmp_path: Path, hub_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HF_ENDPOINT`` set after ``huggingface_hub`` was imported still counts (read at each call)."""
    import huggingface_hub  # noqa: F401  (imported before the mirror is set)

    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        monkeypatch.setenv("HF_ENDPOINT", url)
        out = download_component(_component("https://huggingface.co"), tmp_path / "dl")
    assert (out / "big.bin").read_bytes() == BIG
    record = read_record(out)
    assert record is not None and record["endpoint"] == url


def test_an_older_record_keeps_the_commit_it_saw(tmp_path: Path, hub_files: Path) -> None:
    dest = tmp_path / "dl"
    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        _cut_short(url, hub, dest)
        record = json.loads((dest / "rsvg-download.json").read_text())
        first = record.pop("commit")
        (dest / "rsvg-download.json").write_text(json.dumps(record))  # as an earlier version wrote it
        newer = tmp_path / "hub2"
        newer.mkdir()
        (newer / "big.bin").write_bytes(BIG[::-1])
        hub.move(newer)
        download_component(_component(url), dest)
    assert (dest / "big.bin").read_bytes() == BIG
    done = read_record(dest)
    assert done is not None and done["commit"] == first


def test_a_cancel_on_a_slow_link_stops_within_a_second(tmp_path: Path, hub_files: Path) -> None:
    import time

    from rsvg_desktop.errors import CancelledError

    asked: list[float] = []

    def should_stop() -> bool:
        if not asked and (tmp_path / "dl" / "big.bin.part").is_file():
            asked.append(time.monotonic())
        return bool(asked)

    with serve_hub(hub_files, REPO) as (url, hub):
        hub.redirect = True
        hub.delay_per_chunk = 0.2  # 64 KiB every 200 ms
        with pytest.raises(CancelledError, match="kept to resume"):
            download_component(_component(url), tmp_path / "dl", should_stop=should_stop)
    part = tmp_path / "dl" / "big.bin.part"
    assert asked and part.is_file() and part.stat().st_size < len(BIG)  # stopped mid-file, kept
    assert not (tmp_path / "dl" / "big.bin").exists()
