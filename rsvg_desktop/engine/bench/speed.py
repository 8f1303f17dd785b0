"""``rsvg bench speed``: what each precision costs in time, memory and size.

Each precision is measured in a fresh process (``spawn``), so that its peak memory is its own:
load time (:attr:`LoadedModel.load_seconds`); from one tile generating N forced new tokens (the best of
``repeats``), clocked at every token: time to first token, decode tokens/s at batch 1
(``(N − 1) / (t_N − t_1)``) and tiles/s at batch 1; tiles/s at each larger batch size (each tile
generating N forced tokens); peak memory (CUDA:
``max_memory_allocated``; CPU: the process's peak resident set, ``ru_maxrss``, and beside it the peak of
its private memory, ``RssAnon`` sampled every 50 ms: the resident set also counts the checkpoint's
memory-mapped pages read while loading, which the kernel can drop when the weights have been
converted), and the weights' size as
loaded (parameters + buffers + quantization state). A warm-up generation runs first and is not timed,
except for a single repeat on the CPU (``--shape-of`` there: a tile takes minutes, and a first call's
set-up is negligible beside it).

``--shape-of geochat-7b`` measures GeoChat-7B's exact architecture (LLaMA-7B + CLIP ViT-L/14 at 504 px,
:func:`rsvg_desktop.core.model.memory.geochat7b_config`) with random weights: a converted checkpoint
of that shape is written once (:mod:`rsvg_desktop.engine.bench.shape_model`: bf16 safetensors, 2 GiB
shards, memory flat while writing) with the test model's tokenizer and processor (the ``<image>`` token's
id is the tokenizer's; sizes are GeoChat's).
Speed and memory do not depend on the weights' values; accuracy does, and needs the real weights.

A precision that cannot be measured (no such GPU, not enough memory, the measuring process killed by
the system) becomes a row that says why, and the others go on. Each finished row is appended to
``OUT/speed_rows.jsonl`` and the report is rewritten after every precision, so a long run keeps what it
measured; run the same command again and the precisions already measured with the same settings are
taken from that file instead of being measured again (failed ones are tried again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE, Precision
from rsvg_desktop.engine.bench.report import plot_speed, write_report
from rsvg_desktop.engine.bench.shape_model import write_shape_model
from rsvg_desktop.errors import ConfigError, RsvgError

__all__ = ["SpeedRow", "measure_precision", "run_speed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpeedRow:
    """One precision's figures (``None`` where not measured). Times in seconds, sizes in bytes."""

    label: str
    device: str
    load_s: float
    from_cache: bool
    weight_bytes: int
    peak_bytes: int
    peak_kind: str
    ttft_s: float | None = None
    decode_tok_s: float | None = None
    tiles_per_s: tuple[tuple[int, float], ...] = ()
    new_tokens: int = 0
    random_weights: bool = False
    error: str = ""  # why this precision could not be measured ("" when it was)
    peak_private_bytes: int | None = None  # CPU: peak anonymous (private) resident memory

    @classmethod
    def failed(cls, label: str, device: str, error: str) -> SpeedRow:
        return cls(label, device, 0.0, False, 0, 0, "", error=error)

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["tiles_per_s"] = [list(t) for t in self.tiles_per_s]
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> SpeedRow:
        fields = dict(d)
        fields["tiles_per_s"] = tuple((int(b), float(v)) for b, v in fields.get("tiles_per_s") or ())  # type: ignore[attr-defined]
        return cls(**fields)  # type: ignore[arg-type]


# --- measuring one precision (in its own process) -------------------------------------------------
def _private_bytes() -> int | None:
    """This process's anonymous resident memory (Linux ``RssAnon``), None where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class _PrivatePeak:
    """Samples :func:`_private_bytes` in a daemon thread; ``peak`` is the largest value seen."""

    def __init__(self, every_s: float = 0.05) -> None:
        import threading

        self.peak = _private_bytes()
        self._stop = threading.Event()
        self._every = every_s
        self._thread = threading.Thread(target=self._run, name="rsvg-private-peak", daemon=True)
        if self.peak is not None:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._take()

    def _take(self) -> None:
        now = _private_bytes()
        if now is not None and (self.peak is None or now > self.peak):
            self.peak = now

    def stop(self) -> int | None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._take()
        return self.peak


def _peak_bytes(device: str) -> tuple[int, str]:
    import resource

    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated()), "CUDA peak allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "peak RSS"


def _test_tile(size: int) -> Any:
    """A smooth ``(size, size, 3)`` uint8 ramp: the same tile for every precision."""
    import numpy as np

    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return np.stack(
        [np.add.outer(ramp, ramp) // 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], -1
    )


class _Stopwatch:
    """Times generations of one request (CUDA work is synchronised before each clock reading)."""

    def __init__(self, gen: Any, req: Any, cuda: bool) -> None:
        import torch

        self._torch = torch
        self._gen = gen
        self._req = req
        self._cuda = cuda

    def sync(self) -> None:
        if self._cuda:
            self._torch.cuda.synchronize()

    def timed(self, n_tiles: int, tokens: int) -> float:
        """Seconds for ``n_tiles`` copies of the tile in one batch, ``tokens`` forced new tokens each."""
        self.sync()
        t0 = time.perf_counter()
        self._gen.generate(
            [self._req] * n_tiles, max_new_tokens=tokens, min_new_tokens=tokens, batch_size=n_tiles
        )
        self.sync()
        return time.perf_counter() - t0

    def clocked(self, tokens: int) -> tuple[float, list[float]]:
        """One tile, ``tokens`` forced tokens: (total seconds, seconds since start at each new token)."""
        stamps: list[float] = []

        def stamp() -> bool:  # the per-token cancellation check doubles as a clock
            self.sync()
            stamps.append(time.perf_counter())
            return False

        gen = self._gen
        gen.should_stop = stamp
        try:
            self.sync()
            t0 = time.perf_counter()
            gen.generate([self._req], max_new_tokens=tokens, min_new_tokens=tokens, batch_size=1)
            self.sync()
            total = time.perf_counter() - t0
        finally:
            gen.should_stop = None
        return total, [t - t0 for t in stamps]


@dataclass(frozen=True, slots=True)
class _Timings:
    ttft_s: float | None = None
    decode_tok_s: float | None = None
    tiles_per_s: tuple[tuple[int, float], ...] = ()


def _time_generation(
    watch: _Stopwatch, batch_sizes: Sequence[int], new_tokens: int, repeats: int, warm_up: bool
) -> _Timings:
    """Time to first token and decode rate from the best of ``repeats`` clocked tiles, then tiles/s at
    each batch size (batch 1 from that best tile)."""
    if new_tokens <= 0:
        return _Timings()
    if warm_up:
        watch.timed(1, 1)  # kernel choice, allocator
    best_total, best_stamps = min((watch.clocked(new_tokens) for _ in range(repeats)), key=lambda r: r[0])
    decode = None
    if new_tokens > 1 and best_stamps[-1] > best_stamps[0]:
        decode = (len(best_stamps) - 1) / (best_stamps[-1] - best_stamps[0])
    tiles = [(b, 1 / best_total if b == 1 else b / watch.timed(b, new_tokens)) for b in batch_sizes]
    return _Timings(best_stamps[0], decode, tuple(tiles))


def measure_precision(
    model_dir: str,
    precision: str,
    device: str,
    batch_sizes: Sequence[int],
    new_tokens: int,
    use_cache: bool = True,
    repeats: int = 2,
    group_size: int = DEFAULT_INT4_GROUP_SIZE,
) -> SpeedRow:
    """Load ``model_dir`` at ``precision`` and time it (run this in a fresh process for a clean peak)."""
    with contextlib.suppress(OSError):  # out of memory: the kernel ends this process first, not a neighbour
        Path("/proc/self/oom_score_adj").write_text("1000")
    from rsvg_desktop.core.model.generate import GenerationRequest, GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadSpec, load_model

    private = _PrivatePeak()
    loaded = load_model(
        LoadSpec(
            Path(model_dir),
            Precision.parse(precision),
            device=device,
            use_cache=use_cache,
            group_size=group_size,
        )
    )
    cuda = loaded.device.startswith("cuda")
    gen = GeoChatGenerator(loaded)
    req = GenerationRequest(_test_tile(gen.image_size), task="refer", query="airplanes")
    # No warm-up for a single CPU repeat: a tile takes minutes there, a first call's set-up is negligible.
    timings = _time_generation(
        _Stopwatch(gen, req, cuda), batch_sizes, new_tokens, repeats, warm_up=cuda or repeats > 1
    )
    peak, kind = _peak_bytes(loaded.device)
    private_peak = private.stop()
    return SpeedRow(
        label=loaded.precision.value,
        device=loaded.device_name,
        load_s=loaded.load_seconds,
        from_cache=loaded.from_cache,
        weight_bytes=loaded.weight_bytes,
        peak_bytes=peak,
        peak_kind=kind,
        peak_private_bytes=None if cuda else private_peak,
        ttft_s=timings.ttft_s,
        decode_tok_s=timings.decode_tok_s,
        tiles_per_s=timings.tiles_per_s,
        new_tokens=new_tokens,
        random_weights=loaded.random_weights,
    )


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def speed_table(rows: Sequence[SpeedRow]) -> str:
    sizes = sorted({b for r in rows for b, _ in r.tiles_per_s})
    head = ["precision", "device", "load (s)", "TTFT (s)", "decode (tok/s, batch 1)"]
    head += [f"tiles/s (batch {b})" for b in sizes] + ["peak memory (GiB)", "weights as loaded (GiB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.error:
            cells = [r.label, r.device, f"not measured: {r.error}"] + ["–"] * (len(head) - 3)
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            continue
        tps = dict(r.tiles_per_s)
        cells = [r.label, r.device, f"{r.load_s:.1f}" + (" (cache)" if r.from_cache else "")]
        cells += [_fmt(r.ttft_s, ".2f"), _fmt(r.decode_tok_s, ".2f")]
        cells += [_fmt(tps.get(b), ".3g") for b in sizes]
        peak = f"{r.peak_bytes / 2**30:.3g} ({r.peak_kind}"
        if r.peak_private_bytes is not None:
            peak += f"; {r.peak_private_bytes / 2**30:.3g} private"
        cells += [peak + ")", f"{r.weight_bytes / 2**30:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


ROWS_FILE = "speed_rows.jsonl"


def _died_message(exc: BaseException) -> str:
    return (
        "the measuring process died (killed by the system, most likely for lack of memory: "
        f"this precision does not fit on this machine) [{type(exc).__name__}]"
    )


def _read_rows(path: Path, setup: dict[str, object]) -> dict[str, SpeedRow]:
    """Rows measured earlier with the same ``setup`` (failed ones are not kept: they are tried again)."""
    found: dict[str, SpeedRow] = {}
    if not path.is_file():
        return found
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
            if record.get("setup") != setup:
                continue
            row = SpeedRow.from_json(record["row"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s line %d: ignored (%s)", path, n, exc)
            continue
        if not row.error:
            found[row.label] = row
    return found


def _write_outputs(
    out: Path,
    rows: Sequence[SpeedRow],
    shape_of: str | None,
    model_dir: object,
    new_tokens: int,
    reused: Sequence[str],
) -> Path:
    from rsvg_desktop.core.eval.score import Metric
    from rsvg_desktop.engine.bench.report import write_metrics

    metrics: list[Metric] = []
    for r in rows:
        if r.error:
            continue
        metrics.append(Metric(r.label, "speed", "load_s", r.load_s, 1))
        if r.ttft_s is not None:
            metrics.append(Metric(r.label, "speed", "ttft_s", r.ttft_s, 1))
        if r.decode_tok_s is not None:
            metrics.append(Metric(r.label, "speed", "decode_tok_s", r.decode_tok_s, r.new_tokens - 1))
        for b, v in r.tiles_per_s:
            metrics.append(Metric(r.label, "speed", f"tiles_per_s@{b}", v, b))
        metrics.append(Metric(r.label, "memory", "peak_gib", r.peak_bytes / 2**30, 1))
        if r.peak_private_bytes is not None:
            metrics.append(Metric(r.label, "memory", "peak_private_gib", r.peak_private_bytes / 2**30, 1))
        metrics.append(Metric(r.label, "memory", "weights_gib", r.weight_bytes / 2**30, 1))
    write_metrics(out, metrics)
    plot = plot_speed(
        out,
        [
            {"label": r.label, "batch_size": b, "tiles_per_s": v}
            for r in rows
            if not r.error
            for b, v in r.tiles_per_s
        ],
    )
    what = f"{shape_of} architecture, RANDOM WEIGHTS" if shape_of else str(model_dir)
    notes = [
        f"model: {what}; {new_tokens} forced new tokens per tile; a warm-up generation is not timed"
        + (" (none for one repeat on the CPU)" if shape_of else ""),
        "each precision is measured in a fresh process (peak memory is its own)",
    ]
    if reused:
        notes.append(f"taken from an earlier run in this folder ({ROWS_FILE}): {', '.join(reused)}")
    if any(r.random_weights for r in rows):
        notes.append("RANDOM WEIGHTS: speed and memory are real; accuracy figures need the real weights")
    return write_report(
        out,
        "Speed and memory",
        [("Speed and memory", speed_table(rows)), ("Notes", "\n".join(f"- {n}" for n in notes))],
        [plot] if plot else [],
    )


def _check_speed_args(
    model_dir: str | Path | None, shape_of: str | None, batch_sizes: Sequence[int], new_tokens: int
) -> None:
    if (model_dir is None) == (shape_of is None):
        raise ConfigError("give exactly one of --model DIR and --shape-of NAME")
    if any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be positive, got {list(batch_sizes)}")
    if new_tokens < 0:
        raise ConfigError(f"--new-tokens must be 0 or more, got {new_tokens}")


def _shape_checkpoint(
    shape_of: str, work_dir: str | Path | None, progress: Callable[[str], None] | None
) -> Path:
    """The random checkpoint of ``shape_of``'s architecture, written once into the work folder."""
    from rsvg_desktop.engine.model_files import data_dir, ensure_test_model

    where = Path(work_dir) if work_dir else data_dir() / "shapes"
    if progress:
        progress(f"writing a random {shape_of} checkpoint in {where} (once)")
    return write_shape_model(where / shape_of, ensure_test_model(), shape_of)


def _measure_in_fresh_process(
    ctx: Any,
    model_dir: str,
    label: str,
    device: str,
    batch_sizes: Sequence[int],
    new_tokens: int,
    use_cache: bool,
    repeats: int,
    group_size: int,
) -> SpeedRow:
    """:func:`measure_precision` in a process of its own; a row that says why when it cannot be measured."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            return pool.submit(
                measure_precision,
                model_dir,
                label,
                device,
                list(batch_sizes),
                new_tokens,
                use_cache,
                repeats,
                group_size,
            ).result()
    except RsvgError as exc:
        return SpeedRow.failed(label, device, str(exc))
    except BrokenProcessPool as exc:
        return SpeedRow.failed(label, device, _died_message(exc))
    except Exception as exc:  # a bug in one precision must not lose the others' figures
        log.debug("measuring %s failed", label, exc_info=True)
        return SpeedRow.failed(label, device, f"internal error: {type(exc).__name__}: {exc}")


def _append_row(rows_path: Path, setup: dict[str, object], row: SpeedRow) -> None:
    """One finished row into ``speed_rows.jsonl`` with the settings it was measured at."""
    with rows_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"setup": setup, "row": row.as_json()}) + "\n")


def run_speed(
    precisions: Sequence[str | Precision],
    out: str | Path,
    *,
    model_dir: str | Path | None = None,
    shape_of: str | None = None,
    device: str = "auto",
    batch_sizes: Sequence[int] = (1, 8, 32),
    new_tokens: int = 16,
    work_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    group_size: int = DEFAULT_INT4_GROUP_SIZE,
) -> tuple[list[SpeedRow], Path]:
    """``rsvg bench speed``: one fresh process per precision; writes report.md, metrics.json, a plot.

    Returns every precision's row in the order asked; rows with ``error`` set were not measured.
    """
    _check_speed_args(model_dir, shape_of, batch_sizes, new_tokens)
    precs = list(dict.fromkeys(Precision.parse(p) for p in precisions))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    setup: dict[str, object] = {
        "model": shape_of if shape_of else str(Path(model_dir).resolve()),  # type: ignore[arg-type]
        "device": device,
        "batch_sizes": list(batch_sizes),
        "new_tokens": new_tokens,
        "group_size": group_size,
    }
    rows_path = out / ROWS_FILE
    earlier = _read_rows(rows_path, setup)
    if shape_of is not None and any(p.value not in earlier for p in precs):
        model_dir = _shape_checkpoint(shape_of, work_dir, progress)
    use_cache = shape_of is None  # no multi-GB quantization cache of random weights
    rows: list[SpeedRow] = []
    reused: list[str] = []
    ctx = multiprocessing.get_context("spawn")
    for p in precs:
        if p.value in earlier:
            rows.append(earlier[p.value])
            reused.append(p.value)
            if progress:
                progress(f"{p.value}: measured earlier in {rows_path}")
            continue
        if progress:
            progress(f"measuring {p.value}")
        row = _measure_in_fresh_process(
            ctx,
            str(model_dir),
            p.value,
            device,
            batch_sizes,
            new_tokens,
            use_cache,
            1 if shape_of else 2,
            group_size,
        )
        if row.error:
            log.info("%s not measured: %s", p.value, row.error)
            if progress:
                progress(f"{p.value}: not measured: {row.error}")
        rows.append(row)
        _append_row(rows_path, setup, row)
        log.info("speed %s", asdict(row))
        if p is not precs[-1]:  # the report so far, in case the run stops before the end
            _write_outputs(out, rows, shape_of, model_dir, new_tokens, reused)
    return rows, _write_outputs(out, rows, shape_of, model_dir, new_tokens, reused)
