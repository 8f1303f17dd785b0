"""Options where users put them (issue 21, section 4): ``-v``/``-q``/``--debug`` after the command too,
``-q`` silences info lines, progress figures that mean something, ``bench agree`` like every other
command (``--overwrite``, ``--smoke``), and errors that name command-line options."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_runner import run_rsvg, run_rsvg_process

from rsvg_desktop.cli import main as cli_main
from rsvg_desktop.cli._common import Progress, notice, notice_warning, setup_logging
from rsvg_desktop.cli.batch_cmd import _BatchView
from rsvg_desktop.core.progress import RunProgress
from rsvg_desktop.engine.events import BatchFinished, BatchProgress, BatchStarted, ModelLoaded

# --- -v, -q and --debug before or after the command -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "verbosity"),
    [
        (["info", "X"], 0),
        (["info", "X", "-v"], 1),
        (["-v", "info", "X", "-v"], 2),
        (["info", "X", "-q"], -1),
        (["model", "info", "-q"], -1),
        (["bench", "agree", "X", "--model", "M", "-o", "O", "-vv"], 2),
        (["batch", "X", "--query", "q", "-o", "O.gpkg", "--quiet"], -1),
    ],
)
def test_output_options_after_the_command(
    monkeypatch: pytest.MonkeyPatch, args: list[str], verbosity: int
) -> None:
    seen: list[int] = []
    monkeypatch.setattr(cli_main, "setup_logging", seen.append)
    monkeypatch.setattr(cli_main, "run_guarded", lambda func, *, debug: 0)
    assert cli_main.main(args) == 0
    assert seen == [verbosity]


def test_debug_after_the_command_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("rsvg_desktop.engine.scenes.describe_scene", broken)
    hint = run_rsvg("info", str(data_dir / "RGB.byte.tif"))
    assert hint.returncode == 1 and "rerun with --debug" in hint.stderr
    with pytest.raises(RuntimeError, match="a bug"):  # --debug lets the exception through
        run_rsvg("info", str(data_dir / "RGB.byte.tif"), "--debug")


def test_options_after_the_command_in_a_process(data_dir: Path, tmp_path: Path) -> None:
    """Following the hint "rerun with --debug" literally: the option after the command is understood."""
    proc = run_rsvg_process(
        "tiles", str(data_dir / "RGB.byte.tif"), "-o", str(tmp_path / "t.gpkg"), "--tile-size", "0",
        "--debug", "-q", "-v",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "unrecognized arguments" not in proc.stderr
    assert proc.stderr.strip() == "rsvg: error: --tile-size must be at least 32 pixels, got 0"


# --- -q silences info lines ---------------------------------------------------------------------------


def test_quiet_silences_info_lines_not_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(0)
    notice("4 tiles to answer")
    notice_warning("RANDOM WEIGHTS")
    assert capsys.readouterr().err == "4 tiles to answer\nRANDOM WEIGHTS\n"
    setup_logging(-1)
    notice("4 tiles to answer")
    notice_warning("RANDOM WEIGHTS")
    assert capsys.readouterr().err == "RANDOM WEIGHTS\n"


@pytest.mark.usefixtures("test_model_dir")
def test_quiet_after_the_command_silences_detect_and_batch(data_dir: Path, tmp_path: Path) -> None:
    scene = str(data_dir / "RGB.byte.tif")
    common = [
        "--smoke",
        "--query",
        "planes",
        "--tile-size",
        "504",
        "--max-new-tokens",
        "2",
        "--device",
        "cpu",
    ]
    loud = run_rsvg("detect", scene, *common, "-o", str(tmp_path / "a.gpkg"))
    assert loud.returncode == 0, loud.stderr
    assert "tiles to answer" in loud.stderr and "loaded in" in loud.stderr and "tiles [" in loud.stderr
    quiet = run_rsvg("detect", scene, *common, "-o", str(tmp_path / "b.gpkg"), "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert "tiles to answer" not in quiet.stderr and "loaded in" not in quiet.stderr
    assert "tiles [" not in quiet.stderr and "RANDOM WEIGHTS" in quiet.stderr  # a warning stays
    batch = run_rsvg("batch", scene, *common, "-o", str(tmp_path / "c.gpkg"), "-q")
    assert batch.returncode == 0, batch.stderr
    assert "batch:" not in batch.stderr and "loaded in" not in batch.stderr and "tiles [" not in batch.stderr
    # The region task says how to give the region on the command line.
    identify = run_rsvg(
        "detect", scene, *common[:1], "--task", "identify", "--query", "x", "-o", str(tmp_path / "d.gpkg")
    )
    assert identify.returncode == 2
    assert "--query '{<" in identify.stderr and "GridBox" not in identify.stderr


# --- progress --------------------------------------------------------------------------------------------


def test_rate_leaves_out_the_model_load_and_earlier_tiles() -> None:
    now = [0.0]
    p = RunProgress(clock=lambda: now[0])
    p.start(10)
    now[0] = 300.0  # five minutes of model load
    p.restart_clock()
    now[0] = 302.0
    p.update(2)
    assert p.rate == pytest.approx(1.0) and p.remaining == pytest.approx(8.0)
    resumed = RunProgress(clock=lambda: now[0])
    resumed.start(10, done=6)  # six tiles answered by an earlier run
    assert resumed.rate is None
    now[0] = 304.0
    resumed.update(7)
    assert resumed.rate == pytest.approx(0.5) and resumed.remaining == pytest.approx(6.0)


def test_a_bar_never_shows_an_absurd_rate() -> None:
    """A bar born when its only tile is already done (``bench agree`` on a one-tile scene) does not
    divide by the microseconds since it was made: it says it does not know."""
    stream = io.StringIO()
    bar = Progress(1, label="nf4 a.tif", stream=stream, done=1)
    bar.update(1)
    assert stream.getvalue() == "nf4 a.tif [########################] 1/1 -/s left --:--\n"
    bar.update(1)  # the run's end repeats the count: no second final line
    assert stream.getvalue().count("\n") == 1


def _batch_view(capsys: pytest.CaptureFixture[str], clock: list[float]) -> _BatchView:
    view = _BatchView(quiet=False)
    view.show(BatchStarted("o.gpkg", "o.answers.jsonl", (("r1", "refer", "planes"),), 2))
    assert view._bar is not None
    view._bar._progress.clock = lambda: clock[0]
    view._bar.restart_clock()
    capsys.readouterr()
    return view


def _summary(status: str, tiles_done: int) -> SimpleNamespace:
    return SimpleNamespace(status=status, tiles_done=tiles_done, raw_detections=5)


def test_a_stopped_batch_bar_stays_where_it_got(capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    view = _batch_view(capsys, clock)
    clock[0] = 2.0
    view.show(
        BatchProgress(tiles_done=3, tiles_expected=10, inputs_finished=1, inputs_total=2, raw_detections=5)
    )
    view.show(BatchFinished(_summary("cancelled", 3)))  # type: ignore[arg-type]
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert " 3/10 " in last and "cancelled" in last and "#" * 24 not in last
    done = _batch_view(capsys, clock)
    done.show(
        BatchProgress(tiles_done=3, tiles_expected=10, inputs_finished=1, inputs_total=2, raw_detections=5)
    )
    done.show(BatchFinished(_summary("complete", 4)))  # type: ignore[arg-type]
    assert " 4/4 " in capsys.readouterr().err.strip().splitlines()[-1]  # the estimate gives way


def test_the_batch_rate_starts_when_the_model_is_loaded(capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    view = _batch_view(capsys, clock)
    clock[0] = 360.0  # the model loads when the first batch needs it
    info = SimpleNamespace(description="tiny", load_seconds=360.0, random_weights=False, notes=())
    view.show(ModelLoaded(info))  # type: ignore[arg-type]
    clock[0] = 365.0
    view.show(
        BatchProgress(tiles_done=5, tiles_expected=50, inputs_finished=0, inputs_total=2, raw_detections=0)
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert " 5/50 1.00/s left 0:45 " in line  # not 5 tiles in 365 s, 60 minutes left


# --- bench agree: --overwrite and --smoke -------------------------------------------------------------


def test_agree_refuses_to_replace_another_comparison(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "agree"
    marker = out / "runs" / "bf16" / "RGB.byte.done.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"task": "refer", "query": "trees", "precision": "bf16"}))
    args = ["bench", "agree", str(data_dir / "RGB.byte.tif"), "--model", str(tmp_path / "no-model"),
            "--precisions", "nf4", "--query", "cars", "-o", str(out)]  # fmt: skip
    proc = run_rsvg(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"rsvg: error: {out} holds a comparison finished with other settings (--query 'trees', now "
        "'cars'): use --overwrite to replace it, or choose another output folder"
    )
    assert json.loads(marker.read_text())["query"] == "trees"  # nothing touched
    # With --overwrite it goes on (here to the model, which is not there).
    forced = run_rsvg(*args, "--overwrite")
    assert forced.returncode == 2 and "no-model" in forced.stderr and "--overwrite" not in forced.stderr


@pytest.mark.usefixtures("test_model_dir")
def test_agree_with_the_smoke_model_shows_real_rates(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "agree"
    proc = run_rsvg(
        "bench", "agree", str(data_dir / "RGB.byte.tif"), "--smoke", "--reference", "bf16", "--precisions",
        "nf4", "--query", "cars", "--device", "cpu", "--max-new-tokens", "2", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM WEIGHTS" in (out / "report.md").read_text()
    rates = [float(r) for r in re.findall(r" (\d+\.\d+)/s ", proc.stderr)]
    assert rates and max(rates) < 100, proc.stderr  # the tiny model on a CPU: a few tiles a second


# --- errors name options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["info", "{scene}", "--tile-size", "0"], "--tile-size must be at least 32 pixels, got 0"),
        (
            ["info", "{scene}", "--overlap", "600"],
            "--overlap must be from 0 to --tile-size - 1 (503), got 600",
        ),
        (["info", "{scene}", "--target-gsd", "0"], "--target-gsd must be positive, got 0.0"),
        (["info", "{scene}", "--max-nodata", "2"], "--max-nodata must be in (0, 1], got 2.0"),
        (["tiles", "{scene}", "-o", "{tmp}/t.gpkg", "--tile-size", "-3"], "--tile-size must be"),
        (["export", "{log}", "-o", "{tmp}/e.gpkg", "--iou", "2"], "--iou must be in (0, 1], got 2.0"),
        (["export", "{log}", "-o", "{tmp}/e.gpkg", "--ios", "0"], "--ios must be in (0, 1], got 0.0"),
    ],
)
def test_errors_name_the_option(data_dir: Path, tmp_path: Path, args: list[str], option: str) -> None:
    log = tmp_path / "a.answers.jsonl"
    log.write_text("")
    filled = [a.format(scene=data_dir / "RGB.byte.tif", tmp=tmp_path, log=log) for a in args]
    proc = run_rsvg(*filled)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"rsvg: error: {option}"), proc.stderr
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", proc.stderr.replace(str(tmp_path), "")), proc.stderr


def test_errors_name_no_python_arguments(data_dir: Path, tmp_path: Path) -> None:
    no_crs = run_rsvg("info", str(data_dir / "rotated.tif"))
    assert no_crs.returncode == 2 and "(--pixel-mode)" in no_crs.stderr and "=True" not in no_crs.stderr
    out = tmp_path / "t.gpkg"
    assert run_rsvg("tiles", str(data_dir / "RGB.byte.tif"), "-o", str(out)).returncode == 0
    again = run_rsvg("tiles", str(data_dir / "RGB.byte.tif"), "-o", str(out))
    assert again.returncode == 2 and "use --overwrite" in again.stderr and "=True" not in again.stderr
