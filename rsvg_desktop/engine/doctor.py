"""``rsvg doctor``: what this machine gives the engine — versions, GPUs, whether the quantization kernels
run on each device, the known models and the data folder. What a user pastes into an issue when "the
GPU is not used"."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any

from rsvg_desktop.core.model.kernel_check import KernelCheck


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    memory_bytes: int
    capability: str  # "9.0"


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """The machine as the engine sees it (JSON: :meth:`to_dict`). ``torch_cuda``: the CUDA version torch
    was built with (``None``: a CPU build); ``cuda_available``: whether torch finds a GPU now (and why
    not, in ``cuda_problem``)."""

    version: str
    python: str
    platform: str
    torch: str | None
    torch_cuda: str | None
    cuda_available: bool
    cuda_problem: str | None
    gpus: tuple[GpuInfo, ...]
    kernels: tuple[KernelCheck, ...]
    models: tuple[Any, ...]  # KnownModelStatus, as ``rsvg model list`` shows them
    data_dir: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = [asdict(m) for m in self.models]
        return d


def _gpus(torch: Any) -> tuple[tuple[GpuInfo, ...], str | None]:
    """The GPUs torch sees, and why it sees none where it does not."""
    if torch.version.cuda is None:
        return (), "torch is a CPU build (no CUDA): install a CUDA build of torch to use a GPU"
    try:
        count = torch.cuda.device_count()
    except Exception as exc:  # a broken driver
        return (), f"{type(exc).__name__}: {exc}"
    if count == 0 or not torch.cuda.is_available():
        return (), "torch finds no CUDA GPU (driver missing or too old, or no GPU visible)"
    gpus = []
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        gpus.append(GpuInfo(i, props.name, int(props.total_memory), f"{props.major}.{props.minor}"))
    return tuple(gpus), None


def diagnose(*, kernels: bool = True) -> DoctorReport:
    """The report; ``kernels=False`` leaves the kernel checks out (they take a few seconds)."""
    from rsvg_desktop import __version__
    from rsvg_desktop.engine.model_files import data_dir
    from rsvg_desktop.engine.model_jobs import list_models

    torch: Any = None
    torch_problem: str | None = None
    try:
        import torch
    except ImportError as exc:
        torch_problem = f"torch cannot be imported: {exc}"
    gpus: tuple[GpuInfo, ...] = ()
    if torch is not None:
        gpus, torch_problem = _gpus(torch)
    checks: tuple[KernelCheck, ...] = ()
    if kernels and torch is not None:
        from rsvg_desktop.core.model.kernel_check import check_kernels

        for device in ("cpu", *(f"cuda:{g.index}" for g in gpus)):
            checks += check_kernels(device)
    return DoctorReport(
        version=__version__,
        python=f"{platform.python_version()} ({sys.executable})",
        platform=platform.platform(),
        torch=None if torch is None else torch.__version__,
        torch_cuda=None if torch is None else torch.version.cuda,
        cuda_available=bool(gpus),
        cuda_problem=torch_problem,
        gpus=gpus,
        kernels=checks,
        models=tuple(list_models()),
        data_dir=str(data_dir()),
    )
