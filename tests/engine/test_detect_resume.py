"""The scene job's resume (``RunConfig.resume``, what ``rsvg change`` runs each date with): an answer log's
tiles are reused for the same question and model and asked again otherwise; ``export=False`` writes the
answer log alone."""

from __future__ import annotations

from dataclasses import replace

from scripted_scene import AnswerResult

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.engine.detect import answer_log_path, run_scene
from rsvg_desktop.engine.events import RunConfig, RunFinished, RunStarted, TileDone


class _Boxes:
    def __init__(self) -> None:
        self.asked = 0

    def generate(self, requests, *, max_new_tokens, batch_size):
        self.asked += len(requests)
        text = "{<25><25><75><75>|<0>}"
        return [AnswerResult.of(text, input_tokens=1, output_tokens=1) for _ in requests]


def _run(config, gen, model="m", stop_after=None):
    cancel = None if stop_after is None else (lambda: gen.asked >= stop_after)
    return list(run_scene(config, gen, model=model, precision="fp32", cancel=cancel))


def test_resume_reuses_the_answered_tiles_and_asks_the_rest(data_dir, tmp_path):
    out = tmp_path / "a.gpkg"
    config = RunConfig(scene=str(data_dir / "cogeo.tif"), query="car", output=str(out), batch_size=1)
    first = _Boxes()
    events = _run(config, first, stop_after=4)
    assert events[-1].cancelled and first.asked == 4
    out.unlink()

    resumed = replace(config, resume=True, export=False)
    second = _Boxes()
    events = _run(resumed, second)
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted) and (started.reused, started.total) == (4, 5)
    assert second.asked == 5 and sum(isinstance(e, TileDone) for e in events) == 5
    assert isinstance(finished, RunFinished) and finished.raw_detections == 9 and finished.output is None
    assert not out.exists()  # no export: the answer log alone
    assert len(list(read_answer_log(answer_log_path(out)))) == 9

    other_model = _Boxes()
    events = _run(resumed, other_model, model="another")
    assert events[0].reused == 0 and other_model.asked == 9  # another model's answers are not reused
