"""The main window: assembles the map, the docks (model, query, transcript, results), the menus and the
status bar, and connects their signals. The behaviour lives in the pieces it connects:
:class:`~rsvg_desktop.gui.run_controller.RunController` (runs), :class:`~rsvg_desktop.gui.model_controller.
ModelController` (loading), :class:`~rsvg_desktop.gui.scene_loader.SceneLoader` (opening scenes), the
Qt models and the widgets."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QWidget,
)

from rsvg_desktop import __version__
from rsvg_desktop.core.geo.grid import TilePlan
from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.compare_controller import CompareController
from rsvg_desktop.gui.export_dialog import ExportDialog
from rsvg_desktop.gui.logic.coords import CursorFormatter
from rsvg_desktop.gui.logic.messages import app_message
from rsvg_desktop.gui.logic.modelinfo import GUIDANCE
from rsvg_desktop.gui.logic.replay import Replay, read_run, scene_of_log
from rsvg_desktop.gui.logic.runplan import QueryRequest
from rsvg_desktop.gui.logic.viewrules import RESULT_MAX_ZOOM, result_view_rect
from rsvg_desktop.gui.map_view import LAYERS, MapView
from rsvg_desktop.gui.model_controller import ModelController
from rsvg_desktop.gui.model_panel import ModelPanel
from rsvg_desktop.gui.overlay_menu import OverlayMenu
from rsvg_desktop.gui.query_panel import QueryPanel
from rsvg_desktop.gui.results_model import ResultsModel
from rsvg_desktop.gui.results_table import ResultsTable
from rsvg_desktop.gui.run_controller import RunController
from rsvg_desktop.gui.scene_loader import OpenedScene, SceneLoader
from rsvg_desktop.gui.scene_nodata import SceneNodata
from rsvg_desktop.gui.settings import Settings
from rsvg_desktop.gui.tasks import run_in_background
from rsvg_desktop.gui.transcript import Conversations, TranscriptModel, TranscriptPanel
from rsvg_desktop.gui.worker_bridge import WorkerBridge

__all__ = ["COMPACT_SIZE", "CURSOR_LABEL_WIDTH", "MAP_MIN_SIZE", "SCENE_FILTER", "MainWindow"]

log = logging.getLogger(__name__)

#: Below this window size (width, height) the docks are tabbed together (see ``arrange_docks``).
COMPACT_SIZE = (1100, 700)
MAP_MIN_SIZE = (320, 200)
#: The cursor read-out's widest (pixels): the rest of the status bar is left to the messages.
CURSOR_LABEL_WIDTH = 420
OVERLAY_FILTER = "Vector layers (*.gpkg *.geojson *.json *.shp);;All files (*)"
SCENE_FILTER = "Rasters (*.tif *.tiff *.vrt *.img *.jp2 *.png *.jpg *.ecw *.sid);;All files (*)"


class MainWindow(QMainWindow):
    """See module doc. ``worker_factory`` and ``test_model`` replace the engine's (tests)."""

    sceneOpened = Signal(object)  # SceneInfo
    sceneFailed = Signal(str)
    runReopened = Signal(object)  # ActiveRun
    overlayAdded = Signal(str)  # the overlay's name in the View menu

    def __init__(
        self,
        settings: Settings,
        *,
        worker_factory: Callable[[], Any] | None = None,
        test_model: Callable[[], Path] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.settings = settings
        self.setWindowTitle("rsvg-desktop")
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self.info: SceneInfo | None = None
        self.plan: TilePlan | None = None
        self.formatter: CursorFormatter | None = None
        self.export_dialog: ExportDialog | None = None
        self._pending_run: str | None = None
        self.ask_pixel_mode: Callable[[str, str], bool] = self._ask_pixel_mode
        self.ask_question: Callable[[str, str], bool] = self._ask_question  # (title, text): Yes?

        # --- pieces ------------------------------------------------------------------------------
        self.map = MapView(self)
        self.setCentralWidget(self.map)
        self.results = ResultsModel(self)
        self.results_table = ResultsTable(self.results, self)
        self.transcript_model = TranscriptModel(self)
        self.transcript = TranscriptPanel(self.transcript_model, self)
        self.conversations = Conversations()
        self.query_panel = QueryPanel(self)
        self.model_panel = ModelPanel(self)
        self.bridge = WorkerBridge(worker_factory, parent=self)
        self.runs = RunController(
            self.bridge, self.map, self.results, self.transcript_model, self.conversations, self
        )
        self.runs.runs_dir = settings.runs_dir
        self.runs.confirm_large_run = lambda text: self.ask_question("Start a large run?", text)
        self.models = ModelController(self.bridge, self.model_panel, settings, test_model, self)
        self.loader = SceneLoader(self)

        left = Qt.DockWidgetArea.LeftDockWidgetArea
        self.model_dock = self._dock("Model", "modelDock", self.model_panel, left, scroll=True)
        self.query_dock = self._dock("Ask", "queryDock", self.query_panel, left, scroll=True)
        self.transcript_dock = self._dock(
            "Transcript", "transcriptDock", self.transcript, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.results_dock = self._dock(
            "Results", "resultsDock", self.results_table, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        # The map has priority: it keeps a usable minimum, the docks give way (their panels scroll).
        self.map.setMinimumSize(MAP_MIN_SIZE[0], MAP_MIN_SIZE[1])
        self.results_table.setMinimumHeight(90)
        self.transcript.setMinimumWidth(180)
        self.resizeDocks([self.model_dock, self.transcript_dock], [380, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.results_dock], [220], Qt.Orientation.Vertical)
        self._compact: bool | None = None

        # --- status bar --------------------------------------------------------------------------
        self.cursor_label = QLabel(self)
        self.cursor_label.setObjectName("cursorLabel")
        self.progress_label = QLabel(self)
        self.device_label = QLabel(self)
        self.device_label.setObjectName("deviceLabel")
        self.cursor_label.setMaximumWidth(CURSOR_LABEL_WIDTH)  # the messages keep the rest of the bar
        self.statusBar().addPermanentWidget(self.cursor_label)
        self.statusBar().addPermanentWidget(self.progress_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self._set_device("no model", False)

        self._build_actions()
        self._connect()
        self.models.restore()
        self.query_panel.set_grid(settings.tile_size, settings.overlap)
        self._update_can_run()
        geometry, state = settings.window_geometry(), settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    # --- layout ------------------------------------------------------------------------------
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.arrange_docks()

    def arrange_docks(self) -> None:
        """Fit the docks to the window: on a small window (below :data:`COMPACT_SIZE`) the Model and Ask
        panels share one tabbed dock (Ask in front: Run stays on screen) and the Transcript shares the
        Results dock, so the map keeps most of the room; the Results get about a quarter of the
        height. Done when the window crosses the threshold, so the analyst's own arrangement stays."""
        compact = self.width() < COMPACT_SIZE[0] or self.height() < COMPACT_SIZE[1]
        if compact == self._compact:
            return
        first, self._compact = self._compact is None, compact
        if first and not compact:
            return  # the default (or the analyst's saved) arrangement stands
        if compact:
            self.tabifyDockWidget(self.model_dock, self.query_dock)
            self.tabifyDockWidget(self.results_dock, self.transcript_dock)
            self.query_dock.raise_()
            self.results_dock.raise_()
            width = max(240, min(340, self.width() // 3))
            self.resizeDocks([self.query_dock], [width], Qt.Orientation.Horizontal)
        else:
            left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
            self.addDockWidget(left, self.model_dock)
            self.addDockWidget(left, self.query_dock)
            self.splitDockWidget(self.model_dock, self.query_dock, Qt.Orientation.Vertical)
            self.addDockWidget(right, self.transcript_dock)
            self.resizeDocks([self.model_dock, self.transcript_dock], [380, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.results_dock], [max(110, self.height() // 4)], Qt.Orientation.Vertical)

    def _dock(
        self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea, scroll: bool = False
    ) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        if scroll:  # panels of form rows: scroll rather than squeeze them when the dock is small
            area_widget = QScrollArea(dock)
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QFrame.Shape.NoFrame)
            area_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            area_widget.setWidget(widget)
            dock.setWidget(area_widget)
        else:
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # --- actions -----------------------------------------------------------------------------
    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_action = QAction("&Open scene…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(self._choose_scene)
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.open_run_action = QAction("Reopen a &run (answer log)…", self)
        self.open_run_action.triggered.connect(self._choose_run)
        file_menu.addAction(self.open_run_action)
        self.overlay_action = QAction("Add &vector layer…", self)
        self.overlay_action.setToolTip("Show a GeoPackage, GeoJSON or Shapefile layer over the scene")
        self.overlay_action.triggered.connect(self._choose_overlay)
        file_menu.addAction(self.overlay_action)
        file_menu.addSeparator()
        self.export_action = QAction("&Export detections…", self)
        self.export_action.setShortcut(QKeySequence("Ctrl+E"))
        self.export_action.triggered.connect(self.open_export_dialog)
        file_menu.addAction(self.export_action)
        runs_folder = QAction("Results &folder…", self)
        self.runs_folder_action = runs_folder
        runs_folder.setStatusTip(f"Runs are written to {self.settings.runs_dir}")
        runs_folder.triggered.connect(self._choose_runs_dir)
        file_menu.addAction(runs_folder)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)  # asks first during a run (closeEvent)
        file_menu.addAction(quit_action)

        view_menu = menu.addMenu("&View")
        self.layer_actions: dict[str, QAction] = {}
        for name, label in LAYERS:
            action = QAction(label, self, checkable=True, checked=True)
            action.toggled.connect(lambda on, n=name: self.map.set_layer_visible(n, on))
            view_menu.addAction(action)
            self.layer_actions[name] = action
        self.labels_action = QAction("Detection labels", self, checkable=True, checked=True)
        self.labels_action.toggled.connect(self.map.detections.set_labels_visible)
        view_menu.addAction(self.labels_action)
        self.overlays_menu = view_menu.addMenu("Vector &layers")
        self.overlays = OverlayMenu(self.map, self.overlays_menu, self.layer_actions["overlays"], self)
        self.overlay_actions = self.overlays.actions
        view_menu.addSeparator()
        fit = QAction("&Fit scene", self, shortcut=QKeySequence("Ctrl+0"))
        fit.triggered.connect(self.map.fit_scene)
        zoom_in = QAction("Zoom &in", self, shortcut=QKeySequence(QKeySequence.StandardKey.ZoomIn))
        zoom_in.triggered.connect(lambda: self.map.zoom_by(1.25))
        zoom_out = QAction("Zoom &out", self, shortcut=QKeySequence(QKeySequence.StandardKey.ZoomOut))
        zoom_out.triggered.connect(lambda: self.map.zoom_by(0.8))
        for action in (fit, zoom_in, zoom_out):
            view_menu.addAction(action)
        view_menu.addSeparator()
        for dock in (self.model_dock, self.query_dock, self.transcript_dock, self.results_dock):
            view_menu.addAction(dock.toggleViewAction())

        tools_menu = menu.addMenu("&Tools")
        group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for tool, label, key in (
            ("pan", "&Pan / select", "P"),
            ("scope", "Draw &scope rectangle", "R"),
            ("region", "Draw &identify region", "I"),
        ):
            action = QAction(label, self, checkable=True, shortcut=QKeySequence(key))
            action.triggered.connect(lambda _on=False, t=tool: self.map.set_tool(t))
            group.addAction(action)
            tools_menu.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions["pan"].setChecked(True)

        help_menu = menu.addMenu("&Help")
        guide = QAction("Getting a GeoChat model…", self)
        guide.triggered.connect(lambda: self._message("Getting a GeoChat model", GUIDANCE))
        about = QAction("About rsvg-desktop", self)
        about.triggered.connect(
            lambda: self._message(
                "About rsvg-desktop",
                f"rsvg-desktop {__version__}<br>Ask GeoChat about georeferenced scenes, "
                "tile by tile, and export the answers for QGIS.",
            )
        )
        help_menu.addAction(guide)
        help_menu.addAction(about)

        toolbar = self.addToolBar("Map")
        toolbar.setObjectName("mapToolbar")
        toolbar.addAction(self.open_action)
        toolbar.addSeparator()
        for tool in ("pan", "scope", "region"):
            toolbar.addAction(self.tool_actions[tool])
        toolbar.addSeparator()
        toolbar.addAction(fit)
        toolbar.addSeparator()
        for name, _label in LAYERS:
            toolbar.addAction(self.layer_actions[name])
        self.refresh_recent_menu()

    def _connect(self) -> None:
        m, q, r = self.map, self.query_panel, self.runs
        self.loader.opened.connect(self._scene_opened)
        self.loader.failed.connect(self._scene_failed)
        self.loader.planned.connect(self._grid_planned)
        self.scene_nodata = SceneNodata(self, q.nodata_field)  # the field's edits, the scene read again
        m.cursorMoved.connect(self._cursor_moved)
        m.cursorLeft.connect(lambda: self.cursor_label.setText(""))
        m.filesDropped.connect(self._files_dropped)
        m.toolChanged.connect(lambda tool: self.tool_actions[tool].setChecked(True))
        m.rectangleDrawn.connect(self._rectangle_drawn)
        m.detectionSelectionChanged.connect(self._map_selection)
        m.deleteRequested.connect(self.delete_selected)
        q.runRequested.connect(self.start_run)
        q.cancelRequested.connect(self._cancel)
        q.drawScopeRequested.connect(self._draw_scope)
        q.drawRegionRequested.connect(lambda: self.map.set_tool("region"))
        q.gridChanged.connect(self._grid_changed)
        r.runningChanged.connect(self._running_changed)
        r.progressChanged.connect(self._progress)
        r.statusMessage.connect(self.show_status)
        self.models.statusMessage.connect(self.show_status)
        self.models.deviceChanged.connect(self._set_device)
        self.overlays.statusMessage.connect(self.show_status)
        self.overlays.failed.connect(lambda title, text: self._message(title, text, warning=True))
        self.overlays.added.connect(self.overlayAdded.emit)
        self.bridge.stateChanged.connect(lambda _s: self._update_can_run())
        self.results_table.selectionChangedKeys.connect(self._table_selection)
        self.results_table.activated.connect(lambda key: self.zoom_to_detections([key]))
        self.results_table.deleteRequested.connect(self.delete_selected)
        self.results_table.restoreRequested.connect(self.restore_deleted)
        self.results_table.exportRequested.connect(self.open_export_dialog)
        self.transcript.tileSelected.connect(lambda tile: self.map.highlight_tile(tile, center=True))
        self.transcript.followUpRequested.connect(self.ask_follow_up)
        self.compare = CompareController(self)  # File ▸ Compare with another date… (two dates, one grid)
        self.compare.runningChanged.connect(self._running_changed)
        self.compare.progressChanged.connect(lambda d, t, text: self._progress(d, t, text, unit="questions"))

    # --- scenes ------------------------------------------------------------------------------
    def open_scene(self, path: str | os.PathLike[str], *, pixel_mode: bool = False) -> None:
        """Open a scene (in the background; :attr:`sceneOpened` or :attr:`sceneFailed` follows)."""
        path = os.fspath(path)
        if self.runs.running or self.compare.running:
            self.show_status("Cancel the run before opening another scene.")
            return
        self.show_status(f"Opening {path}…")
        tile_size, overlap = self.query_panel.grid()
        nodata = self.settings.scene_nodata(path)  # the analyst's value for this scene, if any
        self.loader.open(path, tile_size=tile_size, overlap=overlap, pixel_mode=pixel_mode, nodata=nodata)

    def _choose_scene(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scene", self.settings.last_dir, SCENE_FILTER)
        if path:
            self.settings.last_dir = str(Path(path).parent)
            self.open_scene(path)

    def _files_dropped(self, paths: list[str]) -> None:
        if paths:
            self.open_scene(paths[0])

    def dragEnterEvent(self, event: Any) -> None:
        self.map.dragEnterEvent(event)

    def dropEvent(self, event: Any) -> None:
        self.map.dropEvent(event)

    def _scene_opened(self, opened: OpenedScene) -> None:
        info, plan = opened.info, opened.plan
        self.info, self.plan = info, plan
        self.formatter = CursorFormatter(info)
        self.overlays.clear()
        self.map.set_scene_raster(info, opened.preview, opened.stretch)
        self.map.grid.set_grid(plan.kept, plan.skipped, (info.width, info.height))
        self.results.reset(crs_wkt=info.crs_wkt, transform=info.transform, answer_log=None, run_id=None)
        self.runs.set_scene(info, plan)
        self.runs.forget_scene()  # the previous scene's transcript, region and progress go with it
        self.query_panel.forget_scene()
        self.query_panel.nodata_field.set_scene(info)
        self.models.calibration_inputs = [info.path]  # q4cal calibrates on the analyst's own scene
        self.settings.add_recent(info.path)
        self.refresh_recent_menu()
        name = Path(info.path).name
        crs = info.crs_name or ("pixel mode" if info.crs_wkt is None else "custom CRS")
        self.setWindowTitle(f"{name} — rsvg-desktop")
        self.show_status(
            f"{name}: {info.width} × {info.height} px, {crs}; {plan.n_kept} tiles "
            f"({plan.n_rows} × {plan.n_cols} grid, {plan.n_skipped} skipped as nodata)"
        )
        self._update_can_run()
        self.sceneOpened.emit(info)
        if self._pending_run is not None:
            pending, self._pending_run = self._pending_run, None
            self._load_run(pending)

    def _scene_failed(self, path: str, message: str, no_crs: bool) -> None:
        message = app_message(message)  # the question and the warning speak of the app
        if no_crs and self.ask_pixel_mode(path, message):
            self.open_scene(path, pixel_mode=True)
            return
        self._pending_run = None
        self.show_status(f"Cannot open {path}")
        self._message("Cannot open the scene", message, warning=True)
        self.sceneFailed.emit(message)

    def _ask_pixel_mode(self, path: str, message: str) -> bool:
        answer = QMessageBox.question(
            self,
            "No coordinate reference system",
            f"{message}\n\nOpen it in pixel mode (results in pixel coordinates, no lat/lon)?",
        )
        return answer == QMessageBox.StandardButton.Yes

    # --- reopening runs ----------------------------------------------------------------------
    def _choose_run(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Reopen a run",
            self.settings.runs_dir,
            "Answer logs (*.answers.jsonl *.jsonl);;All files (*)",
        )
        if path:
            self.open_run(path)

    def open_run(self, path: str | os.PathLike[str]) -> None:
        """Show a run from its answer log (opening its scene first when needed); :attr:`runReopened`."""
        path = os.fspath(path)
        try:
            scene = scene_of_log(path)
        except (OSError, ValueError) as exc:
            self._message("Cannot reopen the run", str(exc), warning=True)
            return
        same = self.info is not None and Path(scene).resolve() == Path(self.info.path).resolve()
        if same and self.plan is not None:
            self._load_run(path)
        else:
            self._pending_run = path
            self.open_scene(scene)

    def _load_run(self, path: str) -> None:
        info = self.info
        assert info is not None
        self.show_status(f"Reopening {path}…")
        self._replay_call = run_in_background(
            lambda: read_run(path, info),
            self._replay_ready,
            lambda exc: self._message("Cannot reopen the run", str(exc), warning=True),
            name="reopen run",
        )

    def _replay_ready(self, replay: Replay) -> None:
        try:
            run = self.runs.replay(replay)
        except ConfigError as exc:
            self.show_status(str(exc))
            return
        self.show_status(f"Reopened {replay.answer_log}")
        self.runReopened.emit(run)

    def _grid_changed(self, tile_size: int, overlap: int) -> None:
        self.settings.tile_size = tile_size
        self.settings.overlap = overlap
        if self.info is not None:
            self.plan = None
            self.runs.set_scene(self.info, None)
            self._update_can_run()
            self.loader.replan(self.info, tile_size=tile_size, overlap=overlap)

    def _grid_planned(self, plan: TilePlan) -> None:
        if self.info is None or plan.scene.path != self.info.path:
            return
        self.plan = plan
        self.map.grid.set_grid(plan.kept, plan.skipped, (self.info.width, self.info.height))
        self.runs.set_scene(self.info, plan)
        self._update_can_run()
        self.show_status(f"Tile grid: {plan.n_kept} tiles of {plan.tile_size} px, overlap {plan.overlap}")

    def refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent_files
        for path in files:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _c=False, p=path: self._open_recent(p))
        self.recent_menu.setEnabled(bool(files))

    def _open_recent(self, path: str) -> None:
        if not Path(path).exists() and "://" not in path:
            self.settings.remove_recent(path)
            self.refresh_recent_menu()
            self._message("Cannot open the scene", f"{path} no longer exists.", warning=True)
            return
        self.open_scene(path)

    def _choose_runs_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for run results", self.settings.runs_dir)
        if folder:
            self.set_runs_dir(folder)

    def set_runs_dir(self, folder: str) -> None:
        """Write the next runs to ``folder`` (kept in the settings)."""
        self.settings.runs_dir = folder
        self.runs.runs_dir = folder
        self.runs_folder_action.setStatusTip(f"Runs are written to {folder}")
        self.show_status(f"Runs are written to {folder}")

    # --- vector overlays ---------------------------------------------------------------------
    def _choose_overlay(self) -> None:
        if self.info is None:
            self.show_status("Open a scene first: a vector layer is drawn over it.")
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Add vector layer", self.settings.last_dir, OVERLAY_FILTER
        )
        if path:
            self.add_overlay(path)

    def add_overlay(self, path: str | os.PathLike[str]) -> None:
        """Read a vector layer in the background and draw it over the scene, reprojected
        (:attr:`overlayAdded` or a message follows)."""
        if self.info is None:
            self.show_status("Open a scene first: a vector layer is drawn over it.")
            return
        self.overlays.add(path, self.info, lambda info: self.info is info)

    # --- map interaction ---------------------------------------------------------------------
    def _cursor_moved(self, x: float, y: float) -> None:
        if self.formatter is not None and self.formatter.inside(x, y):
            self.cursor_label.setText(self.formatter.format(x, y))
        else:
            self.cursor_label.setText("")

    def _draw_scope(self) -> None:
        self.query_panel.set_scope("rectangle")
        self.map.set_tool("scope")

    def _rectangle_drawn(self, tool: str, rect: tuple[float, float, float, float]) -> None:
        if tool == "scope":
            self.query_panel.set_scope("rectangle")
        elif tool == "region":
            self.query_panel.set_task("identify")
            self.query_panel.set_region(rect)

    # --- runs --------------------------------------------------------------------------------
    def start_run(self, request: QueryRequest) -> bool:
        if self.compare.takes(request):  # comparison mode: a task that finds objects asks both dates
            return self.compare.start(request)
        try:
            self.runs.start(request)
        except ConfigError as exc:
            self.show_status(str(exc))
            self.query_panel.set_can_run(True, app_message(str(exc)))
            self.query_panel.reason_label.setText(app_message(str(exc)))
            self.query_panel.reason_label.setVisible(True)
            return False
        return True

    def ask_follow_up(self, tile: Any, text: str, run_key: str) -> bool:
        try:
            self.runs.start(QueryRequest(task="chat", query=text), follow_up_tile=tile, follow_up_run=run_key)
        except ConfigError as exc:
            self.show_status(str(exc))
            return False
        return True

    def _cancel(self) -> None:
        self.runs.cancel()
        self.query_panel.set_cancelling()

    def _running_changed(self, running: bool) -> None:
        self.query_panel.set_running(running)
        self.open_action.setEnabled(not running)
        self._update_can_run()

    def _progress(self, done: int, total: int, text: str, unit: str = "tiles") -> None:
        self.query_panel.set_progress(done, total, text, unit)
        self.progress_label.setText(text if self.runs.running or self.compare.running else "")

    def _update_can_run(self) -> None:
        reason = self.runs.why_not()
        self.query_panel.set_can_run(not reason, reason)
        self.transcript.set_can_ask(self.bridge.state == "ready" and not self.runs.running)
        self.export_action.setEnabled(self.results.answer_log is not None)
        self.results_table.refresh_state()

    def _set_device(self, name: str, random_weights: bool) -> None:
        if random_weights:
            self.device_label.setText(f"  {name} · RANDOM WEIGHTS  ")
            self.device_label.setStyleSheet("background: #b3261e; color: white; font-weight: bold;")
        else:
            self.device_label.setText(f"  Device: {name}  ")
            self.device_label.setStyleSheet("")

    # --- results -----------------------------------------------------------------------------
    def _table_selection(self, keys: list[tuple[int, int, int]]) -> None:
        self.map.select_keys(keys)
        if keys:
            self.zoom_to_detections(keys)

    def _map_selection(self, keys: list[tuple[int, int, int]]) -> None:
        self.results_table.select_keys(keys)

    def zoom_to_detections(self, keys: list[tuple[int, int, int]]) -> None:
        rect: QRectF | None = None
        for key in keys:
            row = self.results.detection(key)
            if row is None:
                continue
            x0, y0, x1, y1 = row.pixel_bounds()
            r = QRectF(x0, y0, x1 - x0, y1 - y0)
            rect = r if rect is None else rect.united(r)
        if rect is not None:
            # context around the box, never pixel level
            x0, y0, x1, y1 = result_view_rect((rect.left(), rect.top(), rect.right(), rect.bottom()))
            self.map.zoom_to(QRectF(x0, y0, x1 - x0, y1 - y0), margin=0.0, max_scale=RESULT_MAX_ZOOM)

    def delete_selected(self) -> None:
        keys = self.results_table.selected_keys() or self.map.detections.selected_keys()
        removed = self.results.remove_keys(keys)
        self.map.detections.remove(removed)
        if removed:
            self.show_status(f"Deleted {len(removed)} detection(s); they are left out of the export.")

    def restore_deleted(self) -> None:
        for row in self.results.restore_all():
            self.map.detections.add(row.key, row.pixels, row.phrase)

    def open_export_dialog(self) -> ExportDialog | None:
        if self.results.answer_log is None:
            self.show_status("Run a query that finds objects first: there is nothing to export.")
            return None
        log_path = Path(self.results.answer_log)
        stem = log_path.name.removesuffix(".answers.jsonl").removesuffix(".jsonl")
        default = str(log_path.with_name(f"{stem}-export.gpkg"))
        dialog = ExportDialog(
            self.results.answer_log,
            exclude=self.results.excluded,
            detections=self.results.rowCount(),
            default_path=default,
            pixel_mode=self.info is not None and self.info.crs_wkt is None,
            parent=self,
        )
        dialog.exported.connect(
            lambda s: self.show_status(
                f"Exported {getattr(getattr(s, 'result', None), 'count', '?')} detections to "
                f"{getattr(getattr(s, 'result', None), 'path', '')}"
            )
        )
        self.export_dialog = dialog
        dialog.show()
        return dialog

    # --- messages and lifetime ---------------------------------------------------------------
    def show_status(self, text: str) -> None:
        text = app_message(text)
        log.info("%s", text)
        self.statusBar().showMessage(text, 10000)

    def _message(self, title: str, text: str, *, warning: bool = False) -> None:
        if not text.lstrip().startswith("<"):
            text = app_message(text)
        box = QMessageBox(
            QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Information,
            title,
            text,
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setTextFormat(Qt.TextFormat.RichText if text.lstrip().startswith("<") else Qt.TextFormat.AutoText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.open()  # not modal to the event loop: the window (and tests) carry on

    def _ask_question(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def close_now(self) -> None:
        """Close without asking, even during a run (the session is ending)."""
        self.ask_question = lambda _title, _text: True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if (self.runs.running or self.compare.running) and not self.ask_question(
            "Quit during a run?",
            "A run is in progress. Quit anyway? The finished tiles are kept in the run's answer log; "
            "the tiles not yet answered are not.",
        ):
            event.ignore()
            return
        self.settings.save_window(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.bridge.stop()
        self.map.raster.shutdown()
        super().closeEvent(event)
