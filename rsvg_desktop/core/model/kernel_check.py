"""Whether the quantization libraries' kernels run on a device: a tiny quantized matmul in each.

``rsvg doctor`` reports these, for the "the GPU is not used" kind of issue: bitsandbytes (NF4, the 4-bit
precisions) and torchao (int8 weight-only, the int8wo/int4wo/fp8 family) each quantize a 64 × 64 weight
on the device and multiply it; the check passes when the product is finite and near the unquantized
one. No model is read.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The largest relative error (Frobenius norm) a 4-bit product may have and still count as working.
MAX_RELATIVE_ERROR = 0.5


@dataclass(frozen=True, slots=True)
class KernelCheck:
    """One library on one device: ``ok``, and ``detail`` (the library's version, or why it failed)."""

    library: str
    device: str
    ok: bool
    detail: str


def _close(product: object, reference: object) -> str | None:
    """Why ``product`` is not a usable approximation of ``reference`` (``None``: it is)."""
    import torch

    assert isinstance(product, torch.Tensor) and isinstance(reference, torch.Tensor)
    product = product.float().cpu()
    if not bool(torch.isfinite(product).all()):
        return "the product has NaN or infinite values"
    error = float((product - reference).norm() / reference.norm())
    return None if error <= MAX_RELATIVE_ERROR else f"the product is off by {error:.0%}"


def _bitsandbytes(device: str) -> str:
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnb_functional
    import torch

    dtype = torch.float32 if device == "cpu" else torch.float16
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 64, generator=gen)
    x = torch.randn(2, 64, generator=gen)
    packed, state = bnb_functional.quantize_4bit(weight.to(device, dtype), quant_type="nf4")
    product = bnb.matmul_4bit(x.to(device, dtype), packed.t(), quant_state=state)
    problem = _close(product, x @ weight.t())
    if problem:
        raise RuntimeError(problem)
    return f"bitsandbytes {bnb.__version__}: NF4 matmul ok"


def _torchao(device: str) -> str:
    import torch
    import torchao
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(64, 64, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(64, 64, generator=gen))
    reference_weight = layer.weight.detach().clone()
    model = torch.nn.Sequential(layer).to(device, dtype)
    quantize_(model, Int8WeightOnlyConfig())
    x = torch.randn(2, 64, generator=gen)
    with torch.no_grad():
        product = model(x.to(device, dtype))
    problem = _close(product, x @ reference_weight.t())
    if problem:
        raise RuntimeError(problem)
    return f"torchao {torchao.__version__}: int8 weight-only matmul ok"


_CHECKS = {"bitsandbytes": _bitsandbytes, "torchao": _torchao}


def check_kernels(device: str) -> tuple[KernelCheck, ...]:
    """Each library's tiny quantized matmul on ``device`` (``cpu``, ``cuda:N``); a failure (the library
    missing, its kernel not built for this GPU, a wrong product) is reported, never raised."""
    results = []
    for library, check in _CHECKS.items():
        try:
            results.append(KernelCheck(library, device, True, check(device)))
        except Exception as exc:  # what the user pastes into an issue: the library's own words
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            results.append(KernelCheck(library, device, False, reason[:300]))
    return tuple(results)
