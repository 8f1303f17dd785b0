"""What every rsvg algorithm shares: finding the engine, running it with Processing's feedback, and the
vector output that loads (with its stored default style) when the run ends.

An algorithm is one small class: its parameters (``initAlgorithm``) and ``engine_arguments`` (the
``rsvg`` command it runs); :meth:`RsvgAlgorithm.processAlgorithm` does the rest."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import Any, ClassVar

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsVectorLayer,
)

from .engine_cli import EngineNotFoundError, clean_environment, find_engine, has_vector_extension
from .engine_run import EngineRun, run_engine
from .events import EngineEvent
from .settings import engine_setting


def engine_program() -> str:
    """The ``rsvg`` program to run; a missing engine is one line saying how to install it."""
    try:
        return find_engine(engine_setting())
    except EngineNotFoundError as exc:
        raise QgsProcessingException(str(exc)) from None


class _FeedbackBridge:
    """Engine events and log lines → Processing's feedback."""

    def __init__(self, feedback: QgsProcessingFeedback) -> None:
        self.feedback = feedback

    def event(self, event: EngineEvent) -> None:
        fb = self.feedback
        if event.kind == "progress":
            percent = event.percent()
            if percent is not None:
                fb.setProgress(percent)
            fb.setProgressText(event.progress_text())
        elif event.kind == "warning":
            fb.pushWarning(event.message)
        elif event.kind == "started":
            total = event.get("total")
            fb.pushInfo(f"rsvg {event.get('command')} started" + (f": {total} tiles" if total else ""))
        elif event.kind == "finished":
            counts = {k: v for k, v in event.outputs.items() if isinstance(v, int | float)}
            fb.pushInfo("finished: " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    def log(self, line: str) -> None:
        if line.startswith("rsvg: error:"):
            return  # it becomes the exception (or, after Cancel, the warning below)
        if "warning" in line.lower()[:40]:
            self.feedback.pushWarning(line)
        else:
            self.feedback.pushConsoleInfo(line)


class StoredStyle(QgsProcessingLayerPostProcessorInterface):
    """Gives a loaded result the default style stored in its GeoPackage (``layer_styles``: outlines and
    phrase labels). Processing loads results without their default style, then calls this."""

    #: The post-processors handed to Processing, kept alive here (Processing keeps no Python reference).
    #: Each layer gets its own: a layer's details delete theirs, so one shared by several is freed twice.
    _alive: ClassVar[list[StoredStyle]] = []

    def postProcessLayer(
        self, layer: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        if isinstance(layer, QgsVectorLayer):
            message, ok = layer.loadDefaultStyle()
            if not ok:
                feedback.pushInfo(f"{layer.name()}: no stored style ({message})")
            layer.triggerRepaint()

    @staticmethod
    def create() -> StoredStyle:
        """A new post-processor for one layer."""
        style = StoredStyle()
        StoredStyle._alive.append(style)
        return style


class RsvgAlgorithm(QgsProcessingAlgorithm):
    """A Processing algorithm that runs one ``rsvg`` command. Subclasses set ``NAME``, ``TITLE``,
    ``HELP`` and define ``initAlgorithm`` and ``engine_arguments``."""

    NAME = ""
    TITLE = ""
    HELP = ""
    #: Raster parameters whose file goes to the engine even when QGIS cannot open it (see below).
    RASTER_PARAMETERS: tuple[str, ...] = ("INPUT",)
    #: Each algorithm's ``engine_arguments(parameters, context, feedback)``: the engine's arguments (after
    #: the program) and the results to return when the run went through.
    engine_arguments: Callable[
        [dict[str, Any], QgsProcessingContext, QgsProcessingFeedback], tuple[list[str], dict[str, Any]]
    ]

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:
        return self.TITLE

    def shortHelpString(self) -> str:
        return self.HELP

    def createInstance(self) -> RsvgAlgorithm:
        return type(self)()

    def checkParameterValues(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[bool, str]:
        """QGIS's checks, except that a raster parameter (``RASTER_PARAMETERS``) given a file QGIS cannot
        open as a raster goes to the engine, whose one-line reason (not a raster, corrupt, no CRS) is
        then the error."""
        ok, message = super().checkParameterValues(parameters, context)
        if ok:
            return ok, message
        passed = {
            name
            for name in self.RASTER_PARAMETERS
            if isinstance(parameters.get(name), str) and os.path.isfile(parameters[name].split("|", 1)[0])
        }
        if not passed:
            return ok, message
        for definition in self.parameterDefinitions():
            name = definition.name()
            if name not in passed and not definition.checkValueIsAcceptable(parameters.get(name), context):
                return False, f"Incorrect parameter value for {name}"
        return True, ""

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        feedback = feedback or QgsProcessingFeedback()  # a caller may pass none
        program = engine_program()
        args, results = self.engine_arguments(parameters, context, feedback)
        run = self.run_engine([program, *args], feedback)
        outputs = run.finished.outputs if run.finished is not None else {}
        if "ANSWER_LOG" in results and outputs.get("answer_log"):
            results["ANSWER_LOG"] = outputs["answer_log"]
        return results

    @staticmethod
    def run_engine(argv: list[str], feedback: QgsProcessingFeedback) -> EngineRun:
        """Run the engine with Processing's feedback; its one-line error becomes the exception. After
        Cancel, what finished is kept and returned."""
        bridge = _FeedbackBridge(feedback)
        feedback.pushCommandInfo(shlex.join(argv))

        def started(pid: int) -> None:
            feedback.pushInfo(f"engine process {pid}")

        run = run_engine(
            argv,
            clean_environment(os.environ),
            on_event=bridge.event,
            on_log=bridge.log,
            is_canceled=feedback.isCanceled,
            on_start=started,
        )
        if run.cancelled:
            feedback.pushWarning(
                f"cancelled: the engine stopped (exit status {run.exit_code}) "
                f"{run.seconds_to_exit or 0:.2f} s after Cancel; what finished is kept"
            )
            return run
        if run.error is not None:
            raise QgsProcessingException(run.error)
        return run

    def vector_output(
        self, parameters: dict[str, Any], name: str, layer_name: str, context: QgsProcessingContext
    ) -> str:
        """The file the engine writes for the vector destination ``name`` (a GeoPackage where Processing
        offers something the engine cannot write, e.g. a memory layer), set to load on completion as its
        ``layer_name`` layer, which carries the stored default style."""
        path = self.parameterAsOutputLayer(parameters, name, context)
        chosen = path
        if not has_vector_extension(path):
            path = QgsProcessingUtils.generateTempFilename(f"{name}.gpkg")
        if context.willLoadLayerOnCompletion(chosen):
            layers = context.layersToLoadOnCompletion()
            details = layers.pop(chosen)
            context.setLayersToLoadOnCompletion(layers)
            uri = f"{path}|layername={layer_name}" if path.lower().endswith(".gpkg") else path
            details.setPostProcessor(StoredStyle.create())
            context.addLayerToLoadOnCompletion(uri, details)
        return path
