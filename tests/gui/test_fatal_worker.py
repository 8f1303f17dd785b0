"""A worker that ends on a fatal error (a broken CUDA context): the app keeps what finished, says what
happened and offers to reload."""

from __future__ import annotations

import time

from gui_fakes import FakeWorker
from test_main_window import ready  # noqa: F401  (fixture)

from rsvg_desktop.engine.events import RunConfig
from rsvg_desktop.engine.protocol import WorkerClient, WorkerError
from rsvg_desktop.engine.worker import EXIT_FATAL
from rsvg_desktop.gui.main_window import MainWindow


def test_the_test_fake_implements_the_client_protocol() -> None:
    assert isinstance(FakeWorker(), WorkerClient)


def test_a_fatal_worker_error_ends_the_run_and_offers_a_reload(
    qtbot,
    ready: MainWindow,  # noqa: F811
    fake_workers: list[FakeWorker],
) -> None:
    window = ready
    worker = fake_workers[0]

    def run_then_break(config: RunConfig) -> None:
        # what the real worker does on a DeviceFailure: report it as fatal, then exit with EXIT_FATAL
        worker.configs.append(config)
        message = "the device cuda:0 failed during a batch of 8: CUDA error: device-side assert"
        worker._queue.append((time.monotonic(), WorkerError(message, fatal=True)))
        worker.alive = False
        worker.exitcode = EXIT_FATAL

    worker.run = run_then_break  # type: ignore[method-assign]
    window.query_panel.query_edit.setText("ships")
    with qtbot.waitSignal(window.bridge.workerDied, timeout=10000) as died:
        window.query_panel.run_button.click()
    assert died.args[0] == EXIT_FATAL
    assert window.bridge.state == "stopped" and not window.runs.running
    panel = window.model_panel
    assert panel.banner_visible
    assert panel.reload_button.isVisibleTo(panel)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10000):
        panel.reload_button.click()
    assert len(fake_workers) == 2 and window.bridge.loaded
    assert not panel.banner_visible
