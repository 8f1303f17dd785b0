"""Issue 22: trust at the edges. GDAL messages that are not UTF-8 give one clean line, no traceback; a
closed stdout ends a command quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_rsvg, run_rsvg_process

from rsvg_desktop.cli._common import EXIT_BROKEN_PIPE


def _undecodable_vrt(folder: Path) -> Path:
    """A VRT whose band type is not UTF-8: GDAL echoes the bytes in its error message."""
    path = folder / "undecodable.vrt"
    path.write_bytes(
        b'<VRTDataset rasterXSize="10" rasterYSize="10">'
        b'<VRTRasterBand dataType="By\xff\xfete" band="1"></VRTRasterBand></VRTDataset>'
    )
    return path


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert "UnicodeDecodeError" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsvg: error:"), stderr
    return lines[0]


def test_gdal_message_not_utf8_is_one_line_in_process(tmp_path: Path) -> None:
    path = _undecodable_vrt(tmp_path)
    for command in (("info", str(path)), ("tiles", str(path), "-o", str(tmp_path / "t.gpkg"))):
        proc = run_rsvg(*command)
        assert proc.returncode == 2
        line = _one_error_line(proc.stderr)
        assert str(path) in line and "Invalid dataType" in line


def test_gdal_message_not_utf8_is_one_line_in_a_process(tmp_path: Path) -> None:
    path = _undecodable_vrt(tmp_path)
    proc = run_rsvg_process("info", str(path), timeout=120)
    assert proc.returncode == 2
    assert "Invalid dataType" in _one_error_line(proc.stderr)
    # with -v, GDAL's own message is logged, its odd bytes replaced
    proc = run_rsvg_process("-v", "info", str(path), timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "WARNING: Invalid dataType = By\ufffd\ufffdte" in proc.stderr


@pytest.mark.parametrize("args", [("info", "{scene}", "--json"), ("info", "{scene}")])
def test_closed_stdout_ends_quietly(data_dir: Path, args: tuple[str, ...]) -> None:
    """``rsvg info X --json | head -c 10`` where the reader leaves before rsvg writes: no "internal
    error", nothing on stderr, the status a shell reports for a tool that SIGPIPE ended."""
    argv = [a.format(scene=data_dir / "RGB.byte.tif") for a in args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsvg_desktop.cli.main", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the command has written anything
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE == 141
    assert stderr == ""


def test_closed_stdout_leaves_other_broken_pipes_to_the_error_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken pipe that is not stdout's (a socket) is still reported as an error."""
    from rsvg_desktop.cli._common import EXIT_INTERNAL, run_guarded

    def broken() -> int:
        raise BrokenPipeError(32, "Broken pipe")

    assert run_guarded(broken) == EXIT_INTERNAL
