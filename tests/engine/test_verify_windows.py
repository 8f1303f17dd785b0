"""Where verification looks (``engine/change/verify_windows.py``): small objects of one phrase near one
another share one question, every object lies inside its question's window, the windows are the same
on every run, and a shared question confirms exactly the objects its answer's boxes overlap."""

from __future__ import annotations

import numpy as np
from scripted_scene import AnswerResult
from shapely.geometry import box

from rsvg_desktop.core.geo.change.types import TargetGrid
from rsvg_desktop.engine.change.config import ChangeConfig
from rsvg_desktop.engine.change.verify import _Asker
from rsvg_desktop.engine.change.verify_windows import Question, group_questions

# A pixel grid (no CRS): grid coordinates are pixels, y down, so polygons read as pixel boxes.
GRID = TargetGrid(None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 2000, 1500)
TILE = 504


def _inside(question: Question) -> bool:
    t = question.tile
    window = box(t.col_off, t.row_off, t.col_off + t.width, t.row_off + t.height)
    return all(window.contains(target) for target in question.targets)


def test_small_objects_of_one_phrase_near_one_another_share_a_question() -> None:
    objects = [
        (0, "car", box(400, 400, 420, 415)),
        (1, "Cars", box(440, 430, 460, 445)),  # same phrase key, 40 px away: the same window
        (2, "truck", box(445, 400, 465, 420)),  # another phrase: its own question
        (3, "car", box(1500, 1200, 1520, 1215)),  # far away: its own question
        (4, "car", box(900, 300, 1100, 500)),  # larger than a quarter tile: a window of its own
    ]
    questions = group_questions(GRID, TILE, "before", "after", objects)
    by_rows = {q.rows: q for q in questions}
    assert set(by_rows) == {(0, 1), (2,), (3,), (4,)}
    assert all(_inside(q) for q in questions)
    assert [q.tile.col for q in questions] == list(range(len(questions)))  # distinct question ids
    big = by_rows[(4,)].tile
    assert big.width == big.height == 400  # twice the object's longest side, centred on it
    assert (big.col_off, big.row_off) == (800, 200)
    assert all(q.tile.size == TILE and q.own == "before" and q.asked == "after" for q in questions)


def test_every_object_lies_inside_its_window_and_the_windows_are_the_same_each_run() -> None:
    rng = np.random.default_rng(7)
    objects = []
    for row in range(400):
        x, y = rng.uniform(0, GRID.width - 130), rng.uniform(0, GRID.height - 130)
        w, h = rng.uniform(4, 126, size=2)
        objects.append((row, str(rng.choice(["car", "ship"])), box(x, y, x + w, y + h)))
    questions = group_questions(GRID, TILE, "after", "before", objects)
    assert all(_inside(q) for q in questions)
    assert sorted(r for q in questions for r in q.rows) == list(range(400))
    assert len(questions) < 400  # neighbours shared questions
    again = group_questions(GRID, TILE, "after", "before", objects)
    assert [(q.rows, q.tile) for q in again] == [(q.rows, q.tile) for q in questions]


def test_a_shared_question_confirms_the_objects_its_boxes_overlap(tmp_path) -> None:
    objects = [(5, "car", box(400, 400, 420, 415)), (9, "car", box(440, 430, 460, 445))]
    (question,) = group_questions(GRID, TILE, "before", "after", objects)
    t = question.tile
    # One box, in GeoChat's 0-100 grid of the question's window, over the first object only.
    x0, y0 = (400 - t.col_off) * 100 / t.width, (400 - t.row_off) * 100 / t.height
    x1, y1 = (420 - t.col_off) * 100 / t.width, (415 - t.row_off) * 100 / t.height
    answer = f"{{<{round(x0)}><{round(y0)}><{round(x1)}><{round(y1)}>|<0>}}"
    config = ChangeConfig("b.tif", "a.tif", "car", str(tmp_path / "c.gpkg"), pixel_mode=True)
    asker = _Asker(config, GRID, {"run_id": "r", "model": "m", "precision": "fp32", "device": "cpu"})
    record = asker.record(question, AnswerResult.of(answer))
    assert record.extra["verifies"] == "before:5,before:9"
    assert asker.confirmed(question, record) == [5]
    assert asker.confirmed(question, asker.record(question, AnswerResult.of("no car here"))) == []
