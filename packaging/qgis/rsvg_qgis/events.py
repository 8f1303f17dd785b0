"""The engine's ``--progress json`` events (docs/progress.md), read one line at a time.

Plain Python, no QGIS: the tests read events without QGIS, the algorithms map them to Processing's
feedback. A reader ignores fields it does not know; a line that is not a JSON object is a log line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: The kinds of event the engine writes.
KINDS = ("started", "progress", "warning", "finished", "error")


@dataclass(frozen=True)
class EngineEvent:
    """One event: its kind and every field of the line as written."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def percent(self) -> float | None:
        """A ``progress`` event's share of the run done, 0–100 (``None`` when the total is unknown)."""
        done, total = self.fields.get("done"), self.fields.get("total")
        if self.kind != "progress" or not isinstance(done, int) or not isinstance(total, int) or total <= 0:
            return None
        return max(0.0, min(100.0, 100.0 * done / total))

    def progress_text(self) -> str:
        """A line for the log: ``tile 3/9 (r0c2), 2.9/s, 2 s left``."""
        parts = [f"{self.fields.get('done')}/{self.fields.get('total')}"]
        if self.fields.get("tile"):
            parts[0] += f" ({self.fields['tile']})"
        rate, left = self.fields.get("rate"), self.fields.get("seconds_left")
        if isinstance(rate, int | float):
            parts.append(f"{rate:.2f}/s")
        if isinstance(left, int | float):
            parts.append(f"{left:.0f} s left")
        return ", ".join(parts)

    @property
    def message(self) -> str:
        return str(self.fields.get("message", ""))

    @property
    def exit_code(self) -> int | None:
        code = self.fields.get("exit_code")
        return code if isinstance(code, int) else None

    @property
    def outputs(self) -> dict[str, Any]:
        outputs = self.fields.get("outputs")
        return outputs if isinstance(outputs, dict) else {}


def parse_event(line: str) -> EngineEvent | None:
    """The event on ``line``, or ``None`` when the line is not an event (blank, not JSON, no known kind)."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("event") not in KINDS:
        return None
    return EngineEvent(str(data["event"]), data)


def error_line(stderr_lines: list[str], exit_code: int) -> str:
    """The engine's one-line error from its stderr when it wrote no ``error`` event (it died early):
    the last ``rsvg: error:`` line, else the last line, else the exit status."""
    for line in reversed(stderr_lines):
        if line.startswith("rsvg: error:"):
            return line.removeprefix("rsvg: error:").strip()
    for line in reversed(stderr_lines):
        if line.strip():
            return line.strip()
    return f"the engine stopped with exit status {exit_code}"
