"""The app's Qt-free logic: what the widgets show and ask, as plain Python that tests run without a
display (cursor formatting, map geometry, run plans, model descriptions, replaying a run's log, the
deletions kept with a run, each task's query).

An import-linter contract keeps this package free of PySide6; the widgets in ``gui/`` import from here,
never the other way round.
"""
