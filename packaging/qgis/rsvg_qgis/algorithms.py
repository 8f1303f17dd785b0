"""The provider's algorithms, one small class each: parameters (names fixed: users' models and scripts
depend on them, docs/qgis.md) and the ``rsvg`` command they run."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
)

from .algorithm_base import RsvgAlgorithm, StoredStyle
from .engine_cli import (
    CHANGE_TASKS,
    PRECISIONS,
    TASKS,
    answer_log_of,
    batch_args,
    change_args,
    detect_args,
    export_args,
    tiles_args,
)
from .raster_source import scene_for_layer

Params = dict[str, Any]


def _enum(name: str, title: str, options: tuple[str, ...], default: str) -> QgsProcessingParameterEnum:
    """An enum whose values are its option strings (``TASK='grounding'``), not their indices."""
    param = QgsProcessingParameterEnum(name, title, options=list(options), defaultValue=default)
    param.setUsesStaticStrings(True)
    return param


def _integer(name: str, title: str, default: int, minimum: int) -> QgsProcessingParameterNumber:
    return QgsProcessingParameterNumber(
        name, title, QgsProcessingParameterNumber.Integer, defaultValue=default, minValue=minimum
    )


def _add_grid_parameters(algorithm: RsvgAlgorithm) -> None:
    """TILE_SIZE and OVERLAP, the tile grid's parameters (``detect``, ``tiles``, ``change``)."""
    algorithm.addParameter(_integer("TILE_SIZE", "Tile size (pixels)", 504, 32))
    algorithm.addParameter(_integer("OVERLAP", "Overlap (pixels)", 64, 0))


def _grid(algorithm: RsvgAlgorithm, parameters: Params, context: QgsProcessingContext) -> dict[str, Any]:
    """TILE_SIZE and OVERLAP as the argument builders' ``tile_size`` and ``overlap``."""
    return {
        "tile_size": algorithm.parameterAsInt(parameters, "TILE_SIZE", context),
        "overlap": algorithm.parameterAsInt(parameters, "OVERLAP", context),
    }


class _ModelRunAlgorithm(RsvgAlgorithm):
    """The question and model parameters that ``detect`` and ``batch`` share."""

    def add_question_parameters(self) -> None:
        self.addParameter(_enum("TASK", "Task", TASKS, TASKS[0]))
        self.addParameter(QgsProcessingParameterString("QUERY", "Question or object description"))
        self.addParameter(
            QgsProcessingParameterString("CLASSES", "Classes (comma-separated, task classify)", optional=True)
        )

    def add_model_parameters(self) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL",
                "Converted model folder (empty: the engine's default)",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "TEST_MODEL", "Built-in test model (RANDOM WEIGHTS: answers are noise)", defaultValue=False
            )
        )
        self.addParameter(_enum("PRECISION", "Precision", PRECISIONS, PRECISIONS[0]))
        self.addParameter(
            QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)", defaultValue="auto")
        )

    def question(self, parameters: Params, context: QgsProcessingContext) -> dict[str, Any]:
        query = self.parameterAsString(parameters, "QUERY", context)
        if not query.strip():
            raise QgsProcessingException("QUERY is empty: ask a question or describe an object")
        return {
            "query": query,
            "task": self.parameterAsString(parameters, "TASK", context) or TASKS[0],
            "classes": self.parameterAsString(parameters, "CLASSES", context) or None,
            "model": self.parameterAsString(parameters, "MODEL", context) or None,
            "test_model": self.parameterAsBoolean(parameters, "TEST_MODEL", context),
            "precision": self.parameterAsString(parameters, "PRECISION", context) or PRECISIONS[0],
            "device": self.parameterAsString(parameters, "DEVICE", context) or "auto",
        }


def _scene(
    algorithm: RsvgAlgorithm,
    parameters: Params,
    context: QgsProcessingContext,
    feedback: QgsProcessingFeedback,
    *,
    extent: bool,
    name: str = "INPUT",
) -> tuple[str, tuple[int, int, int, int] | None]:
    """The raster parameter ``name`` as (file, pixel window of EXTENT when ``extent``): its own file, a
    temporary GeoTIFF of a layer that is not a local file, or a file that QGIS cannot open as a raster
    as it is, so that the engine's one-line reason is the error."""
    layer = algorithm.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        value = algorithm.parameterAsString(parameters, name, context)
        if value and os.path.isfile(value):
            return value, None
        raise QgsProcessingException(f"{name}: {value} is not a raster layer")
    area = None
    if extent and parameters.get("EXTENT") is not None:
        area = algorithm.parameterAsExtent(parameters, "EXTENT", context, layer.crs())
    return scene_for_layer(layer, area, context, feedback)


class DetectAlgorithm(_ModelRunAlgorithm):
    NAME = "detect"
    TITLE = "Ask GeoChat about a raster layer (detect)"
    HELP = (
        "Runs rsvg detect: asks GeoChat the question on every tile of the layer (only the tiles that meet "
        "EXTENT when it is set) and writes the merged polygons, with the tile grid and the run table, "
        "to OUTPUT; ANSWER_LOG keeps every answer (rsvg:export rebuilds the layer from it). Cancel "
        "stops the engine within a second and keeps the finished tiles."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        self.add_question_parameters()
        self.add_model_parameters()
        _add_grid_parameters(self)
        self.addParameter(
            QgsProcessingParameterExtent("EXTENT", "Only tiles that meet this extent", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", "Detections", QgsProcessing.TypeVectorPolygon, createByDefault=True
            )
        )
        self.addOutput(QgsProcessingOutputFile("ANSWER_LOG", "Answer log"))

    def engine_arguments(self, parameters: Params, context: QgsProcessingContext, feedback: Any) -> Any:
        scene, window = _scene(self, parameters, context, feedback, extent=True)
        output = self.vector_output(parameters, "OUTPUT", "detections", context)
        args = detect_args(
            scene,
            output,
            **self.question(parameters, context),
            **_grid(self, parameters, context),
            window=window,
        )
        return args, {"OUTPUT": output, "ANSWER_LOG": answer_log_of(output)}


class BatchAlgorithm(_ModelRunAlgorithm):
    NAME = "batch"
    TITLE = "Ask GeoChat about many rasters (batch)"
    HELP = (
        "Runs rsvg batch over rasters and folders (searched recursively) into a GeoPackage run store. "
        "Running it again with the same inputs, question and OUTPUT resumes where it stopped."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(
            QgsProcessingParameterMultipleLayers("INPUTS", "Rasters and folders", QgsProcessing.TypeFile)
        )
        self.add_question_parameters()
        self.add_model_parameters()
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Run store", "GeoPackage (*.gpkg *.GPKG)")
        )
        self.addOutput(QgsProcessingOutputFile("ANSWER_LOG", "Answer log"))

    def _inputs(self, parameters: Params, context: QgsProcessingContext) -> list[str]:
        inputs = []
        for value in self.parameterAsFileList(parameters, "INPUTS", context):
            layer = None if os.path.exists(value) else QgsProcessingUtils.mapLayerFromString(value, context)
            inputs.append(layer.source().split("|", 1)[0] if layer is not None else value)
        if not inputs:
            raise QgsProcessingException("INPUTS is empty: give rasters or folders")
        return inputs

    def engine_arguments(self, parameters: Params, context: QgsProcessingContext, feedback: Any) -> Any:
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = batch_args(self._inputs(parameters, context), output, **self.question(parameters, context))
        if context.willLoadLayerOnCompletion(output):
            layers = context.layersToLoadOnCompletion()
            details = layers.pop(output)
            context.setLayersToLoadOnCompletion(layers)
            details.setPostProcessor(StoredStyle.create())
            context.addLayerToLoadOnCompletion(f"{output}|layername=detections", details)
        return args, {"OUTPUT": output, "ANSWER_LOG": answer_log_of(output)}


class ExportAlgorithm(RsvgAlgorithm):
    NAME = "export"
    TITLE = "Rebuild the layer from an answer log (export)"
    HELP = "Runs rsvg export: the detections layer rebuilt from an answer log, with no model."

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterFile("ANSWER_LOG", "Answer log", extension="jsonl"))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", "Detections", QgsProcessing.TypeVectorPolygon, createByDefault=True
            )
        )

    def engine_arguments(self, parameters: Params, context: QgsProcessingContext, feedback: Any) -> Any:
        log = self.parameterAsFile(parameters, "ANSWER_LOG", context)
        output = self.vector_output(parameters, "OUTPUT", "detections", context)
        return export_args(log, output), {"OUTPUT": output}


class TilesAlgorithm(RsvgAlgorithm):
    NAME = "tiles"
    TITLE = "Tile grid of a raster (tiles)"
    HELP = "Runs rsvg tiles: the tile grid a detect run would use, kept and skipped (nodata) tiles."

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        _add_grid_parameters(self)
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", "Tiles", QgsProcessing.TypeVectorPolygon, createByDefault=True
            )
        )

    def engine_arguments(self, parameters: Params, context: QgsProcessingContext, feedback: Any) -> Any:
        scene, _ = _scene(self, parameters, context, feedback, extent=False)
        output = self.vector_output(parameters, "OUTPUT", "tiles", context)
        args = tiles_args(
            scene,
            output,
            **_grid(self, parameters, context),
        )
        return args, {"OUTPUT": output}


class ChangeAlgorithm(_ModelRunAlgorithm):
    NAME = "change"
    TITLE = "Compare two dates of one place (change)"
    HELP = (
        "Runs rsvg change: the same question on both dates (the after date read on the before date's grid, "
        "or the other way round with GRID), objects matched one to one by rotated IoU, unmatched ones "
        "checked on the other date (VERIFY), and the change GeoPackage written to OUTPUT with the layers "
        "appeared (green), disappeared (red), persisting (grey), before, after, unknown_area and run. "
        "A comparison stopped before its output was written resumes from its answer logs when run again "
        "with the same OUTPUT; an existing OUTPUT is replaced."
    )
    LAYERS = ("appeared", "disappeared", "persisting")
    RASTER_PARAMETERS = ("BEFORE", "AFTER")

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", "Before (the earlier date)"))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", "After (the later date)"))
        self.addParameter(_enum("TASK", "Task", CHANGE_TASKS, CHANGE_TASKS[0]))
        self.addParameter(QgsProcessingParameterString("QUERY", "Object description"))
        self.add_model_parameters()
        self.addParameter(_enum("GRID", "Grid both dates are read on", ("before", "after"), "before"))
        self.addParameter(
            QgsProcessingParameterNumber(
                "MATCH_IOU",
                "Same object at rotated IoU of at least",
                QgsProcessingParameterNumber.Double,
                defaultValue=0.3,
                minValue=0.01,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean("VERIFY", "Ask the other date about unmatched objects", True)
        )
        _add_grid_parameters(self)
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Change GeoPackage", "GeoPackage (*.gpkg *.GPKG)")
        )
        for layer in self.LAYERS:
            self.addOutput(QgsProcessingOutputVectorLayer(layer.upper(), layer.capitalize()))
        self.addOutput(QgsProcessingOutputFile("BEFORE_ANSWER_LOG", "Before date's answer log"))
        self.addOutput(QgsProcessingOutputFile("AFTER_ANSWER_LOG", "After date's answer log"))

    def engine_arguments(self, parameters: Params, context: QgsProcessingContext, feedback: Any) -> Any:
        question = self.question(parameters, context)
        question.pop("classes")
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not output.lower().endswith(".gpkg"):
            output = QgsProcessingUtils.generateTempFilename("change.gpkg")
        args = change_args(
            _scene(self, parameters, context, feedback, extent=False, name="BEFORE")[0],
            _scene(self, parameters, context, feedback, extent=False, name="AFTER")[0],
            output,
            **question,
            grid=self.parameterAsString(parameters, "GRID", context) or "before",
            match_iou=self.parameterAsDouble(parameters, "MATCH_IOU", context),
            verify=self.parameterAsBoolean(parameters, "VERIFY", context),
            **_grid(self, parameters, context),
            replace=os.path.exists(output),
        )
        results: dict[str, Any] = {"OUTPUT": output}
        for layer in self.LAYERS:
            uri = f"{output}|layername={layer}"
            results[layer.upper()] = uri
            details = QgsProcessingContext.LayerDetails(layer, context.project(), layer.upper())
            details.setPostProcessor(StoredStyle.create())
            context.addLayerToLoadOnCompletion(uri, details)
        stem = output[: -len(".gpkg")]
        results["BEFORE_ANSWER_LOG"] = f"{stem}.before.answers.jsonl"
        results["AFTER_ANSWER_LOG"] = f"{stem}.after.answers.jsonl"
        return args, results


#: Every algorithm the provider offers.
ALGORITHMS: tuple[type[RsvgAlgorithm], ...] = (
    DetectAlgorithm,
    BatchAlgorithm,
    ExportAlgorithm,
    TilesAlgorithm,
    ChangeAlgorithm,
)
