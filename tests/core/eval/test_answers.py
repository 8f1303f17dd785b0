"""Answers joined to questions by (file, question_id); RSVQA's split files as VQA ground truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rsvg_desktop.core.eval.answers import answer_files, join_answers
from rsvg_desktop.core.eval.data import BenchAnswer, BenchRecord, read_answers, read_benchmark
from rsvg_desktop.core.eval.names import task_of_name
from rsvg_desktop.core.eval.rsvqa import attach_vqa_ground_truth, read_rsvqa_ground_truth
from rsvg_desktop.errors import BenchDataError


def _rec(file: str, qid: str, dataset: str = "", task: str = "scene") -> BenchRecord:
    return BenchRecord(task, qid, "img", "q", "beach", dataset=dataset, file=file)


def test_names_map_to_tasks_and_datasets() -> None:
    assert task_of_name("UCmerced") == ("scene", "UCMerced")
    assert task_of_name("AID") == ("scene", "AID")
    assert task_of_name("grounding_description") == ("grounding", "")
    assert task_of_name("region_captioning") == ("region-caption", "")
    assert task_of_name("hrben") == ("vqa", "HRBEN")
    assert task_of_name("region_caption") == ("region-caption", "")
    assert task_of_name("UCMerced", "scene") == ("scene", "UCMerced")
    assert task_of_name("answers") is None


def test_same_ids_in_two_files_stay_apart(tmp_path: Path) -> None:
    records = [_rec("UCmerced.jsonl", "0", "UCMerced"), _rec("aid.jsonl", "0", "AID")]
    run = tmp_path / "scene.jsonl"  # what `bench run` writes: every line names its question file
    run.write_text(
        '{"question_id": "0", "answer": "a", "file": "UCmerced.jsonl"}\n'
        '{"question_id": "0", "answer": "b", "file": "aid.jsonl"}\n'
    )
    assert join_answers(run, read_answers(run), records) == {
        ("UCmerced.jsonl", "0"): "a",
        ("aid.jsonl", "0"): "b",
    }
    named = tmp_path / "AID.jsonl"  # GeoChat's own: the file's name says which
    assert join_answers(named, [BenchAnswer("0", "c")], records) == {("aid.jsonl", "0"): "c"}
    by_dataset = [BenchAnswer("0", "d", dataset="UCMerced")]  # else the line's dataset
    assert join_answers(tmp_path / "scene.jsonl", by_dataset, records) == {("UCmerced.jsonl", "0"): "d"}
    with pytest.raises(BenchDataError, match="cannot tell which question file"):
        join_answers(tmp_path / "scene.jsonl", [BenchAnswer("0", "e", source="scene.jsonl:1")], records)


def test_answer_folder_and_unnamed_file(tmp_path: Path) -> None:
    (tmp_path / "scene").mkdir()
    for name in ("lrben.jsonl", "scene/UCMerced.jsonl"):
        (tmp_path / name).write_text("")
    assert [(p.name, t) for p, t in answer_files(tmp_path)] == [
        ("lrben.jsonl", "vqa"),
        ("UCMerced.jsonl", "scene"),
    ]
    (tmp_path / "x.jsonl").write_text("")
    with pytest.raises(
        BenchDataError, match=r"x.jsonl: cannot tell the task from the file name; names accepted: "
    ):
        answer_files(tmp_path)


def test_data_folder_keys_and_skips_unknown_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "aid.jsonl").write_text(
        '{"question_id": 0, "image": "a.jpg", "text": "q", "ground_truth": "Airport"}\n'
    )
    (tmp_path / "lrben.jsonl").write_text(
        '{"question_id": 0, "image": "0.tif", "text": "q", "category": "comp"}\n'
    )
    (tmp_path / "notes.jsonl").write_text("")
    with caplog.at_level(logging.WARNING):
        data = read_benchmark(tmp_path)
    assert [(r.key, r.dataset) for r in data["scene"]] == [(("aid.jsonl", "0"), "AID")]
    assert data["vqa"][0].ground_truth is None and data["vqa"][0].dataset == "LRBEN"
    assert "notes.jsonl: not a benchmark file name, skipped" in caplog.text


def test_rsvqa_split_files(tmp_path: Path) -> None:
    (tmp_path / "LR_split_test_questions.json").write_text(json.dumps({"questions": [
        {"id": 5, "type": "comp", "answers_ids": [9], "active": True},
        {"id": 6, "type": "presence", "answers_ids": [10], "active": False},
    ]}))  # fmt: skip
    (tmp_path / "LR_split_test_answers.json").write_text(
        json.dumps({"answers": [{"id": 9, "question_id": 5, "answer": "yes", "active": True}]})
    )
    truth = read_rsvqa_ground_truth(tmp_path)
    assert truth == {"LRBEN": {"5": ("yes", "comp")}}
    recs = [BenchRecord("vqa", q, "i", "q", None, dataset="LRBEN", file="lrben.jsonl") for q in ("5", "6")]
    got = attach_vqa_ground_truth(recs, truth)
    assert [(r.ground_truth, r.type) for r in got] == [("yes", "comp"), (None, "")]
    (tmp_path / "LR_split_test_answers.json").unlink()
    with pytest.raises(BenchDataError, match=r"LR_split_test_answers\.json: file not found"):
        read_rsvqa_ground_truth(tmp_path)
