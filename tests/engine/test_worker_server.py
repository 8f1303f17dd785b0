"""The worker's command loop in this process: typed commands, and fatal errors classified by type."""

from __future__ import annotations

import json
import queue

from rsvg_desktop.engine.events import ModelLoaded, ModelSpec, RunConfig, RunFailed
from rsvg_desktop.engine.protocol import (
    LoadModel,
    ModelUnloaded,
    RunJob,
    StopWorker,
    UnloadModel,
    WorkerClient,
    WorkerError,
    WorkerReady,
)
from rsvg_desktop.engine.worker import EXIT_FATAL, ModelWorker, WorkerServer
from rsvg_desktop.errors import (
    ConfigError,
    DeviceFailure,
    DeviceOutOfMemoryError,
    GenerationError,
    is_fatal,
)


def _drain(q: queue.Queue) -> list[object]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def _commands(*cmds: object) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    for c in cmds:
        q.put(c)
    return q


def test_fatal_errors_are_classified_by_type() -> None:
    assert is_fatal(DeviceFailure("cuda context lost"))
    assert is_fatal(DeviceOutOfMemoryError("one tile does not fit"))
    assert is_fatal(MemoryError())
    # the words in a message decide nothing
    assert not is_fatal(GenerationError("CUDA out of memory"))
    assert not is_fatal(ConfigError("CUDA"))
    assert not is_fatal(RuntimeError("CUDA error: device-side assert triggered"))


def test_the_real_worker_handle_implements_the_client_protocol() -> None:
    assert isinstance(ModelWorker(), WorkerClient)


def test_ordinary_errors_are_reported_and_the_worker_keeps_serving(tmp_path, data_dir) -> None:
    events: queue.Queue = queue.Queue()
    config = RunConfig(str(data_dir / "RGB.byte.tif"), "planes", output=str(tmp_path / "o.gpkg"))
    server = WorkerServer(events, lambda: False)
    code = server.serve(
        _commands(
            RunJob(config),  # no model yet
            LoadModel(ModelSpec(str(tmp_path / "nowhere"), "fp32", "cpu")),
            UnloadModel(),
            StopWorker(),
        )
    )
    assert code == 0
    msgs = _drain(events)
    assert isinstance(msgs[0], WorkerReady)
    assert isinstance(msgs[1], RunFailed) and "no model is loaded" in msgs[1].message
    assert isinstance(msgs[2], WorkerError) and not msgs[2].fatal and "nowhere" in msgs[2].message
    assert isinstance(msgs[3], ModelUnloaded)


def test_a_device_failure_during_a_run_ends_the_worker(tmp_path, data_dir, test_model_dir) -> None:
    """A CUDA fault (here torch's own AcceleratorError, raised where a device-side assert would be)
    reaches the worker as DeviceFailure: the run reports it, the worker reports a fatal error and
    stops serving (the StopWorker behind it is never read), and the finished log stays on disk."""
    import torch

    events: queue.Queue = queue.Queue()
    server = WorkerServer(events, lambda: False)
    server.handle(LoadModel(ModelSpec(str(test_model_dir), "fp32", "cpu")))
    generator = server._generator

    def broken(*args: object, **kwargs: object) -> object:
        raise torch.AcceleratorError("CUDA error: device-side assert triggered")

    generator.model.generate = broken
    out = tmp_path / "run.gpkg"
    commands = _commands(
        RunJob(RunConfig(str(data_dir / "RGB.byte.tif"), "planes", output=str(out), max_new_tokens=4)),
        StopWorker(),
    )
    assert server.serve(commands) == EXIT_FATAL
    msgs = _drain(events)
    assert any(isinstance(m, ModelLoaded) for m in msgs)
    failed = [m for m in msgs if isinstance(m, RunFailed)]
    assert failed and "failed" in failed[0].message
    errors = [m for m in msgs if isinstance(m, WorkerError)]
    assert len(errors) == 1 and errors[0].fatal and "device" in errors[0].message
    assert isinstance(commands.get_nowait(), StopWorker)  # never served
    assert out.exists()  # the run's output (empty: nothing finished) was still written


def test_a_load_on_a_missing_device_keeps_the_loaded_model(monkeypatch) -> None:
    """A GPU chosen on a machine without it (here a device index no machine has) is refused before the
    loaded model is dropped: the error says the model was kept and it goes on serving."""
    from types import SimpleNamespace

    import rsvg_desktop.engine.worker as worker_module

    monkeypatch.setattr(worker_module, "_model_info", lambda loaded: loaded.device)
    loads: list[str] = []

    def load(spec: ModelSpec, progress: object) -> tuple[object, object]:
        loads.append(spec.device)
        return SimpleNamespace(device=spec.device), object()

    events: queue.Queue = queue.Queue()
    server = WorkerServer(events, lambda: False, load=load)
    server.handle(LoadModel(ModelSpec("model", "fp32", "cpu")))
    server.handle(LoadModel(ModelSpec("model", "fp32", "cuda:99")))
    msgs = _drain(events)
    assert loads == ["cpu"] and server._loaded.device == "cpu"
    errors = [m for m in msgs if isinstance(m, WorkerError)]
    assert len(errors) == 1 and errors[0].model_kept and not errors[0].fatal
    assert "cuda:99" in errors[0].message
    # with no model loaded there is nothing to keep: the load itself reports the problem
    server.handle(UnloadModel())
    server.handle(LoadModel(ModelSpec("model", "fp32", "cpu")))
    assert loads == ["cpu", "cpu"]


def _change_server(monkeypatch, events: queue.Queue, cancel=lambda: False) -> WorkerServer:
    """A server whose "model" is the comparison tests' square finder (no weights, no tokenizer)."""
    from types import SimpleNamespace

    from change_scenes import SquareFinder

    import rsvg_desktop.engine.model_jobs as model_jobs
    import rsvg_desktop.engine.worker as worker_module

    monkeypatch.setattr(worker_module, "_model_info", lambda loaded: "square finder")
    monkeypatch.setattr(model_jobs, "check_question", lambda *a, **kw: 10)

    def load(spec: ModelSpec, progress: object) -> tuple[object, object]:
        loaded = SimpleNamespace(
            spec=spec,
            precision="q4cal",
            run_precision="q4cal@cal123",  # what a calibrated model records (LoadedModel.run_precision)
            device_name="CPU",
            random_weights=False,
        )
        return loaded, SquareFinder()

    return WorkerServer(events, cancel, load=load)


def test_a_change_job_runs_both_dates_with_the_loaded_model(monkeypatch, tmp_path, data_dir) -> None:
    """RunChangeJob runs run_change with the worker's model: both dates' scene jobs, then the change
    GeoPackage; ChangeFinished is the last message."""
    from change_scenes import make_pair

    from rsvg_desktop.engine.change import ChangeConfig, ChangeFinished, DateStarted, date_answer_log
    from rsvg_desktop.engine.protocol import RunChangeJob

    before, after = make_pair(data_dir, tmp_path)
    out = tmp_path / "change.gpkg"
    config = ChangeConfig(str(before), str(after), "car", str(out), batch_size=2)
    events: queue.Queue = queue.Queue()
    server = _change_server(monkeypatch, events)
    server.handle(LoadModel(ModelSpec("model", "fp32", "cpu")))
    server.handle(RunChangeJob(config))
    msgs = _drain(events)
    assert [m.date for m in msgs if isinstance(m, DateStarted)] == ["before", "after"]
    finished = msgs[-1]
    assert isinstance(finished, ChangeFinished) and finished.summary is not None
    assert (finished.summary.appeared, finished.summary.disappeared, finished.summary.persisting) == (1, 1, 3)
    assert out.is_file() and date_answer_log(out, "after").is_file()
    assert not server.running
    # The answers record the calibration a q4cal model was loaded with, as rsvg detect's do.
    first = json.loads(date_answer_log(out, "before").read_text(encoding="utf-8").splitlines()[0])
    assert first["precision"] == "q4cal@cal123"


def test_a_change_job_without_a_model_is_refused(tmp_path) -> None:
    from rsvg_desktop.engine.change import ChangeConfig, ChangeFinished
    from rsvg_desktop.engine.protocol import RunChangeJob

    events: queue.Queue = queue.Queue()
    config = ChangeConfig("a.tif", "b.tif", "car", str(tmp_path / "c.gpkg"))
    WorkerServer(events, lambda: False).handle(RunChangeJob(config))
    (msg,) = _drain(events)
    assert isinstance(msg, ChangeFinished) and msg.summary is None and "no model" in (msg.error or "")


def test_the_worker_handle_sends_a_change_job(monkeypatch) -> None:
    from rsvg_desktop.engine.change import ChangeConfig
    from rsvg_desktop.engine.protocol import RunChangeJob

    worker = ModelWorker()
    sent: list[object] = []
    monkeypatch.setattr(worker, "_send", sent.append)
    config = ChangeConfig("a.tif", "b.tif", "car", "c.gpkg")
    worker.run_change(config)
    assert sent == [RunChangeJob(config)]
