"""Render resources/rsvg-desktop.svg to the PNG sizes desktops ask for (run after editing the SVG).

QT_QPA_PLATFORM=offscreen .venv/bin/python tools/make_icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 32, 48, 64, 128, 256, 512)
RES = Path(__file__).resolve().parents[1] / "resources"


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(RES / "rsvg-desktop.svg"))
    if not renderer.isValid():
        print("the SVG icon is not valid", file=sys.stderr)
        return 1
    out = RES / "icons"
    out.mkdir(exist_ok=True)
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        image.save(str(out / f"rsvg-desktop-{size}.png"))
    image.save(str(RES / "rsvg-desktop.png"))  # 512 px, for the window and PyInstaller
    from PIL import Image

    big = Image.open(out / "rsvg-desktop-256.png")
    big.save(RES / "rsvg-desktop.ico", sizes=[(s, s) for s in (16, 32, 48, 64, 128, 256)])  # Windows
    Image.open(out / "rsvg-desktop-512.png").save(RES / "rsvg-desktop.icns")  # macOS
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
