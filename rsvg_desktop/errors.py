"""One exception hierarchy for the whole product.

Every error a user can cause derives from :class:`RsvgError` and also from the builtin it resembles
(``ValueError``, ``OSError``, ``FileNotFoundError`` ...), so callers can catch either. Messages name the
file (and the window or key) and say what is wrong in one line: the CLI prints ``str(error)`` as is.
"""

from __future__ import annotations


class RsvgError(Exception):
    """Root of every error raised on purpose by rsvg-desktop."""


# --- inputs: scenes and rasters ---------------------------------------------------------------
class SceneError(RsvgError):
    """A scene cannot be used."""


class NotARasterError(SceneError, ValueError):
    """The file exists but is not a raster GDAL can open."""


class UnsupportedRasterError(NotARasterError):
    """GDAL opens the raster but its data cannot be shown or sent to the model (complex values)."""


class NoCRSError(SceneError, ValueError):
    """The raster has no coordinate reference system (use pixel mode to work in pixel coordinates)."""


class RasterReadError(SceneError, OSError):
    """Reading pixels failed; the message names the file and the window."""


class EmptySceneError(SceneError, ValueError):
    """The scene has no valid (non-nodata) pixels."""


class BandSelectionError(SceneError, ValueError):
    """The requested display bands do not exist in the scene."""


# --- configuration ----------------------------------------------------------------------------
class ConfigError(RsvgError, ValueError):
    """A setting or argument has an invalid value."""


# --- outputs ----------------------------------------------------------------------------------
class ChangeInputError(ConfigError):
    """Two scenes that cannot be compared (no overlap, a CRS on one side only, two answer logs of different
    questions): one line naming the files, exit status 2."""


class OutputExistsError(RsvgError, FileExistsError):
    """The output exists and overwriting was not requested."""


class ExportError(RsvgError, OSError):
    """Writing a vector file failed."""


class AnswerLogError(RsvgError, ValueError):
    """An answer log (JSON Lines) is missing, unreadable or has a malformed record."""


# --- model ------------------------------------------------------------------------------------
class ModelError(RsvgError):
    """Finding, converting or loading a model failed."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """No model could be found at any of the searched locations."""


class CheckpointError(ModelError, ValueError):
    """A checkpoint is malformed: missing shard, truncated file, wrong architecture, shape mismatch."""


class TokenizerError(CheckpointError):
    """The tokenizer files are missing or unreadable."""


class PrecisionError(ModelError, ValueError):
    """The requested precision or device is not available."""


class CalibrationMissingError(PrecisionError):
    """``q4cal`` was asked for but the model has no calibration yet (the message says how to make one)."""


class CalibrationError(ModelError, ValueError):
    """A calibration cannot run: bad settings, no usable calibration input, a model it cannot calibrate."""


class GenerationError(ModelError, RuntimeError):
    """Running the model failed (out of memory, device error)."""


class DeviceFailure(GenerationError):
    """The accelerator failed in a way that leaves it unusable for this process (a CUDA device-side
    assert, an illegal memory access, a lost device). A process that sees it must end: the model
    worker reports it as fatal and exits, and the app offers to reload."""


class DeviceOutOfMemoryError(GenerationError, MemoryError):
    """Not even one tile fits in the device's memory at this precision (also a ``MemoryError``)."""


class ManifestError(ModelError, ValueError):
    """A model manifest (``models/*.json``) is unreadable or malformed; the message names file and key."""


class IntegrityError(ModelError, ValueError):
    """A downloaded file does not match its expected size or hash; the message names the file."""


class OfflineError(ModelError, ConnectionError):
    """A download was requested but the hub cannot be reached."""


class CancelledError(RsvgError):
    """A job was cancelled by the user; what finished before is kept."""


class AnswerLogWriteError(AnswerLogError, OSError):
    """Appending to an answer log failed (a full disk, no permission); the lines before are intact."""


class AnswerLogNotFoundError(AnswerLogError, FileNotFoundError):
    """The answer log to read does not exist (also a ``FileNotFoundError``)."""


class SceneNotFoundError(NotARasterError, FileNotFoundError):
    """The scene file does not exist (also a ``FileNotFoundError``)."""


class OverlayError(RsvgError, ValueError):
    """A vector file cannot be shown over the scene (unreadable, no layer, no way to place it)."""


# --- benchmarks -------------------------------------------------------------------------------
class BenchDataError(RsvgError, ValueError):
    """A benchmark file (questions, annotations, answers, split) is missing a field or unreadable.

    The message names the file and the line (or record) and says what is wrong.
    """


class BenchDataNotFoundError(BenchDataError, FileNotFoundError):
    """A benchmark file or image named by the data does not exist."""


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` leaves the process unable to go on: a device failure or running out of memory.
    The model worker ends on these (a reload starts clean); every other error is reported and the
    process keeps serving."""
    return isinstance(exc, DeviceFailure | MemoryError)
