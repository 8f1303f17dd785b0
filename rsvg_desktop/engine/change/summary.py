"""What a change run did, for the command line (``--json``) and the app: :class:`ChangeSummary`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rsvg_desktop.core.geo.change.layers import change_counts
from rsvg_desktop.core.geo.change.types import ChangeSet, ShiftEstimate

__all__ = ["ChangeSummary"]


@dataclass(frozen=True, slots=True)
class ChangeSummary:
    """The counts of a comparison (``persisting`` includes the ``verified`` objects; ``verification_removed``
    is how many change candidates verification turned into persisting objects), the files written, the
    residual shift in grid pixels (``None`` when not estimated, e.g. from answer logs) and the seconds."""

    before: int
    after: int
    appeared: int
    disappeared: int
    persisting: int
    verified: int
    verification_removed: int
    outputs: tuple[str, ...]
    shift_dx: float | None = None
    shift_dy: float | None = None
    seconds: float = 0.0

    @classmethod
    def from_changeset(
        cls,
        changeset: ChangeSet,
        outputs: Sequence[str | os.PathLike[str]],
        *,
        shift: ShiftEstimate | None = None,
        seconds: float = 0.0,
    ) -> ChangeSummary:
        """The summary of ``changeset`` written to ``outputs``."""
        counts = change_counts(changeset)
        return cls(
            before=counts.before,
            after=counts.after,
            appeared=counts.appeared,
            disappeared=counts.disappeared,
            persisting=counts.persisting,
            verified=counts.verified,
            verification_removed=int(changeset.run.get("verification_removed", counts.verified)),
            outputs=tuple(os.fspath(p) for p in outputs),
            shift_dx=None if shift is None else shift.dx,
            shift_dy=None if shift is None else shift.dy,
            seconds=seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (``outputs`` a list)."""
        out = dataclasses.asdict(self)
        out["outputs"] = list(self.outputs)
        return out
