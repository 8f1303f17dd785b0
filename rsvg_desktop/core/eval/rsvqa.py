"""LRBEN/HRBEN ground truth from the RSVQA releases' own split files (``--vqa-ground-truth DIR``).

GeoChat-Bench's ``lrben.jsonl``/``hrben.jsonl`` carry no answers; GeoChat's docs send users to the
RSVQA releases. A release's split is three JSON files, ``<split>_questions.json``,
``<split>_answers.json`` and ``<split>_images.json``: ``{"questions": [{"id", "img_id", "type",
"question", "answers_ids", "active"}]}`` and ``{"answers": [{"id", "question_id", "answer",
"active"}]}``. Splits whose names start with ``LR`` are LRBEN's; ``USGS`` or ``HR``, HRBEN's (the
folder is searched with its subfolders); GeoChat's HRBEN is RSVQA-HR's test set 2 (Philadelphia,
``USGS_split_test_phili_*``), used alone for HRBEN when present. Only active records
count. A benchmark question is joined to its ground truth by its dataset and question id.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rsvg_desktop.core.eval.data import BenchRecord
from rsvg_desktop.errors import BenchDataError, BenchDataNotFoundError

__all__ = ["attach_vqa_ground_truth", "read_rsvqa_ground_truth", "vqa_dataset"]

log = logging.getLogger(__name__)

#: question id → (answer, question type)
GroundTruth = dict[str, tuple[str, str]]


def vqa_dataset(name: str) -> str:
    """``LRBEN`` or ``HRBEN`` for a dataset or split name (``lrben``, ``LR_split_test``, ``USGS…``);
    "" for any other."""
    key = name.strip().upper()
    if key.startswith("LR"):
        return "LRBEN"
    if key.startswith(("HR", "USGS")):
        return "HRBEN"
    return ""


def _qid(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _records(path: Path, key: str) -> list[dict[str, Any]]:
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchDataNotFoundError(f"{path}: file not found (an RSVQA split needs it)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BenchDataError(f"{path}: not an RSVQA split file ({exc})") from None
    rows = got.get(key) if isinstance(got, dict) else None
    if not isinstance(rows, list):
        raise BenchDataError(f"{path}: not an RSVQA split file (no {key!r} list)")
    return [r for r in rows if isinstance(r, dict) and r.get("active", True)]


def _read_split(questions_file: Path) -> GroundTruth:
    answers_file = questions_file.with_name(questions_file.name.replace("_questions.json", "_answers.json"))
    answers = {_qid(a.get("id")): a for a in _records(answers_file, "answers")}
    by_question = {_qid(a.get("question_id")): a for a in answers.values() if "question_id" in a}
    out: GroundTruth = {}
    for q in _records(questions_file, "questions"):
        if "id" not in q:
            raise BenchDataError(f"{questions_file}: a question without an 'id'")
        qid = _qid(q["id"])
        ids = q.get("answers_ids") or []
        found = next((answers[_qid(i)] for i in ids if _qid(i) in answers), None) or by_question.get(qid)
        if found is not None and found.get("answer") is not None:
            out[qid] = (str(found["answer"]), str(q.get("type") or ""))
    return out


def read_rsvqa_ground_truth(folder: str | Path) -> dict[str, GroundTruth]:
    """``{"LRBEN": {question id: (answer, type)}, "HRBEN": {...}}`` from the split files in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchDataNotFoundError(f"{folder}: RSVQA ground-truth folder not found")
    out: dict[str, GroundTruth] = {}
    origin: dict[tuple[str, str], Path] = {}
    qfiles = sorted(folder.rglob("*_questions.json"))
    if any("phili" in q.name.lower() for q in qfiles):  # HRBEN is test set 2 (Philadelphia) only
        qfiles = [q for q in qfiles if vqa_dataset(q.name) != "HRBEN" or "phili" in q.name.lower()]
    for qfile in qfiles:
        dataset = vqa_dataset(qfile.name)
        if not dataset:
            log.warning("%s: neither LR nor USGS/HR by its name, skipped", qfile)
            continue
        mine = out.setdefault(dataset, {})
        for qid, value in _read_split(qfile).items():
            if qid in mine and mine[qid][0] != value[0]:
                raise BenchDataError(
                    f"{qfile}: question {qid} of {dataset} has another answer in {origin[(dataset, qid)]}; "
                    "keep one split of each release in the folder"
                )
            mine[qid] = value
            origin[(dataset, qid)] = qfile
    if not out:
        raise BenchDataError(f"{folder}: no RSVQA split files (<split>_questions.json and _answers.json)")
    return out


def attach_vqa_ground_truth(
    records: Sequence[BenchRecord], truth: Mapping[str, GroundTruth]
) -> list[BenchRecord]:
    """``records`` with each VQA question that has no ground truth given RSVQA's answer (and type,
    where the record names none); a question RSVQA does not answer keeps ``None``."""
    out = []
    for rec in records:
        if rec.task == "vqa" and rec.ground_truth is None:
            hit = truth.get(vqa_dataset(rec.dataset), {}).get(rec.question_id)
            if hit is not None:
                rec = dataclasses.replace(rec, ground_truth=hit[0], type=rec.type or hit[1])
        out.append(rec)
    return out
