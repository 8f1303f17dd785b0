"""The scene job (:func:`~rsvg_desktop.engine.detect.run_scene`) with the model's answers scripted per
tile: tile grid, tile reads, answer log, parsing, polygons, seam merge and export are the engine's real
code. Shared by the GUI's fake worker and the engine tests that need answers with known boxes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rsvg_desktop.core.model.generate import GenerationResult
from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.detect import run_scene
from rsvg_desktop.engine.events import RunConfig, TileStarted

#: Scripts the model: the answer to ``config``'s question on ``tile``.
Answer = Callable[[RunConfig, Tile], str]


@dataclass(frozen=True)
class AnswerResult:
    """The part of a :class:`GenerationResult` that the scene job reads: what the tests' own generator
    doubles answer with."""

    answer: str
    parsed: object
    input_tokens: int = 10
    output_tokens: int = 5
    seconds: float = 0.0

    @classmethod
    def of(cls, text: str, **counts: Any) -> AnswerResult:
        """The answer ``text``, parsed as GeoChat's answers are (``counts``: the token counts)."""
        return cls(text, parse_answer(text), **counts)


class ScriptedGenerator:
    """The model's side of :func:`~rsvg_desktop.engine.detect.run_scene` with scripted answers: the
    job announces each batch's tiles (``TileStarted``) before it asks for their answers, so
    ``answer(config, tile)`` can answer per tile. Everything else (tile reads, answer log, parsing,
    polygons, seam merge, export) is the engine's real code."""

    def __init__(self, answer: Callable[[RunConfig, Tile], str], config: RunConfig) -> None:
        self.answer = answer
        self.config = config
        self.tiles: list[Tile] = []
        self.calls = 0

    def generate(
        self, requests: Sequence[Any], *, max_new_tokens: int, batch_size: int | None
    ) -> list[GenerationResult]:
        assert len(requests) == len(self.tiles), "a batch without its TileStarted"
        self.calls += 1
        out = []
        for i, (request, tile) in enumerate(zip(requests, self.tiles, strict=True)):
            assert request.image.shape == (tile.size, tile.size, 3)
            text = self.answer(self.config, tile)
            out.append(
                GenerationResult(
                    index=i,
                    answer=text,
                    parsed=parse_answer(text),
                    input_tokens=10,
                    output_tokens=len(text.split()),
                    finish_reason="stop",
                    seconds=0.001,
                    batch_size=len(requests),
                    prompt=request.query,
                )
            )
        return out


def scripted_scene(config: RunConfig, answer: Answer, **kwargs: Any) -> Iterator[object]:
    """The events of :func:`~rsvg_desktop.engine.detect.run_scene` (``kwargs`` passed on) with
    ``answer(config, tile)`` in place of the model."""
    generator = ScriptedGenerator(answer, config)
    for event in run_scene(config, generator, **kwargs):
        if isinstance(event, TileStarted):
            generator.tiles = list(event.tiles)  # the tiles of the batch about to be answered
        yield event
