"""Peak memory of converting a GeoChat checkpoint, against the checkpoint's size.

Writes a medium random checkpoint in GeoChat's published layout (default: LLaMA hidden 1024 × 8 layers,
CLIP width 1024 × 6 layers, float16 — a few hundred MB), then converts it in a fresh subprocess that reports
its peak resident memory *during the conversion only* (after a warm-up conversion of a tiny model has done
the imports, ``/proc/self/clear_refs`` resets ``VmHWM``), split into anonymous memory (what the converter
allocates) and file-backed pages (the
memory-mapped input shards, which the kernel can drop at any time).

    .venv/bin/python benchmarks/bench_convert.py [--hidden 1024 --layers 8 ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("bench_convert")


def _status() -> dict[str, int]:
    """``/proc/self/status`` memory fields, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _tensor_infos(info):  # one ShardInfo per tensor, to reuse ShardInfo.nbytes
    from rsvg_desktop.core.model.checkpoint import ShardInfo

    return [ShardInfo(info.path, {k: v}) for k, v in info.tensors.items()]


def measure(src: str, out: str) -> dict:
    """Convert ``src`` → ``out`` in this process and return memory figures (run in a fresh process)."""
    from rsvg_desktop.core.model.convert import convert_geochat
    from rsvg_desktop.core.model.testmodel import write_tiny_geochat

    # Warm-up on a tiny model so lazy imports (transformers, tokenizers, PIL...) are not counted.
    with tempfile.TemporaryDirectory() as warm:
        convert_geochat(write_tiny_geochat(Path(warm) / "tiny"), Path(warm) / "tiny-out")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status()
    peaks = {"RssAnon": base["RssAnon"], "RssFile": base["RssFile"]}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            s = _status()
            for k in peaks:
                peaks[k] = max(peaks[k], s[k])
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.monotonic()
    report = convert_geochat(src, out, overwrite=True)
    seconds = time.monotonic() - start
    stop.set()
    thread.join()
    end = _status()
    return {
        "seconds": round(seconds, 2),
        "rss_before": base["VmRSS"],
        "vm_hwm": end["VmHWM"],
        "peak_delta": end["VmHWM"] - base["VmRSS"],
        "peak_anon_delta": peaks["RssAnon"] - base["RssAnon"],
        "peak_file_delta": peaks["RssFile"] - base["RssFile"],
        "bytes_written": report.bytes_written,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--intermediate", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--vision-hidden", type=int, default=1024)
    parser.add_argument("--vision-layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--workdir", type=Path, default=None, help="keep checkpoints here")
    parser.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        print(json.dumps(measure(*args._measure)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from rsvg_desktop.core.model.testmodel import write_tiny_geochat

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-convert-"))
    try:
        src = write_tiny_geochat(
            work / "geochat-medium",
            overwrite=True,
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            intermediate_size=args.intermediate,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            vision_hidden_size=args.vision_hidden,
            vision_intermediate_size=4 * args.vision_hidden,
            vision_num_hidden_layers=args.vision_layers,
            vision_num_attention_heads=16,
        )
        shards = sorted(src.glob("pytorch_model-*.bin"))
        total = sum(p.stat().st_size for p in shards)
        from rsvg_desktop.core.model.checkpoint import scan_weights

        largest_tensor = max(i.nbytes for p in shards for i in _tensor_infos(scan_weights(p)))
        log.info(
            "checkpoint: %s, %d shards, %.1f MB (largest shard %.1f MB)",
            src,
            len(shards),
            total / 1e6,
            max(p.stat().st_size for p in shards) / 1e6,
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--_measure", str(src), str(work / "converted")],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        mb = 1e6
        print(f"checkpoint size (shards)            : {total / mb:8.1f} MB")
        print(f"converted size (safetensors)        : {r['bytes_written'] / mb:8.1f} MB")
        print(f"conversion time                     : {r['seconds']:8.2f} s")
        print(f"RSS before conversion (imports)     : {r['rss_before'] / mb:8.1f} MB")
        print(
            f"peak RSS delta (VmHWM - RSS before) : {r['peak_delta'] / mb:8.1f} MB"
            f"  = {100 * r['peak_delta'] / total:.1f} % of the checkpoint"
        )
        print(
            f"  of which anonymous (allocations)  : {r['peak_anon_delta'] / mb:8.1f} MB"
            f"  = {100 * r['peak_anon_delta'] / total:.1f} %  (sampled every 5 ms)"
        )
        print(
            f"  of which file-backed (mmap input) : {r['peak_file_delta'] / mb:8.1f} MB"
            f"  = {100 * r['peak_file_delta'] / total:.1f} %  (reclaimable page cache)"
        )
        print(f"largest single tensor (for scale)   : {largest_tensor / mb:8.1f} MB")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
