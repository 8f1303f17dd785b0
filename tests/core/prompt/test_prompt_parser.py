"""GeoChat answer parser: the real answers, the malformed cases, and properties over any text."""

from __future__ import annotations

import logging
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsvg_desktop.core.prompt.parser import DELIM, format_box, format_boxes, parse_answer
from rsvg_desktop.core.types import GridBox, ParsedObject, ParseResult
from rsvg_desktop.errors import ConfigError


def boxes_of(result: ParseResult) -> list[GridBox]:
    return [o.box for o in result.objects]


def B(x1, y1, x2, y2, a=None) -> GridBox:
    return GridBox(x1, y1, x2, y2, a)


# --- the four real answers quoted in GEOCHAT.md ---------------------------------------------------
REAL_ANSWERS = [
    (
        "{<10><70><26><82>|<90>}{<21><70><37><82>|<90>}{<30><70><46><82>|<90>} {<10><80><26><92>|<90>}",
        [B(10, 70, 26, 82, 90), B(21, 70, 37, 82, 90), B(30, 70, 46, 82, 90), B(10, 80, 26, 92, 90)],
    ),
    ("{<22><10><42><26>|<90>}{<30><10><50><26>|<90>}", [B(22, 10, 42, 26, 90), B(30, 10, 50, 26, 90)]),
    ("{<14><68><28><84>|<20>}{<30><58><46><74>|<21>}", [B(14, 68, 28, 84, 20), B(30, 58, 46, 74, 21)]),
    ("{<16><69><30><85>|<73>]{<30><60><46><76>|<73>}", [B(16, 69, 30, 85, 73), B(30, 60, 46, 76, 73)]),
]


@pytest.mark.parametrize(("answer", "expected"), REAL_ANSWERS)
def test_real_answers(answer: str, expected: list[GridBox]) -> None:
    result = parse_answer(answer)
    assert boxes_of(result) == expected
    assert all(o.phrase is None for o in result.objects)
    assert result.text == ""
    assert result.remainder == ""
    assert not result.truncated


def test_values_are_floats_and_angle_kept() -> None:
    (obj,) = parse_answer("{<10><70><26><82>|<90>}").objects
    assert obj == ParsedObject(None, GridBox(10.0, 70.0, 26.0, 82.0, 90.0))
    assert all(isinstance(v, float) for v in (obj.box.x1, obj.box.y1, obj.box.x2, obj.box.y2, obj.box.angle))


# --- separators, spaces, closers --------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer",
    [
        "{<1><2><3><4>|<5>}{<6><7><8><9>|<10>}",
        "{<1><2><3><4>|<5>} {<6><7><8><9>|<10>}",
        "{<1><2><3><4>|<5>}<delim>{<6><7><8><9>|<10>}",
        "{<1><2><3><4>|<5>} <delim> {<6><7><8><9>|<10>}",
        "{ <1> <2> <3> <4> | <5> }\n{< 6 ><7 >< 8><9>|< 10 >}",
        "{<1><2><3><4>|<5>]{<6><7><8><9>|<10>)",
        "{<1><2><3><4>|<5>{<6><7><8><9>|<10>}",  # closer missing before the next box
        "{<1><2><3><4>|<5><delim>{<6><7><8><9>|<10>}",
        "{<1><2><3><4>|<5>}{<6><7><8><9>|<10>",  # last closer missing, angle complete: kept
    ],
)
def test_separators_spaces_and_closers(answer: str) -> None:
    result = parse_answer(answer)
    assert boxes_of(result) == [B(1, 2, 3, 4, 5), B(6, 7, 8, 9, 10)]
    assert result.text == ""
    assert result.remainder == ""


def test_boxes_without_angle() -> None:
    result = parse_answer("{<1><2><3><4>}{<5><6><7><8>|<90>} {<9><10><11><12>}")
    assert boxes_of(result) == [B(1, 2, 3, 4), B(5, 6, 7, 8, 90), B(9, 10, 11, 12)]
    assert result.objects[0].box.angle is None


def test_box_without_angle_and_closer_before_text_is_kept() -> None:
    result = parse_answer("a {<1><2><3><4> b")
    assert boxes_of(result) == [B(1, 2, 3, 4)]
    assert result.text == "a b"


def test_negative_and_decimal_numbers_kept_as_written() -> None:
    result = parse_answer("{<-3><2.5><100.25><104>|<-15.5>}{<+1><.5><1e1><2E1>}")
    assert boxes_of(result) == [B(-3, 2.5, 100.25, 104, -15.5), B(1, 0.5, 10, 20)]


@pytest.mark.parametrize(
    "answer",
    [
        "{<nan><2><3><4>}",
        "{<1><inf><3><4>}",
        "{<1><2><3><4>|<-Infinity>}",
        "{<1><2><1e400><4>}",
        "{<1><2><3><" + "9" * 400 + ">}",
    ],
)
def test_non_finite_boxes_are_rejected(answer: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rsvg_desktop.core.prompt.parser"):
        result = parse_answer(f"before {answer} {{<1><2><3><4>}} after")
    assert boxes_of(result) == [B(1, 2, 3, 4)]
    assert result.text == "before after"
    assert "non-finite" in caplog.text


def test_normalised_corners() -> None:
    result = parse_answer("{<30><85><16><69>|<73>}")
    assert boxes_of(result) == [B(16, 69, 30, 85, 73)]


# --- cut-off answers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tail",
    [
        "{",
        "{<",
        "{<1",
        "{<10>",
        "{<10><7",
        "{<10><70><26><82>",
        "{<10><70><26><82> ",
        "{<10><70><26><82>|",
        "{<10><70><26><82>|<9",
        "{ <10> <70> <26> <82> | < 9",
    ],
)
def test_cut_off_tail_goes_to_remainder(tail: str) -> None:
    answer = "<p>planes</p> {<22><10><42><26>|<90>}{<30><10><50><26>|<90>}" + tail
    result = parse_answer(answer)
    assert boxes_of(result) == [B(22, 10, 42, 26, 90), B(30, 10, 50, 26, 90)]
    assert result.remainder == tail
    assert result.truncated
    assert result.text == "planes"


def test_cut_off_after_text() -> None:
    result = parse_answer("There are two airplanes {<1><2><3><4>|<90>} and a car {<5><6")
    assert boxes_of(result) == [B(1, 2, 3, 4, 90)]
    assert result.remainder == "{<5><6"
    assert result.text == "There are two airplanes and a car"


def test_nothing_to_parse() -> None:
    assert parse_answer("") == ParseResult((), "", "")
    assert parse_answer("airport") == ParseResult((), "airport", "")


def test_almost_boxes_stay_in_text() -> None:
    result = parse_answer("see {<1><2><3>} and {<1><2><3><4>|<x>} here")
    assert result.objects == ()
    assert result.text == "see {<1><2><3>} and {<1><2><3><4>|<x>} here"
    assert result.remainder == ""


# --- phrases and text -------------------------------------------------------------------------------
def test_phrase_scope_until_next_phrase() -> None:
    answer = (
        "{<0><0><1><1>} There are <p>3 white airplanes</p> {<1><2><3><4>|<90>}{<5><6><7><8>|<90>} "
        "parked near <p> a hangar </p> {<9><10><11><12>|<0>}. Another one {<13><14><15><16>|<90>}."
    )
    result = parse_answer(answer)
    assert [o.phrase for o in result.objects] == [
        None,
        "3 white airplanes",
        "3 white airplanes",
        "a hangar",
        "a hangar",
    ]
    assert result.text == "There are 3 white airplanes parked near a hangar. Another one."


# --- phrases read from the text (grounded descriptions without <p>) -------------------------------
R1, R2, R3, R4 = (a for a, _ in REAL_ANSWERS)


def phrases_of(result: ParseResult) -> list[tuple[str | None, int | None]]:
    return [(o.phrase, o.count) for o in result.objects]


def test_real_grounding_answers_get_their_noun_phrase() -> None:
    # The two answers quoted in issue 10, around the real box strings of GEOCHAT.md.
    result = parse_answer(f"there are four tennis courts {R1} located close to each other")
    assert phrases_of(result) == [("tennis courts", 4)] * 4
    assert all(o.from_text for o in result.objects)
    assert boxes_of(result) == REAL_ANSWERS[0][1]
    assert result.text == "there are four tennis courts located close to each other"
    # The malformed closer ``]`` and a number inside the name ("747" is not a count).
    result = parse_answer(f"two gray Boeing 747 airplanes {R4} positioned close to each other")
    assert phrases_of(result) == [("gray Boeing 747 airplanes", 2)] * 2
    assert boxes_of(result) == REAL_ANSWERS[3][1]


def test_several_groups_in_one_sentence() -> None:
    answer = (
        f"The image shows a harbor with three ships {R2} and a white storage tank {R3}, "
        f"next to some buildings {R1}."
    )
    assert (
        phrases_of(parse_answer(answer))
        == [("ships", 3)] * 2 + [("white storage tank", 1)] * 2 + [("buildings", None)] * 4
    )


def test_group_at_the_start_of_a_sentence_reads_on() -> None:
    assert phrases_of(parse_answer(f"{R2} two ships are docked near the pier.")) == [("ships", 2)] * 2
    result = parse_answer(f"In the top-left corner, several small cars {R2}. {R3} A large warehouse.")
    assert phrases_of(result) == [("small cars", None)] * 2 + [("large warehouse", 1)] * 2


def test_group_after_a_comma_takes_the_phrase_before_it() -> None:
    result = parse_answer(f"There are two runways, {R2} crossing each other")
    assert phrases_of(result) == [("runways", 2)] * 2
    # A comma that only separates two groups: each keeps its own phrase.
    result = parse_answer(f"small boats {R2}, large ships {R3}")
    assert phrases_of(result) == [("small boats", None)] * 2 + [("large ships", None)] * 2


def test_cut_off_answers_keep_the_phrases_of_complete_boxes() -> None:
    result = parse_answer(f"there are many parked airplanes {R2} and two tennis cou")
    assert phrases_of(result) == [("airplanes", None)] * 2  # "parked" is a stop word
    result = parse_answer("there are two airplanes {<22><10><42><26>|<90>}{<30><10><5")
    assert phrases_of(result) == [("airplanes", 2)]
    assert result.remainder == "{<30><10><5"
    # Cut off right after the phrase: nothing to label.
    assert parse_answer("there are three storage ta").objects == ()


def test_malformed_braces_and_delim_keep_one_group() -> None:
    result = parse_answer("four small ships {<1><2><3><4>|<90>]<delim>{<5><6><7><8>|<90>)  {<9><9><12><12>}")
    assert phrases_of(result) == [("small ships", 4)] * 3
    # An almost-box stays text; its numbers are no count and no phrase.
    result = parse_answer("two red cars {<1><2><3>} {<1><2><3><4>}")
    assert phrases_of(result) == [("red cars", 2)]
    assert result.text == "two red cars {<1><2><3>}"


def test_no_noun_phrase_leaves_none() -> None:
    result = parse_answer(f"the image shows {R3}")
    assert phrases_of(result) == [(None, None)] * 2
    assert not any(o.from_text for o in result.objects)
    assert phrases_of(parse_answer(R1)) == [(None, None)] * 4


def test_tagged_phrases_win_over_the_text() -> None:
    result = parse_answer(f"two planes <p>white airplanes</p> {R3} and three ships {R2}")
    # The <p> scope runs on (as before); untagged boxes before any <p> read the text.
    assert [o.phrase for o in result.objects] == ["white airplanes"] * 4
    assert not any(o.from_text for o in result.objects)
    result = parse_answer(f"three ships {R2} then <p>a tank</p> {R3}")
    assert phrases_of(result)[:2] == [("ships", 3)] * 2
    assert [o.phrase for o in result.objects[2:]] == ["a tank"] * 2


def test_empty_phrase_ends_scope() -> None:
    result = parse_answer("<p>car</p>{<1><2><3><4>}<p> </p>{<5><6><7><8>}")
    assert [o.phrase for o in result.objects] == ["car", None]


def test_unclosed_phrase_before_box() -> None:
    result = parse_answer("<p>small   boat {<1><2><3><4>}")
    assert result.objects[0].phrase == "small boat"
    assert result.text == "small boat"


def test_text_cleanup() -> None:
    result = parse_answer("A  <p>ship</p>\t{<1><2><3><4>|<90>} , docked.</s>\n  Next line {<1><2><3><4>}  ")
    assert result.text == "A ship, docked.\nNext line"


def test_delim_removed_from_text() -> None:
    assert parse_answer(f"a{DELIM}b").text == "a b"


def test_non_str_raises_type_error() -> None:
    with pytest.raises(TypeError):
        parse_answer(None)  # type: ignore[arg-type]


# --- format_box ---------------------------------------------------------------------------------------
def test_format_box() -> None:
    assert format_box(B(10, 70, 26, 82, 90)) == "{<10><70><26><82>|<90>}"
    assert format_box(B(10.0, 70.0, 26.0, 82.0)) == "{<10><70><26><82>}"
    assert format_box(B(10.4, 69.6, 26, 82, 89.5)) == "{<10><70><26><82>|<90>}"
    assert format_box(B(-1, 0, 101, 100, 0)) == "{<-1><0><101><100>|<0>}"


def test_format_boxes() -> None:
    boxes = [B(1, 2, 3, 4, 5), B(6, 7, 8, 9)]
    assert format_boxes(boxes) == "{<1><2><3><4>|<5>}{<6><7><8><9>}"
    assert format_boxes(boxes, sep=DELIM) == "{<1><2><3><4>|<5>}<delim>{<6><7><8><9>}"
    assert format_boxes([]) == ""


@pytest.mark.parametrize("bad", [B(math.nan, 0, 1, 1), B(0, 0, 1, 1, math.inf)])
def test_format_box_rejects_non_finite(bad: GridBox) -> None:
    with pytest.raises(ConfigError):
        format_box(bad)


# --- properties ------------------------------------------------------------------------------------
coord = st.integers(min_value=-5, max_value=105)
angle = st.none() | st.integers(min_value=-90, max_value=180)


@st.composite
def grid_boxes(draw: st.DrawFn) -> GridBox:
    x1, x2 = sorted((draw(coord), draw(coord)))
    y1, y2 = sorted((draw(coord), draw(coord)))
    a = draw(angle)
    return GridBox(float(x1), float(y1), float(x2), float(y2), None if a is None else float(a))


# Noise that cannot form or break box markup.
noise = st.text(
    alphabet=st.characters(blacklist_characters="{}<>[]()|", blacklist_categories=("Cs",)), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_any_text(text: str) -> None:
    result = parse_answer(text)
    assert isinstance(result, ParseResult)
    for o in result.objects:
        b = o.box
        assert all(math.isfinite(v) for v in (b.x1, b.y1, b.x2, b.y2))
        assert b.angle is None or math.isfinite(b.angle)
        assert b.x1 <= b.x2 and b.y1 <= b.y2
    assert result.remainder == "" or result.remainder.startswith("{")


markup_alphabet = st.sampled_from(
    [
        "{",
        "}",
        "<",
        ">",
        "|",
        "]",
        ")",
        "<p>",
        "</p>",
        "<delim>",
        "</s>",
        "-",
        ".",
        "e",
        " ",
        "\n",
        "1",
        "9",
        "0",
        "nan",
        "inf",
        "x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(markup_alphabet, max_size=60).map("".join))
def test_never_raises_on_markup_soup(text: str) -> None:
    result = parse_answer(text)
    assert isinstance(result, ParseResult)
    assert result.remainder == "" or text.endswith(result.remainder)


@settings(max_examples=200, deadline=None)
@given(st.lists(grid_boxes(), max_size=20), st.sampled_from(["", " ", DELIM, " <delim> "]))
def test_round_trip(boxes: list[GridBox], sep: str) -> None:
    result = parse_answer(format_boxes(boxes, sep=sep))
    assert boxes_of(result) == boxes
    assert result.text == "" and result.remainder == ""


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(noise, grid_boxes()), max_size=15), noise)
def test_grammar_with_noise(pairs: list[tuple[str, GridBox]], last: str) -> None:
    text = "".join(n + format_box(b) for n, b in pairs) + last
    result = parse_answer(text)
    assert boxes_of(result) == [b for _, b in pairs]
    assert result.remainder == ""
    assert all(ch not in result.text for ch in "{}")


@settings(max_examples=200, deadline=None)
@given(st.lists(grid_boxes(), min_size=1, max_size=10), st.data())
def test_cut_anywhere_keeps_complete_boxes(boxes: list[GridBox], data: st.DataObject) -> None:
    written = [format_box(b) for b in boxes]
    full = "".join(written)
    cut = data.draw(st.integers(min_value=0, max_value=len(full)))
    result = parse_answer(full[:cut])
    ends = [sum(len(w) for w in written[: i + 1]) for i in range(len(written))]
    n_complete = sum(e <= cut for e in ends)
    start = ends[n_complete - 1] if n_complete else 0
    partial = full[start:cut]
    if partial and boxes[n_complete].angle is not None and partial == written[n_complete][:-1]:
        # Only the closing brace was lost: every value is known, the box is kept.
        assert boxes_of(result) == boxes[: n_complete + 1]
        assert result.remainder == ""
    else:
        assert boxes_of(result) == boxes[:n_complete]
        assert result.remainder == partial
    assert result.text == ""


def test_thousand_boxes_parse_fast() -> None:
    boxes = [
        GridBox(float(i % 90), float(i % 80), float(i % 90 + 10), float(i % 80 + 20), 90.0)
        for i in range(1000)
    ]
    text = "<p>cars</p> " + format_boxes(boxes, sep=DELIM)
    parse_answer(text)  # warm up
    t0 = time.perf_counter()
    result = parse_answer(text)
    elapsed = time.perf_counter() - t0
    assert boxes_of(result) == boxes
    assert elapsed < 0.1, f"1,000 boxes took {elapsed * 1000:.1f} ms"
