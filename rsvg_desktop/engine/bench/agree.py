"""``rsvg bench agree``: how far other precisions' answers drift from a reference, no ground truth needed.

Each precision runs the real scene job (:func:`rsvg_desktop.engine.detect.run_scene`) over the same
tiles of every input, writing ``OUT/runs/<precision>/<scene>.gpkg`` and its answer log. Then, tile by
tile, each precision's answer is compared with the reference's: boxes per tile (mean absolute
difference in count), the IoU of boxes matched greedily one-to-one by descending IoU (mean and 10th
percentile), boxes left unmatched on either side, the identical-answer rate and ROUGE-L between the
answers. ``OUT/agreement.gpkg`` holds both precisions' polygons (layers ``<precision>``) and the
disagreements (layer ``disagreements``: unmatched boxes, and matched pairs with IoU < 0.5).

A tile one side answered and the other did not (a run stopped early) is counted
(``tiles_unanswered``: answered by the reference only; ``tiles_unanswered_reference``: by the other
only) and its footprint is a disagreement (kind ``not answered by <precision>``), never dropped.
Inputs in different CRSs: each layer is split by CRS, ``<layer>_<EPSG code>`` (``_pixels`` for pixel
mode), each in its own CRS, and the report names the layers; with one CRS the names are as above.

Tasks without boxes (``classify``, ``vqa``, ``chat``) are compared on their answers alone (identical
rate, ROUGE-L); their layers hold each tile's footprint with its answer (for ``classify``, a class map
per precision), and ``disagreements`` the tiles whose answers differ, with both answers.

Resumable per scene: a finished scene run leaves ``OUT/runs/<precision>/<scene>.done.json`` with its
settings; the same command again skips those runs (and loads no model when a precision has nothing
left), so an interrupted comparison goes on where it stopped. A folder holding a comparison finished with
other settings (another query, task, model, ...) is refused unless ``overwrite``, as every command
refuses to replace an earlier result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsvg_desktop.core.answers import AnswerRecord, read_answer_log
from rsvg_desktop.core.eval.metrics import match_pairs, rouge_l
from rsvg_desktop.core.eval.score import Metric
from rsvg_desktop.core.geo.boxes import apply_affine
from rsvg_desktop.core.geo.gpkg import DATASET_OPTIONS
from rsvg_desktop.core.paths import refuse_remote
from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE, Precision
from rsvg_desktop.core.prompt import get_task, parse_answer
from rsvg_desktop.engine.bench.jobs import BenchSummary, read_json_object
from rsvg_desktop.engine.bench.report import metric_tables, write_metrics, write_report
from rsvg_desktop.engine.detect import answer_log_path, run_scene
from rsvg_desktop.engine.events import RunConfig, RunFailed, RunStarted
from rsvg_desktop.engine.results import Georef, detections_for_answer
from rsvg_desktop.errors import ConfigError, GenerationError, OutputExistsError

__all__ = ["compare_answer_logs", "run_agree"]

log = logging.getLogger(__name__)

Key = tuple[str, int, int, int, int]

_PIXELS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # pixel mode: the identity


def _tiles(log_path: Path) -> dict[Key, AnswerRecord]:
    out: dict[Key, AnswerRecord] = {}
    for rec in read_answer_log(log_path):
        out[(rec.scene, rec.col_off, rec.row_off, rec.width, rec.height)] = rec  # the latest per tile
    return out


def _footprint(rec: AnswerRecord) -> Any:
    """The tile's window as a polygon in the scene's CRS (scene pixels in pixel mode, like the boxes)."""
    from shapely.geometry import Polygon

    georef = rec.transform if rec.transform and rec.crs is not None else None
    corners = np.array(
        [
            (rec.col_off, rec.row_off),
            (rec.col_off + rec.width, rec.row_off),
            (rec.col_off + rec.width, rec.row_off + rec.height),
            (rec.col_off, rec.row_off + rec.height),
        ],
        dtype=np.float64,
    )
    return Polygon(apply_affine(georef or _PIXELS, corners))


def _geoms(rec: AnswerRecord) -> np.ndarray:
    georef = Georef(rec.transform, rec.crs)
    table = detections_for_answer(
        rec, parse_answer(rec.answer), georef, convention=rec.angle_convention or "ccw"
    )
    return table.geometry


# --- running each precision over the inputs ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Question:
    """What every scene run of one comparison asks, and how."""

    model_dir: str | Path
    task: str
    query: str
    classes: tuple[str, ...]
    device: str
    batch_size: int | None
    max_new_tokens: int
    tile_size: int | None
    group_size: int

    def settings(self) -> dict[str, Any]:
        """What a finished scene run's done-marker records: a rerun with the same settings reuses it."""
        return {
            "model": str(Path(self.model_dir).resolve()),
            "task": self.task,
            "query": self.query,
            "classes": list(self.classes),
            "tile_size": self.tile_size,
            "max_new_tokens": self.max_new_tokens,
            "group_size": self.group_size,
        }

    def scene_config(self, scene: str | Path, output: Path) -> RunConfig:
        extra = {"tile_size": self.tile_size} if self.tile_size else {}
        return RunConfig(
            str(scene),
            self.query,
            task=self.task,
            output=str(output),
            overwrite=True,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            classes=self.classes,
            **extra,  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class _SceneRun:
    """One scene at one precision: its output, its done-marker and the settings the marker records."""

    scene: str | Path
    output: Path
    marker: Path
    want: dict[str, Any]


@dataclass
class _Runs:
    """The answer logs of every precision, and what was reused from an earlier comparison."""

    logs: dict[str, list[Path]] = field(default_factory=dict)
    resumed: int = 0
    random_weights: bool = False


def _check_request(
    reference: str | Precision,
    precisions: Sequence[str | Precision],
    inputs: Sequence[str | Path],
    task: str,
    classes: Sequence[str],
) -> tuple[Precision, list[Precision]]:
    """The reference and the other precisions, once the comparison is known to make sense."""
    ref = Precision.parse(reference)
    others = [Precision.parse(p) for p in precisions if Precision.parse(p) is not ref]
    if not others:
        raise ConfigError("give at least one precision besides the reference")
    if not inputs:
        raise ConfigError("no input scene given")
    spec = get_task(task)
    if spec.needs_region:
        raise ConfigError(f"task {task} asks about one region, not every tile: choose another task")
    if spec.name == "classify" and not classes:
        raise ConfigError("task classify needs the class list (--classes a,b,c)")
    stems = [Path(scene).stem for scene in inputs]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise ConfigError(f"two inputs share a file name ({', '.join(twice)}): their runs would collide")
    return ref, others


def _scene_run(prec: Precision, scene: str | Path, out: Path, settings: dict[str, Any]) -> _SceneRun:
    output = out / "runs" / prec.value / f"{Path(scene).stem}.gpkg"
    marker = output.with_name(f"{output.stem}.done.json")
    want = dict(settings, scene=str(Path(scene).resolve()), precision=prec.value)
    return _SceneRun(scene, output, marker, want)


#: How the settings a done-marker records are called on the command line.
_SETTING_NAMES = {
    "model": "--model",
    "task": "--task",
    "query": "--query",
    "classes": "--classes",
    "tile_size": "--tile-size",
    "max_new_tokens": "--max-new-tokens",
    "group_size": "--group-size",
    "scene": "input",
}


def _refuse_other_settings(
    precs: Sequence[Precision], inputs: Sequence[str | Path], out: Path, settings: dict[str, Any]
) -> None:
    """OutputExistsError when ``out`` holds a scene run finished with other settings than these."""
    for prec in precs:
        for scene in inputs:
            run = _scene_run(prec, scene, out, settings)
            earlier = read_json_object(run.marker)
            changed = [k for k, v in run.want.items() if k in earlier and earlier[k] != v]
            if changed:
                what = ", ".join(
                    f"{_SETTING_NAMES.get(k, k)} {earlier[k]!r}, now {run.want[k]!r}" for k in changed
                )
                raise OutputExistsError(
                    f"{out} holds a comparison finished with other settings ({what}): use --overwrite "
                    "to replace it, or choose another output folder"
                )


def _preflight(
    out: str | Path,
    precs: Sequence[Precision],
    device: str,
    group_size: int,
    batch_size: int | None,
    max_new_tokens: int,
    tile_size: int | None,
) -> None:
    """The shared checks before work (:mod:`~rsvg_desktop.engine.preflight`): the numbers, the output
    folder, and every precision on this machine's device."""
    from rsvg_desktop.engine import preflight
    from rsvg_desktop.engine.events import DEFAULT_OVERLAP

    preflight.check_run_numbers(batch_size=batch_size, max_new_tokens=max_new_tokens)
    if tile_size is not None:
        preflight.check_grid(tile_size=tile_size, overlap=0)
        if tile_size <= DEFAULT_OVERLAP:
            raise ConfigError(
                f"--tile-size must be more than the tiles' overlap of {DEFAULT_OVERLAP} pixels, "
                f"got {tile_size}"
            )
    preflight.check_output_folder(out)
    for prec in precs:
        preflight.check_machine(device, prec.value, group_size=group_size)


def _runs_left(
    prec: Precision, inputs: Sequence[str | Path], out: Path, settings: dict[str, Any], runs: _Runs
) -> list[_SceneRun]:
    """The scene runs of ``prec`` not finished earlier with the same settings (their logs go in ``runs``)."""
    runs.logs[prec.value] = []
    todo: list[_SceneRun] = []
    for scene in inputs:
        run = _scene_run(prec, scene, out, settings)
        runs.logs[prec.value].append(answer_log_path(run.output))
        earlier = read_json_object(run.marker)
        if all(earlier.get(k) == v for k, v in run.want.items()) and answer_log_path(run.output).is_file():
            runs.resumed += 1
            log.info("%s at %s: finished earlier (%s)", scene, prec.value, run.marker)
            runs.random_weights = runs.random_weights or bool(earlier.get("random_weights"))
            continue
        todo.append(run)
    return todo


def _run_precision(
    prec: Precision,
    todo: Sequence[_SceneRun],
    question: _Question,
    runs: _Runs,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    """Load the model at ``prec`` and run the scene job over each scene left; mark each one done."""
    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadSpec, load_model

    model_dir = question.model_dir
    spec = LoadSpec(Path(model_dir), prec, device=question.device, group_size=question.group_size)
    loaded = load_model(spec)
    runs.random_weights = runs.random_weights or loaded.random_weights
    gen = GeoChatGenerator(loaded)
    for run in todo:
        run.marker.unlink(missing_ok=True)
        config = question.scene_config(run.scene, run.output)
        for event in run_scene(
            config, gen, model=str(model_dir), precision=prec.value, device=loaded.device_name,
            random_weights=loaded.random_weights,
        ):  # fmt: skip
            if isinstance(event, RunFailed):
                raise GenerationError(f"{run.scene}: the {prec.value} run failed: {event.message}")
            # From the start (0 done, the model loaded) to the end: the rate counts answering only.
            done = 0 if isinstance(event, RunStarted) else getattr(event, "done", None)
            total = getattr(event, "total", None)
            if progress and done is not None and total:
                progress(f"{prec.value} {Path(run.scene).name}", int(done), int(total))
        run.marker.write_text(
            json.dumps(dict(run.want, random_weights=loaded.random_weights), indent=1), encoding="utf-8"
        )
    del gen, loaded


# --- writing the comparison ----------------------------------------------------------------------
def _crs_tag(crs: Any, index: int) -> str:
    if crs is None:
        return "pixels"
    try:
        from pyproj import CRS

        auth = CRS.from_user_input(crs).to_authority()
    except Exception:
        auth = None
    return f"{auth[0]}{auth[1]}" if auth else f"crs{index + 1}"


def _write_layers(
    gpkg: Path, layers: dict[str, list[dict[str, Any]]], scene_crs: dict[str, Any]
) -> list[str]:
    """``agreement.gpkg`` anew: one layer per precision, and ``disagreements``; split by CRS, each
    part in its own CRS, when the scenes are in several (see the module doc). Returns the layers."""
    import geopandas as gpd

    if gpkg.exists():
        gpkg.unlink()
    crss = list(dict.fromkeys(scene_crs.values())) or [None]
    tags = {c: _crs_tag(c, i) for i, c in enumerate(crss)}
    written = []
    for name, rows in layers.items():
        groups: dict[Any, list[dict[str, Any]]] = {c: [] for c in crss}
        for row in rows:
            groups[scene_crs.get(row["scene"])].append(row)
        for crs, part in groups.items():
            if len(crss) > 1 and not part:
                continue
            layer = name if len(crss) == 1 else f"{name}_{tags[crs]}"
            frame = gpd.GeoDataFrame(part or {"geometry": [], "scene": []}, geometry="geometry", crs=crs)
            frame.to_file(gpkg, layer=layer, driver="GPKG", **DATASET_OPTIONS)
            written.append(layer)
    return written


def run_agree(
    inputs: Sequence[str | Path],
    model_dir: str | Path,
    reference: str | Precision,
    precisions: Sequence[str | Precision],
    out: str | Path,
    *,
    task: str = "refer",
    query: str = "",
    classes: Sequence[str] = (),
    device: str = "auto",
    batch_size: int | None = None,
    max_new_tokens: int = 256,
    tile_size: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    group_size: int = DEFAULT_INT4_GROUP_SIZE,
    overwrite: bool = False,
    allow_remote: bool = False,
) -> BenchSummary:
    """``rsvg bench agree`` (see the module doc). An input that is a URL or a GDAL network path is
    refused unless ``allow_remote``."""
    if not allow_remote:
        for scene in inputs:
            refuse_remote(scene, "input")
    ref, others = _check_request(reference, precisions, inputs, task, classes)
    _preflight(out, [ref, *others], device, group_size, batch_size, max_new_tokens, tile_size)
    out = Path(out)
    question = _Question(
        model_dir, task, query, tuple(classes), device, batch_size, max_new_tokens, tile_size, group_size
    )
    settings = question.settings()
    if not overwrite:
        _refuse_other_settings([ref, *others], inputs, out, settings)
    out.mkdir(parents=True, exist_ok=True)
    runs = _Runs()
    for prec in [ref, *others]:
        todo = _runs_left(prec, inputs, out, settings, runs)
        if todo:
            _run_precision(prec, todo, question, runs, progress)

    metrics, layers, scene_crs = compare_answer_logs(ref.value, runs.logs[ref.value], runs.logs, task)
    gpkg = out / "agreement.gpkg"
    written = _write_layers(gpkg, layers, scene_crs)
    several = len(set(scene_crs.values())) > 1
    notes = [
        f"reference: {ref.value}; task {task}; query {query!r}; inputs: {', '.join(map(str, inputs))}",
        f"polygons and disagreements: {gpkg.name} (layers {', '.join(written)})"
        + (
            "; the inputs are in several CRSs: each layer is split by CRS, each part in its own"
            if several
            else ""
        ),
        "tiles answered by one side only are counted (tiles_unanswered, tiles_unanswered_reference)",
        "IoU values in percent; counts are boxes summed over tiles",
    ]
    if runs.resumed:
        notes.append(f"{runs.resumed} scene run(s) finished earlier in this folder were reused")
    if runs.random_weights:
        notes.append("the model has RANDOM WEIGHTS (a test model): the figures are meaningless")
    metrics_file = write_metrics(out, metrics)
    report = write_report(
        out,
        "Agreement between precisions",
        [("Agreement", metric_tables(metrics)), ("Notes", "\n".join(f"- {x}" for x in notes))],
    )
    return BenchSummary(out, report, metrics_file, tuple(metrics), ())


# --- comparing answer logs tile by tile ----------------------------------------------------------
@dataclass
class _Tally:
    """One precision's differences from the reference, summed over the tiles both answered."""

    tiles: int = 0
    identical: int = 0
    rouge: list[float] = field(default_factory=list)
    count_diff: list[int] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    only_ref: int = 0
    only_other: int = 0
    unanswered: int = 0  # tiles the reference answered and this label did not
    unanswered_reference: int = 0  # and the other way round


def _read_logs(paths: Sequence[Path]) -> dict[Key, AnswerRecord]:
    tiles: dict[Key, AnswerRecord] = {}
    for path in paths:
        tiles.update(_tiles(path))
    return tiles


def _compare_answers(
    a: AnswerRecord, b: AnswerRecord, label: str, layers: dict[str, list[dict[str, Any]]]
) -> None:
    """A task without boxes: ``b``'s tile footprint with its answer, a disagreement when they differ."""
    tile = _footprint(b)
    layers[label].append({"geometry": tile, "scene": b.scene, "answer": b.answer})
    if a.answer.strip() != b.answer.strip():
        layers["disagreements"].append(
            {
                "geometry": tile,
                "scene": a.scene,
                "precision": label,
                "kind": "different answer",
                "reference_answer": a.answer,
                "answer": b.answer,
            }
        )


def _compare_boxes(
    a: AnswerRecord,
    b: AnswerRecord,
    reference: str,
    label: str,
    layers: dict[str, list[dict[str, Any]]],
    tally: _Tally,
) -> None:
    """Boxes matched one-to-one by IoU; unmatched boxes and pairs with IoU < 0.5 are disagreements."""
    ga, gb = _geoms(a), _geoms(b)
    for g in gb:
        layers[label].append({"geometry": g, "scene": b.scene, "answer": b.answer})
    pairs = match_pairs(list(ga), list(gb))
    tally.count_diff.append(abs(len(ga) - len(gb)))
    tally.ious += [v for _, _, v in pairs]
    matched_a = {i for i, _, _ in pairs}
    matched_b = {j for _, j, _ in pairs}
    tally.only_ref += len(ga) - len(matched_a)
    tally.only_other += len(gb) - len(matched_b)
    disagreements = layers["disagreements"]
    for side, geoms, matched in ((reference, ga, matched_a), (label, gb, matched_b)):
        for i, g in enumerate(geoms):
            if i not in matched:
                disagreements.append(
                    {
                        "geometry": g,
                        "scene": a.scene,
                        "precision": side,
                        "kind": f"only in {side}",
                        "iou": 0.0,
                    }
                )
    for i, j, v in pairs:
        if v < 0.5:
            for side, g in ((reference, ga[i]), (label, gb[j])):
                disagreements.append(
                    {"geometry": g, "scene": a.scene, "precision": side, "kind": "IoU < 0.5", "iou": v}
                )


def _count_unanswered(
    ref_tiles: dict[Key, AnswerRecord],
    tiles: dict[Key, AnswerRecord],
    reference: str,
    label: str,
    layers: dict[str, list[dict[str, Any]]],
    tally: _Tally,
) -> None:
    """Tiles one side answered and the other did not: counted, and their footprints disagreements."""
    for mine, theirs, missing in ((ref_tiles, tiles, label), (tiles, ref_tiles, reference)):
        for key, rec in mine.items():
            if key in theirs:
                continue
            if missing == label:
                tally.unanswered += 1
            else:
                tally.unanswered_reference += 1
            layers["disagreements"].append(
                {"geometry": _footprint(rec), "scene": rec.scene, "precision": missing,
                 "kind": f"not answered by {missing}", "answer": rec.answer}
            )  # fmt: skip


def _label_metrics(label: str, task: str, tally: _Tally, has_boxes: bool) -> list[Metric]:
    label_task = f"agree/{task}"
    n = tally.tiles
    metrics = [
        Metric(label, label_task, "tiles", float(n), n),
        Metric(label, label_task, "tiles_unanswered", float(tally.unanswered), tally.unanswered),
        Metric(
            label,
            label_task,
            "tiles_unanswered_reference",
            float(tally.unanswered_reference),
            tally.unanswered_reference,
        ),
    ]
    identical = Metric(label, label_task, "identical", 100.0 * tally.identical / n if n else 0.0, n)
    rouge = Metric(label, label_task, "rougeL", 100 * float(np.mean(tally.rouge)) if n else 0.0, n)
    if not has_boxes:
        return [*metrics, identical, rouge]
    ious = tally.ious
    return [
        *metrics,
        Metric(label, label_task, "count_diff_mean", float(np.mean(tally.count_diff)) if n else 0.0, n),
        Metric(label, label_task, "matched_iou_mean", 100 * float(np.mean(ious)) if ious else 0.0, len(ious)),
        Metric(
            label,
            label_task,
            "matched_iou_p10",
            100 * float(np.percentile(ious, 10)) if ious else 0.0,
            len(ious),
        ),
        Metric(label, label_task, "unmatched_reference", float(tally.only_ref), n),
        Metric(label, label_task, "unmatched_other", float(tally.only_other), n),
        identical,
        rouge,
    ]


def compare_answer_logs(
    reference: str, ref_logs: Sequence[Path], logs: dict[str, list[Path]], task: str
) -> tuple[list[Metric], dict[str, list[dict[str, Any]]], Any]:
    """Tile-by-tile comparison of each label's answer logs with the reference's (see the module doc).

    Returns the metrics, the layers' rows (``<label>`` polygons and ``disagreements``) and each
    scene's CRS (WKT, ``None`` in pixel mode).
    """
    scene_crs: dict[str, Any] = {}
    metrics: list[Metric] = []
    layers: dict[str, list[dict[str, Any]]] = {reference: [], "disagreements": []}
    ref_tiles = _read_logs(ref_logs)
    has_boxes = get_task(task).has_boxes
    for rec in ref_tiles.values():
        scene_crs.setdefault(rec.scene, rec.crs)
        for g in _geoms(rec) if has_boxes else [_footprint(rec)]:
            layers[reference].append({"geometry": g, "scene": rec.scene, "answer": rec.answer})
    for label, paths in logs.items():
        if label == reference:
            continue
        tiles = _read_logs(paths)
        layers[label] = []
        tally = _Tally()
        for rec in tiles.values():
            scene_crs.setdefault(rec.scene, rec.crs)
        _count_unanswered(ref_tiles, tiles, reference, label, layers, tally)
        for key in [k for k in ref_tiles if k in tiles]:
            a, b = ref_tiles[key], tiles[key]
            tally.tiles += 1
            tally.identical += a.answer.strip() == b.answer.strip()
            tally.rouge.append(rouge_l(a.answer, b.answer))
            if has_boxes:
                _compare_boxes(a, b, reference, label, layers, tally)
            else:
                _compare_answers(a, b, label, layers)
        metrics += _label_metrics(label, task, tally, has_boxes)
    return metrics, layers, scene_crs
