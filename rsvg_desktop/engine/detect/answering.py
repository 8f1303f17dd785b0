"""Answering a batch of tiles: the run's question about each tile image, the whole batch in one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from rsvg_desktop.engine.events import RunConfig


class AnswerGenerator(Protocol):
    """What the job needs of the model: :class:`rsvg_desktop.core.model.generate.GeoChatGenerator`."""

    def generate(
        self, requests: Sequence[Any], *, max_new_tokens: int, batch_size: int | None
    ) -> list[Any]: ...


class TileQuestion:
    """The run's question (task, query, history, region, classes), asked of one batch of tiles at a time.

    The request type is imported when this is built, so torch is imported only when a run starts.
    """

    def __init__(self, generator: AnswerGenerator, config: RunConfig) -> None:
        from rsvg_desktop.core.model.generate import GenerationRequest  # torch only when running

        self._request = GenerationRequest
        self._generator = generator
        self._config = config

    def ask(self, images: Sequence[np.ndarray]) -> list[Any]:
        """One generation result per image, in order."""
        config = self._config
        requests = [
            self._request(
                image=img,
                task=config.task,
                query=config.query,
                history=config.history,
                region=config.region,
                classes=config.classes or None,
            )
            for img in images
        ]
        return self._generator.generate(
            requests, max_new_tokens=config.max_new_tokens, batch_size=len(requests)
        )
