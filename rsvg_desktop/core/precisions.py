"""The precision names: one torch-free source for the CLI, the app, the loader and the benchmarks.

A :class:`Precision` is a name and what a person reads for it. How a precision is *loaded*
(dtypes, bitsandbytes or torchao settings, device fallbacks) is
:mod:`rsvg_desktop.core.model.precision`, which needs torch; this module does not, so the app's
panels and the CLI's argument parsing never import torch.

To add a precision: add a member here (value, short label, menu description, and whether it is
quantized / 4-bit), then teach :func:`rsvg_desktop.core.model.precision.plan_precision` to load it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from rsvg_desktop.errors import PrecisionError

__all__ = ["DEFAULT_INT4_GROUP_SIZE", "PLANNED_PRECISIONS", "PRECISIONS", "Precision", "lower_precision"]

#: int4wo: weights per scale unless asked otherwise (torchao's default; 32/64/128/256 allowed).
DEFAULT_INT4_GROUP_SIZE = 128

#: Precisions that are planned but not implemented: asking for them raises PrecisionError.
PLANNED_PRECISIONS: Mapping[str, str] = {
    "q4cal": "calibrated 4-bit (q4cal) is not implemented yet",
}


class Precision(enum.StrEnum):
    """The numeric formats a model can be loaded in."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"
    INT8 = "int8"
    NF4 = "nf4"
    FP4 = "fp4"
    INT8WO = "int8wo"
    INT4WO = "int4wo"
    FP8 = "fp8"

    @property
    def quantized(self) -> bool:
        """True when the language model's linears are quantized (bitsandbytes or torchao)."""
        return self.backend != "none"

    @property
    def backend(self) -> str:
        """Which library quantizes it: ``bitsandbytes``, ``torchao`` or ``none``."""
        if self in (Precision.INT8, Precision.NF4, Precision.FP4):
            return "bitsandbytes"
        if self in (Precision.INT8WO, Precision.INT4WO, Precision.FP8):
            return "torchao"
        return "none"

    @property
    def is_4bit(self) -> bool:
        """bitsandbytes' 4-bit formats (``nf4``/``fp4``: block size, double quantization)."""
        return self in (Precision.NF4, Precision.FP4)

    @property
    def bits(self) -> int:
        """Bits per weight of the language model's linear layers (16 for bf16/fp16, 32 for fp32)."""
        return _BITS[self]

    @property
    def label(self) -> str:
        """Short name for tables and reports (``LLM.int8``, ``NF4``…)."""
        return _LABELS[self]

    @property
    def description(self) -> str:
        """One line for a menu: what the precision is and what it costs."""
        return _DESCRIPTIONS[self]

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        """``value`` as a Precision (case-insensitive, a few aliases); PrecisionError when unknown."""
        if isinstance(value, Precision):
            return value
        if not isinstance(value, str):
            raise PrecisionError(f"precision must be a string, not {type(value).__name__}")
        key = value.strip().lower()
        key = _ALIASES.get(key, key)
        if key in PLANNED_PRECISIONS:
            raise PrecisionError(PLANNED_PRECISIONS[key])
        try:
            return cls(key)
        except ValueError:
            valid = ", ".join(p.value for p in cls)
            raise PrecisionError(f"unknown precision {value!r}; valid precisions: {valid}") from None


_LABELS = {
    Precision.BF16: "BF16",
    Precision.FP16: "FP16",
    Precision.FP32: "FP32",
    Precision.INT8: "LLM.int8",
    Precision.NF4: "NF4",
    Precision.FP4: "FP4",
    Precision.INT8WO: "int8 WO",
    Precision.INT4WO: "int4 WO",
    Precision.FP8: "FP8",
}
_DESCRIPTIONS = {
    Precision.BF16: "bf16 (16-bit, best quality)",
    Precision.FP16: "fp16 (16-bit)",
    Precision.FP32: "fp32 (32-bit, CPU reference)",
    Precision.INT8: "int8 (LLM.int8, half the memory)",
    Precision.NF4: "nf4 (4-bit NormalFloat)",
    Precision.FP4: "fp4 (4-bit float)",
    Precision.INT8WO: "int8wo (torchao int8 weight-only, half the memory)",
    Precision.INT4WO: "int4wo (torchao int4 weight-only, a quarter of the memory)",
    Precision.FP8: "fp8 (torchao float8, GPUs of compute capability 8.9+ only)",
}
_BITS = {
    Precision.BF16: 16,
    Precision.FP16: 16,
    Precision.FP32: 32,
    Precision.INT8: 8,
    Precision.NF4: 4,
    Precision.FP4: 4,
    Precision.INT8WO: 8,
    Precision.INT4WO: 4,
    Precision.FP8: 8,
}
_ALIASES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
    "8bit": "int8",
    "llm.int8": "int8",
    "llm_int8": "int8",
    "int8_weight_only": "int8wo",
    "int4_weight_only": "int4wo",
    "float8": "fp8",
}
#: After an out-of-memory failure, the next precision that needs less memory.
_LOWER = {
    "fp32": "bf16",
    "bf16": "int8",
    "fp16": "int8",
    "int8": "nf4",
    "int8wo": "int4wo",
    "fp8": "int4wo",
}

#: Every precision's name, in menu order.
PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)


def lower_precision(precision: str) -> str | None:
    """The next precision that needs less memory (to offer after an out-of-memory failure), or None."""
    return _LOWER.get(precision)
