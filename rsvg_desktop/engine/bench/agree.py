"""``rsvg bench agree``: how far other precisions' answers drift from a reference, no ground truth needed.

Each precision runs the real scene job (:func:`rsvg_desktop.engine.detect.run_scene`) over the same
tiles of every input, writing ``OUT/runs/<precision>/<scene>.gpkg`` and its answer log. Then, tile by
tile, each precision's answer is compared with the reference's: boxes per tile (mean absolute
difference in count), the IoU of boxes matched greedily one-to-one by descending IoU (mean and 10th
percentile), boxes left unmatched on either side, the identical-answer rate and ROUGE-L between the
answers. ``OUT/agreement.gpkg`` holds both precisions' polygons (layers ``<precision>``) and the
disagreements (layer ``disagreements``: unmatched boxes, and matched pairs with IoU < 0.5).

Tasks without boxes (``classify``, ``vqa``, ``chat``) are compared on their answers alone (identical
rate, ROUGE-L); their layers hold each tile's footprint with its answer (for ``classify``, a class map
per precision), and ``disagreements`` the tiles whose answers differ, with both answers.

Resumable per scene: a finished scene run leaves ``OUT/runs/<precision>/<scene>.done.json`` with its
settings; the same command again skips those runs (and loads no model when a precision has nothing
left), so an interrupted comparison goes on where it stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsvg_desktop.core.answers import AnswerRecord, read_answer_log
from rsvg_desktop.core.eval.metrics import match_pairs, rouge_l
from rsvg_desktop.core.eval.score import Metric
from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE, Precision
from rsvg_desktop.core.prompt import get_task, parse_answer
from rsvg_desktop.engine.bench.jobs import BenchSummary, read_json_object
from rsvg_desktop.engine.bench.report import metric_tables, write_metrics, write_report
from rsvg_desktop.engine.detect import answer_log_path, run_scene
from rsvg_desktop.engine.events import RunConfig, RunFailed
from rsvg_desktop.engine.results import Georef, detections_for_answer
from rsvg_desktop.errors import ConfigError, GenerationError

__all__ = ["compare_answer_logs", "run_agree"]

log = logging.getLogger(__name__)

Key = tuple[str, int, int, int, int]


def _tiles(log_path: Path) -> dict[Key, AnswerRecord]:
    out: dict[Key, AnswerRecord] = {}
    for rec in read_answer_log(log_path):
        out[(rec.scene, rec.col_off, rec.row_off, rec.width, rec.height)] = rec  # the latest per tile
    return out


def _footprint(rec: AnswerRecord) -> Any:
    """The tile's window as a polygon in the scene's CRS (scene pixels in pixel mode, like the boxes)."""
    from shapely.geometry import Polygon

    georef = rec.transform if rec.transform and rec.crs is not None else None
    a, b, c, d, e, f = georef or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    corners = [
        (rec.col_off, rec.row_off),
        (rec.col_off + rec.width, rec.row_off),
        (rec.col_off + rec.width, rec.row_off + rec.height),
        (rec.col_off, rec.row_off + rec.height),
    ]
    return Polygon([(a * x + b * y + c, d * x + e * y + f) for x, y in corners])


def _geoms(rec: AnswerRecord) -> np.ndarray:
    georef = Georef(rec.transform, rec.crs)
    table = detections_for_answer(
        rec, parse_answer(rec.answer), georef, convention=rec.angle_convention or "ccw"
    )
    return table.geometry


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
) -> BenchSummary:
    """``rsvg bench agree`` (see the module doc)."""
    import geopandas as gpd

    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadSpec, load_model

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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "model": str(Path(model_dir).resolve()),
        "task": task,
        "query": query,
        "classes": list(classes),
        "tile_size": tile_size,
        "max_new_tokens": max_new_tokens,
        "group_size": group_size,
    }
    logs: dict[str, list[Path]] = {}
    random_weights = False
    resumed = 0
    for prec in [ref, *others]:
        logs[prec.value] = []
        todo: list[tuple[str | Path, Path, Path, dict[str, Any]]] = []
        for scene in inputs:
            output = out / "runs" / prec.value / f"{Path(scene).stem}.gpkg"
            marker = output.with_name(f"{output.stem}.done.json")
            want = dict(settings, scene=str(Path(scene).resolve()), precision=prec.value)
            logs[prec.value].append(answer_log_path(output))
            earlier = read_json_object(marker)
            if all(earlier.get(k) == v for k, v in want.items()) and answer_log_path(output).is_file():
                resumed += 1
                log.info("%s at %s: finished earlier (%s)", scene, prec.value, marker)
                random_weights = random_weights or bool(earlier.get("random_weights"))
                continue
            todo.append((scene, output, marker, want))
        if not todo:
            continue
        loaded = load_model(LoadSpec(Path(model_dir), prec, device=device, group_size=group_size))
        random_weights = random_weights or loaded.random_weights
        gen = GeoChatGenerator(loaded)
        for scene, output, marker, want in todo:
            marker.unlink(missing_ok=True)
            extra = {"tile_size": tile_size} if tile_size else {}
            config = RunConfig(
                str(scene),
                query,
                task=task,
                output=str(output),
                overwrite=True,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                classes=tuple(classes),
                **extra,  # type: ignore[arg-type]
            )
            for event in run_scene(
                config, gen, model=str(model_dir), precision=prec.value, device=loaded.device_name,
                random_weights=loaded.random_weights,
            ):  # fmt: skip
                if isinstance(event, RunFailed):
                    raise GenerationError(f"{scene}: the {prec.value} run failed: {event.message}")
                done = getattr(event, "done", None)
                total = getattr(event, "total", None)
                if progress and done is not None and total:
                    progress(f"{prec.value} {Path(scene).name}", int(done), int(total))
            marker.write_text(
                json.dumps(dict(want, random_weights=loaded.random_weights), indent=1), encoding="utf-8"
            )
        del gen, loaded

    metrics, layers, crs = compare_answer_logs(ref.value, logs[ref.value], logs, task)
    gpkg = out / "agreement.gpkg"
    if gpkg.exists():
        gpkg.unlink()
    for name, rows in layers.items():
        frame = gpd.GeoDataFrame(
            rows or {"geometry": [], "scene": []}, geometry="geometry", crs=crs
        )  # fmt: skip
        frame.to_file(gpkg, layer=name, driver="GPKG")
    notes = [
        f"reference: {ref.value}; task {task}; query {query!r}; inputs: {', '.join(map(str, inputs))}",
        f"polygons and disagreements: {gpkg.name} (layers {', '.join(layers)})",
        "IoU values in percent; counts are boxes summed over tiles",
    ]
    if resumed:
        notes.append(f"{resumed} scene run(s) finished earlier in this folder were reused")
    if random_weights:
        notes.append("the model has RANDOM WEIGHTS (a test model): the figures are meaningless")
    metrics_file = write_metrics(out, metrics)
    report = write_report(
        out,
        "Agreement between precisions",
        [("Agreement", metric_tables(metrics)), ("Notes", "\n".join(f"- {x}" for x in notes))],
    )
    return BenchSummary(out, report, metrics_file, tuple(metrics), ())


def compare_answer_logs(
    reference: str, ref_logs: Sequence[Path], logs: dict[str, list[Path]], task: str
) -> tuple[list[Metric], dict[str, list[dict[str, Any]]], Any]:
    """Tile-by-tile comparison of each label's answer logs with the reference's (see the module doc).

    Returns the metrics, the layers' rows (``<label>`` polygons and ``disagreements``) and the CRS.
    """
    crs: Any = None
    metrics: list[Metric] = []
    layers: dict[str, list[dict[str, Any]]] = {reference: [], "disagreements": []}
    ref_tiles: dict[Key, AnswerRecord] = {}
    for path in ref_logs:
        ref_tiles.update(_tiles(path))
    has_boxes = get_task(task).has_boxes
    for rec in ref_tiles.values():
        crs = crs or rec.crs
        for g in _geoms(rec) if has_boxes else [_footprint(rec)]:
            layers[reference].append({"geometry": g, "scene": rec.scene, "answer": rec.answer})
    label_task = f"agree/{task}"
    for label, paths in logs.items():
        if label == reference:
            continue
        tiles: dict[Key, AnswerRecord] = {}
        for path in paths:
            tiles.update(_tiles(path))
        layers[label] = []
        count_diff: list[int] = []
        ious: list[float] = []
        only_ref = only_other = identical = 0
        rouge: list[float] = []
        common = [k for k in ref_tiles if k in tiles]
        for key in common:
            a, b = ref_tiles[key], tiles[key]
            same = a.answer.strip() == b.answer.strip()
            identical += same
            rouge.append(rouge_l(a.answer, b.answer))
            if not has_boxes:
                tile = _footprint(b)
                layers[label].append({"geometry": tile, "scene": b.scene, "answer": b.answer})
                if not same:
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
                continue
            ga, gb = _geoms(a), _geoms(b)
            for g in gb:
                layers[label].append({"geometry": g, "scene": b.scene, "answer": b.answer})
            pairs = match_pairs(list(ga), list(gb))
            count_diff.append(abs(len(ga) - len(gb)))
            ious += [v for _, _, v in pairs]
            matched_a = {i for i, _, _ in pairs}
            matched_b = {j for _, j, _ in pairs}
            only_ref += len(ga) - len(matched_a)
            only_other += len(gb) - len(matched_b)
            for side, geoms, matched in ((reference, ga, matched_a), (label, gb, matched_b)):
                for i, g in enumerate(geoms):
                    if i not in matched:
                        layers["disagreements"].append(
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
                        layers["disagreements"].append(
                            {
                                "geometry": g,
                                "scene": a.scene,
                                "precision": side,
                                "kind": "IoU < 0.5",
                                "iou": v,
                            }
                        )
        n = len(common)
        metrics.append(Metric(label, label_task, "tiles", float(n), n))
        if not has_boxes:
            metrics += [
                Metric(label, label_task, "identical", 100.0 * identical / n if n else 0.0, n),
                Metric(label, label_task, "rougeL", 100 * float(np.mean(rouge)) if n else 0.0, n),
            ]
            continue
        metrics += [
            Metric(label, label_task, "count_diff_mean", float(np.mean(count_diff)) if n else 0.0, n),
            Metric(
                label, label_task, "matched_iou_mean", 100 * float(np.mean(ious)) if ious else 0.0, len(ious)
            ),
            Metric(
                label,
                label_task,
                "matched_iou_p10",
                100 * float(np.percentile(ious, 10)) if ious else 0.0,
                len(ious),
            ),
            Metric(label, label_task, "unmatched_reference", float(only_ref), n),
            Metric(label, label_task, "unmatched_other", float(only_other), n),
            Metric(label, label_task, "identical", 100.0 * identical / n if n else 0.0, n),
            Metric(label, label_task, "rougeL", 100 * float(np.mean(rouge)) if n else 0.0, n),
        ]
    return metrics, layers, crs
