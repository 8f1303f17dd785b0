"""A streaming safetensors writer: the header is written from a plan (names, shapes, dtypes known before
any data is read), then each tensor's bytes as soon as it is made, in row blocks, so only one block needs
to be in memory at a time. Source tensors are read a batch at a time under a fresh memory mapping
(:data:`BATCH_BYTES`), so the resident size stays flat whatever the checkpoint's size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rsvg_desktop.core.model.checkpoint import ST_DTYPES, open_weights
from rsvg_desktop.errors import CheckpointError

__all__ = [
    "BATCH_BYTES",
    "BLOCK_BYTES",
    "Planned",
    "SafetensorsWriter",
    "batches",
    "row_blocks",
    "row_mean",
    "write_batch",
]

_ST_NAMES = {dtype: name for name, dtype in ST_DTYPES.items()}
#: Source bytes read under one memory mapping before it is released (bounds the file-backed RSS).
BATCH_BYTES = 64 << 20
#: Rows of a tensor are cast and written in blocks of about this size (bounds the anonymous RSS).
BLOCK_BYTES = 32 << 20


@dataclass(frozen=True, slots=True)
class Planned:
    """One output tensor: name, shape and dtype (known before any data is read) and how to make it."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    source: Path
    """The weights file it is made from."""
    make: Callable[[Mapping[str, torch.Tensor]], Iterator[torch.Tensor]]
    """Yields the tensor as blocks of rows, from that file's (memory-mapped) tensors."""
    src_nbytes: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class SafetensorsWriter:
    """Writes a safetensors file tensor by tensor: the header first (from the plan), then each tensor's
    bytes as soon as it is made, so only one tensor needs to be in memory at a time."""

    def __init__(self, path: Path, plan: Sequence[Planned], metadata: Mapping[str, str]) -> None:
        header: dict[str, Any] = {"__metadata__": dict(metadata)}
        offset = 0
        for p in plan:
            if p.dtype not in _ST_NAMES:
                raise CheckpointError(f"{p.name}: dtype {p.dtype} cannot be stored in safetensors")
            header[p.name] = {
                "dtype": _ST_NAMES[p.dtype],
                "shape": list(p.shape),
                "data_offsets": [offset, offset + p.nbytes],
            }
            offset += p.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the format pads the header with spaces to a multiple of 8
        self.path = path
        self._plan = plan
        self._next = 0
        self._file = path.open("wb")
        self._file.write(len(raw).to_bytes(8, "little"))
        self._file.write(raw)

    def write(self, name: str, blocks: Iterable[torch.Tensor]) -> None:
        """Write the next planned tensor, given as consecutive blocks of rows (dim 0) in the planned dtype."""
        p = self._plan[self._next]
        if name != p.name:
            raise RuntimeError(f"{self.path}: got {name}, planned {p.name}")
        rows = 0
        for block in blocks:
            if block.dtype != p.dtype or (block.dim() > 0 and tuple(block.shape[1:]) != p.shape[1:]):
                raise RuntimeError(f"{self.path}: {name} block {tuple(block.shape)} {block.dtype} vs {p}")
            rows += block.shape[0] if block.dim() else 1
            if block.numel():
                data = block.detach().contiguous().reshape(-1).view(torch.uint8)
                self._file.write(data.numpy().tobytes())
        if rows != (p.shape[0] if p.shape else 1):
            raise RuntimeError(f"{self.path}: {name} got {rows} rows, planned shape {p.shape}")
        self._next += 1

    def close(self) -> None:
        self._file.close()
        if self._next != len(self._plan):
            raise RuntimeError(f"{self.path}: {len(self._plan) - self._next} planned tensors not written")

    def abort(self) -> None:
        self._file.close()


def batches(plan: Sequence[Planned]) -> Iterator[list[Planned]]:
    """Consecutive runs of ``plan`` from one source file, each reading at most ``BATCH_BYTES``."""
    batch: list[Planned] = []
    size = 0
    for p in plan:
        if batch and (p.source != batch[0].source or size + p.src_nbytes > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(p)
        size += p.src_nbytes
    if batch:
        yield batch


def write_batch(writer: SafetensorsWriter, batch: Sequence[Planned], tick: Callable[[Planned], None]) -> None:
    """Make and write ``batch`` under one fresh mapping of its source file, then let the mapping go.

    Re-opening the (memory-mapped) file for each batch unmaps the pages the previous batch touched, so the
    resident size stays near ``BATCH_BYTES`` however large the shard is.
    """
    with open_weights(batch[0].source) as weights:
        for p in batch:
            writer.write(p.name, p.make(weights))
            tick(p)


# --------------------------------------------------------------------------------------------------


def row_blocks(t: torch.Tensor, dtype: torch.dtype, max_bytes: int | None = None) -> Iterator[torch.Tensor]:
    """``t`` cast to ``dtype``, as consecutive blocks of rows of at most about ``max_bytes`` each.

    Casting block by block keeps the extra memory of a dtype change to one block; with no change the
    blocks are views of ``t`` (no copy at all).
    """
    if t.dim() == 0 or t.shape[0] == 0:
        yield t.to(dtype) if t.is_floating_point() else t
        return
    max_bytes = BLOCK_BYTES if max_bytes is None else max_bytes
    row_bytes = max(1, t[0].numel() * max(t.element_size(), dtype.itemsize))
    step = max(1, max_bytes // row_bytes)
    for start in range(0, t.shape[0], step):
        block = t[start : start + step]
        yield block.to(dtype) if block.is_floating_point() else block


def row_mean(matrix: torch.Tensor, max_bytes: int | None = None) -> torch.Tensor:
    """The mean of ``matrix``'s rows, accumulated in float32 block by block, shape ``(1, columns)``."""
    total = torch.zeros(matrix.shape[1], dtype=torch.float32)
    for block in row_blocks(matrix, torch.float32, max_bytes):
        total += block.sum(dim=0)
    return (total / matrix.shape[0]).unsqueeze(0)
