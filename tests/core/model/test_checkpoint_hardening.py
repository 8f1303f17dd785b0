"""Issue 9: checkpoint messages of our own, naming the field or the file."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch

from rsvg_desktop.core.model.checkpoint import open_weights
from rsvg_desktop.core.model.vision_dims import VisionDims
from rsvg_desktop.errors import CheckpointError


def test_refused_pickle_is_one_short_line_without_torch_advice(tmp_path: Path) -> None:
    path = tmp_path / "evil.bin"
    torch.save({"w": torch.zeros(2), "when": datetime.date(2024, 1, 1)}, path)
    with pytest.raises(CheckpointError) as info, open_weights(path):
        pass
    message = str(info.value)
    assert "refused" in message and str(path) in message
    assert "weights_only" not in message and "\n" not in message and len(message) < 300


@pytest.mark.parametrize("field", ["hidden_size", "patch_size", "image_size"])
def test_negative_vision_size_names_the_field(field: str) -> None:
    data = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "image_size": 56, "patch_size": 14}  # fmt: skip
    data[field] = -8
    with pytest.raises(CheckpointError, match=f"field {field} must be a positive integer"):
        VisionDims.from_mapping(data, where="config.json")
