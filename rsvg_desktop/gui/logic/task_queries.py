"""Each task keeps its own query text in the query panel (Qt-free).

The tasks read the query box differently: "cars" is an object to find for Find objects, but as a
Grounded description's question it would be sent as ``[grounding]cars``, and as a classification's
question as ``cars Classes: …``. So switching tasks puts the text the analyst last typed *for that
task* in the box, or leaves it empty so the box shows the task's default (its placeholder).
"""

from __future__ import annotations

__all__ = ["TaskQueries"]


class TaskQueries:
    """The query text of each task; :meth:`switch` when the task changes."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._task: str | None = None

    @property
    def task(self) -> str | None:
        """The task whose text is in the box now."""
        return self._task

    def switch(self, task: str, text_in_box: str) -> str:
        """Keep ``text_in_box`` as the current task's text and return the text of ``task`` ("" when the
        analyst typed none for it: the box then shows the task's default)."""
        if self._task is not None:
            self._texts[self._task] = text_in_box
        self._task = task
        return self._texts.get(task, "")

    def text(self, task: str) -> str:
        return self._texts.get(task, "")
