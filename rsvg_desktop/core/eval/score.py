"""Score answers against benchmark records: one :class:`Metric` per number in the report.

``metrics.json`` is ``{"metrics": [{"label", "task", "metric", "value", "n"}, ...]}`` (values in
percent for accuracies and ROUGE/METEOR; ``n`` the items behind the number).

**Denominators.** A task is scored on every question the label was asked (its files' questions, or
the seeded sample a ``bench run --limit`` drew): a question without an answer is a miss. ``asked``
and ``answered`` say how many were asked and answered (``answered`` in percent, ``n`` the count).
With ``only_answered`` the answered questions alone are scored, on purpose. Box tasks add, beside
``acc@0.5``, ``acc@0.25``, ``mean_iou`` and ``precision``: ``acc@0.5[ccw]`` and ``acc@0.5[cw]``
(both angle conventions), ``grid_ceiling@0.5`` (what the ground truth scores on GeoChat's integer
grid), and the ``malformed`` answers; per ``size_group`` and ``type`` the task is
``<task>/size:<group>`` and ``<task>/type:<type>``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rsvg_desktop.core.eval.data import (
    BOX_TASKS,
    BenchAnswer,
    BenchRecord,
    find_image,
    gt_polygons_repaired,
    known_image_size,
)
from rsvg_desktop.core.eval.metrics import (
    VQA_TYPES,
    BoxOutcome,
    gt_answer,
    normalise_scene,
    normalise_vqa,
    rouge1,
    rouge_l,
    score_boxes,
    vqa_type,
)
from rsvg_desktop.core.geo.boxes import DEFAULT_ANGLE_CONVENTION, AngleConvention
from rsvg_desktop.errors import BenchDataError

__all__ = ["Metric", "image_size", "score_task"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Metric:
    """One number of a report."""

    label: str
    task: str
    metric: str
    value: float
    n: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def image_size(rec: BenchRecord, images: Path | None) -> tuple[int, int]:
    """(width, height) of the record's image: the data's, the file's, or the known size by prefix."""
    if rec.size is not None:
        return rec.size
    if images is not None:
        from PIL import Image  # header only

        with Image.open(find_image(images, rec.image_id, rec.source)) as im:
            return im.size
    return known_image_size(rec.image_id)


def _pct(num: float, den: int) -> float:
    return 100.0 * num / den if den else 0.0


def _box_metrics(label: str, task: str, outcomes: Sequence[BoxOutcome]) -> list[Metric]:
    n_gt = sum(o.n_gt for o in outcomes)
    n_pred = sum(o.n_pred for o in outcomes)
    return [
        Metric(label, task, "acc@0.5", _pct(sum(o.hits(0.5) for o in outcomes), n_gt), n_gt),
        Metric(label, task, "acc@0.25", _pct(sum(o.hits(0.25) for o in outcomes), n_gt), n_gt),
        Metric(label, task, "mean_iou", _pct(sum(sum(o.ious) for o in outcomes), n_gt), n_gt),
        Metric(label, task, "precision", _pct(sum(o.hits(0.5) for o in outcomes), n_pred), n_pred),
    ]


Pair = tuple[BenchRecord, str | None]  # None: not answered (a miss)


def _score_boxes(
    label: str,
    task: str,
    pairs: Sequence[Pair],
    images: Path | None,
    convention: AngleConvention,
) -> list[Metric]:
    main: list[BoxOutcome] = []
    other = AngleConvention.CW if convention is AngleConvention.CCW else AngleConvention.CCW
    alt: list[BoxOutcome] = []
    ceiling: list[BoxOutcome] = []
    groups: dict[str, list[BoxOutcome]] = defaultdict(list)
    repaired = 0
    for rec, answer in pairs:
        w, h = image_size(rec, images)
        gt, fixed = gt_polygons_repaired(rec.ground_truth, rec.source)
        repaired += fixed
        if answer is None:
            out = BoxOutcome(len(gt), 0, ())
            alt.append(out)
        else:
            out = score_boxes(gt, answer, w, h, convention)
            alt.append(score_boxes(gt, answer, w, h, other))
        main.append(out)
        ceiling.append(score_boxes(gt, gt_answer(gt, w, h), w, h, DEFAULT_ANGLE_CONVENTION))
        if rec.size_group:
            groups[f"{task}/size:{rec.size_group}"].append(out)
        if rec.type:
            groups[f"{task}/type:{rec.type}"].append(out)
    n_gt = sum(o.n_gt for o in main)
    by_conv = {convention.value: main, other.value: alt}
    metrics = _box_metrics(label, task, main)
    for name in ("ccw", "cw"):
        hits = sum(o.hits(0.5) for o in by_conv[name])
        metrics.append(Metric(label, task, f"acc@0.5[{name}]", _pct(hits, n_gt), n_gt))
    metrics.append(
        Metric(label, task, "grid_ceiling@0.5", _pct(sum(o.hits(0.5) for o in ceiling), n_gt), n_gt)
    )
    metrics.append(Metric(label, task, "malformed", float(sum(o.malformed for o in main)), len(main)))
    if repaired:  # bow-tie ground-truth quadrilaterals: corners re-ordered
        metrics.append(Metric(label, task, "repaired_gt", float(repaired), n_gt))
    for sub in sorted(groups):
        metrics.extend(_box_metrics(label, sub, groups[sub])[:2])
    return metrics


def _score_scene(label: str, pairs: Sequence[Pair]) -> list[Metric]:
    by_ds: dict[str, list[bool]] = defaultdict(list)
    for rec, answer in pairs:
        by_ds[rec.dataset or "scene"].append(
            answer is not None and normalise_scene(answer) == normalise_scene(str(rec.ground_truth))
        )
    return [
        Metric(label, f"scene/{ds}", "accuracy", _pct(sum(v), len(v)), len(v))
        for ds, v in sorted(by_ds.items())
    ]


def _score_vqa(label: str, pairs: Sequence[Pair]) -> list[Metric]:
    """Per dataset (``vqa/LRBEN/presence``…; ``vqa/presence`` for records naming none): accuracy per
    type, their average, and the questions of other types (``excluded``)."""
    by_ds: dict[str, list[Pair]] = defaultdict(list)
    for rec, answer in pairs:
        by_ds[rec.dataset].append((rec, answer))
    metrics: list[Metric] = []
    for ds in sorted(by_ds):
        metrics += _score_vqa_dataset(label, f"vqa/{ds}" if ds else "vqa", by_ds[ds])
    return metrics


def _score_vqa_dataset(label: str, prefix: str, pairs: Sequence[Pair]) -> list[Metric]:
    by_type: dict[str, list[bool]] = defaultdict(list)
    excluded = 0
    for rec, answer in pairs:
        t = vqa_type(rec.type)
        if t not in VQA_TYPES:
            excluded += 1
            continue
        by_type[t].append(
            answer is not None and normalise_vqa(answer) == normalise_vqa(str(rec.ground_truth))
        )
    metrics = [
        Metric(label, f"{prefix}/{t}", "accuracy", _pct(sum(v), len(v)), len(v))
        for t in VQA_TYPES
        if (v := by_type.get(t))
    ]
    if metrics:
        avg = sum(m.value for m in metrics) / len(metrics)
        metrics.append(Metric(label, f"{prefix}/average", "accuracy", avg, sum(m.n for m in metrics)))
    metrics.append(Metric(label, f"{prefix}/excluded", "count", float(excluded), excluded))
    return metrics


def _score_captions(
    label: str, pairs: Sequence[Pair], meteor: Callable[[str, str], float] | None
) -> list[Metric]:
    n = len(pairs)
    refs = [(str(r.ground_truth), a) for r, a in pairs if a is not None]  # a miss scores 0
    out = [
        Metric(label, "region-caption", "rouge1", _pct(sum(rouge1(r, a) for r, a in refs), n), n),
        Metric(label, "region-caption", "rougeL", _pct(sum(rouge_l(r, a) for r, a in refs), n), n),
    ]
    if meteor is not None:
        out.append(Metric(label, "region-caption", "meteor", _pct(sum(meteor(r, a) for r, a in refs), n), n))
    return out


def _keyed(
    records: Sequence[BenchRecord], answers: Sequence[BenchAnswer] | Mapping[Any, str]
) -> dict[tuple[str, str], str]:
    """Answers keyed by ``(file, question_id)``; a bare question id is taken as the only file's."""
    items = (
        answers.items() if isinstance(answers, Mapping) else ((a.file or a.question_id, a) for a in answers)
    )
    files = {r.file for r in records}
    out: dict[tuple[str, str], str] = {}
    for key, value in items:
        if isinstance(value, BenchAnswer):
            key = (value.file, value.question_id) if value.file else value.question_id
            value = value.answer
        if isinstance(key, tuple):
            out[key] = value
            continue
        if len(files) > 1:
            raise BenchDataError(
                f"answers keyed by question id alone, but the questions come from {len(files)} files "
                f"({', '.join(sorted(files))}): ids are unique per file only"
            )
        out[(next(iter(files), ""), str(key))] = value
    return out


def score_task(
    label: str,
    task: str,
    records: Sequence[BenchRecord],
    answers: Sequence[BenchAnswer] | Mapping[Any, str],
    *,
    images: Path | None = None,
    convention: AngleConvention = DEFAULT_ANGLE_CONVENTION,
    meteor: Callable[[str, str], float] | None = None,
    only_answered: bool = False,
) -> list[Metric]:
    """The metrics of ``answers`` on ``records``: answer records, or a mapping from ``(file,
    question_id)`` (or, for questions of one file, the bare ``question_id``) to the answer.

    Every record is scored, a missing answer as a miss (``only_answered``: the answered ones only);
    answers to unknown questions are logged and ignored; metrics ``asked`` and ``answered`` count
    the records and the answered ones (see the module doc). VQA
    questions without ground truth are not scored: metric ``no_ground_truth`` of task
    ``vqa/no_ground_truth`` counts them.
    """
    by_key = _keyed(records, answers)
    known = {r.key for r in records}
    no_gt = [r for r in records if task == "vqa" and r.ground_truth is None]
    if no_gt:
        records = [r for r in records if r.ground_truth is not None]
    stray = [k for k in by_key if k not in known]
    if stray:
        log.warning(
            "%s/%s: %d answers to unknown questions ignored (e.g. %r)", label, task, len(stray), stray[0][1]
        )
    n_answered = sum(r.key in by_key for r in records)
    scored = [r for r in records if r.key in by_key] if only_answered else list(records)
    pairs: list[Pair] = [(r, by_key.get(r.key)) for r in scored]
    metrics: list[Metric] = []
    if task in BOX_TASKS:
        metrics = _score_boxes(label, task, pairs, images, convention)
    elif task == "scene":
        metrics = _score_scene(label, pairs)
    elif task == "vqa":
        metrics = _score_vqa(label, pairs)
        if no_gt:
            metrics.append(Metric(label, "vqa/no_ground_truth", "count", float(len(no_gt)), len(no_gt)))
    elif task == "region-caption":
        metrics = _score_captions(label, pairs, meteor)
    metrics.append(Metric(label, task, "asked", float(len(records)), len(records)))
    metrics.append(Metric(label, task, "answered", _pct(n_answered, len(records)), n_answered))
    return metrics
