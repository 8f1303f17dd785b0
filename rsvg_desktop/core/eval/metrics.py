"""Benchmark metrics, as pure functions (no torch, no Qt). Definitions (also in docs/bench.md):

Referring / grounding
    The answer's boxes come from the project's parser (:func:`rsvg_desktop.core.prompt.parse_answer`);
    each grid box (0–100) is scaled to the pixels of its image and rotated with the project's angle
    convention (:mod:`rsvg_desktop.core.geo.boxes`). IoU of polygons with shapely. Per record, pairs
    (ground truth, answer box) are matched greedily one-to-one by descending IoU (pairs with IoU 0 are
    never matched). ``acc@τ`` = matched pairs with IoU ≥ τ / ground-truth objects; ``mean_iou`` = sum
    of matched IoUs / ground-truth objects (an unmatched object counts 0); ``precision`` = matched
    pairs with IoU ≥ 0.5 / answer boxes. An answer without any box is a miss; a non-empty one
    without a box, or with a cut-off box, is counted as *malformed* (still a miss, never a crash).
Grid ceiling
    The acc@0.5 that the ground truth itself scores once written as GeoChat answers on the integer
    0–100 grid (:func:`gt_answer`): the best any answer can do.
Scene
    Exact match after lower-casing and removing spaces, dots and trailing punctuation.
VQA
    Per question type, exact match after normalisation (lower case, trailing punctuation removed;
    ``yes``/``no`` read from answers such as ``Yes.`` or ``yes, there is``); ``average`` = mean of
    the per-type accuracies. Types outside :data:`VQA_TYPES` are excluded and counted.
Region caption
    ROUGE-1 and ROUGE-L F-measure (β = 1) over lower-cased alphanumeric tokens, and METEOR
    (:mod:`rsvg_desktop.core.eval.meteor`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon

from rsvg_desktop.core.geo.boxes import (
    DEFAULT_ANGLE_CONVENTION,
    AngleConvention,
    boxes_to_array,
    boxes_to_pixel_corners,
)
from rsvg_desktop.core.prompt import format_boxes, parse_answer
from rsvg_desktop.core.types import GridBox

__all__ = [
    "VQA_TYPES",
    "BoxOutcome",
    "answer_polygons",
    "gt_answer",
    "match_ious",
    "match_pairs",
    "normalise_scene",
    "normalise_vqa",
    "rouge1",
    "rouge_l",
    "score_boxes",
    "tokens",
    "vqa_type",
]

#: VQA question types scored (RSVQA LRBEN); others are excluded and counted.
VQA_TYPES: tuple[str, ...] = ("presence", "comparison", "rural_urban")
_VQA_TYPE_ALIASES = {
    "comp": "comparison",
    "compare": "comparison",
    "rural/urban": "rural_urban",
    "rural-urban": "rural_urban",
    "ruralurban": "rural_urban",
    "rural_urban": "rural_urban",
}


@dataclass(frozen=True, slots=True)
class BoxOutcome:
    """One record's box score: ground-truth objects, answer boxes, matched IoUs (descending)."""

    n_gt: int
    n_pred: int
    ious: tuple[float, ...]
    malformed: bool = False

    def hits(self, tau: float) -> int:
        return sum(1 for v in self.ious if v >= tau)


def answer_polygons(
    answer: str, width: float, height: float, convention: AngleConvention = DEFAULT_ANGLE_CONVENTION
) -> tuple[list[Polygon], bool]:
    """The answer's boxes as pixel polygons of a ``width × height`` image, and whether it is malformed."""
    parsed = parse_answer(answer)
    boxes = [o.box for o in parsed.objects]
    malformed = bool(parsed.remainder) or (not boxes and bool(answer.strip()))
    if not boxes:
        return [], malformed
    corners = boxes_to_pixel_corners(
        boxes_to_array(boxes), (0.0, 0.0, float(width), float(height)), convention
    )
    return list(shapely.polygons(corners)), malformed


def match_ious(gt: Sequence[Polygon], pred: Sequence[Polygon]) -> list[float]:
    """Greedy one-to-one matching by descending IoU; the matched pairs' IoUs (> 0), descending."""
    return [v for _, _, v in match_pairs(gt, pred)]


def match_pairs(gt: Sequence[Polygon], pred: Sequence[Polygon]) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by descending IoU: ``(gt index, pred index, IoU > 0)``, descending."""
    if not gt or not pred:
        return []
    g = np.asarray(gt, dtype=object)[:, None]
    p = np.asarray(pred, dtype=object)[None, :]
    inter = shapely.area(shapely.intersection(g, p))
    union = shapely.area(shapely.union(g, p))
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    order = np.argsort(-iou, axis=None, kind="stable")
    used_g: set[int] = set()
    used_p: set[int] = set()
    out: list[tuple[int, int, float]] = []
    for flat in order:
        i, j = divmod(int(flat), iou.shape[1])
        v = float(iou[i, j])
        if v <= 0:
            break
        if i in used_g or j in used_p:
            continue
        used_g.add(i)
        used_p.add(j)
        out.append((i, j, v))
    return out


def score_boxes(
    gt: Sequence[Polygon],
    answer: str,
    width: float,
    height: float,
    convention: AngleConvention = DEFAULT_ANGLE_CONVENTION,
) -> BoxOutcome:
    """One record: the answer's boxes against the ground-truth polygons (pixels)."""
    pred, malformed = answer_polygons(answer, width, height, convention)
    return BoxOutcome(len(gt), len(pred), tuple(match_ious(gt, pred)), malformed)


def _grid_box(poly: Polygon, width: float, height: float) -> GridBox:
    """The GeoChat grid box (integers, CCW convention) closest to a pixel polygon."""
    rect = poly.minimum_rotated_rectangle
    pts = np.asarray(rect.exterior.coords)[:4]
    pts = pts * np.array([100.0 / width, 100.0 / height])
    cx, cy = pts.mean(axis=0)
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    w, h = float(np.hypot(*e1)), float(np.hypot(*e2))
    # Direction of the first edge, counter-clockwise on screen (y down), folded into [0, 180).
    theta = math.degrees(math.atan2(-e1[1], e1[0])) % 180.0
    if theta >= 90.0 - 1e-9:
        theta -= 90.0
        w, h = h, w
    angle = round(theta)  # 0..90; 90 swaps width and height, as GeoChat means it
    return GridBox(
        float(round(cx - w / 2)),
        float(round(cy - h / 2)),
        float(round(cx + w / 2)),
        float(round(cy + h / 2)),
        float(angle),
    )


def gt_answer(gt: Sequence[Polygon], width: float, height: float) -> str:
    """The ground truth written as a GeoChat answer on the integer grid (for the grid ceiling)."""
    return format_boxes([_grid_box(p, width, height) for p in gt])


# --- text -----------------------------------------------------------------------------------------
_TRAILING_PUNCT = re.compile(r"[\s.,;:!?\"')\]]+$")
_TOKEN = re.compile(r"[a-z0-9]+")


def normalise_scene(text: str) -> str:
    """Scene scoring form: lower case; spaces, dots and trailing punctuation removed."""
    text = _TRAILING_PUNCT.sub("", str(text).strip().lower())
    return re.sub(r"[\s.]+", "", text)


def normalise_vqa(text: str) -> str:
    """VQA scoring form: lower case, trailing punctuation removed, yes/no read from the first word."""
    text = _TRAILING_PUNCT.sub("", str(text).strip().lower())
    first = re.split(r"[\s,.;:!]+", text, maxsplit=1)[0] if text else ""
    if first in ("yes", "no"):
        return first
    return re.sub(r"\s+", " ", text)


def vqa_type(raw: str) -> str:
    """A question type's canonical name (``comp`` → ``comparison``, ``rural/urban`` → ``rural_urban``)."""
    key = str(raw).strip().lower().replace(" ", "_")
    return _VQA_TYPE_ALIASES.get(key, key)


def tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens (the ROUGE tokenisation)."""
    return _TOKEN.findall(str(text).lower())


@functools.cache
def _rouge_scorer() -> Any:
    """Google's ``rouge-score`` (what the community reports with), its defaults: no stemmer."""
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rouge1", "rougeL"], use_stemmer=ROUGE_USE_STEMMER)


#: Stated in every report beside the ROUGE figures.
ROUGE_USE_STEMMER = False


def rouge1(reference: str, hypothesis: str) -> float:
    """ROUGE-1 F-measure in [0, 1], by the ``rouge-score`` package."""
    return float(_rouge_scorer().score(str(reference), str(hypothesis))["rouge1"].fmeasure)


def rouge_l(reference: str, hypothesis: str) -> float:
    """ROUGE-L F-measure (longest common subsequence) in [0, 1], by the ``rouge-score`` package."""
    return float(_rouge_scorer().score(str(reference), str(hypothesis))["rougeL"].fmeasure)
