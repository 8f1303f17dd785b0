"""Read GeoChat answers: boxes, object phrases and the plain text, and write boxes back.

GeoChat writes a box as ``{<x1><y1><x2><y2>|<θ>}`` on a 0–100 grid of its input image (see
``GEOCHAT.md``). Real answers stray from that grammar, so :func:`parse_answer` reads, in this order of
decisions:

Boxes
    ``{`` then four numbers in angle brackets, then optionally ``|`` and a fifth (the angle), then a
    closer. Spaces are allowed anywhere between these parts and inside the brackets
    (``{ < 10 > <70><26><82> | <90> }``). A number is written as decimal text, with an optional sign,
    fraction and exponent (``-3``, ``12.5``, ``1e2``); the values are kept as written (no clamping to
    0–100), but a box with a non-finite value (``nan``, ``inf``, or a number too large for a float) is
    dropped with a logged warning.

Closers
    ``}`` as GeoChat means it, or ``]`` or ``)`` in its place (seen: ``{<16><69><30><85>|<73>]{…}``).
    The closer may also be missing when something else follows: the next box, ``<delim>``, or any
    other text. Only at the very end of the answer is a missing closer ambiguous: a box whose angle is
    complete (``…|<90>``) is kept, as all its values are known; a box that stops after its fourth
    number (an angle may have followed) or anywhere earlier is *incomplete*.

Cut-off answers
    An incomplete box at the end of the answer (the token limit stopped it, ``{<10><70><2``) is not
    an object: it is returned in :attr:`ParseResult.remainder` and left out of the text.

Separators
    Boxes may follow each other directly, with spaces, or with the literal ``<delim>`` between them.

Phrases and their scope
    ``<p>phrase</p>`` names an object. A phrase applies to every box that follows it until the next
    ``<p>`` phrase (boxes before the first phrase get none from tags). An empty phrase (``<p> </p>``)
    ends the scope of the previous one. If a box comes while a ``<p>`` is still open (no ``</p>``
    yet), the text read since ``<p>`` is the phrase.

Phrases from the text
    A box that no ``<p>`` phrase covers gets the noun phrase its *group* follows (boxes separated only
    by spaces or ``<delim>`` form a group), read from the plain text around the group by
    :func:`~rsvg_desktop.core.prompt.phrases.group_phrase` ("there are four tennis courts {…}{…}" →
    ``"tennis courts"``, count 4); ``ParsedObject.from_text`` marks it. Boxes with none stay ``None``.

Normalisation
    Each box is returned with ``x1 <= x2`` and ``y1 <= y2`` (corners swapped where written the other
    way round); the angle is kept as written, ``None`` when the box had none.

Text
    :attr:`ParseResult.text` is what a human reads: boxes, incomplete boxes, ``<delim>``, ``</s>`` and
    the ``<p>``/``</p>`` tags are removed (the phrase words stay), runs of spaces and tabs become one
    space, spaces before ``.,;:!?`` and around line breaks are dropped, and the text is stripped.
    Anything else that looks almost like a box but is not one (``{<1><2><3>}``) stays in the text.

:func:`parse_answer` never raises on a ``str``. :func:`format_box` writes the inverse:
``parse_answer(format_boxes(boxes))`` returns the same boxes for integer-valued, normalised boxes.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable

from rsvg_desktop.core.prompt.phrases import group_phrase
from rsvg_desktop.core.types import GridBox, ParsedObject, ParseResult
from rsvg_desktop.errors import ConfigError

__all__ = ["DELIM", "format_box", "format_boxes", "parse_answer"]

log = logging.getLogger(__name__)

#: The separator GeoChat writes between boxes.
DELIM = "<delim>"

# A number as the model may write it. ASCII digits only; ``nan``/``inf`` are recognised so that the
# box is consumed (and then rejected as non-finite) instead of leaking into the text.
_NUM = (
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[+-]?(?:[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])"
)
_WS = r"[ \t\r\n]*+"  # possessive: spaces never start the next part, so no backtracking


def _value(name: str) -> str:
    return rf"<{_WS}(?P<{name}>{_NUM}){_WS}>"


# ``(?(a)|(?=…))``: with an angle, no closer is needed; without one, the next non-space character
# must exist and not be ``|`` (an unreadable or cut-off angle), else the box may have been cut off.
_BOX = (
    r"\{"
    + _WS
    + _value("x1")
    + _WS
    + _value("y1")
    + _WS
    + _value("x2")
    + _WS
    + _value("y2")
    + _WS
    + r"(?:\|"
    + _WS
    + _value("a")
    + _WS
    + r")?"
    + r"(?:[}\])]|(?(a)|(?=[^|])))"
)

_TOKEN = re.compile(
    rf"(?P<box>{_BOX})|(?P<popen><p>)|(?P<pclose></p>)|(?P<delim><delim>)|(?P<eos></s>)",
)

# An unfinished box at the very end: ``{`` followed only by characters of the box grammar.
_PARTIAL_TAIL = re.compile(r"\{[ \t\r\n<>|+\-.0-9eE]*\Z")

_SPACES = re.compile(r"[ \t]+")
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[.,;:!?])")
_SPACE_AROUND_NEWLINE = re.compile(r" *\r?\n *")


def _clean_text(pieces: Iterable[str]) -> str:
    text = "".join(pieces)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _SPACE_BEFORE_PUNCT.sub("", text)
    return text.strip()


def _box_from_match(m: re.Match[str]) -> GridBox | None:
    """The normalised box of a matched box token, or ``None`` when a value is not finite."""
    try:
        x1, y1, x2, y2 = (float(m.group(k)) for k in ("x1", "y1", "x2", "y2"))
        raw_angle = m.group("a")
        angle = None if raw_angle is None else float(raw_angle)
    except (ValueError, OverflowError):  # pragma: no cover - the pattern only admits float syntax
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2, 0.0 if angle is None else angle)):
        return None
    if x1 > x2:
        x1, x2 = x2, x1
    if y1 > y2:
        y1, y2 = y2, y1
    return GridBox(x1, y1, x2, y2, angle)


def parse_answer(text: str) -> ParseResult:
    """Parse one GeoChat answer into its boxes (with phrases), its readable text and a cut-off tail.

    Never raises for a ``str``; see the module documentation for the exact rules.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_answer expects str, got {type(text).__name__}")

    objects: list[ParsedObject] = []
    spans: list[tuple[int, int]] = []  # where each object's box is in ``text``
    pieces: list[str] = []
    phrase: str | None = None  # the phrase that applies to the next boxes
    open_phrase: list[str] | None = None  # text collected since an unclosed <p>
    rejected = 0
    pos = 0

    for m in _TOKEN.finditer(text):
        chunk = text[pos : m.start()]
        pieces.append(chunk)
        if open_phrase is not None:
            open_phrase.append(chunk)
        pos = m.end()
        kind = m.lastgroup
        if kind == "box":
            pieces.append(" ")
            if open_phrase is not None:
                phrase = _SPACES.sub(" ", "".join(open_phrase)).strip() or None
            box = _box_from_match(m)
            if box is None:
                rejected += 1
                continue
            objects.append(ParsedObject(phrase, box))
            spans.append((m.start(), m.end()))
        elif kind == "popen":
            open_phrase = []
        elif kind == "pclose":
            if open_phrase is not None:
                phrase = _SPACES.sub(" ", "".join(open_phrase)).strip() or None
                open_phrase = None
        else:  # <delim>, </s>
            pieces.append(" ")

    tail = text[pos:]
    remainder = ""
    cut = _PARTIAL_TAIL.search(tail)
    if cut is not None:
        remainder = cut.group(0)
        tail = tail[: cut.start()]
    pieces.append(tail)

    end = len(text) - len(remainder)
    if any(o.phrase is None for o in objects):
        objects = _phrases_from_text(text[:end], objects, spans)

    if rejected:
        log.warning("dropped %d box(es) with non-finite values from a GeoChat answer", rejected)
    if remainder:
        log.debug("GeoChat answer ends in an incomplete box: %r", remainder)
    return ParseResult(objects=tuple(objects), text=_clean_text(pieces), remainder=remainder)


_GROUP_GAP = re.compile(r"(?:[ \t\r\n]|<delim>)*")
_MARKUP = re.compile(r"</?p>|</s>|<delim>|<[^<>]*>|[{}]")  # tags and the rest of almost-boxes


def _phrases_from_text(
    text: str, objects: list[ParsedObject], spans: list[tuple[int, int]]
) -> list[ParsedObject]:
    """Give every box without a ``<p>`` phrase the noun phrase its group follows (module docs)."""
    groups: list[list[int]] = []
    for k, (start, _) in enumerate(spans):
        if groups and _GROUP_GAP.fullmatch(text, spans[k - 1][1], start):
            groups[-1].append(k)
        else:
            groups.append([k])
    out = list(objects)
    for g, members in enumerate(groups):
        if all(objects[k].phrase is not None for k in members):
            continue
        prev_end = spans[groups[g - 1][-1]][1] if g else 0
        next_start = spans[groups[g + 1][0]][0] if g + 1 < len(groups) else len(text)
        before = _MARKUP.sub(" ", text[prev_end : spans[members[0]][0]])
        after = text[spans[members[-1]][1] : next_start]
        after = _MARKUP.sub(" ", after.split("<p>", 1)[0])  # a tagged phrase belongs to later boxes
        phrase, count = group_phrase(before, after, at_start=g == 0)
        if phrase is None:
            continue
        for k in members:
            if objects[k].phrase is None:
                out[k] = ParsedObject(phrase, objects[k].box, count, True)
    return out


def _int_text(value: float, what: str) -> str:
    if not math.isfinite(value):
        raise ConfigError(f"cannot format a box with a non-finite {what}: {value!r}")
    return str(round(value))


def format_box(box: GridBox) -> str:
    """Write ``box`` as GeoChat does: ``{<x1><y1><x2><y2>|<θ>}``, without ``|<θ>`` when angle is None.

    Values are rounded to integers (Python's ``round``, halves to even) and written in the order given
    (no normalisation). A non-finite value raises :class:`~rsvg_desktop.errors.ConfigError`.
    """
    coords = "".join(
        f"<{_int_text(v, n)}>" for v, n in ((box.x1, "x1"), (box.y1, "y1"), (box.x2, "x2"), (box.y2, "y2"))
    )
    if box.angle is None:
        return "{" + coords + "}"
    return "{" + coords + f"|<{_int_text(box.angle, 'angle')}>" + "}"


def format_boxes(boxes: Iterable[GridBox], sep: str = "") -> str:
    """Write several boxes, joined by ``sep`` (``""`` as GeoChat usually does, or :data:`DELIM`)."""
    return sep.join(format_box(b) for b in boxes)
