"""NF4 fake quantization in torch: the rounding bitsandbytes' ``quantize_4bit(quant_type="nf4")`` does.

The search needs to know, for a candidate weight, what NF4 will make of it, many times over and on
any device; calling bitsandbytes for each candidate would round-trip through its packed format.
:func:`fake_nf4` reproduces its rounding: the weight is flattened row-major, cut into blocks of 64,
each block divided by its absolute maximum and every value rounded to the nearest of the 16 NF4 code
values, then multiplied back. Double quantization (the absmax values themselves stored in 8 bits) is
left out: it moves each block's scale by well under 1 %, the same for every candidate. A test checks
the agreement with bitsandbytes.
"""

from __future__ import annotations

import torch

__all__ = ["NF4_BLOCKSIZE", "NF4_CODE", "fake_nf4"]

NF4_BLOCKSIZE = 64
#: The 16 NF4 code values (QLoRA, Dettmers et al. 2023), as bitsandbytes stores them.
NF4_CODE: tuple[float, ...] = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)


def fake_nf4(weight: torch.Tensor, blocksize: int = NF4_BLOCKSIZE) -> torch.Tensor:
    """``weight`` after NF4 quantization and dequantization (same shape, float32)."""
    w = weight.detach().float()
    flat = w.reshape(-1)
    n = flat.numel()
    pad = (-n) % blocksize
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    blocks = flat.view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    code = torch.tensor(NF4_CODE, dtype=torch.float32, device=w.device)
    mids = (code[1:] + code[:-1]) / 2
    idx = torch.bucketize(blocks / safe, mids)
    out = code[idx] * absmax
    return out.reshape(-1)[:n].view_as(w)
