"""Prompt templates: exact strings from GEOCHAT.md, the task table, errors."""

from __future__ import annotations

import dataclasses

import pytest

from rsvg_desktop.core.prompt import (
    DEFAULT_GROUNDING_QUERY,
    LLAVA_V1,
    TASKS,
    Task,
    build_prompt,
    build_query,
    format_class_list,
    get_task,
    normalise_class_answer,
    parse_answer,
    task_names,
)
from rsvg_desktop.core.types import GridBox
from rsvg_desktop.errors import ConfigError

SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
CLASSIFY_SUFFIX = "\nClassify the image from the following classes. Answer in one word or a short phrase."
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."


def one_turn(query: str) -> str:
    return f"{SYSTEM} USER: <image>\n{query} ASSISTANT:"


def test_system_and_roles() -> None:
    assert LLAVA_V1.system == SYSTEM
    assert LLAVA_V1.roles == ("USER", "ASSISTANT")
    assert LLAVA_V1.sep == " "
    assert LLAVA_V1.sep2 == "</s>" == LLAVA_V1.stop_str


def test_grounding_default() -> None:
    assert build_query("grounding") == "[grounding]Please describe the image in detail."
    assert build_prompt("grounding") == one_turn("[grounding]Please describe the image in detail.")
    assert build_prompt("grounding", "  ") == one_turn("[grounding]" + DEFAULT_GROUNDING_QUERY)


def test_grounding_custom_query() -> None:
    assert build_query("grounding", "Describe the airport.") == "[grounding]Describe the airport."


def test_refer() -> None:
    assert build_query("refer", "airplanes") == "[refer] Give me the location of <p> airplanes </p>"
    assert build_prompt("refer", " white ships ") == one_turn(
        "[refer] Give me the location of <p> white ships </p>"
    )


def test_identify_with_region() -> None:
    box = GridBox(10, 70, 26, 82, 90)
    expected = "[identify] What is the object present at {<10><70><26><82>|<90>}"
    assert build_query("identify", region=box) == expected
    assert build_prompt("identify", region=box) == one_turn(expected)
    # the region may also come as text in GeoChat's notation
    assert build_query("identify", "{<10><70><26><82>|<90>}") == expected


@pytest.mark.parametrize("query", ["", "a car", "{<1><2><3><4>}{<5><6><7><8>}", "{<1><2>"])
def test_identify_needs_exactly_one_region(query: str) -> None:
    with pytest.raises(ConfigError, match="needs a region"):
        build_query("identify", query)


def test_identify_rejects_region_and_query() -> None:
    with pytest.raises(ConfigError):
        build_query("identify", "what is it?", region=GridBox(1, 2, 3, 4))


def test_classify() -> None:
    assert build_query("classify", "What is this scene?") == "What is this scene?" + CLASSIFY_SUFFIX
    q = build_query("classify", "What is this scene?", classes=["airport", " dense residential ", "forest"])
    assert q == "What is this scene? Classes: airport, dense residential, forest." + CLASSIFY_SUFFIX
    assert build_query("classify", classes=("beach", "river")) == "Classes: beach, river." + CLASSIFY_SUFFIX
    assert build_prompt("classify", "Which class?", classes=["a", "b"]) == one_turn(
        "Which class? Classes: a, b." + CLASSIFY_SUFFIX
    )


@pytest.mark.parametrize("classes", [[], ["a", ""], ["a,b"], ["a\nb"], "airport"])
def test_bad_class_lists(classes) -> None:
    with pytest.raises(ConfigError):
        build_query("classify", "q", classes=classes)


def test_classify_needs_question_or_classes() -> None:
    with pytest.raises(ConfigError, match="needs a query"):
        build_query("classify")


def test_format_class_list() -> None:
    assert format_class_list(["a", "b c"]) == "Classes: a, b c."


def test_vqa() -> None:
    assert build_query("vqa", "Is there a road?") == "Is there a road?" + VQA_SUFFIX
    assert build_prompt("vqa", "Is there a road?") == one_turn("Is there a road?" + VQA_SUFFIX)


def test_chat_multi_turn() -> None:
    history = [("Describe the image.", "An airport with planes."), ("How many planes?", "Three.</s>")]
    prompt = build_prompt("chat", "Where are they?", history)
    assert prompt == (
        f"{SYSTEM} USER: <image>\nDescribe the image. ASSISTANT: An airport with planes.</s>"
        "USER: How many planes? ASSISTANT: Three.</s>"
        "USER: Where are they? ASSISTANT:"
    )
    assert prompt.count("<image>") == 1


def test_history_with_task_turn_then_chat() -> None:
    first = build_query("grounding")
    prompt = build_prompt("vqa", "Is it busy?", [(first, "An airport {<1><2><3><4>|<90>}")])
    assert prompt == (
        f"{SYSTEM} USER: <image>\n[grounding]Please describe the image in detail. ASSISTANT: "
        "An airport {<1><2><3><4>|<90>}</s>USER: Is it busy?" + VQA_SUFFIX + " ASSISTANT:"
    )


def test_history_already_holding_image_token() -> None:
    prompt = build_prompt("chat", "next", [("<image>\nfirst", "a")])
    assert prompt.count("<image>") == 1


def test_image_token_options() -> None:
    assert build_prompt("vqa", "q", image_token=None) == f"{SYSTEM} USER: q{VQA_SUFFIX} ASSISTANT:"
    assert build_prompt("vqa", "q", image_token="<img>").startswith(f"{SYSTEM} USER: <img>\nq")


@pytest.mark.parametrize("task", ["refer", "vqa", "chat"])
def test_query_required(task: str) -> None:
    with pytest.raises(ConfigError, match="needs a query"):
        build_query(task, "")


def test_unknown_task_lists_valid_tasks() -> None:
    with pytest.raises(ConfigError) as info:
        build_prompt("detect", "x")
    message = str(info.value)
    assert "'detect'" in message
    for name in ("grounding", "refer", "identify", "classify", "vqa", "chat"):
        assert name in message
    assert isinstance(info.value, ValueError)


def test_misplaced_arguments() -> None:
    with pytest.raises(ConfigError, match="class list"):
        build_query("vqa", "q", classes=["a"])
    with pytest.raises(ConfigError, match="region"):
        build_query("grounding", region=GridBox(1, 2, 3, 4))


def test_task_table() -> None:
    assert task_names() == ("grounding", "refer", "identify", "classify", "vqa", "chat")
    assert all(isinstance(t, Task) for t in TASKS.values())
    assert [n for n, t in TASKS.items() if t.has_boxes] == ["grounding", "refer"]
    assert get_task("identify").needs_region
    assert get_task("classify").takes_classes
    with pytest.raises(dataclasses.FrozenInstanceError):
        TASKS["vqa"].template = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TASKS["new"] = TASKS["vqa"]  # type: ignore[index]


def test_unanswered_turn_only_last() -> None:
    with pytest.raises(ConfigError):
        LLAVA_V1.render([("a", None), ("b", None)])


@pytest.mark.parametrize(
    ("answer", "normalised"),
    [
        ("Dense Residential.", "denseresidential"),
        (" airport ", "airport"),
        ("Baseball\tDiamond.\n", "baseballdiamond"),
        ("", ""),
    ],
)
def test_normalise_class_answer(answer: str, normalised: str) -> None:
    assert normalise_class_answer(answer) == normalised


def test_identify_region_round_trips_through_parser() -> None:
    box = GridBox(5, 6, 7, 8, 45)
    query = build_query("identify", region=box)
    assert parse_answer(query).objects[0].box == box
