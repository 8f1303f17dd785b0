"""Small frozen value types shared by the core packages (no torch, no Qt).

They cross layers and processes, so they are plain, picklable and comparable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GridBox:
    """A GeoChat box on the 0–100 grid of the model's input image.

    ``x1, y1`` is the top-left and ``x2, y2`` the bottom-right corner of the rectangle *as written*;
    ``angle`` (degrees) turns that rectangle about its own centre, ``None`` when the answer had none.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    angle: float | None = None


@dataclass(frozen=True, slots=True)
class ParsedObject:
    """One object of a GeoChat answer: its phrase and its box.

    ``phrase``: from ``<p>…</p>`` where the answer tags it, else the noun phrase its box group follows
    (``from_text`` is then true; see ``core.prompt.phrases``), else ``None``. ``count``: the count
    written before that noun phrase ("four tennis courts" → 4), ``None`` when none was written.
    """

    phrase: str | None
    box: GridBox
    count: int | None = None
    from_text: bool = False


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Everything parsed from one answer.

    ``objects``: complete boxes in answer order. ``text``: the answer with boxes and ``<p>`` markup
    removed (what a human reads). ``remainder``: an incomplete trailing box (the answer was cut off),
    empty when none.
    """

    objects: tuple[ParsedObject, ...]
    text: str
    remainder: str = ""

    @property
    def truncated(self) -> bool:
        return bool(self.remainder)


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile of a scene's grid.

    ``row, col`` is the stable id in the grid. ``col_off, row_off, width, height`` is the tile's window
    in scene pixels (it may reach past the scene's edge when the scene is smaller than a tile: the
    outside is padded). GeoChat's 0–100 box grid spans exactly this window. ``size`` is the side of
    the square image sent to the model (504 by default); it differs from ``width`` when the grid
    resamples to a target ground sample distance.
    """

    row: int
    col: int
    col_off: int
    row_off: int
    width: int
    height: int
    size: int = 504

    @property
    def id(self) -> str:
        return f"r{self.row}c{self.col}"

    @property
    def window(self) -> tuple[int, int, int, int]:
        return (self.col_off, self.row_off, self.width, self.height)
