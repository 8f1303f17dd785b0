"""Entry point of the frozen app: one executable, two commands.

Started as ``rsvg-desktop`` it opens the app; started through the ``rsvg`` link (or as ``rsvg-desktop
--cli ...``) it is the command line. ``freeze_support`` must run first: the model worker is a spawned
process, and in a frozen app a spawned child re-executes this same executable.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _command_name() -> str:
    return os.path.splitext(os.path.basename(sys.argv[0]))[0].lower()


def main() -> int:
    multiprocessing.freeze_support()
    if _command_name() == "rsvg" or sys.argv[1:2] == ["--cli"]:
        if sys.argv[1:2] == ["--cli"]:
            del sys.argv[1]
        from rsvg_desktop.cli.main import main as cli_main

        return int(cli_main() or 0)
    from rsvg_desktop.gui.app import main as app_main

    return int(app_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
