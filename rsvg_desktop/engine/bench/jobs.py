"""The ``rsvg bench`` jobs: ``run`` (ask the model every benchmark question at each precision) and ``score``.

Answers go to ``OUT/answers/<precision>/<task>.jsonl`` in the format of GeoChat's evaluation scripts
(question_id, image_id, answer, ground_truth, question, type, dataset, obj_ids, size_group) and
``file``, the question file the question comes from (ids are unique per file only), flushed per
batch; a rerun skips the questions already answered, keyed by (file, question_id).
Torch is imported only inside the functions.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsvg_desktop.core.eval.answers import (
    SAMPLE_FILE,
    LabelAnswers,
    answer_files,
    join_answers,
    read_label_answers,
    sample_json,
)
from rsvg_desktop.core.eval.data import BenchRecord, find_image, read_answers, read_benchmark
from rsvg_desktop.core.eval.metrics import normalise_scene
from rsvg_desktop.core.eval.rsvqa import attach_vqa_ground_truth, read_rsvqa_ground_truth
from rsvg_desktop.core.eval.score import Metric, score_task
from rsvg_desktop.core.geo.boxes import DEFAULT_ANGLE_CONVENTION, AngleConvention
from rsvg_desktop.core.jsonl_tail import repair_tail
from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE, Precision
from rsvg_desktop.engine.bench.report import (
    metric_tables,
    plot_confusion,
    write_metrics,
    write_plots,
    write_report,
)
from rsvg_desktop.errors import BenchDataError, ConfigError

if TYPE_CHECKING:
    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadedModel

__all__ = ["BenchSummary", "bench_query", "run_bench", "score_answer_files"]

log = logging.getLogger(__name__)

SCENE_SUFFIX = "Classify the image from the following classes. Answer in one word or a short phrase."
VQA_SUFFIX = "Answer the question using a single word or phrase."
MAX_NEW_TOKENS = 256

#: ``progress(label, task, done, total)``
BenchProgress = Callable[[str, str, int, int], None]


@dataclass(frozen=True, slots=True)
class BenchSummary:
    """What a bench command wrote."""

    out: Path
    report: Path
    metrics_file: Path
    metrics: tuple[Metric, ...]
    plots: tuple[Path, ...]


def bench_query(rec: BenchRecord) -> str:
    """The query of GeoChat's evaluation scripts for one record (sent as is, after ``<image>\\n``)."""
    q = rec.question.strip()
    if rec.task in ("referring", "grounding"):
        if rec.type == "ref" or (rec.task == "referring" and not rec.type):
            return f"[refer] Give me the location of <p> {q} </p>"
        return f"[grounding]{q}"
    if rec.task == "region-caption":
        return f"[identify] What is the object present at {q}"
    if rec.task == "scene":
        return q if q.endswith(SCENE_SUFFIX) else f"{q}\n{SCENE_SUFFIX}"
    if rec.task == "vqa":
        return q if q.endswith(VQA_SUFFIX) else f"{q}\n{VQA_SUFFIX}"
    raise ConfigError(f"unknown task {rec.task!r}")


def _subset(records: list[BenchRecord], limit: int | None, seed: int) -> list[BenchRecord]:
    if limit is None or limit >= len(records):
        return records
    if limit < 1:
        raise ConfigError(f"--limit must be positive, got {limit}")
    picked = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in picked]


def _answer_json(rec: BenchRecord, answer: str) -> str:
    return json.dumps(
        {
            "question_id": rec.question_id,
            "image_id": rec.image_id,
            "answer": answer,
            "ground_truth": rec.ground_truth,
            "question": rec.question,
            "type": rec.type,
            "dataset": rec.dataset,
            "obj_ids": rec.obj_ids,
            "size_group": rec.size_group,
            "file": rec.file,
        }
    )


def _done_keys(path: Path, records: Sequence[BenchRecord]) -> set[tuple[str, str]]:
    if not path.is_file():
        return set()
    return set(join_answers(path, read_answers(path), records))


def _load_image(images: Path, rec: BenchRecord) -> Any:
    import numpy as np
    from PIL import Image

    path = find_image(images, rec.image_id, rec.source)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise BenchDataError(f"{path}: cannot read the image ({exc})") from None


def _score_all(
    label_answers: Mapping[str, LabelAnswers],
    data: Mapping[str, list[BenchRecord]],
    images: Path | None,
    convention: AngleConvention,
    only_answered: bool = False,
) -> tuple[list[Metric], dict[tuple[str, str], tuple[list[str], list[str]]]]:
    """Each label's metrics on the questions it was asked (no row for a task it has none of)."""
    from rsvg_desktop.core.eval.meteor import meteor

    metrics: list[Metric] = []
    confusion: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for label, got in label_answers.items():
        for task, recs in data.items():
            by_key = got.by_task.get(task)
            if not by_key:
                continue
            asked = got.asked(task, recs)
            metrics += score_task(
                label,
                task,
                asked,
                by_key,
                images=images,
                convention=convention,
                meteor=meteor,
                only_answered=only_answered,
            )
            if task == "scene":
                for rec in asked:
                    if rec.key in by_key:
                        t, a = confusion.setdefault((label, rec.dataset or "scene"), ([], []))
                        t.append(normalise_scene(str(rec.ground_truth)))
                        a.append(normalise_scene(by_key[rec.key]))
    return metrics, confusion


def _with_vqa_truth(
    data: dict[str, list[BenchRecord]], vqa_ground_truth: str | Path | None, notes: list[str]
) -> dict[str, list[BenchRecord]]:
    """VQA questions given RSVQA's ground truth; those still without any named in ``notes``."""
    if "vqa" not in data:
        return data
    if vqa_ground_truth is not None:
        data = dict(data)
        data["vqa"] = attach_vqa_ground_truth(data["vqa"], read_rsvqa_ground_truth(vqa_ground_truth))
        notes.append(f"VQA ground truth: {vqa_ground_truth} (RSVQA split files)")
    missing = [r for r in data["vqa"] if r.ground_truth is None]
    if missing:
        named = ", ".join(f"{r.file}#{r.question_id}" for r in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        hint = "" if vqa_ground_truth is not None else " (give --vqa-ground-truth DIR: RSVQA's split files)"
        notes.append(f"{len(missing)} VQA questions have no ground truth, not scored{hint}: {named}{more}")
        log.warning("%d VQA questions have no ground truth, not scored", len(missing))
    return data


def _finish(
    out: Path,
    title: str,
    metrics: list[Metric],
    confusion: Mapping[tuple[str, str], tuple[list[str], list[str]]],
    memory_gib: Mapping[str, float],
    notes: Sequence[str],
) -> BenchSummary:
    from rsvg_desktop.core.eval.meteor import METEOR_VARIANT

    plots = write_plots(out, metrics, memory_gib)
    for (label, ds), (t, a) in sorted(confusion.items()):
        p = plot_confusion(out, label, ds, t, a)
        if p is not None:
            plots.append(p)
    sections = [("Accuracy", metric_tables(metrics))]
    if memory_gib:
        rows = "\n".join(f"| {lab} | {gib:.3f} |" for lab, gib in memory_gib.items())
        sections.append(("Weight memory", "| precision | weights (GiB) |\n|---|---|\n" + rows + "\n"))
    sections.append(
        (
            "Notes",
            "\n".join(f"- {n}" for n in notes)
            + "\n- ROUGE-1/ROUGE-L: F-measure as Google's rouge-score computes it (its tokeniser: "
            "lower-cased, punctuation stripped; use_stemmer=False, its default)."
            + f"\n- METEOR: {METEOR_VARIANT}."
            + "\n- Box metrics use the angle convention named in the command; `acc@0.5[ccw]`/`acc@0.5[cw]`"
            " give both; `grid_ceiling@0.5` is the best any answer can score on GeoChat's integer grid.\n",
        )
    )
    metrics_file = write_metrics(out, metrics)
    report = write_report(out, title, sections, plots)
    return BenchSummary(out, report, metrics_file, tuple(metrics), tuple(plots))


def score_answer_files(
    data_dir: str | Path,
    answers: Sequence[tuple[str, str | Path]],
    out: str | Path,
    *,
    images: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    convention: AngleConvention | str = DEFAULT_ANGLE_CONVENTION,
    vqa_ground_truth: str | Path | None = None,
    only_answered: bool = False,
) -> BenchSummary:
    """``rsvg bench score``: score ``(label, answer file or folder)`` pairs; a label may come several
    times. The task of an answer file is told from its name (:mod:`rsvg_desktop.core.eval.answers`)."""
    paths: dict[str, list[str | Path]] = {}
    for label, f in answers:
        answer_files(Path(f))  # every answer file's task told from its name before any work
        paths.setdefault(label, []).append(f)
    notes = [f"data: {data_dir}"]
    data = _with_vqa_truth(read_benchmark(data_dir, tasks), vqa_ground_truth, notes)
    label_answers = {label: read_label_answers(ps, data) for label, ps in paths.items()}
    for label, got in label_answers.items():
        for f in got.sample_files:
            notes.append(f"{label}: asked the sample of `bench run` recorded in {f}")
    notes.append(_denominator_note(only_answered))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics, confusion = _score_all(
        label_answers, data, Path(images) if images else None, AngleConvention(convention), only_answered
    )
    return _finish(out, "Benchmark scores", metrics, confusion, {}, notes)


def _denominator_note(only_answered: bool) -> str:
    if only_answered:
        return (
            "--only-answered: each label is scored on the questions it answered only, on purpose; "
            "figures on different answered sets are not comparable"
        )
    return (
        "every question asked is scored: a missing answer is a miss; a label marked partial left "
        "questions unanswered"
    )


MODEL_FACTS = "model.json"  # OUT/answers/<precision>/model.json: the model that wrote the answers


def read_json_object(path: Path) -> dict[str, Any]:
    """A small JSON record written by the bench (``{}`` when missing, unreadable or not an object)."""
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def _random_note(label: str) -> str:
    return f"{label}: the model has RANDOM WEIGHTS (a test model): the figures are meaningless"


def _read_data(
    data_dir: str | Path, images: str | Path | None, tasks: Sequence[str] | None, limit: int | None, seed: int
) -> tuple[dict[str, list[BenchRecord]], Path]:
    """The questions of each task (a seeded subset with ``limit``) and the image folder, every image of
    which is found before any model is loaded."""
    data = {t: _subset(r, limit, seed) for t, r in read_benchmark(data_dir, tasks).items()}
    image_dir = Path(images) if images else Path(data_dir) / "images"
    if not image_dir.is_dir():
        raise BenchDataError(f"{image_dir}: image folder not found (give --images DIR)")
    for recs in data.values():
        for rec in recs:
            find_image(image_dir, rec.image_id, rec.source)
    return data, image_dir


def _unanswered(adir: Path, data: Mapping[str, list[BenchRecord]]) -> dict[str, list[BenchRecord]]:
    """Each task's questions not yet in its answer file (a rerun goes on where it stopped)."""
    todo: dict[str, list[BenchRecord]] = {}
    for t, recs in data.items():
        answered = _done_keys(adir / f"{t}.jsonl", recs)
        todo[t] = [r for r in recs if r.key not in answered]
    return todo


def _write_model_facts(facts: Path, model_dir: str | Path, label: str, loaded: LoadedModel) -> None:
    """What the model that writes these answers is, for a rerun that loads none."""
    facts.write_text(
        json.dumps(
            {
                "model": str(model_dir),
                "precision": label,
                "device": loaded.device_name,
                "weight_bytes": loaded.weight_bytes,
                "random_weights": loaded.random_weights,
            },
            indent=1,
        ),
        encoding="utf-8",
    )


def _recall_model_facts(facts: Path, label: str, memory: dict[str, float], notes: list[str]) -> None:
    """A precision with every question answered: its weight memory and notes from its model facts."""
    known = read_json_object(facts)
    if "weight_bytes" in known:
        memory[label] = float(known["weight_bytes"]) / 2**30
    if known.get("random_weights"):
        notes.append(_random_note(label))


def _answer_task(
    gen: GeoChatGenerator,
    path: Path,
    recs: Sequence[BenchRecord],
    image_dir: Path,
    *,
    label: str,
    task: str,
    total: int,
    batch_size: int,
    max_new_tokens: int,
    progress: BenchProgress | None,
) -> None:
    """Ask ``recs`` batch by batch, appending each batch's answers to ``path`` (flushed per batch)."""
    from rsvg_desktop.core.model.generate import GenerationRequest

    done = total - len(recs)
    if progress:
        progress(label, task, done, total)
    repair_tail(path)  # a run killed mid-line left a cut-off last line
    with path.open("a", encoding="utf-8") as fh:
        for start in range(0, len(recs), batch_size):
            chunk = recs[start : start + batch_size]
            reqs = [
                GenerationRequest(_load_image(image_dir, r), task="chat", query=bench_query(r)) for r in chunk
            ]
            results = gen.generate(reqs, max_new_tokens=max_new_tokens, batch_size=len(reqs))
            fh.write(
                "".join(_answer_json(r, res.answer) + "\n" for r, res in zip(chunk, results, strict=True))
            )
            fh.flush()
            done += len(chunk)
            if progress:
                progress(label, task, done, total)


def run_bench(
    data_dir: str | Path,
    model_dir: str | Path,
    precisions: Sequence[str | Precision],
    out: str | Path,
    *,
    images: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    convention: AngleConvention | str = DEFAULT_ANGLE_CONVENTION,
    progress: BenchProgress | None = None,
    group_size: int = DEFAULT_INT4_GROUP_SIZE,
    vqa_ground_truth: str | Path | None = None,
) -> BenchSummary:
    """``rsvg bench run``: answer every question at each precision, then score (see the module doc)."""
    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadSpec, load_model
    from rsvg_desktop.engine import preflight

    precs = [Precision.parse(p) for p in precisions]
    if not precs:
        raise ConfigError("no precision given")
    data, image_dir = _read_data(data_dir, images, tasks, limit, seed)
    preflight.check_run_numbers(batch_size=batch_size, max_new_tokens=max_new_tokens)
    preflight.check_output_folder(out)
    for prec in precs:
        preflight.check_machine(device, prec.value, group_size=group_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    memory: dict[str, float] = {}
    notes: list[str] = [f"data: {data_dir}", f"model: {model_dir}"]
    data = _with_vqa_truth(data, vqa_ground_truth, notes)
    if limit is not None:
        notes.append(f"a seeded subset: --limit {limit} --seed {seed} (recorded in answers/*/{SAMPLE_FILE})")
    notes.append(_denominator_note(False))
    for prec in precs:
        label = prec.value
        adir = out / "answers" / label
        adir.mkdir(parents=True, exist_ok=True)
        if limit is not None:
            keys = [r.key for recs in data.values() for r in recs]
            (adir / SAMPLE_FILE).write_text(sample_json(limit, seed, keys), encoding="utf-8")
        else:
            (adir / SAMPLE_FILE).unlink(missing_ok=True)  # every question asked now
        todo = _unanswered(adir, data)
        files[label] = [adir / f"{t}.jsonl" for t in data]
        if not any(todo.values()):
            log.info("%s: every question already answered", label)
            _recall_model_facts(adir / MODEL_FACTS, label, memory, notes)
            continue
        loaded = load_model(LoadSpec(Path(model_dir), prec, device=device, group_size=group_size))
        memory[label] = loaded.weight_bytes / 2**30
        _write_model_facts(adir / MODEL_FACTS, model_dir, label, loaded)
        if loaded.random_weights:
            notes.append(_random_note(label))
        gen = GeoChatGenerator(loaded)
        for task, recs in todo.items():
            _answer_task(
                gen,
                adir / f"{task}.jsonl",
                recs,
                image_dir,
                label=label,
                task=task,
                total=len(data[task]),
                batch_size=batch_size or 4,
                max_new_tokens=max_new_tokens,
                progress=progress,
            )
        del gen, loaded
    label_answers = {
        lab: read_label_answers([f for f in fs if f.is_file()], data) for lab, fs in files.items()
    }
    metrics, confusion = _score_all(label_answers, data, image_dir, AngleConvention(convention))
    return _finish(out, "Benchmark run", metrics, confusion, memory, notes)
