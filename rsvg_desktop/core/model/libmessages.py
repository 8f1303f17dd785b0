"""Route the quantization libraries' import-time chatter to the log instead of the user's terminal.

Two libraries warn at import about optional native kernels that this app does not need:

* bitsandbytes, on a CPU with AVX512-BF16, tries to fetch a faster 4-bit CPU kernel from the Hub
  (``kernels-community/quantization-bitsandbytes``) when ``bitsandbytes.backends.cpu.ops`` is imported;
  without the optional ``kernels`` package (or offline) it logs ``Failed to load CPU gemm_4bit_forward
  from kernels-community: …`` as a WARNING on logger ``bitsandbytes.backends.cpu.ops``. With no
  handler configured, Python's last-resort handler prints it on stderr, in every process that loads a
  4-bit model. bitsandbytes then uses its own CPU kernels, which is what the loader expects.
* torchao logs ``Failed to load …/_C_*.so`` (WARNING, logger ``torchao``) for its CUDA-only extensions
  (``_C_mxfp8``, ``_C_cutlass_90a``) on a machine without those libraries, and (logger
  ``torchao.kernel.intmm``) that Triton is absent (CPU builds of torch have none); torch warns (logger
  ``torch.utils._pytree``) that torchao's ``register_constant()`` of its enums is deprecated.
* bitsandbytes warns (logger ``bitsandbytes.autograd._functions``) ``MatMul8bitLt: inputs will be cast
  from torch.float32 to float16 during quantization`` while an int8 model generates with fp32 (CPU) or
  bf16 activations: that cast is how LLM.int8 works.

:func:`route_library_messages` puts a filter on those two loggers (it is called when
:mod:`rsvg_desktop.core.model` is imported, before anything imports the libraries) that lowers exactly
these records to DEBUG: a log file or ``-vv`` still shows them, the terminal at the CLI's default level
does not (torch's pytree notice, printed by torch's own handler at any level, is dropped). Every other
record of those loggers is left as it is.
"""

from __future__ import annotations

import logging

__all__ = ["DROPPED", "ROUTED_LOGGERS", "LibraryMessageFilter", "route_library_messages"]

#: logger name → the start of the messages that are lowered to DEBUG.
ROUTED_LOGGERS: dict[str, tuple[str, ...]] = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    # LLM.int8 with fp32 (CPU) or bf16 activations: the cast to fp16 is how its kernels work, not news.
    "bitsandbytes.autograd._functions": ("MatMul8bitLt: inputs will be cast from",),
    "torchao": ("Failed to load ", "Skipping import of cpp extensions"),
    "torchao.kernel.intmm": ("Warning: Detected no triton",),
}
#: logger name → the start of messages that are dropped: torch ≥ 2.13 calls torchao's registration of
#: its enums as pytree constants deprecated, through torch's own handler, which prints every level.
DROPPED: dict[str, tuple[str, ...]] = {
    "torch.utils._pytree": ("<enum '",),
}


class LibraryMessageFilter(logging.Filter):
    """Lowers the known optional-kernel warnings of one logger to DEBUG (the record is kept)."""

    def __init__(self, prefixes: tuple[str, ...], drop: bool = False) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.drop = drop

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and record.getMessage().startswith(self.prefixes):
            if self.drop:
                return False
            record.levelno = logging.DEBUG
            record.levelname = logging.getLevelName(logging.DEBUG)
            # Propagation does not re-check the root logger's level, only its handlers' (usually
            # unset): keep the record only when the log is at DEBUG.
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def route_library_messages() -> None:
    """Install :class:`LibraryMessageFilter` on each of :data:`ROUTED_LOGGERS` (once; idempotent)."""
    for table, drop in ((ROUTED_LOGGERS, False), (DROPPED, True)):
        for name, prefixes in table.items():
            logger = logging.getLogger(name)
            if not any(isinstance(f, LibraryMessageFilter) for f in logger.filters):
                logger.addFilter(LibraryMessageFilter(prefixes, drop))
