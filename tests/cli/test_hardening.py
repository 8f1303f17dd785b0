"""Issue 9: inputs nobody here made. Every command answers with exit 0, 2 or 3, never a traceback, one
stderr line for exit 2, nothing half-written; outputs never replace inputs; library chatter only
with ``-v``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cli_runner import CliResult, run_rsvg, run_rsvg_process
from odd_rasters import build_corpus

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord, read_answer_log
from rsvg_desktop.errors import AnswerLogWriteError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("odd"))


def _check_promise(proc: CliResult, folder: Path) -> None:
    assert proc.returncode in (0, 2, 3), proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "WARNING: CPLE" not in proc.stderr and "Warning 1:" not in proc.stderr
    if proc.returncode == 2:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rsvg: error:"), proc.stderr
    leftovers = [p.name for p in folder.iterdir() if ".tmp" in p.name]
    assert not leftovers, leftovers


@pytest.mark.slow
def test_corpus_info_and_tiles_keep_the_promise(corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    codes = {}
    for name, path in corpus.items():
        if name.startswith("huge"):
            continue  # laid out below once (planning a 300,000² grid takes a while)
        for extra in ((), ("--pixel-mode",)):
            proc = run_rsvg("info", str(path), *extra)
            _check_promise(proc, out)
            codes[(name, extra)] = proc.returncode
            if proc.returncode == 0:
                target = out / f"{name}.gpkg"
                t = run_rsvg("tiles", str(path), *extra, "-o", str(target), "--overwrite")
                _check_promise(t, out)
                assert (t.returncode == 0) == target.exists()
    for name in ("complex_cint16", "complex_cint32", "complex_complex64", "complex_complex128"):
        assert codes[(name, ())] == 2 and codes[(name, ("--pixel-mode",))] == 2
    assert codes[("gcp_only", ())] == 2 and codes[("gcp_only", ("--pixel-mode",))] == 0


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("complex_cint16", "complex-valued data"),
        ("complex_complex64", "complex-valued data"),
        ("fifo", "FIFO"),
        ("link_loop", "loop of symbolic links"),
        ("link_dangling", "dangling link"),
        ("gcp_only", "ground control points"),
    ],
)
def test_odd_inputs_say_what_they_are(corpus: dict[str, Path], name: str, needle: str) -> None:
    proc = run_rsvg_process("info", str(corpus[name]), timeout=60)  # a FIFO must not hang
    assert proc.returncode == 2
    assert needle in proc.stderr and str(corpus[name]) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_huge_declared_size_plans_in_bounded_memory(corpus: dict[str, Path]) -> None:
    proc = run_rsvg("info", str(corpus["huge_sparse_nocrs"]), "--pixel-mode", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["width"] == info["height"] == 300_000
    assert info["tiles_kept"] == info["tiles"] > 400_000


def test_library_warnings_only_with_verbose(corpus: dict[str, Path]) -> None:
    quiet = run_rsvg("info", str(corpus["corrupt_truncated"]))
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run_rsvg("-v", "info", str(corpus["corrupt_truncated"]))
    assert "StripByteCounts" in loud.stderr and "Traceback" not in loud.stderr


def _record(scene: str, **kw: object) -> AnswerRecord:
    base: dict[str, object] = dict(
        scene=scene, col_off=0, row_off=0, width=100, height=100, task="refer", query="q", answer="x"
    )
    base.update(kw)
    return AnswerRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('"col_off": ' + "9" * 400, "col_off"),
        ('"width": 100000000000000000000', "width"),
        ('"crs": "NOT A CRS"', "crs"),
        ('"transform": [0, 0, 0, 0, 0, 0]', "transform"),
    ],
)
def test_bad_answer_log_values_name_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    log = tmp_path / "a.answers.jsonl"
    good = _record("scene.tif").to_dict()
    bad = json.dumps(good)[:-1] + ", " + line + "}"
    bad = bad.replace(f'"{needle}": ', f'"{needle}_old": ', 1) if needle in good else bad
    log.write_text(json.dumps(good) + "\n" + bad + "\n", encoding="utf-8")
    proc = run_rsvg("export", str(log), "-o", str(tmp_path / "out.gpkg"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    where = f"{log}:" if needle == "crs" else f"{log}:2:"  # a CRS is checked where it is used
    assert len(lines) == 1 and where in lines[0] and needle in lines[0]
    assert not (tmp_path / "out.gpkg").exists()


def test_deeply_nested_answer_log_line(tmp_path: Path) -> None:
    log = tmp_path / "deep.answers.jsonl"
    log.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    proc = run_rsvg("export", str(log), "-o", str(tmp_path / "out.gpkg"))
    assert proc.returncode == 2 and f"{log}:1:" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_export_refuses_to_replace_its_input(tmp_path: Path, data_dir: Path) -> None:
    log = tmp_path / "a.geojson"  # an answer log under an export's name
    with AnswerLogWriter(log) as w:
        w.write(_record(str(data_dir / "RGB.byte.tif"), tile_row=0, tile_col=0))
    before = log.read_bytes()
    link = tmp_path / "link.geojson"
    link.symlink_to(log)
    for target in (log, link):
        proc = run_rsvg("export", str(log), "-o", str(target), "--overwrite")
        assert proc.returncode == 2 and "same file" in proc.stderr
        assert log.read_bytes() == before


def test_tiles_refuses_to_replace_its_scene(tmp_path: Path, data_dir: Path) -> None:
    scene = tmp_path / "scene.gpkg"
    scene.write_bytes((data_dir / "RGB.byte.tif").read_bytes())
    proc = run_rsvg("tiles", str(scene), "-o", str(scene), "--overwrite")
    assert proc.returncode == 2 and "same file" in proc.stderr
    assert scene.read_bytes() == (data_dir / "RGB.byte.tif").read_bytes()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("ext", ["gpkg", "shp", "geojson"])
def test_read_only_output_folder_is_one_line(tmp_path: Path, data_dir: Path, ext: str) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        proc = run_rsvg("tiles", str(data_dir / "RGB.byte.tif"), "-o", str(folder / f"t.{ext}"))
    finally:
        folder.chmod(stat.S_IRWXU)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not writable" in lines[0]


def test_read_only_folder_check_without_permissions(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root the folder permission is not enforced; the check itself is what answers."""
    from rsvg_desktop.cli.main import main

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    assert main(["tiles", str(data_dir / "RGB.byte.tif"), "-o", str(tmp_path / "t.shp")]) == 2
    assert not list(tmp_path.iterdir())


def test_answer_log_full_disk_keeps_complete_lines(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    log = tmp_path / "a.answers.jsonl"
    with AnswerLogWriter(log) as w:
        w.write(_record("s.tif"))
    # /dev/full fails every write with ENOSPC, like a full disk.
    writer = AnswerLogWriter(log)
    assert writer._file is not None
    writer._file.close()
    writer._file = open("/dev/full", "ab", buffering=0)  # noqa: SIM115
    with pytest.raises(AnswerLogWriteError, match="No space left"):
        writer.write(_record("s.tif", col_off=100))
    writer.close()
    assert [r.col_off for r in read_answer_log(log)] == [0]


@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize(("query", "needle"), [("", "needs a query"), ("airplane " * 12_000, "context")])
def test_query_checked_before_the_model_loads(
    tmp_path: Path, data_dir: Path, query: str, needle: str
) -> None:
    proc = run_rsvg(
        "detect", str(data_dir / "RGB.byte.tif"), "--smoke", "--query", query, "-o", str(tmp_path / "o.gpkg")
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "model:" not in proc.stderr  # refused before loading
    assert not list(tmp_path.iterdir())


@pytest.mark.usefixtures("test_model_dir")
def test_batch_checks_every_question_before_the_model_loads(tmp_path: Path, data_dir: Path) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("cars\n" + "airplane " * 12_000 + "\n")
    out = tmp_path / "b.gpkg"
    proc = run_rsvg(
        "batch", str(data_dir / "RGB.byte.tif"), "--smoke", "--queries", str(queries), "-o", str(out)
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "context" in lines[0]
    assert not out.exists()


def test_the_app_worker_refuses_a_question_too_long_for_the_context(
    tmp_path: Path, data_dir: Path, test_model_dir: Path
) -> None:
    import queue

    from rsvg_desktop.engine.events import ModelSpec, RunConfig, RunStarted
    from rsvg_desktop.engine.protocol import LoadModel, RunJob, StopWorker, WorkerError
    from rsvg_desktop.engine.worker import WorkerServer

    events: queue.Queue = queue.Queue()
    commands: queue.Queue = queue.Queue()
    for cmd in (
        LoadModel(ModelSpec(str(test_model_dir), "fp32", "cpu")),
        RunJob(
            RunConfig(str(data_dir / "RGB.byte.tif"), "airplane " * 12_000, output=str(tmp_path / "o.gpkg"))
        ),
        StopWorker(),
    ):
        commands.put(cmd)
    assert WorkerServer(events, lambda: False).serve(commands) == 0
    msgs = [events.get_nowait() for _ in range(events.qsize())]
    errors = [m for m in msgs if isinstance(m, WorkerError)]
    assert len(errors) == 1 and "context" in errors[0].message and not errors[0].fatal
    assert not any(isinstance(m, RunStarted) for m in msgs) and not (tmp_path / "o.gpkg").exists()


@pytest.mark.usefixtures("test_model_dir")
def test_batch_goes_on_past_bad_inputs(corpus: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("complex_complex64", "corrupt_bad_ifd", "crs_engineering", "crs_ob_tran"):
        (folder / corpus[name].name).write_bytes(corpus[name].read_bytes())
    with rasterio.open(
        folder / "good.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(500_000, 4_600_000, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(np.full((3, 64, 64), 100, dtype="uint8"))
    out = tmp_path / "b.gpkg"
    proc = run_rsvg(
        "batch", str(folder), "--smoke", "--query", "planes", "-o", str(out), "--tile-size", "64",
        "--overlap", "0", "--max-new-tokens", "4", "--quiet", "--json",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    failed = {Path(f["input"]).name for f in summary["failures"]}
    assert {"complex_complex64.tif", "corrupt_bad_ifd.tif"} <= failed
    assert summary["inputs_done"] >= 1


@pytest.mark.usefixtures("test_model_dir")
def test_detect_says_when_the_export_could_not_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from rsvg_desktop.engine.detect import finishing
    from rsvg_desktop.errors import ExportError

    scene = tmp_path / "good.tif"
    with rasterio.open(
        scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(500_000, 4_600_000, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(np.full((3, 64, 64), 100, dtype="uint8"))
    out = tmp_path / "o.gpkg"
    real_export = finishing.export_detections

    def disk_full(path: Path, *args: object, **kwargs: object) -> None:
        # a folder standing where the output goes is refused before work now (tests/cli/test_contract.py);
        # a write that fails at the end (a full disk) is what remains
        raise ExportError(f"writing {path} failed: No space left on device")

    monkeypatch.setattr(finishing, "export_detections", disk_full)
    proc = run_rsvg(
        "-q", "detect", str(scene), "--smoke", "--query", "planes", "-o", str(out),
        "--tile-size", "64", "--overlap", "0", "--max-new-tokens", "4",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "→" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rsvg: error:")]
    assert len(errors) == 1 and "rsvg export" in errors[0] and "is complete" in errors[0]
    log = tmp_path / "o.answers.jsonl"
    assert len(list(read_answer_log(log))) == 1
    command = errors[0].split("rebuild the output with: ")[1].split()
    assert command[:2] == ["rsvg", "export"]  # the suggestion works once the disk has room
    monkeypatch.setattr(finishing, "export_detections", real_export)
    assert run_rsvg(*command[1:]).returncode == 0 and out.is_file()
