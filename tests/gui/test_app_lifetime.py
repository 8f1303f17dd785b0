"""The model worker never outlives the app: the app SIGTERMed (closes like a user would) or SIGKILLed
(the worker notices its parent is gone), with a model loaded and during a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.gui]

DRIVER = """
import sys
from PySide6.QtWidgets import QApplication
import rsvg_desktop.gui.app as app

create = app.create_window
start_run = sys.argv.pop() == "run"

def create_and_report(args):
    w = create(args)
    def loaded(info):
        print("WORKER", w.bridge.pid, flush=True)
        if start_run:
            w.query_panel.query_edit.setText("cars")
            w.query_panel.run_button.click()
    def tile(ev):
        print("TILE", ev.done, flush=True)
    w.bridge.modelLoaded.connect(loaded)
    w.bridge.tileDone.connect(tile)
    w.bridge.tileStarted.connect(lambda ev: print("STARTED", flush=True))
    return w

app.create_window = create_and_report
sys.exit(app.main(sys.argv[1:]))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0): look at its state
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("when", ["loaded", "run"])
def test_the_worker_ends_with_the_app(
    sig: signal.Signals, when: str, tmp_path: Path, sample_scene: Path, test_model_dir: Path
) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    args = [sys.executable, "-c", DRIVER, str(sample_scene), "--settings-file", str(tmp_path / "a.ini")]
    app = subprocess.Popen(
        [*args, "--test-model", "--load", when], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env,
    )  # fmt: skip
    worker = None
    try:
        assert app.stdout is not None
        for line in app.stdout:
            if line.startswith("WORKER"):
                worker = int(line.split()[1])
                if when == "loaded":
                    break
            elif line.startswith("STARTED") and when == "run":
                break
        assert worker is not None and _alive(worker)
        app.send_signal(sig)
        app.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), f"the worker {worker} outlived the app ({sig.name}, {when})"
    finally:
        if app.poll() is None:
            app.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)
    if sig is signal.SIGTERM:
        assert app.returncode == 0  # closed like a user would
