"""``rsvg bench score`` on a folder laid out as GeoChat-Bench is published: its seven file names and
their fields (a few records each), answers named the same way, LRBEN/HRBEN ground truth from RSVQA's
split files. Every figure is checked against an independent computation (shapely IoU, hand counts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely

from rsvg_desktop.cli.main import main


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _quad(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _grid_box(b: tuple[int, int, int, int], size: int) -> shapely.Polygon:
    """An upright answer box on GeoChat's 0-100 grid, in pixels of a ``size`` square image."""
    return shapely.box(*(v * size / 100 for v in b))


def _iou(a: shapely.Polygon, b: shapely.Polygon) -> float:
    return a.intersection(b).area / a.union(b).area


# (image id, its size by GeoChat-Bench's prefix rule, ground truth in pixels, answer box on the grid)
REFERRING = [
    ("P0001", 1024, (102.4, 102.4, 307.2, 204.8), (10, 10, 30, 20)),  # exact
    ("train_0001", 600, (60, 60, 180, 180), (15, 10, 35, 30)),  # shifted: IoU 0.6
    ("00123", 800, (80, 80, 160, 160), (60, 60, 70, 70)),  # elsewhere: IoU 0
]
GROUNDING_GT = [(80, 80, 240, 240), (400, 400, 560, 480)]  # one image, 800 px, two objects
GROUNDING_ANSWER = "<p>planes</p> {<10><10><30><30>|<0>}{<70><70><80><80>|<0>}"


@pytest.fixture()
def geochat_bench(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(data folder, answer folder, RSVQA folder). Ids 0, 1, … in every file: they collide across files."""
    data, ans, rsvqa = tmp_path / "GeoChat-Bench", tmp_path / "answers", tmp_path / "RSVQA"
    referring = [
        {"question_id": i, "image_id": img, "question": "the plane", "ground_truth": [_quad(*gt)],
         "type": "ref",
         "dataset": "SOTA" if img.startswith("P") else "SIOR", "obj_ids": [i], "size_group": "small"}
        for i, (img, _size, gt, _a) in enumerate(REFERRING)
    ]  # fmt: skip
    _jsonl(data / "referring.jsonl", referring)
    _jsonl(
        data / "grounding_description.jsonl",
        [{"question_id": 0, "image_id": "00999", "question": "Describe the image in detail.",
          "ground_truth": [_quad(*g) for g in GROUNDING_GT], "type": "grounding", "dataset": "SIOR",
          "obj_ids": [0, 1], "size_group": "large"}],
    )  # fmt: skip
    _jsonl(
        data / "region_captioning.jsonl",
        [{"question_id": i, "image_id": "00999", "question": "{<10><10><30><30>|<0>}", "ground_truth": gt}
         for i, gt in enumerate(("a white plane", "small vehicle parked"))],
    )  # fmt: skip
    _jsonl(
        data / "UCmerced.jsonl",
        [{"question_id": i, "image": f"{c}{i:02d}.tif", "text": "Classes: airplane, beach. What is it?",
          "ground_truth": c} for i, c in enumerate(("airplane", "beach"))],
    )  # fmt: skip
    _jsonl(
        data / "aid.jsonl",
        [{"question_id": i, "image": f"{c}_{i}.png", "text": "Classes: Airport, BareLand. What is it?",
          "ground_truth": c} for i, c in enumerate(("Airport", "BareLand"))],
    )  # fmt: skip
    # RSVQA's types as GeoChat-Bench's VQA files carry them ("category"), and no ground truth.
    lr = [(0, "presence", "yes"), (1, "comp", "no"), (2, "rural_urban", "rural"), (3, "count", "5")]
    hr = [(0, "presence", "no"), (1, "comp", "yes"), (7, "presence", None)]  # 7: not in RSVQA's files
    for name, rows in (("lrben", lr), ("hrben", hr)):
        _jsonl(
            data / f"{name}.jsonl",
            [{"question_id": q, "image": f"{q}.tif", "text": "Is a road present?", "category": t}
             for q, t, _ in rows],
        )  # fmt: skip
    for split, rows in (("LR/LR_split_test", lr), ("HR/USGS_split_test_phili", hr)):
        qs = [{"id": q, "img_id": q, "type": t, "question": "?", "answers_ids": [100 + q], "active": True}
              for q, t, a in rows if a is not None]  # fmt: skip
        answers = [{"id": 100 + q, "question_id": q, "answer": a, "active": True} for q, _, a in rows if a]
        (rsvqa / split).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{rsvqa / split}_questions.json").write_text(json.dumps({"questions": qs}))
        Path(f"{rsvqa / split}_answers.json").write_text(json.dumps({"answers": answers}))
    # HR's test set 1 disagrees with test set 2 on id 0: only test set 2 (Philadelphia) is HRBEN.
    Path(f"{rsvqa}/HR/USGS_split_test_questions.json").write_text(
        json.dumps({"questions": [{"id": 0, "type": "presence", "answers_ids": [1]}]})
    )
    Path(f"{rsvqa}/HR/USGS_split_test_answers.json").write_text(
        json.dumps({"answers": [{"id": 1, "question_id": 0, "answer": "yes"}]})
    )
    # Answers as GeoChat's evaluation scripts write them, one file per question file, same names.
    _jsonl(ans / "referring.jsonl", [
        {"question_id": i, "image_id": img, "answer": "{{<{}><{}><{}><{}>|<0>}}".format(*a)}
        for i, (img, _s, _g, a) in enumerate(REFERRING)
    ])  # fmt: skip
    _jsonl(ans / "grounding_description.jsonl", [{"question_id": 0, "answer": GROUNDING_ANSWER}])
    _jsonl(ans / "region_captioning.jsonl", [
        {"question_id": 0, "answer": "a white plane"}, {"question_id": 1, "answer": "a small vehicle"}
    ])  # fmt: skip
    _jsonl(
        ans / "UCmerced.jsonl",
        [{"question_id": 0, "answer": "Airplane"}, {"question_id": 1, "answer": "forest"}],
    )
    _jsonl(
        ans / "aid.jsonl",
        [{"question_id": 0, "answer": "airport."}, {"question_id": 1, "answer": "bare land"}],
    )
    _jsonl(ans / "lrben.jsonl", [
        {"question_id": 0, "answer": "Yes"}, {"question_id": 1, "answer": "no"},
        {"question_id": 2, "answer": "urban"}, {"question_id": 3, "answer": "5"},
    ])  # fmt: skip
    _jsonl(ans / "hrben.jsonl", [
        {"question_id": 0, "answer": "no"}, {"question_id": 1, "answer": "no"},
        {"question_id": 7, "answer": "yes"},
    ])  # fmt: skip
    return data, ans, rsvqa


def _metrics(out: Path) -> dict[tuple[str, str, str], dict]:
    rows = json.loads((out / "metrics.json").read_text())["metrics"]
    return {(m["label"], m["task"], m["metric"]): m for m in rows}


CAPTIONS = [("a white plane", "a white plane"), ("small vehicle parked", "a small vehicle")]


def _check_captions_against_the_packages(m: dict) -> None:
    """METEOR by NLTK itself on ROUGE's tokens; ROUGE by Google's rouge-score where installed."""
    import re

    from nltk.translate.meteor_score import meteor_score

    from rsvg_desktop.core.eval.meteor import wordnet_reader

    def tok(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()

    want = [meteor_score([tok(r)], tok(h), wordnet=wordnet_reader()) for r, h in CAPTIONS]
    assert m[("bf16", "region-caption", "meteor")]["value"] == pytest.approx(100 * sum(want) / 2)
    try:
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError:
        return
    got = [RougeScorer(["rouge1", "rougeL"]).score(r, h) for r, h in CAPTIONS]
    for key in ("rouge1", "rougeL"):
        want_r = 100 * sum(g[key].fmeasure for g in got) / 2
        assert m[("bf16", "region-caption", key)]["value"] == pytest.approx(want_r)


def test_every_geochat_bench_file_is_read_and_scored(geochat_bench, tmp_path: Path) -> None:
    data, ans, rsvqa = geochat_bench
    out = tmp_path / "out"
    args = ["-q", "bench", "score", "--data", str(data), "--answers", f"bf16={ans}", "--vqa-ground-truth",
            str(rsvqa), "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    m = _metrics(out)

    ious = [_iou(shapely.box(*gt), _grid_box(a, size)) for _img, size, gt, a in REFERRING]
    assert ious[1] == pytest.approx(0.6)
    assert m[("bf16", "referring", "acc@0.5")]["value"] == pytest.approx(
        100 * sum(i >= 0.5 for i in ious) / 3
    )
    assert m[("bf16", "referring", "acc@0.25")]["n"] == 3
    assert m[("bf16", "referring", "mean_iou")]["value"] == pytest.approx(100 * sum(ious) / 3)

    g_ious = [
        max(_iou(shapely.box(*g), _grid_box(a, 800)) for a in ((10, 10, 30, 30), (70, 70, 80, 80)))
        for g in GROUNDING_GT
    ]
    assert m[("bf16", "grounding", "acc@0.5")]["value"] == pytest.approx(
        100 * sum(i >= 0.5 for i in g_ious) / 2
    )
    assert m[("bf16", "grounding", "acc@0.5")]["n"] == 2

    # ROUGE-1/L F1 by hand: "a white plane" exact (1); "small vehicle parked" vs "a small vehicle":
    # 2 words in common (and in order) of 3 and 3 → P = R = 2/3.
    assert m[("bf16", "region-caption", "rouge1")]["value"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert m[("bf16", "region-caption", "rougeL")]["value"] == pytest.approx(100 * (1 + 2 / 3) / 2)

    _check_captions_against_the_packages(m)

    assert m[("bf16", "scene/UCMerced", "accuracy")]["value"] == pytest.approx(50.0)
    assert m[("bf16", "scene/AID", "accuracy")]["value"] == pytest.approx(100.0)
    assert m[("bf16", "scene/AID", "accuracy")]["n"] == 2

    # LRBEN: presence 1/1, comparison 1/1, rural_urban 0/1, count excluded; HRBEN: presence 1/1,
    # comparison 0/1 (with test set 1's answer for id 0 it would be 0/1), id 7 without ground truth.
    for t, v in (("presence", 100.0), ("comparison", 100.0), ("rural_urban", 0.0)):
        assert m[("bf16", f"vqa/LRBEN/{t}", "accuracy")]["value"] == v
    assert m[("bf16", "vqa/LRBEN/average", "accuracy")]["value"] == pytest.approx(200 / 3)
    assert m[("bf16", "vqa/LRBEN/excluded", "count")]["n"] == 1
    assert m[("bf16", "vqa/HRBEN/presence", "accuracy")]["value"] == 100.0
    assert m[("bf16", "vqa/HRBEN/presence", "accuracy")]["n"] == 1
    assert m[("bf16", "vqa/HRBEN/comparison", "accuracy")]["value"] == 0.0
    assert m[("bf16", "vqa/no_ground_truth", "count")]["n"] == 1
    report = (out / "report.md").read_text()
    assert "1 VQA questions have no ground truth, not scored" in report and "hrben.jsonl#7" in report
    assert "0.00 (n=0)" not in report


def test_one_answer_file_per_label_and_a_label_given_twice(geochat_bench, tmp_path: Path) -> None:
    data, ans, _ = geochat_bench
    out = tmp_path / "out"
    args = ["-q", "bench", "score", "--data", str(data), "--answers", f"a={ans / 'UCmerced.jsonl'}",
            "--answers", f"a={ans / 'region_captioning.jsonl'}", "--answers", f"b={ans / 'referring.jsonl'}",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    m = _metrics(out)
    assert m[("a", "scene/UCMerced", "accuracy")]["n"] == 2
    assert m[("a", "region-caption", "rouge1")]["n"] == 2
    assert m[("b", "referring", "acc@0.5")]["n"] == 3
    # Nothing behind a row, no row: a's referring, b's scene, AID (not answered by anyone), VQA.
    assert not [k for k in m if k[0] == "a" and k[1] in ("referring", "grounding")]
    assert not [k for k in m if k[0] == "b" and not k[1].startswith("referring")]
    assert not [k for k in m if k[1] == "scene/AID" or k[1].startswith("vqa")]


def test_a_file_whose_task_cannot_be_told_is_one_line(
    geochat_bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, _ = geochat_bench
    odd = tmp_path / "my_answers.jsonl"
    odd.write_text('{"question_id": 0, "answer": "beach"}\n')
    code = main(["bench", "score", "--data", str(data), "--answers", f"x={odd}", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert str(odd) in err[0] and "UCmerced.jsonl" in err[0] and "grounding_description.jsonl" in err[0]
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_names_are_case_insensitive_and_ids_are_per_file(geochat_bench, tmp_path: Path) -> None:
    data, ans, _ = geochat_bench
    (data / "UCmerced.jsonl").rename(data / "ucmerced.JSONL")
    (ans / "aid.jsonl").rename(ans / "AID.jsonl")
    out = tmp_path / "out"
    args = ["-q", "bench", "score", "--data", str(data), "--answers", f"x={ans / 'AID.jsonl'}",
            "--answers", f"x={ans / 'UCmerced.jsonl'}", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    m = _metrics(out)
    # Both files have questions 0 and 1: each answer scores its own file's question.
    assert m[("x", "scene/UCMerced", "accuracy")]["value"] == pytest.approx(50.0)
    assert m[("x", "scene/AID", "accuracy")]["value"] == pytest.approx(100.0)


def test_a_missing_answer_is_a_miss_and_the_label_is_marked_partial(geochat_bench, tmp_path: Path) -> None:
    data, ans, _ = geochat_bench
    lines = (ans / "referring.jsonl").read_text().splitlines()
    (ans / "referring.jsonl").write_text(lines[0] + "\n")  # 1 of 3 answered, and right
    out = tmp_path / "out"
    base = ["-q", "bench", "score", "--data", str(data), "--answers", f"x={ans / 'referring.jsonl'}"]
    assert main([*base, "-o", str(out)]) == 0
    m = _metrics(out)
    assert m[("x", "referring", "acc@0.5")]["value"] == pytest.approx(100 / 3)
    assert m[("x", "referring", "acc@0.5")]["n"] == 3
    assert m[("x", "referring", "answered")]["n"] == 1
    assert m[("x", "referring", "asked")]["n"] == 3
    report = (out / "report.md").read_text()
    assert "| x (partial: 1 of 3 answered) |" in report
    assert "a missing answer is a miss" in report
    # On purpose: the answered subset only, and the report says so.
    assert main([*base, "--only-answered", "-o", str(out)]) == 0
    m = _metrics(out)
    assert m[("x", "referring", "acc@0.5")]["value"] == pytest.approx(100.0)
    assert m[("x", "referring", "acc@0.5")]["n"] == 1
    assert "--only-answered" in (out / "report.md").read_text()


def test_the_sample_of_a_limited_run_is_the_denominator(geochat_bench, tmp_path: Path) -> None:
    data, ans, _ = geochat_bench
    # What `bench run --limit 2 --seed 0` leaves beside its answers: the questions it drew.
    (ans / "sample.json").write_text(
        json.dumps({"limit": 2, "seed": 0, "questions": [["referring.jsonl", "1"], ["referring.jsonl", "2"]]})
    )
    out = tmp_path / "out"
    args = ["-q", "bench", "score", "--data", str(data), "--answers", f"x={ans / 'referring.jsonl'}",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    m = _metrics(out)
    assert m[("x", "referring", "asked")]["n"] == 2
    assert m[("x", "referring", "acc@0.5")]["value"] == pytest.approx(50.0)  # IoU 0.6 and 0
    assert "sample.json" in (out / "report.md").read_text()


def test_bow_tie_ground_truth_is_reordered_and_counted(geochat_bench, tmp_path: Path) -> None:
    data, ans, _ = geochat_bench
    rows = [json.loads(x) for x in (data / "referring.jsonl").read_text().splitlines()]
    (x1, y1), (x2, _), (_, y2), _ = rows[1]["ground_truth"][0]
    rows[1]["ground_truth"] = [[[x1, y1], [x2, y2], [x2, y1], [x1, y2]]]  # corners crossed: a bow-tie
    _jsonl(data / "referring.jsonl", rows)
    out = tmp_path / "out"
    args = ["-q", "bench", "score", "--data", str(data), "--answers", f"x={ans / 'referring.jsonl'}",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    m = _metrics(out)
    ious = [_iou(shapely.box(*gt), _grid_box(a, size)) for _img, size, gt, a in REFERRING]  # the rectangles
    assert m[("x", "referring", "mean_iou")]["value"] == pytest.approx(100 * sum(ious) / 3)
    assert m[("x", "referring", "repaired_gt")]["value"] == 1
    assert "repaired_gt" in (out / "report.md").read_text()


def test_zero_area_ground_truth_is_one_line(
    geochat_bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ans, _ = geochat_bench
    rows = [json.loads(x) for x in (data / "referring.jsonl").read_text().splitlines()]
    rows[2]["ground_truth"] = [[[10, 10], [50, 10], [50, 10], [10, 10]]]
    _jsonl(data / "referring.jsonl", rows)
    args = ["bench", "score", "--data", str(data), "--answers", f"x={ans / 'referring.jsonl'}",
            "-o", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{data / 'referring.jsonl'}:3: a ground-truth box has zero area" in err[0]


def test_a_cut_off_last_answer_line_is_skipped_and_repaired(geochat_bench, tmp_path: Path) -> None:
    from rsvg_desktop.core.eval.data import read_answers
    from rsvg_desktop.core.jsonl_tail import repair_tail

    data, ans, _ = geochat_bench
    f = ans / "UCmerced.jsonl"
    f.write_text('{"question_id": 0, "answer": "Airplane"}\n{"question_id": 1, "ans')  # killed mid-write
    out = tmp_path / "out"
    args = ["-q", "bench", "score", "--data", str(data), "--answers", f"x={f}", "-o", str(out)]
    assert main(args) == 0
    m = _metrics(out)
    assert m[("x", "scene/UCMerced", "accuracy")]["value"] == pytest.approx(50.0)  # the cut one: a miss
    assert m[("x", "scene", "answered")]["n"] == 1
    repair_tail(f)  # what `bench run` does before appending on resume
    assert f.read_text() == '{"question_id": 0, "answer": "Airplane"}\n'
    assert [a.question_id for a in read_answers(f)] == ["0"]


def test_resuming_a_run_keys_questions_by_file_and_id(geochat_bench, tmp_path: Path) -> None:
    from rsvg_desktop.core.eval.data import read_benchmark
    from rsvg_desktop.engine.bench.jobs import _answer_json, _unanswered

    data, _, _ = geochat_bench
    questions = read_benchmark(data, ["scene"])  # UCmerced.jsonl and aid.jsonl: both ids 0 and 1
    adir = tmp_path / "run"
    adir.mkdir()
    done = [r for r in questions["scene"] if r.file == "UCmerced.jsonl"]
    (adir / "scene.jsonl").write_text("".join(_answer_json(r, "beach") + "\n" for r in done))
    todo = _unanswered(adir, questions)
    assert [r.key for r in todo["scene"]] == [("aid.jsonl", "0"), ("aid.jsonl", "1")]
