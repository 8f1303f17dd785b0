"""Benchmark readers: GeoChat-Bench question files, DIOR-RSVG annotations, answer files.

Pure functions (no torch, no Qt): a scorer must run where the model cannot.

**Tasks.** ``referring`` and ``grounding`` (boxes), ``region-caption`` (GeoChat's ``[identify]``),
``scene`` (zero-shot classification) and ``vqa``. A data folder holds GeoChat-Bench's files as
published (``referring.jsonl``, ``grounding_description.jsonl``, ``region_captioning.jsonl``,
``UCmerced.jsonl``, ``aid.jsonl``, ``lrben.jsonl``, ``hrben.jsonl``; see
:mod:`rsvg_desktop.core.eval.names`) or the project's own ``<task>.jsonl`` and ``<task>/*.jsonl``
(one file per dataset, e.g. ``scene/UCMerced.jsonl``). A folder with ``Annotations/*.xml`` is
DIOR-RSVG: each ``<object>`` with a ``<description>`` is one ``referring`` question.

**Keys.** Question ids are unique per file only: a question is keyed by ``(file, question_id)``
(:attr:`BenchRecord.key`), ``file`` being its file's path relative to the data folder
(``UCmerced.jsonl``, ``scene/UCMerced.jsonl``; ``DIOR-RSVG`` for a DIOR-RSVG folder).

**Question fields** (as GeoChat's evaluation scripts read them): ``question_id``; the image as
``image_id`` or ``image``; the question as ``question`` or ``text``; ``ground_truth``; optional
``type``, ``dataset``, ``obj_ids``, ``size_group``. Scene records without ``ground_truth`` take the
class from the ``question_id`` prefix (``class/…``) as GeoChat's scene script does.
VQA records may carry no ``ground_truth``
(GeoChat-Bench's ``lrben``/``hrben``): it is ``None`` until joined from the RSVQA release
(:mod:`rsvg_desktop.core.eval.rsvqa`).

**Ground-truth boxes** (referring, grounding) are pixel polygons: a 4-point polygon ``[[x, y] × 4]``,
an axis-aligned ``[x1, y1, x2, y2]``, a WKT string, or a list of any of these (one per object).

**Image size** from the image file when an image folder is given; otherwise by image-id prefix as
public re-implementations do: ``P…`` SOTA 1024, ``train…`` FAST 600, others SIOR 800 (DIOR-RSVG
takes its XML ``<size>``).
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import Polygon

from rsvg_desktop.core.eval.names import DIOR_FILE, TASKS, accepted_names, task_of_name
from rsvg_desktop.core.jsonl_tail import cut_off
from rsvg_desktop.errors import BenchDataError, BenchDataNotFoundError

__all__ = [
    "BOX_TASKS",
    "IMAGE_SUFFIXES",
    "BenchAnswer",
    "BenchRecord",
    "find_image",
    "gt_polygons",
    "gt_polygons_repaired",
    "known_image_size",
    "read_answers",
    "read_benchmark",
    "read_dior_rsvg",
    "read_question_file",
]

log = logging.getLogger(__name__)

BOX_TASKS: frozenset[str] = frozenset({"referring", "grounding"})
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """One benchmark question. ``ground_truth`` as the file has it (boxes, a class, an answer, a caption).

    ``source`` is ``file:line`` for messages; ``size`` the image's (width, height) in pixels when the
    data states it (DIOR-RSVG), else ``None``.
    """

    task: str
    question_id: str
    image_id: str
    question: str
    ground_truth: Any = field(compare=False)
    type: str = ""
    dataset: str = ""
    obj_ids: Any = field(default=None, compare=False)
    size_group: str = ""
    source: str = ""
    size: tuple[int, int] | None = None
    file: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """``(file, question_id)``: ids are unique per file, not across files."""
        return (self.file, self.question_id)


@dataclass(frozen=True, slots=True)
class BenchAnswer:
    """One line of an answer file (GeoChat's format); ``source`` is ``file:line``; ``file`` the
    question file it answers when the line says so (``rsvg bench run`` writes it), else ``""``."""

    question_id: str
    answer: str
    image_id: str = ""
    source: str = ""
    file: str = ""
    dataset: str = ""


# --- question files -------------------------------------------------------------------------------
def _need(obj: dict[str, Any], names: Sequence[str], where: str) -> Any:
    for name in names:
        if name in obj and obj[name] is not None:
            return obj[name]
    raise BenchDataError(f"{where}: missing field {' or '.join(repr(n) for n in names)}")


def _iter_jsonl(path: Path, *, skip_cut_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each record; with ``skip_cut_tail`` a cut-off last line (a writer
    killed mid-line, :func:`~rsvg_desktop.core.jsonl_tail.cut_off`) is skipped with a warning."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise BenchDataNotFoundError(f"{path}: file not found") from None
    except OSError as exc:
        raise BenchDataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if skip_cut_tail and cut_off(raw):
                log.warning("%s:%d: skipped a cut-off last line (%d bytes)", path, lineno, len(raw))
                return
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise BenchDataError(f"{path}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchDataError(f"{path}:{lineno}: not a JSON record ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise BenchDataError(f"{path}:{lineno}: a record must be a JSON object")
            yield lineno, obj


def read_question_file(
    path: str | Path, task: str, dataset: str = "", *, file: str = "", file_dataset: str = ""
) -> list[BenchRecord]:
    """The questions of one GeoChat-Bench JSON Lines file for ``task`` (BenchDataError names the line).

    ``dataset`` is used where a record names none; ``file_dataset`` (the dataset a GeoChat-Bench file
    name stands for, e.g. ``UCmerced.jsonl`` → UCMerced) wins over the records'. ``file`` is the key
    of the file (default: its name).
    """
    if task not in TASKS:
        raise BenchDataError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    path = Path(path)
    file = file or path.name
    out: list[BenchRecord] = []
    seen: set[str] = set()
    for lineno, obj in _iter_jsonl(path):
        where = f"{path}:{lineno}"
        qid = str(_need(obj, ("question_id",), where))
        if qid in seen:
            raise BenchDataError(f"{where}: question_id {qid!r} occurs twice")
        seen.add(qid)
        image = str(_need(obj, ("image_id", "image"), where))
        question = str(_need(obj, ("question", "text"), where))
        if task == "scene" and obj.get("ground_truth") is None and "/" in qid:
            gt: Any = qid.split("/")[0]
        elif task == "vqa":
            gt = obj.get("ground_truth")  # None: joined from RSVQA later
        else:
            gt = _need(obj, ("ground_truth",), where)
        rec = BenchRecord(
            task=task,
            question_id=qid,
            image_id=image,
            question=question,
            ground_truth=gt,
            type=str(obj.get("type") or obj.get("category") or ""),
            dataset=file_dataset or str(obj.get("dataset") or dataset),
            obj_ids=obj.get("obj_ids"),
            size_group=str(obj.get("size_group") or ""),
            source=where,
            file=file,
        )
        if task in BOX_TASKS:
            gt_polygons(rec.ground_truth, where)  # fail early on unreadable boxes
        out.append(rec)
    return out


# --- DIOR-RSVG ------------------------------------------------------------------------------------
def _xml_int(node: ET.Element, tag: str, where: str) -> int:
    text = node.findtext(tag)
    if text is None:
        raise BenchDataError(f"{where}: missing <{tag}>")
    try:
        return round(float(text))
    except ValueError:
        raise BenchDataError(f"{where}: <{tag}> is not a number ({text!r})") from None


def _read_split(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchDataError(f"{path}: cannot read the split file: {exc}") from None


def read_dior_rsvg(folder: str | Path, split: str | None = "test") -> list[BenchRecord]:
    """DIOR-RSVG: ``folder/Annotations/*.xml`` (Pascal VOC with ``<description>``) as referring questions.

    Objects are numbered in file-name order, then document order, from 0; that number is the
    ``question_id``. ``folder/<split>.txt``, when present, selects objects by that number (a line of
    digits) or by image id (any other line); without it every object is used.
    """
    folder = Path(folder)
    ann = folder / "Annotations"
    if not ann.is_dir():
        raise BenchDataNotFoundError(f"{ann}: no DIOR-RSVG Annotations folder")
    records: list[BenchRecord] = []
    index = 0
    for xml in sorted(ann.glob("*.xml")):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise BenchDataError(f"{xml}: not valid XML ({exc})") from None
        image_id = Path(root.findtext("filename") or xml.stem).stem
        size_node = root.find("size")
        size = None
        if size_node is not None:
            size = (_xml_int(size_node, "width", str(xml)), _xml_int(size_node, "height", str(xml)))
        for n, obj in enumerate(root.iter("object"), 1):
            where = f"{xml}: object {n}"
            box = obj.find("bndbox")
            if box is None:
                raise BenchDataError(f"{where}: missing <bndbox>")
            xyxy = [_xml_int(box, t, where) for t in ("xmin", "ymin", "xmax", "ymax")]
            desc = (obj.findtext("description") or "").strip()
            if not desc:
                raise BenchDataError(f"{where}: missing <description>")
            records.append(
                BenchRecord(
                    task="referring",
                    question_id=str(index),
                    image_id=image_id,
                    question=desc,
                    ground_truth=[xyxy],
                    type="ref",
                    dataset="DIOR-RSVG",
                    obj_ids=None,
                    size_group="",
                    source=where,
                    size=size,
                    file=DIOR_FILE,
                )
            )
            index += 1
    if not records:
        raise BenchDataError(f"{ann}: no annotated objects")
    split_file = folder / f"{split}.txt" if split else None
    if split_file is not None and split_file.is_file():
        keep = set(_read_split(split_file))
        records = [r for r in records if r.question_id in keep or r.image_id in keep]
    return records


def _question_files(folder: Path) -> list[tuple[Path, str, str, str]]:
    """``(path, task, dataset, file key)`` of each question file in ``folder`` and its task folders;
    ``dataset`` is the one a GeoChat-Bench name stands for ("" for the project's names)."""
    found: list[tuple[Path, str, str, str]] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if path.is_file() and path.suffix.lower() == ".jsonl":
            named = task_of_name(path.stem)
            if named is None:
                log.warning("%s: not a benchmark file name, skipped (names: %s)", path, accepted_names())
                continue
            found.append((path, named[0], named[1], path.name))
        elif path.is_dir() and task_of_name(path.name) is not None and path.name.lower() != "dior-rsvg":
            task = task_of_name(path.name)[0]  # type: ignore[index]
            for f in sorted(path.glob("*.jsonl"), key=lambda p: p.name.lower()):
                found.append((f, task, "", f"{path.name}/{f.name}"))
    return found


def read_benchmark(folder: str | Path, tasks: Sequence[str] | None = None) -> dict[str, list[BenchRecord]]:
    """Every task's questions found in ``folder`` (see the module doc); BenchDataError when none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchDataNotFoundError(f"{folder}: data folder not found")
    wanted = list(tasks) if tasks else list(TASKS)
    for t in wanted:
        if t not in TASKS:
            raise BenchDataError(f"unknown task {t!r}; valid tasks: {', '.join(TASKS)}")
    out: dict[str, list[BenchRecord]] = {}
    for path, task, dataset, key in _question_files(folder):
        if task not in wanted:
            continue
        if dataset:
            recs = read_question_file(path, task, file=key, file_dataset=dataset)
        else:
            recs = read_question_file(path, task, dataset=path.stem if "/" in key else "", file=key)
        out.setdefault(task, []).extend(recs)
    if "referring" in wanted and (folder / "Annotations").is_dir():
        out.setdefault("referring", []).extend(read_dior_rsvg(folder))
    if not out:
        raise BenchDataError(
            f"{folder}: no benchmark files for {', '.join(wanted)} "
            f"(expected {accepted_names()}, or Annotations/*.xml)"
        )
    return {t: out[t] for t in TASKS if t in out}


# --- answers --------------------------------------------------------------------------------------
def read_answers(path: str | Path) -> list[BenchAnswer]:
    """An answer file (JSON Lines with ``question_id`` and ``answer``); BenchDataError names the line.

    A cut-off last line (a run killed mid-write) is skipped with a warning, as the answer log's
    reader does; ``rsvg bench run`` repairs it before appending (:mod:`rsvg_desktop.core.jsonl_tail`).

    A non-string answer is kept as its JSON text (it will count as a malformed answer, not a crash).
    """
    path = Path(path)
    out: list[BenchAnswer] = []
    for lineno, obj in _iter_jsonl(path, skip_cut_tail=True):
        where = f"{path}:{lineno}"
        qid = str(_need(obj, ("question_id",), where))
        answer = obj.get("answer", obj.get("text"))
        if answer is None:
            raise BenchDataError(f"{where}: missing field 'answer'")
        if not isinstance(answer, str):
            answer = json.dumps(answer)
        image = str(obj.get("image_id") or obj.get("image") or "")
        file, dataset = str(obj.get("file") or ""), str(obj.get("dataset") or "")
        out.append(BenchAnswer(qid, answer, image, where, file, dataset))
    return out


# --- images and sizes -----------------------------------------------------------------------------
def known_image_size(image_id: str) -> tuple[int, int]:
    """GeoChat-Bench's image size by image-id prefix: ``P…`` SOTA 1024, ``train…`` FAST 600, else SIOR 800."""
    stem = Path(image_id).stem
    if stem.startswith("P"):
        return (1024, 1024)
    if stem.startswith("train"):
        return (600, 600)
    return (800, 800)


def find_image(images: Path, image_id: str, where: str) -> Path:
    """The image file of ``image_id`` in ``images`` (as named, or with a usual suffix)."""
    direct = images / image_id
    if direct.is_file():
        return direct
    for suffix in IMAGE_SUFFIXES:
        for cand in (images / f"{image_id}{suffix}", images / f"{Path(image_id).stem}{suffix}"):
            if cand.is_file():
                return cand
    raise BenchDataNotFoundError(f"{where}: image {image_id!r} not found in {images}")


# --- ground-truth boxes ---------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _usable(poly: Polygon, where: str) -> tuple[Polygon, bool]:
    """``poly``, or a bow-tie quadrilateral's corners re-ordered (a rectangle given out of order),
    and whether it was re-ordered; BenchDataError for a box of zero area or another crossed outline."""
    if poly.is_valid and poly.area > 0:
        return poly, False
    corners = list(poly.exterior.coords)[:-1]
    hull = shapely.MultiPoint(corners).convex_hull
    if not isinstance(hull, Polygon) or hull.area <= 0:
        raise BenchDataError(
            f"{where}: a ground-truth box has zero area ({shapely.to_wkt(poly, rounding_precision=2)})"
        )
    if len(corners) == 4 and len(hull.exterior.coords) == 5:
        return hull, True
    raise BenchDataError(
        f"{where}: a ground-truth polygon crosses itself ({shapely.to_wkt(poly, rounding_precision=2)})"
    )


def _one_polygon(item: Any, where: str) -> tuple[Polygon, bool] | None:
    """One object's polygon and whether its corners were re-ordered, or None when ``item`` is not a
    single object (a list of objects)."""
    if isinstance(item, str):
        try:
            geom = shapely.from_wkt(item)
        except shapely.errors.GEOSException:
            raise BenchDataError(f"{where}: ground truth {item[:40]!r} is not WKT") from None
        if not isinstance(geom, Polygon) or geom.is_empty:
            raise BenchDataError(f"{where}: ground-truth WKT must be a POLYGON")
        return _usable(geom, where)
    if isinstance(item, list | tuple) and len(item) == 4 and all(_is_number(v) for v in item):
        x1, y1, x2, y2 = (float(v) for v in item)
        return _usable(shapely.box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), where)
    if (
        isinstance(item, list | tuple)
        and len(item) >= 3
        and all(isinstance(p, list | tuple) and len(p) == 2 and all(_is_number(v) for v in p) for p in item)
    ):
        return _usable(Polygon([(float(x), float(y)) for x, y in item]), where)
    return None


def gt_polygons_repaired(ground_truth: Any, where: str = "") -> tuple[list[Polygon], int]:
    """Ground-truth objects as pixel polygons (one per object) and how many were bow-ties whose
    corners were re-ordered; BenchDataError when unreadable or of zero area."""
    single = _one_polygon(ground_truth, where)
    if single is not None:
        return [single[0]], int(single[1])
    if isinstance(ground_truth, list | tuple) and ground_truth:
        out, repaired = [], 0
        for item in ground_truth:
            got = _one_polygon(item, where)
            if got is None:
                raise BenchDataError(
                    f"{where}: a ground-truth box must be [[x, y] x 4], [x1, y1, x2, y2] or WKT, "
                    f"not {json.dumps(item)[:60]}"
                )
            out.append(got[0])
            repaired += got[1]
        return out, repaired
    raise BenchDataError(f"{where}: ground truth holds no boxes ({json.dumps(ground_truth)[:60]})")


def gt_polygons(ground_truth: Any, where: str = "") -> list[Polygon]:
    """Ground-truth objects as pixel polygons (see :func:`gt_polygons_repaired`)."""
    return gt_polygons_repaired(ground_truth, where)[0]
