"""``rsvg doctor [--json]``: versions, GPUs, the quantization kernels on each device, models, data folder."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from cli_runner import run_rsvg, run_rsvg_process

from rsvg_desktop import __version__
from rsvg_desktop.core.model import kernel_check


def test_doctor_json_in_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "RSVG_DATA_DIR": str(tmp_path / "data")}
    proc = run_rsvg_process("doctor", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["version"] == __version__
    assert report["python"].startswith(".".join(map(str, sys.version_info[:2])))
    import torch

    assert report["torch"] == torch.__version__ and report["torch_cuda"] == torch.version.cuda
    assert report["cuda_available"] == bool(report["gpus"])
    if not report["gpus"]:
        assert report["cuda_problem"]
    for gpu in report["gpus"]:
        assert gpu["memory_bytes"] > 0 and gpu["name"]
    devices = ["cpu", *(f"cuda:{g['index']}" for g in report["gpus"])]
    assert [(k["library"], k["device"]) for k in report["kernels"]] == [
        (lib, dev) for dev in devices for lib in ("bitsandbytes", "torchao")
    ]
    cpu = [k for k in report["kernels"] if k["device"] == "cpu"]
    assert all(k["ok"] for k in cpu), cpu  # both libraries are installed here and run on the CPU
    assert report["data_dir"] == str(tmp_path / "data")
    assert "geochat-7b" in [m["id"] for m in report["models"]]


def test_doctor_text_reports_a_failing_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(device: str) -> str:
        raise RuntimeError("no kernel image is available\nfor execution on the device")

    monkeypatch.setitem(kernel_check._CHECKS, "bitsandbytes", broken)
    monkeypatch.setitem(kernel_check._CHECKS, "torchao", lambda device: "torchao x: ok")
    proc = run_rsvg("doctor")
    assert proc.returncode == 0, proc.stderr
    assert f"rsvg        {__version__}" in proc.stdout
    assert (
        "kernels     bitsandbytes on cpu: FAILED (RuntimeError: no kernel image is available for "
        "execution on the device)" in proc.stdout
    )
    assert "kernels     torchao on cpu: ok (torchao x: ok)" in proc.stdout
    assert (
        "data folder " in proc.stdout and "geochat-7b: GeoChat-7B" in proc.stdout
    )  # rsvg model list's lines


def test_doctor_without_kernels() -> None:
    proc = run_rsvg("doctor", "--json", "--no-kernels")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["kernels"] == []


def test_a_wrong_product_fails_the_check() -> None:
    import torch

    reference = torch.ones(2, 2)
    assert kernel_check._close(reference * 1.1, reference) is None
    assert kernel_check._close(reference * 3, reference) == "the product is off by 200%"
    assert "NaN" in (kernel_check._close(reference * float("nan"), reference) or "")
