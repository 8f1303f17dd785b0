"""The Qt-free part of comparison mode: which tasks compare, the settings, resuming, progress."""

from __future__ import annotations

from pathlib import Path

from rsvg_desktop.engine.change import DateStarted, VerifyProgress, VerifyStarted, date_answer_log
from rsvg_desktop.gui.logic.compare import ChangeProgress, ResumeBook, change_config, compares


class _Info:
    path = "/data/before.tif"
    pixel_mode = False


def _config(tmp_path: Path, query: str = "car", name: str = "a-change.gpkg"):
    return change_config(
        _Info(),  # type: ignore[arg-type]
        "/data/after.tif",
        task="refer",
        query=query,
        output=tmp_path / name,
        tile_size=504,
        overlap=64,
    )


def test_only_tasks_that_find_objects_compare() -> None:
    assert compares("refer") and compares("grounding")
    assert not any(compares(t) for t in ("identify", "classify", "vqa", "chat"))


def test_the_open_scene_is_before_and_its_grid_is_used(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert (config.before, config.after, config.grid) == ("/data/before.tif", "/data/after.tif", "before")
    assert (config.tile_size, config.overlap, config.query) == (504, 64, "car")


def test_a_stopped_comparison_resumes_under_its_output(tmp_path: Path) -> None:
    book = ResumeBook()
    first = _config(tmp_path)
    book.stopped(first)
    again = _config(tmp_path, name="b-change.gpkg")
    assert book.output_for(again) is None  # no answer log yet: nothing to resume
    date_answer_log(first.output, "before").write_text("")
    assert book.output_for(again) == first.output
    assert book.output_for(_config(tmp_path, query="ship")) is None  # another question
    book.finished(again)
    assert book.output_for(again) is None


def test_progress_of_both_dates_and_the_verification() -> None:
    progress = ChangeProgress()
    assert progress.text() == "Before 0/? · After 0/?"
    progress.on_date(DateStarted("before", "b.tif", "b.log", 0))
    progress.on_tile(0, 4)
    progress.on_tile(3, 4)
    assert progress.text() == "Before 3/4 · After 0/?" and progress.value == (3, 4)
    progress.on_date(DateStarted("after", "a.tif", "a.log", 1))
    progress.on_tile(4, 4)
    progress.on_verify(VerifyStarted(5))
    progress.on_verify(VerifyProgress(2, 5, 1))
    assert progress.text(65) == "Before 3/4 · After 4/4 · verifying 2/5 · 1:05"
    assert progress.value == (9, 13)
