"""q4cal against plain NF4 and int8 on a small LLaMA trained here: quality, ablation, cost.

Random weights say nothing about quantization quality (no outliers, no structure), and no real
pretrained LLaMA can be downloaded here. So this script trains a small LLaMA-architecture byte-level
language model on Python's own standard-library source (text that ships with every Python), for a few
minutes on the CPU, caches it under ``build/q4cal-llama/`` and then compares, on held-out files
disjoint from both the training files and the calibration files:

* full precision (fp32, the reference), LLM.int8, plain NF4 and q4cal (real bitsandbytes layers
  for all three: q4cal is the calibrated weights quantized by bitsandbytes' ordinary NF4);
* ablations: q4cal with scales only, with clipping only, and both;
* per-block output error (relative, each decoder layer's output), relative error and cosine similarity
  of the final hidden states, next-token agreement with full precision, perplexity;
* calibration time and peak memory, and an estimate for GeoChat-7B.

The model, its data and its training live in ``tests/core/model/byte_llama.py``: the q4cal test trains
the same model at test size.

Usage: ``.venv/bin/python benchmarks/bench_q4cal.py [--train-seconds 240] [--retrain]``.
"""

from __future__ import annotations

# ruff: noqa: E501
import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "core" / "model"))  # the model and its data, shared with the tests
from byte_llama import (  # noqa: E402
    corpus_files,
    evaluate,
    llama_config,
    load_bytes,
    split_files,
    windows,
)
from byte_llama import train as train_model  # noqa: E402

BUILD = ROOT / "build" / "q4cal-llama"
SEQ = 256


def build_config() -> Any:
    return llama_config(hidden=256, intermediate=704, layers=6, heads=4, seq=SEQ)


def train(seconds: float, seed: int = 0) -> Path:
    """Train the model for ``seconds`` of wall time (AdamW, cosine decay) and save it under build/."""
    train_files, _, _ = split_files(corpus_files())
    model, info = train_model(
        build_config(),
        load_bytes(train_files),
        seconds=seconds,
        seed=seed,
        log=lambda s: print(s, flush=True),
    )
    BUILD.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(BUILD))
    (BUILD / "training.json").write_text(json.dumps(info, indent=2))
    return BUILD


def load_fp() -> Any:
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(str(BUILD), dtype=torch.float32).eval()


def load_bnb(path: Path, kind: str) -> Any:
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    if kind == "int8":
        cfg = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    else:
        cfg = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=["lm_head"],
        )
    return LlamaForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, quantization_config=cfg, device_map={"": "cpu"}
    ).eval()


def calibrated_copy(calib: torch.Tensor, **flags: Any) -> tuple[Path, dict[str, Any]]:
    """Calibrate a fresh fp32 copy on ``calib`` sequences, save it (fp32) to a temp folder."""
    from rsvg_desktop.core.model.calibrate.search import (
        CalibrationSettings,
        calibrate_layers,
        capture_layer_inputs,
        decoder_layers,
    )

    model = load_fp()
    layers = decoder_layers(model)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.no_grad():
        inputs = capture_layer_inputs(model, [{"input_ids": row[None]} for row in calib], layers)
        result = calibrate_layers(layers, inputs, CalibrationSettings(**flags))
    seconds = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp(prefix="q4cal-bench-"))
    model.save_pretrained(str(out))
    info = result.to_dict()
    info["wall_seconds"] = seconds
    info["peak_rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return out, info


def estimate_7b(info: dict[str, Any], calib: torch.Tensor, small_params: int) -> str:
    """A scaled estimate of GeoChat-7B calibration cost from the measured small run (FLOP-proportional)."""
    small_tokens = calib.numel()
    big_params = 6.5e9  # the language model's decoder layers
    big_tokens = 32 * 620  # 32 (tile, question) pairs of ≈ 576 image + ≈ 44 text tokens
    flops_small = 2 * small_params * small_tokens
    flops_big = 2 * big_params * big_tokens
    # the search is dominated by block forwards (a fixed number per layer) × tokens × layer params
    factor = flops_big / flops_small
    cpu_s = info["wall_seconds"] * factor
    gpu_s = cpu_s / 300  # an H100 runs these bf16 matmuls ≈300× faster than this 2-core CPU (fp32)
    act = 32 * 620 * 4096 * 2 * 3  # inputs, FP references and next inputs of one block, bf16
    return (
        f"GeoChat-7B estimate: ≈{factor:.0f}× the small run's work → ≈{gpu_s / 60:.0f} min on one H100 "
        f"(≈{cpu_s / 3600:.0f} h on this CPU); peak memory ≈ 13.5 GB (bf16 model) + {act / 2**30:.1f} GiB "
        "activations + one block's weight copies (< 1 GiB)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-seconds", type=float, default=240.0)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--calib", type=int, default=32, help="calibration sequences (256 bytes)")
    ap.add_argument("--held", type=int, default=64, help="held-out sequences (256 bytes)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))

    if args.retrain or not (BUILD / "config.json").is_file():
        print(f"training the small LLaMA for {args.train_seconds:.0f} s on stdlib source …", flush=True)
        train(args.train_seconds)
    training = json.loads((BUILD / "training.json").read_text())
    _, calib_files, held_files = split_files(corpus_files())
    calib = windows(load_bytes(calib_files), args.calib, SEQ, seed=1)
    held = windows(load_bytes(held_files), args.held, SEQ, seed=2)
    fp = load_fp()
    n_params = sum(p.numel() for n, p in fp.named_parameters() if ".layers." in n)
    print(
        f"model: LLaMA, 6 layers, hidden 256, {n_params / 1e6:.2f} M decoder parameters, byte vocabulary; "
        f"trained {training['steps']} steps in {training['seconds']:.0f} s, train loss {training['final_loss']:.3f}"
    )
    print(
        f"data: {len(calib_files)} calibration files, {len(held_files)} held-out files (disjoint from training)"
    )
    ref = evaluate(fp, None, held)
    rows: dict[str, dict[str, Any]] = {
        "fp32": {**ref, "agree": 1.0, "hidden_rel_err": 0.0, "hidden_cos": 1.0}
    }
    rows["int8"] = evaluate(load_bnb(BUILD, "int8"), ref, held)
    rows["nf4"] = evaluate(load_bnb(BUILD, "nf4"), ref, held)
    infos = {}
    for name, flags in (
        ("q4cal scales only", {"use_clip": False}),
        ("q4cal clip only", {"use_scales": False}),
        ("q4cal", {}),
    ):
        path, info = calibrated_copy(calib, **flags)
        infos[name] = info
        rows[name] = evaluate(load_bnb(path, "nf4"), ref, held)

    print("\nheld-out quality (64 × 256 bytes; fp32 reference):")
    print(f"{'precision':<20} {'ppl':>8} {'next-tok agree':>15} {'hidden rel err':>15} {'hidden cos':>11}")
    for name, r in rows.items():
        print(
            f"{name:<20} {r['ppl']:8.3f} {r['agree']:15.4f} {r['hidden_rel_err']:15.4f} {r['hidden_cos']:11.5f}"
        )
    print("\nper-block (decoder layer output) relative error on held-out data:")
    for name, r in rows.items():
        if "block_rel_err" in r:
            print(f"  {name:<20} " + " ".join(f"{e:.4f}" for e in r["block_rel_err"]))
    nf4, cal = rows["nf4"], rows["q4cal"]
    print(
        f"\nq4cal vs plain NF4 (held out): hidden rel err {nf4['hidden_rel_err']:.4f} → {cal['hidden_rel_err']:.4f} "
        f"({100 * (1 - cal['hidden_rel_err'] / nf4['hidden_rel_err']):.1f} % lower); "
        f"ppl gap to fp32 {nf4['ppl'] - ref['ppl']:+.4f} → {cal['ppl'] - ref['ppl']:+.4f}; "
        f"next-token disagreement {1 - nf4['agree']:.4f} → {1 - cal['agree']:.4f}"
    )
    info = infos["q4cal"]
    print("\ncalibration (q4cal):")
    print(f"  entropies: {info['entropies']}")
    for b in info["blocks"]:
        print(
            f"  block {b['layers']}: alphas {b['alphas']} clip kept {b['clip_kept']} loss {b['loss_nf4']:.5f} → {b['loss']:.5f}"
        )
    print(f"  time {info['wall_seconds']:.1f} s, peak RSS growth {info['peak_rss_growth_mib']:.0f} MiB")
    print("  " + estimate_7b(info, calib, n_params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
