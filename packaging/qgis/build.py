"""Build the QGIS plugin ZIP (``make qgis-plugin``): ``dist/rsvg_qgis.zip`` with the top folder
``rsvg_qgis/``, installable with Plugins ▸ Manage and Install Plugins ▸ Install from ZIP. The version in
its metadata.txt is the engine's (``rsvg_desktop.__version__``)."""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).resolve().parent / "rsvg_qgis"


def engine_version() -> str:
    text = (ROOT / "rsvg_desktop" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit("no __version__ in rsvg_desktop/__init__.py")
    return match.group(1)


def plugin_files() -> list[Path]:
    return sorted(
        p
        for p in SOURCE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def build(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    version = engine_version()
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files():
            name = f"rsvg_qgis/{path.relative_to(SOURCE).as_posix()}"
            if path.name == "metadata.txt":
                text = re.sub(
                    r"^version=.*$", f"version={version}", path.read_text(encoding="utf-8"), flags=re.M
                )
                archive.writestr(name, text)
            else:
                archive.write(path, name)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "dist" / "rsvg_qgis.zip")
    args = parser.parse_args(argv)
    print(build(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
