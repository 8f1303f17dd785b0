"""Metrics on hand-made cases with hand-computed results."""

from __future__ import annotations

import json
import math

import pytest
import shapely

from rsvg_desktop.core.eval.data import BenchRecord, gt_polygons, read_benchmark, read_question_file
from rsvg_desktop.core.eval.metrics import (
    gt_answer,
    match_ious,
    normalise_scene,
    normalise_vqa,
    rouge1,
    rouge_l,
    score_boxes,
)
from rsvg_desktop.core.eval.score import score_task
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.errors import BenchDataError, BenchDataNotFoundError


def test_rotated_box_against_upright_one() -> None:
    # Grid box 40..60 x 45..55 on a 100 px image, turned 90°: becomes 10 wide, 20 tall at (50, 50).
    upright = [shapely.box(45, 40, 55, 60)]
    out = score_boxes(upright, "{<40><45><60><55>|<90>}", 100, 100)
    assert out.ious == (pytest.approx(1.0),)
    # Unturned, the same box overlaps the upright one in a 10 x 10 square: IoU = 100 / (200 + 200 - 100).
    out0 = score_boxes(upright, "{<40><45><60><55>|<0>}", 100, 100)
    assert out0.ious == (pytest.approx(100 / 300),)


def test_theta_45_differs_between_conventions_only_in_direction() -> None:
    # A 45°-turned square is the same polygon either way; a 20 x 10 rectangle at 30° is not.
    sq = score_boxes([shapely.box(40, 40, 60, 60)], "{<40><40><60><60>|<45>}", 100, 100)
    # Square vs its 45° turn: intersection is a regular octagon, 2(√2 − 1)a²; IoU = 1/√2.
    assert sq.ious[0] == pytest.approx(1 / math.sqrt(2))
    ccw = score_boxes([shapely.box(40, 45, 60, 55)], "{<40><45><60><55>|<30>}", 100, 100, "ccw")
    cw = score_boxes([shapely.box(40, 45, 60, 55)], "{<40><45><60><55>|<30>}", 100, 100, "cw")
    assert ccw.ious[0] == pytest.approx(cw.ious[0])  # symmetric about the upright box


def test_score_task_scores_both_angle_conventions_and_follows_the_chosen_one() -> None:
    # A 20 x 10 box turned 30° counter-clockwise on screen (y down: shapely's -30°), and the answer
    # "turned 30°": read ccw it is the box (IoU 1), read cw it is 60° off (IoU ≈ 0.41 < 0.5).
    turned = shapely.affinity.rotate(shapely.box(40, 45, 60, 55), -30, origin="center")
    corners = [list(xy) for xy in turned.exterior.coords[:4]]
    rec = BenchRecord("referring", "1", "img", "the car", [corners], size=(100, 100))
    answers = {"1": "{<40><45><60><55>|<30>}"}
    for convention, main in (("ccw", 100.0), ("cw", 0.0)):
        got = {
            m.metric: m.value
            for m in score_task("x", "referring", [rec], answers, convention=AngleConvention(convention))
            if m.task == "referring"
        }
        assert (got["acc@0.5[ccw]"], got["acc@0.5[cw]"]) == (100.0, 0.0)  # named, not swapped
        assert got["acc@0.5"] == main == got[f"acc@0.5[{convention}]"]


def test_one_to_many_matching_is_greedy_one_to_one() -> None:
    gt = [shapely.box(0, 0, 10, 10), shapely.box(20, 0, 30, 10)]
    # Three answer boxes: one exact on the first, one half over the first, one far away.
    pred = [shapely.box(0, 0, 10, 10), shapely.box(0, 0, 5, 10), shapely.box(50, 50, 60, 60)]
    assert match_ious(gt, pred) == [pytest.approx(1.0)]  # the half box may not match the same object
    out = score_boxes(gt, "{<0><0><10><10>}{<0><0><5><10>}{<50><50><60><60>}", 100, 100)
    assert (out.n_gt, out.n_pred, out.hits(0.5)) == (2, 3, 1)


def test_empty_and_malformed_answers_are_misses() -> None:
    gt = [shapely.box(0, 0, 10, 10)]
    empty = score_boxes(gt, "", 100, 100)
    assert (empty.n_pred, empty.ious, empty.malformed) == (0, (), False)
    bad = score_boxes(gt, "there is a plane at the top {<1><2", 100, 100)
    assert (bad.n_pred, bad.ious, bad.malformed) == (0, (), True)


def test_captions_identical_and_disjoint() -> None:
    assert rouge1("a small white car", "a small white car") == 1.0
    assert rouge_l("a small white car", "a small white car") == 1.0
    assert rouge1("a small white car", "large green ship") == 0.0
    assert rouge_l("a small white car", "large green ship") == 0.0
    # Hand computed: ref 4 tokens, hyp 3 tokens, LCS "white car" = 2 → P 2/3, R 1/2, F = 4/7.
    assert rouge_l("a small white car", "white red car") == pytest.approx(4 / 7)
    assert rouge1("a small white car", "white red car") == pytest.approx(4 / 7)


def test_meteor_identical_and_disjoint() -> None:
    from rsvg_desktop.core.eval.meteor import meteor

    same = meteor("a small white car on the road", "a small white car on the road")
    # NLTK's METEOR: F = 1, one chunk of 7 matches → penalty 0.5 · (1/7)³.
    assert same == pytest.approx(1 - 0.5 / 343)
    assert meteor("a small white car", "large green ship") == 0.0


def test_normalisation() -> None:
    assert normalise_scene(" Dense Residential. ") == "denseresidential"
    assert normalise_scene("Airport!") == "airport"
    assert normalise_vqa("Yes, there is.") == "yes"
    assert normalise_vqa("No.") == "no"


def test_ground_truth_as_answers_scores_the_grid_ceiling() -> None:
    # Objects of 40 px and more on an 800 px image: after rounding to the 0–100 grid (8 px steps) the
    # ground truth keeps IoU ≥ 0.5 with itself, so the ceiling here is 100 %; small objects fall below.
    big = [shapely.box(100, 100, 180, 140), shapely.affinity.rotate(shapely.box(300, 300, 400, 340), 30)]
    out = score_boxes(big, gt_answer(big, 800, 800), 800, 800)
    assert out.hits(0.5) == 2
    tiny = [shapely.box(10, 10, 14, 14)]  # 4 px: less than one grid step
    assert score_boxes(tiny, gt_answer(tiny, 800, 800), 800, 800).hits(0.5) == 0


def test_score_task_ground_truth_answers(tmp_path) -> None:
    recs = [
        {
            "question_id": "1",
            "image_id": "P0001",
            "question": "plane",
            "ground_truth": [[[100, 100], [200, 100], [200, 160], [100, 160]]],
            "type": "ref",
            "dataset": "SOTA",
            "obj_ids": [1],
            "size_group": "large",
        },
        {
            "question_id": "2",
            "image_id": "train_1",
            "question": "car",
            "ground_truth": [120, 120, 180, 200],
            "type": "ref",
            "dataset": "FAST",
            "obj_ids": [2],
            "size_group": "small",
        },
    ]
    f = tmp_path / "referring.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    data = read_question_file(f, "referring")
    sizes = {"1": 1024, "2": 600}
    answers = {
        r.question_id: gt_answer(gt_polygons(r.ground_truth), sizes[r.question_id], sizes[r.question_id])
        for r in data
    }
    metrics = {(m.task, m.metric): m for m in score_task("gt", "referring", data, answers)}
    assert metrics[("referring", "acc@0.5")].value == pytest.approx(100.0)
    assert metrics[("referring", "acc@0.5")].value == metrics[("referring", "grid_ceiling@0.5")].value
    assert metrics[("referring", "acc@0.5")].n == 2
    assert metrics[("referring/size:small", "acc@0.5")].n == 1
    assert math.isclose(metrics[("referring", "precision")].value, 100.0)


def test_bad_data_files_give_one_line_errors(tmp_path) -> None:
    f = tmp_path / "scene.jsonl"
    f.write_text(
        '{"question_id": "a/1", "image": "x.png", "text": "q"}\n{"question_id": "b/2", "text": "q"}\n'
    )
    with pytest.raises(BenchDataError, match=r"scene.jsonl:2: missing field 'image_id' or 'image'"):
        read_question_file(f, "scene")
    f.write_text("{not json\n")
    with pytest.raises(BenchDataError, match=r"scene.jsonl:1: not a JSON record"):
        read_question_file(f, "scene")
    g = tmp_path / "referring.jsonl"
    g.write_text('{"question_id": 1, "image_id": "P1", "question": "q", "ground_truth": [[1, 2]]}\n')
    with pytest.raises(BenchDataError, match=r"referring.jsonl:1: a ground-truth box must be"):
        read_question_file(g, "referring")
    with pytest.raises(BenchDataNotFoundError, match="data folder not found"):
        read_benchmark(tmp_path / "nope")
    g.unlink()
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "1.xml").write_text(
        "<annotation><object><bndbox><xmin>1</xmin></bndbox></object>"
    )
    with pytest.raises(BenchDataError, match=r"1.xml: not valid XML"):
        read_benchmark(tmp_path, ["referring"])
