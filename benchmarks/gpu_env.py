"""What ``benchmarks/gpu.sh`` runs on: Python, the packages the measurements need, the CUDA device.

Prints one line per item and exits 1 when CUDA is not available or a needed package is missing (the
GPU steps would then fail, each in a line of its own log), 0 otherwise. Imports only; loads no model.

Usage: ``python benchmarks/gpu_env.py``
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

#: Import names of the packages the GPU steps use (``rsvg bench speed``, ``rsvg detect``, bench_model).
NEEDED = (
    "torch",
    "transformers",
    "accelerate",
    "safetensors",
    "bitsandbytes",
    "torchao",
    "rasterio",
    "shapely",
    "pyproj",
    "pyogrio",
    "geopandas",
    "numpy",
    "psutil",
    "matplotlib",
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (no options; checked by ``benchmarks/gpu.sh --dry-run``)."""
    return argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    ok = True
    print(f"python {platform.python_version()} at {sys.executable}")
    for name in NEEDED:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import failure is a missing package for this report
            print(f"{name}: MISSING ({type(exc).__name__}: {exc})")
            ok = False
            continue
        print(f"{name} {getattr(module, '__version__', '?')}")
    try:
        import torch
    except ImportError:
        return 1
    if not torch.cuda.is_available():
        print(f"CUDA: NOT AVAILABLE (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        return 1
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        major, minor = torch.cuda.get_device_capability(i)
        print(
            f"cuda:{i} {torch.cuda.get_device_name(i)}, compute capability {major}.{minor}, "
            f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free; CUDA {torch.version.cuda}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
