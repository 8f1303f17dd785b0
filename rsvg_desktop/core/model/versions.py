"""Installed versions of the libraries a model file depends on (recorded in manifests and cache records)."""

from __future__ import annotations

import importlib

__all__ = ["library_versions"]


def library_versions(*packages: str) -> dict[str, str]:
    """``{package: __version__}`` for each of ``packages``, ``"missing"`` where one cannot be imported."""
    out: dict[str, str] = {}
    for name in packages:
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = "missing"
    return out
