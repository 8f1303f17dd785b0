"""The provider's one setting (Processing ▸ Options ▸ Providers ▸ rsvg): the engine's path."""

from __future__ import annotations

from processing.core.ProcessingConfig import ProcessingConfig

#: The ``rsvg`` program; empty: ``rsvg`` on PATH, then where the app installs.
ENGINE_SETTING = "RSVG_ENGINE"


def engine_setting() -> str:
    value = ProcessingConfig.getSetting(ENGINE_SETTING)
    return str(value) if value else ""
