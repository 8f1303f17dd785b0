"""Reports of ``rsvg bench``: ``OUT/report.md``, ``OUT/metrics.json`` and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rsvg_desktop.core.eval.score import Metric

__all__ = ["write_metrics", "write_plots", "write_report"]

log = logging.getLogger(__name__)

#: Columns of the study's tables, per task family (other metrics follow in a second table).
_MAIN_COLUMNS = {
    "referring": (
        "acc@0.5",
        "acc@0.25",
        "mean_iou",
        "precision",
        "acc@0.5[ccw]",
        "acc@0.5[cw]",
        "grid_ceiling@0.5",
    ),
    "grounding": (
        "acc@0.5",
        "acc@0.25",
        "mean_iou",
        "precision",
        "acc@0.5[ccw]",
        "acc@0.5[cw]",
        "grid_ceiling@0.5",
    ),
    "region-caption": ("rouge1", "rougeL", "meteor"),
}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_metrics(out: Path, metrics: Sequence[Metric]) -> Path:
    """``OUT/metrics.json``: ``{"metrics": [{"label", "task", "metric", "value", "n"}, ...]}``."""
    path = out / "metrics.json"
    _atomic_write(path, json.dumps({"metrics": [m.as_json() for m in metrics]}, indent=1) + "\n")
    return path


def _fmt(m: Metric | None) -> str:
    if m is None:
        return "–"
    if m.metric in ("malformed", "count", "asked", "repaired_gt"):
        return f"{m.value:.0f}"
    return f"{m.value:.2f} (n={m.n})"


def _table(
    title: str,
    rows: Sequence[str],
    cols: Sequence[str],
    cell: Mapping[tuple[str, str], Metric],
    notes: Mapping[str, str],
) -> str:
    """A table of the rows (labels) with a number in it; ``notes`` follow a label's name."""
    lines = [f"### {title}", "", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in rows:
        if not any((r, c) in cell for c in cols):
            continue
        name = f"{r} ({notes[r]})" if r in notes else r
        lines.append(f"| {name} | " + " | ".join(_fmt(cell.get((r, c))) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def partial_answers(metrics: Sequence[Metric]) -> dict[tuple[str, str], str]:
    """``(label, task)`` → "partial: 812 of 1,000 answered" where a label left questions unanswered."""
    asked = {(m.label, m.task): m.n for m in metrics if m.metric == "asked"}
    out = {}
    for m in metrics:
        total = asked.get((m.label, m.task))
        if m.metric == "answered" and total is not None and m.n < total:
            out[(m.label, m.task)] = f"partial: {m.n:,} of {total:,} answered"
    return out


def metric_tables(metrics: Sequence[Metric]) -> str:
    """One table per task (rows = labels, columns = metrics), tasks in the order first seen; a label
    that left questions of a task unanswered is marked partial in its tables."""
    by_task: dict[str, dict[tuple[str, str], Metric]] = defaultdict(dict)
    labels: list[str] = []
    for m in metrics:
        by_task[m.task][(m.label, m.metric)] = m
        if m.label not in labels:
            labels.append(m.label)
    partial = partial_answers(metrics)

    def notes(task: str) -> dict[str, str]:
        root = task.split("/", 1)[0]
        return {lab: partial[(lab, root)] for lab in labels if (lab, root) in partial}

    parts = []
    # Scene and VQA: one table each, columns = datasets / types.
    for family in ("scene", "vqa"):
        tasks = [t for t in by_task if t.startswith(family + "/")]
        if not tasks:
            continue
        cell = {(m.label, m.task.split("/", 1)[1]): m for t in tasks for m in by_task.pop(t).values()}
        cols = [t.split("/", 1)[1] for t in tasks]
        parts.append(_table(family, labels, cols, cell, notes(family)))
    for task, cells in by_task.items():
        present = list(dict.fromkeys(metric for (_, metric) in cells))
        main = [c for c in _MAIN_COLUMNS.get(task, ()) if c in present]
        cols = main + [c for c in present if c not in main]
        parts.append(_table(task, labels, cols, cells, notes(task)))
    return "\n".join(parts)


def write_report(
    out: Path, title: str, sections: Sequence[tuple[str, str]], plots: Sequence[Path] = ()
) -> Path:
    """``OUT/report.md`` from ``(heading, markdown)`` sections and the plots' file names."""
    text = [f"# {title}", ""]
    for heading, body in sections:
        text += [f"## {heading}", "", body.rstrip(), ""]
    if plots:
        text += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path = out / "report.md"
    _atomic_write(path, "\n".join(text))
    return path


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write and close a figure (every plot of the reports ends here)."""
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def plot_accuracy_vs_memory(
    out: Path, metrics: Sequence[Metric], memory_gib: Mapping[str, float]
) -> Path | None:
    """Accuracy (main metric of each task) against weight memory, one line per task."""
    main = {"acc@0.5", "accuracy", "rougeL"}
    series: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for m in metrics:
        if m.metric in main and m.label in memory_gib and "/size:" not in m.task and "/type:" not in m.task:
            if m.task in ("vqa/excluded",):
                continue
            series[f"{m.task} {m.metric}"].append((memory_gib[m.label], m.value, m.label))
    if not series:
        return None
    small = max(memory_gib.values()) < 1.0
    scale, unit = (1024.0, "MiB") if small else (1.0, "GiB")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    markers = "osD^vP*X"
    styles = ("-", "--", "-.", ":")
    for k, (name, pts) in enumerate(sorted(series.items())):
        pts = sorted((x * scale, y, lab) for x, y, lab in pts)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker=markers[k % len(markers)],
            linestyle=styles[k % len(styles)],
            markersize=9 - k % 4,
            label=name,
        )
    ticks = sorted((gib * scale, lab) for lab, gib in memory_gib.items())
    ax.set_xticks([x for x, _ in ticks])
    ax.set_xticklabels([f"{lab}\n{x:.3g}" for x, lab in ticks])
    ax.set_xlabel(f"precision and weight memory ({unit}: parameters + quantization state)")
    ax.set_ylabel("score (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("Accuracy against weight memory, per precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out / "accuracy_vs_memory.png")


def plot_size_groups(out: Path, metrics: Sequence[Metric]) -> Path | None:
    """acc@0.5 per size group, grouped bars per label."""
    cells = [m for m in metrics if "/size:" in m.task and m.metric == "acc@0.5"]
    if not cells:
        return None
    groups = list(dict.fromkeys(m.task for m in cells))
    labels = list(dict.fromkeys(m.label for m in cells))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups) * len(labels) ** 0.5 + 3), 4.5), dpi=110)
    width = 0.8 / len(labels)
    value = {(m.label, m.task): m for m in cells}
    for i, lab in enumerate(labels):
        xs = [g + (i - (len(labels) - 1) / 2) * width for g in range(len(groups))]
        ys = [value[(lab, t)].value if (lab, t) in value else 0.0 for t in groups]
        bars = ax.bar(xs, ys, width=width, label=lab)
        ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(groups)))
    n_of = {m.task: m.n for m in cells}
    ax.set_xticklabels(
        [f"{t.split('/size:')[0]}\n{t.split('/size:')[1]} (n={n_of[t]})" for t in groups], fontsize=8
    )
    ax.set_ylabel("acc@0.5 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Grounding accuracy (acc@0.5) per object size group")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "accuracy_per_size_group.png")


def plot_confusion(
    out: Path, label: str, dataset: str, truth: Sequence[str], answers: Sequence[str]
) -> Path | None:
    """Scene classification confusion matrix (rows = true class, columns = answer; 'other' = not a class)."""
    if not truth:
        return None
    classes = sorted(set(truth))
    cols = [*classes, "(other)"]
    index = {c: i for i, c in enumerate(classes)}
    import numpy as np

    mat = np.zeros((len(classes), len(cols)), dtype=int)
    for t, a in zip(truth, answers, strict=True):
        mat[index[t], index.get(a, len(classes))] += 1
    plt = _pyplot()
    side = max(4.0, 0.45 * len(cols) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1, side), dpi=110)
    im = ax.imshow(mat, cmap="Blues")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlabel("model answer")
    ax.set_ylabel("true class")
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            if mat[i, j]:
                color = "white" if mat[i, j] > mat.max() / 2 else "black"
                ax.text(j, i, str(mat[i, j]), ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="questions")
    ax.set_title(f"Scene classification, {dataset}, {label}")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{dataset}_{label}")
    return _save(fig, out / f"confusion_{safe}.png")


def plot_speed(out: Path, rows: Sequence[Mapping[str, object]]) -> Path | None:
    """Tiles/s per precision and batch size (grouped bars)."""
    pts = [r for r in rows if r.get("tiles_per_s") is not None]
    if not pts:
        return None
    labels = list(dict.fromkeys(str(r["label"]) for r in pts))
    sizes = sorted({int(r["batch_size"]) for r in pts})  # type: ignore[call-overload]
    value = {(str(r["label"]), int(r["batch_size"])): float(r["tiles_per_s"]) for r in pts}  # type: ignore[arg-type, call-overload]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    width = 0.8 / len(sizes)
    for i, b in enumerate(sizes):
        xs = [k + (i - (len(sizes) - 1) / 2) * width for k in range(len(labels))]
        ys = [value.get((lab, b), 0.0) for lab in labels]
        bars = ax.bar(xs, ys, width=width, label=f"batch {b}")
        ax.bar_label(bars, labels=[f"{y:.3g}" for y in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_ylabel("tiles per second")
    ax.set_title("Throughput per precision (tiles/s)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "tiles_per_second.png")


def write_plots(out: Path, metrics: Sequence[Metric], memory_gib: Mapping[str, float]) -> list[Path]:
    """The accuracy plots that the metrics allow."""
    made = [plot_accuracy_vs_memory(out, metrics, memory_gib), plot_size_groups(out, metrics)]
    return [p for p in made if p is not None]
