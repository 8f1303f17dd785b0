"""``rsvg-desktop [SCENE]``: start the desktop application.

Options: ``--settings-file FILE`` keeps the settings in an INI file instead of the user's native store
(also ``$RSVG_DESKTOP_SETTINGS``); ``--test-model`` selects the test model (random weights) in the model
panel; ``--load`` loads the chosen model at start; ``-v`` more log output.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsvg_desktop import __version__

_IMPORTED = time.monotonic()  # the app module is imported first thing: start-up is measured from here

__all__ = ["build_parser", "create_window", "main"]

log = logging.getLogger("rsvg_desktop.gui")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rsvg-desktop", description="Ask GeoChat about georeferenced scenes.")
    p.add_argument("scene", nargs="?", help="a raster to open (GeoTIFF or anything GDAL reads)")
    p.add_argument(
        "--settings-file",
        metavar="FILE",
        default=None,
        help="keep settings in this INI file (default: the user's settings; env RSVG_DESKTOP_SETTINGS)",
    )
    p.add_argument(
        "--test-model", action="store_true", help="choose the test model (RANDOM WEIGHTS) in the model panel"
    )
    p.add_argument(
        "--runs-dir",
        metavar="FOLDER",
        default=None,
        help="write runs here (kept in the settings; default: 'runs' beside --settings-file, "
        "else in the user's data folder)",
    )
    p.add_argument("--load", action="store_true", help="load the chosen model at start")
    p.add_argument("--pixel-mode", action="store_true", help="open a scene without CRS in pixel coordinates")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug log output")
    p.add_argument(
        "--exit-after-start",
        action="store_true",
        help="quit as soon as the window is shown (measures start-up; smoke tests)",
    )
    p.add_argument("--version", action="version", version=f"rsvg-desktop {__version__}")
    return p


def _icon_path() -> Path | None:
    """The app icon: inside the frozen bundle, else the source checkout's ``resources/``."""
    roots = [
        Path(getattr(sys, "_MEIPASS", "")) / "resources",
        Path(__file__).resolve().parents[2] / "resources",
    ]
    return next((r / "rsvg-desktop.png" for r in roots if (r / "rsvg-desktop.png").is_file()), None)


def _close_on_signals(app: Any, window: Any) -> None:
    """SIGTERM (the desktop session ending, ``kill``), SIGHUP and Ctrl-C close the window like the
    user would: settings saved, the model worker stopped (never left holding GPU memory), without the
    question a user gets when quitting during a run (nobody is there to answer it). Python runs
    signal handlers only between bytecodes, so a timer wakes the interpreter while Qt waits."""
    import signal

    from PySide6.QtCore import QTimer

    def handler(signum: int, _frame: object) -> None:
        log.warning("received %s: closing", signal.Signals(signum).name)
        window.close_now()
        app.quit()

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, handler)
    wake = QTimer(app)
    wake.setInterval(200)
    wake.timeout.connect(lambda: None)
    wake.start()


def create_window(args: argparse.Namespace) -> object:
    """Build the main window for parsed ``args`` (a QApplication must exist)."""
    from rsvg_desktop.gui.main_window import MainWindow
    from rsvg_desktop.gui.settings import Settings, open_qsettings

    settings = Settings(open_qsettings(args.settings_file))
    if args.runs_dir:
        settings.runs_dir = str(Path(args.runs_dir).expanduser().resolve())
    window = MainWindow(settings)
    if args.test_model:
        window.model_panel.test_radio.setChecked(True)
    if args.scene:
        window.open_scene(args.scene, pixel_mode=args.pixel_mode)
    if args.load and window.model_panel.can_load():
        window.model_panel.load_button.click()
    return window


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from PySide6.QtWidgets import QApplication

    from rsvg_desktop.gui.settings import APP_NAME, ORG_NAME

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "rsvg-desktop"])
    app.setOrganizationName(ORG_NAME)
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    icon = _icon_path()
    if icon is not None:
        from PySide6.QtGui import QIcon

        QApplication.setWindowIcon(QIcon(str(icon)))
    window = create_window(args)
    window.show()  # type: ignore[attr-defined]
    _close_on_signals(app, window)
    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, lambda: log.info("window shown %.2f s after start", time.monotonic() - _IMPORTED))
    if args.exit_after_start:
        QTimer.singleShot(0, app.quit)
    return int(app.exec())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
