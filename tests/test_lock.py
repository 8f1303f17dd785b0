"""The lock (``requirements/constraints.txt``): every declared dependency is pinned there, the pins satisfy
what pyproject.toml asks for, and this environment holds exactly the locked versions (what a fresh
clone's ``make venv`` installs)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "constraints.txt"


def _lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate(LOCK.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{LOCK.name}:{number}: not an exact pin: {raw!r}"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    return reqs + [Requirement(r) for r in build]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _lock()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but not in the lock: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {req.name}=={pins[name]}, outside pyproject.toml's {req}: run make lock"
        )


def test_the_environment_holds_the_locked_versions() -> None:
    """A package installed here at another version than the lock means the install did not go through
    the lock (or the lock was edited without reinstalling: run make venv)."""
    pins = _lock()
    wrong = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and Version(Version(dist.version).public) != pins[name]:
            wrong.append(f"{name} {dist.version} (lock: {pins[name]})")
    assert not wrong, "installed versions differ from the lock: " + ", ".join(sorted(wrong))


@pytest.mark.parametrize("name", ["torch", "transformers", "bitsandbytes", "torchao", "kernels", "rasterio"])
def test_the_core_stack_is_installed_from_the_lock(name: str) -> None:
    assert Version(Version(metadata.version(name)).public) == _lock()[canonicalize_name(name)]
