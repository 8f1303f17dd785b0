"""GeoChat load time, throughput and memory per precision (tiny test model on the CPU, or 7B on a GPU).

Each precision runs in its own subprocess (so its peak memory is its own):

1. load from the converted 16-bit weights (quantizing on load for int8/nf4/fp4 and torchao's int8wo/
   int4wo/fp8 (``--group-size`` for int4wo; ``--compiled`` for the compiled path on CUDA); the cache
   entry is deleted first, then written: the write time is reported apart);
2. quantized precisions only: load again, now from the cache;
3. generate for ``--tiles`` random 504 px tiles with one prompt, exactly ``--max-new-tokens`` tokens per
   tile (EOS suppressed so every precision does the same work), at each of ``--batch-sizes``, after
   a warm-up; tiles/s and generated tokens/s of the whole run (prefill included), the fastest of
   ``--repeat`` runs.

Memory: on the CPU the child's peak RSS (``VmHWM``); on CUDA ``torch.cuda.memory_allocated`` after the
load (the weights), and ``max_memory_allocated`` during loading and during generation.

Models:
* default: the tiny random GeoChat (``rsvg_desktop.core.model.testmodel``) converted once under
  ``--workdir`` (``build/bench/model``);
* ``--geochat7b-random``: a GeoChat-7B-shaped model (``geochat7b_config()``: LLaMA-7B + CLIP-L/14 at
  504 px) with random bf16 weights, initialised on the GPU and saved once under ``--workdir`` (14 GB),
  with the tiny model's tokenizer (so prompts are ~160 tokens instead of ~70: noted, small next to the
  1296 image tokens). Needs CUDA; no download. Defaults then: bf16, int8, nf4; 8 tiles; 32 new tokens;
  batch sizes 1 and 8.

Usage::

    python benchmarks/bench_model.py [--device cpu|cuda] [--precisions bf16,int8,nf4] [--json out.json]
    python benchmarks/bench_model.py --geochat7b-random --device cuda --json out7b.json

Prints a Markdown table (and the JSON of every measurement with ``--json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

logger = logging.getLogger("bench_model")

TINY_DEFAULTS = {
    "precisions": "bf16,fp16,fp32,int8,nf4,fp4,int8wo,int4wo",
    "group_size": 64,  # the tiny model's linears have 64 or 128 inputs
    "tiles": 8,
    "max_new_tokens": 16,
    "batch_sizes": "1,2,4,8",
    "repeat": 3,
}
BIG_DEFAULTS = {
    "precisions": "bf16,int8,nf4,int8wo,int4wo,fp8",
    "group_size": 128,
    "tiles": 8,
    "max_new_tokens": 32,
    "batch_sizes": "1,8",
    "repeat": 1,
}
QUERY = "airplanes"  # task "refer": the prompt a scene job sends to every tile


# --- memory readings --------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM; NaN where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# --- model folders --------------------------------------------------------------------------------
def ensure_tiny(workdir: Path) -> Path:
    """The tiny random GeoChat, converted (built once under ``workdir``)."""
    from rsvg_desktop.core.model.convert import convert_geochat
    from rsvg_desktop.core.model.testmodel import write_tiny_geochat

    out = workdir / "tiny-converted"
    if (out / "config.json").is_file() and (out / "rsvg_manifest.json").is_file():
        return out
    src = write_tiny_geochat(workdir / "tiny-original", seed=0, overwrite=True)
    if out.exists():
        shutil.rmtree(out)
    convert_geochat(src, out)
    return out


def ensure_geochat7b_random(workdir: Path, device: str) -> Path:
    """A GeoChat-7B-shaped converted folder with random bf16 weights (built once, on ``device``)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from rsvg_desktop.core.model.memory import geochat7b_config

    out = workdir / "geochat7b-random"
    stamp = out / "rsvg_manifest.json"
    if stamp.is_file() and (out / "config.json").is_file():
        return out
    tiny = ensure_tiny(workdir)
    tmp = workdir / "geochat7b-random.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for f in tiny.iterdir():  # tokenizer, processor, chat template: everything but weights/config
        if f.is_file() and not (
            f.suffix == ".safetensors"
            or f.name.endswith(".index.json")
            or f.name in ("config.json", "generation_config.json", "rsvg_manifest.json")
        ):
            shutil.copy2(f, tmp / f.name)
    tiny_cfg = json.loads((tiny / "config.json").read_text())
    config = geochat7b_config()
    config.image_token_index = tiny_cfg.get("image_token_index", tiny_cfg.get("image_token_id"))
    text = tiny_cfg["text_config"]
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if text.get(key) is not None:
            setattr(config.text_config, key, text[key])
    t0 = time.perf_counter()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(old)
    model = model.to(torch.bfloat16)
    logger.info("random 7B initialised on %s in %.1f s", device, time.perf_counter() - t0)
    t0 = time.perf_counter()
    model.save_pretrained(str(tmp))
    logger.info("random 7B saved in %.1f s", time.perf_counter() - t0)
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    (tmp / "rsvg_manifest.json").write_text(
        json.dumps(
            {
                "format": "rsvg-geochat-llava/1",
                "random_weights": True,
                "note": "GeoChat-7B-shaped model with RANDOM weights for benchmarks (tiny tokenizer)",
            },
            indent=2,
        )
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


# --- one precision (child process) ----------------------------------------------------------------
def measure(
    model_dir: Path,
    precision: str,
    device: str,
    cache_dir: Path,
    tiles: int,
    max_new: int,
    batch_sizes: list[int],
    repeat: int = 1,
    group_size: int = 128,
    compiled: bool = False,
) -> dict[str, Any]:
    import numpy as np
    import torch

    from rsvg_desktop.core.model.generate import GenerationRequest, GeoChatGenerator, auto_batch_size
    from rsvg_desktop.core.model.loader import LoadSpec, cache_entry_dir, load_model
    from rsvg_desktop.core.model.memory import estimate_weight_bytes
    from rsvg_desktop.core.model.precision import plan_precision

    cuda = device.startswith("cuda")
    spec = LoadSpec(model_dir, precision, device, cache_dir=cache_dir, group_size=group_size)
    plan = plan_precision(precision, device, group_size=group_size)
    entry = cache_entry_dir(spec, plan)
    if entry.exists():
        shutil.rmtree(entry)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    out: dict[str, Any] = {"precision": precision, "device": device, "compiled": compiled}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loaded = load_model(spec)
    out["load_total_s"] = time.perf_counter() - t0
    out["load_s"] = loaded.load_seconds
    out["cache_write_s"] = out["load_total_s"] - loaded.load_seconds if plan.quantized else None
    out.update(
        device_name=loaded.device_name,
        dtype=str(loaded.dtype).replace("torch.", ""),
        weight_bytes=loaded.weight_bytes,
        param_bytes=loaded.param_bytes,
        notes=list(loaded.notes),
    )
    est = estimate_weight_bytes(model_dir, precision, compute_dtype=loaded.dtype, group_size=group_size)
    out["estimate_bytes"] = est.total_bytes
    if cuda:
        out["load_peak_bytes"] = torch.cuda.max_memory_allocated()
    if plan.quantized:
        del loaded
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        loaded = load_model(spec)
        assert loaded.from_cache, "second load should come from the cache"
        out["load_cache_s"] = loaded.load_seconds
    else:
        out["load_cache_s"] = None
    if cuda:
        out["weights_allocated_bytes"] = torch.cuda.memory_allocated()
        out["auto_batch_size"] = auto_batch_size(loaded, max_new)

    gen = GeoChatGenerator(loaded, compiled=compiled)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (504, 504, 3), dtype=np.uint8) for _ in range(tiles)]
    reqs = [GenerationRequest(img, "refer", QUERY) for img in images]
    gen.generate(reqs[:1], max_new_tokens=2, batch_size=1)  # warm-up
    runs = []
    for bs in batch_sizes:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        seconds = float("inf")
        for _ in range(max(1, repeat)):  # the fastest of `repeat` runs (shared CPUs are noisy)
            sync()
            t0 = time.perf_counter()
            results = gen.generate(reqs, max_new_tokens=max_new, min_new_tokens=max_new, batch_size=bs)
            sync()
            seconds = min(seconds, time.perf_counter() - t0)
        n_out = sum(r.output_tokens for r in results)
        run = {
            "batch_size": bs,
            "seconds": seconds,
            "tiles_s": tiles / seconds,
            "tokens_s": n_out / seconds,
            "input_tokens": results[0].input_tokens,
        }
        if compiled:  # first batch of each padded shape, compilation included (the warm-up's too)
            run["first_shape_s"] = {f"{r}x{t}": s for (r, t), s in gen.first_shape_seconds.items()}
        if cuda:
            run["peak_bytes"] = torch.cuda.max_memory_allocated()
        runs.append(run)
        logger.info("%s batch %d: %.2f tiles/s, %.1f tok/s", precision, bs, run["tiles_s"], run["tokens_s"])
    out["runs"] = runs
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def run_child(args: argparse.Namespace, model_dir: Path, precision: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tmp:
        result_path = Path(tmp.name)
    cmd = [
        sys.executable,
        __file__,
        "--child",
        precision,
        "--model-dir",
        str(model_dir),
        "--device",
        args.device,
        "--tiles",
        str(args.tiles),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--batch-sizes",
        args.batch_sizes,
        "--repeat",
        str(args.repeat),
        "--group-size",
        str(args.group_size),
        *(["--compiled"] if args.compiled else []),
        "--workdir",
        str(args.workdir),
        "--result",
        str(result_path),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False)
    try:
        if proc.returncode != 0:
            return {"precision": precision, "error": f"child exited with {proc.returncode}"}
        result = json.loads(result_path.read_text())
        result["child_wall_s"] = time.perf_counter() - t0
        return result
    finally:
        result_path.unlink(missing_ok=True)


# --- report ---------------------------------------------------------------------------------------
def _size(n: float | None) -> str:
    if n is None:
        return "–"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def _sec(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def table(results: list[dict[str, Any]], cuda: bool) -> str:
    head = [
        "precision",
        "dtype",
        "weights",
        "estimate",
        "load 16-bit (s)",
        "cache write (s)",
        "load cache (s)",
        "tiles/s b=1",
        "tok/s b=1",
        "best tiles/s (b)",
        "best tok/s",
        "peak memory",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['precision']} | error: {r['error']} |" + " |" * (len(head) - 2))
            continue
        runs = r["runs"]
        one = next((x for x in runs if x["batch_size"] == 1), None)
        best = max(runs, key=lambda x: x["tiles_s"])
        if cuda:
            peak = max([r.get("load_peak_bytes", 0)] + [x.get("peak_bytes", 0) for x in runs])
            peak_text = f"{_size(peak)} (load {_size(r.get('load_peak_bytes'))})"
        else:
            peak_text = f"{r['peak_rss_mib']:.0f} MiB RSS"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["precision"],
                    r["dtype"],
                    _size(r["weight_bytes"]),
                    _size(r["estimate_bytes"]),
                    _sec(r["load_s"]),
                    _sec(r["cache_write_s"]),
                    _sec(r["load_cache_s"]),
                    f"{one['tiles_s']:.2f}" if one else "–",
                    f"{one['tokens_s']:.1f}" if one else "–",
                    f"{best['tiles_s']:.2f} ({best['batch_size']})",
                    f"{best['tokens_s']:.1f}",
                    peak_text,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (also checked by ``benchmarks/gpu.sh --dry-run``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--precisions", help="comma-separated (default: all; bf16,int8,nf4 for 7B)")
    parser.add_argument("--tiles", type=int, help="tiles per run (default 8)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens generated per tile (16; 32 for 7B)")
    parser.add_argument("--batch-sizes", help="comma-separated batch sizes (1,2,4,8; 1,8 for 7B)")
    parser.add_argument(
        "--geochat7b-random", action="store_true", help="GeoChat-7B shape, random weights (GPU)"
    )
    parser.add_argument("--repeat", type=int, help="runs per batch size, the fastest counts (3; 1 for 7B)")
    parser.add_argument("--group-size", type=int, help="int4wo group size (64 tiny; 128 for 7B)")
    parser.add_argument(
        "--compiled", action="store_true", help="CUDA: the compiled generation path (static cache)"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench" / "model")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    defaults = BIG_DEFAULTS if args.geochat7b_random else TINY_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr
    )
    batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]

    if args.child:
        result = measure(
            args.model_dir,
            args.child,
            args.device,
            args.workdir / "cache",
            args.tiles,
            args.max_new_tokens,
            batch_sizes,
            args.repeat,
            args.group_size,
            args.compiled,
        )
        args.result.write_text(json.dumps(result))
        return

    import torch
    import transformers

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    if args.geochat7b_random and not cuda:
        parser.error("--geochat7b-random needs --device cuda (a random 7B on the CPU is not worth measuring)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = (
        ensure_geochat7b_random(args.workdir, args.device)
        if args.geochat7b_random
        else ensure_tiny(args.workdir)
    )
    prepare_s = time.perf_counter() - t0
    results = []
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        results.append(run_child(args, model_dir, precision))
        if args.json:  # written after every precision so an interrupted run keeps what it measured
            args.json.write_text(json.dumps({"results": results}, indent=2))

    try:
        import bitsandbytes

        bnb_version = bitsandbytes.__version__
    except ImportError:
        bnb_version = "missing"
    device_name = (
        torch.cuda.get_device_name(torch.device(args.device))
        if cuda
        else (platform.processor() or platform.machine())
    )
    info = {
        "model": "GeoChat-7B shape, random weights" if args.geochat7b_random else "tiny random GeoChat",
        "model_dir": str(model_dir),
        "prepare_s": prepare_s,
        "device": args.device,
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bnb_version,
        "tiles": args.tiles,
        "max_new_tokens": args.max_new_tokens,
        "batch_sizes": batch_sizes,
        "repeat": args.repeat,
        "python": platform.python_version(),
    }
    print(
        f"\n{info['model']} on {args.device} ({device_name}); torch {torch.__version__}, transformers "
        f"{transformers.__version__}, bitsandbytes {bnb_version}; {args.tiles} tiles x "
        f"{args.max_new_tokens} new tokens, batch sizes {batch_sizes}; "
        f"model prepared in {prepare_s:.1f} s\n"
    )
    print(table(results, cuda))
    for r in results:
        for note in r.get("notes", []):
            print(f"- {r['precision']}: {note}")
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
