"""The two-date comparison job (``rsvg change``): both scenes on one grid, the scene job of ``rsvg
detect`` on both dates (resumable answer logs beside the output), their objects matched one to one,
unmatched ones verified on the other date, and the change GeoPackage written (docs/change.md).

:func:`run_change` is a generator of events, driven by the CLI and (through the model worker) the app;
:func:`change` loads the model once in this process and runs it.
"""

from rsvg_desktop.engine.change.config import ChangeConfig, check_change, date_answer_log, verify_log_path
from rsvg_desktop.engine.change.events import (
    ChangeFinished,
    ChangeStarted,
    ChangeWarning,
    DateStarted,
    VerifyProgress,
    VerifyStarted,
)
from rsvg_desktop.engine.change.job import run_change
from rsvg_desktop.engine.change.model_job import change
from rsvg_desktop.engine.change.placing import Placement, place_dates

__all__ = [
    "ChangeConfig",
    "ChangeFinished",
    "ChangeStarted",
    "ChangeWarning",
    "DateStarted",
    "Placement",
    "VerifyProgress",
    "VerifyStarted",
    "change",
    "check_change",
    "date_answer_log",
    "place_dates",
    "run_change",
    "verify_log_path",
]
