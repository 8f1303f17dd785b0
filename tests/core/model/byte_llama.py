"""A small LLaMA-architecture byte-level language model trained here on Python's own standard-library
source (text that ships with every Python, so the same on every machine with this Python).

Random weights say nothing about quantization quality (no outlier channels, no structure), and no real
pretrained LLaMA can be downloaded in CI: q4cal is measured on this model at benchmark size
(``benchmarks/bench_q4cal.py``) and tested on it at test size (``tests/core/model/test_calibrate.py``).
Everything here is deterministic for a given seed and step count.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "corpus_files",
    "evaluate",
    "llama_config",
    "load_bytes",
    "split_files",
    "train",
    "windows",
]


def corpus_files() -> list[Path]:
    """The standard library's own .py files (sorted: the same on every machine with this Python)."""
    stdlib = Path(os.__file__).parent
    return sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 2000)


def split_files(files: list[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """Train / calibration / held-out evaluation: disjoint sets of files (every 10th file is held out,
    every 10th+1 calibrates, the rest trains)."""
    train = [f for i, f in enumerate(files) if i % 10 not in (0, 1)]
    calib = [f for i, f in enumerate(files) if i % 10 == 1]
    held = [f for i, f in enumerate(files) if i % 10 == 0]
    return train, calib, held


def load_bytes(files: list[Path]) -> torch.Tensor:
    data = b"\n".join(f.read_bytes() for f in files)
    return torch.tensor(list(data), dtype=torch.long)


def windows(data: torch.Tensor, n: int, seq: int, seed: int) -> torch.Tensor:
    """``n`` windows of ``seq`` bytes at seeded random places of ``data``: (n, seq)."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, data.numel() - seq - 1, (n,), generator=gen)
    return torch.stack([data[s : s + seq] for s in starts.tolist()])


def llama_config(*, hidden: int, intermediate: int, layers: int, heads: int, seq: int) -> Any:
    """A LLaMA configuration over the 256 byte values (no special tokens, untied output head)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=256,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=seq,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def train(
    config: Any,
    data: torch.Tensor,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    batch: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A new model of ``config`` trained on random windows of ``data`` (AdamW, 50 warm-up steps, cosine
    decay) for ``steps`` steps, or for ``seconds`` of wall time; returns it (in eval mode) and
    ``{"steps", "seconds", "final_loss"}`` (the mean loss of the last 50 steps)."""
    from transformers import LlamaForCausalLM

    if (steps is None) == (seconds is None):
        raise ValueError("give steps or seconds")
    seq = config.max_position_embeddings
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    step, losses = 0, []

    def progress() -> float:
        """Fraction of the training done (by steps, else by time); 1.0 or more ends it."""
        return step / steps if steps is not None else (time.perf_counter() - t0) / (seconds or 1.0)

    model.train()
    while (frac := progress()) < 1.0:
        for g in opt.param_groups:
            g["lr"] = lr * (min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * frac)))
        starts = torch.randint(0, data.numel() - seq - 1, (batch,), generator=gen).tolist()
        sample = torch.stack([data[s : s + seq] for s in starts])
        loss = model(input_ids=sample, labels=sample).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if log is not None and step % 50 == 0:
            log(f"  step {step}: loss {sum(losses[-50:]) / 50:.3f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    last = losses[-50:]
    info = {"steps": step, "seconds": time.perf_counter() - t0, "final_loss": sum(last) / max(len(last), 1)}
    return model, info


@torch.no_grad()
def evaluate(model: Any, ref: dict[str, Any] | None, held: torch.Tensor) -> dict[str, Any]:
    """Per-layer outputs, final hidden states, logits on ``held``; compared with ``ref`` when given:
    ``block_rel_err`` (each decoder layer's output), ``hidden_rel_err`` and ``hidden_cos`` (final hidden
    states), ``agree`` (next-token argmax agreement); ``ppl`` always."""
    layer_out: list[list[torch.Tensor]] = []
    hidden, logits_all, nll, count = [], [], 0.0, 0
    for chunk in held.split(16):
        out = model(input_ids=chunk, output_hidden_states=True)
        hs = out.hidden_states  # embeddings, then each layer's output (last one after the final norm)
        layer_out.append([h.float() for h in hs[1:]])
        hidden.append(hs[-1].float())
        logits = out.logits.float()
        logits_all.append(logits.argmax(-1))
        lp = torch.log_softmax(logits[:, :-1], -1)
        nll -= float(lp.gather(-1, chunk[:, 1:, None]).sum())
        count += chunk[:, 1:].numel()
    res: dict[str, Any] = {
        "layers": [torch.cat([lo[i] for lo in layer_out]) for i in range(len(layer_out[0]))],
        "hidden": torch.cat(hidden),
        "argmax": torch.cat(logits_all),
        "ppl": math.exp(nll / count),
    }
    if ref is not None:
        res["block_rel_err"] = [
            float((a - b).norm() / b.norm()) for a, b in zip(res["layers"], ref["layers"], strict=True)
        ]
        h, r = res["hidden"], ref["hidden"]
        res["hidden_rel_err"] = float((h - r).norm() / r.norm())
        res["hidden_cos"] = float(torch.nn.functional.cosine_similarity(h, r, dim=-1).mean())
        res["agree"] = float((res["argmax"] == ref["argmax"]).float().mean())
    return res
