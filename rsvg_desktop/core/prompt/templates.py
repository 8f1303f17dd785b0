"""GeoChat prompts as data: the ``llava_v1`` conversation template and the task table.

A *query* is the user's text for one turn after the task's wording is applied (:func:`build_query`);
a *prompt* is the whole string the tokenizer receives (:func:`build_prompt`)::

    {SYSTEM} USER: <image>\\n{query} ASSISTANT:

For several turns, each earlier assistant answer ends with ``</s>`` and the image token appears only
in the first user turn::

    {SYSTEM} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT:

Class list (task ``classify``): GeoChat's wording says "Classify the image from the following
classes" but its published code appends that sentence *after* the question and leaves the class list
to the question itself. This module puts the list into the question, on the question's line, as
``Classes: a, b, c.`` (names stripped, in the order given, joined by ", ", a final full stop), so the
query reads ``{question} Classes: a, b, c.\\nClassify the image from the following classes. Answer in
one word or a short phrase.`` Without ``classes`` the question is used as is (it may already hold
the list). Class names must be non-empty and contain no comma or line break.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from rsvg_desktop.core.prompt.parser import format_box, parse_answer
from rsvg_desktop.core.types import GridBox
from rsvg_desktop.errors import ConfigError

__all__ = [
    "DEFAULT_GROUNDING_QUERY",
    "GEOCHAT_SYSTEM",
    "IMAGE_TOKEN",
    "LLAVA_V1",
    "TASKS",
    "ConversationTemplate",
    "Task",
    "build_prompt",
    "build_query",
    "chat_template_jinja",
    "format_class_list",
    "get_task",
    "normalise_class_answer",
    "task_names",
]

IMAGE_TOKEN = "<image>"
#: GeoChat's (LLaVA-1.5's) system text.
GEOCHAT_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
DEFAULT_GROUNDING_QUERY = "Please describe the image in detail."


@dataclass(frozen=True, slots=True)
class ConversationTemplate:
    """A LLaVA conversation template with two separators (LLaVA's ``SeparatorStyle.TWO``).

    ``system`` opens the prompt, followed by ``sep``. Each user turn is ``"{role}: {text}" + sep``;
    each finished assistant turn is ``"{role}: {text}" + sep2``; the open assistant turn at the end is
    ``"{role}:"``, where the model continues. ``sep2`` is also the stop string of generation.
    """

    name: str
    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "
    sep2: str = "</s>"

    @property
    def stop_str(self) -> str:
        """The string that ends an assistant turn (generation stops there)."""
        return self.sep2

    def render(self, turns: Sequence[tuple[str, str | None]]) -> str:
        """Render ``(user_text, assistant_text)`` turns; ``None`` as the last answer leaves it open.

        Only the last turn may have ``None`` as its answer. An answer that already ends with ``sep2``
        is not given a second one.
        """
        user, assistant = self.roles
        out = [self.system, self.sep]
        for i, (question, answer) in enumerate(turns):
            out.append(f"{user}: {question}{self.sep}")
            if answer is None:
                if i != len(turns) - 1:
                    raise ConfigError("only the last turn of a conversation may be unanswered")
                out.append(f"{assistant}:")
            else:
                if answer.endswith(self.sep2):
                    answer = answer[: -len(self.sep2)]
                out.append(f"{assistant}: {answer}{self.sep2}")
        return "".join(out)


#: The template GeoChat was trained and evaluated with.
LLAVA_V1 = ConversationTemplate(name="llava_v1", system=GEOCHAT_SYSTEM)


def _jinja_str(text: str) -> str:
    """``text`` as a Jinja string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template_jinja(template: ConversationTemplate, image_token: str = IMAGE_TOKEN) -> str:
    """``template`` as a Jinja chat template (transformers' ``apply_chat_template``), built from its fields.

    Renders what :meth:`ConversationTemplate.render` does: a leading ``system`` message replaces the
    default system text; the image items of a user message become ``{image_token}\\n`` before its text
    (GeoChat puts the image first); no ``<s>`` (the tokenizer adds it).
    """
    user, assistant = template.roles
    sep, sep2 = _jinja_str(template.sep), _jinja_str(template.sep2)
    texts = "| selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ')"
    return (
        "{%- set ns = namespace(system=" + _jinja_str(template.system) + ") -%}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- if messages[0]['content'] is string -%}{%- set ns.system = messages[0]['content'] -%}"
        "{%- else -%}{%- set ns.system = messages[0]['content'] " + texts + " -%}{%- endif -%}"
        "{%- set messages = messages[1:] -%}"
        "{%- endif -%}"
        "{{- ns.system + " + sep + " -}}"
        "{%- for message in messages -%}"
        "{%- if message['content'] is string -%}{%- set text = message['content'] -%}{%- set n_images = 0 -%}"
        "{%- else -%}"
        "{%- set text = message['content'] " + texts + " -%}"
        "{%- set n_images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
        "{%- endif -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{- "
        + _jinja_str(user + ": ")
        + " + ("
        + _jinja_str(image_token + "\n")
        + " * n_images) + text + "
        + sep
        + " -}}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{- " + _jinja_str(assistant + ": ") + " + text + " + sep2 + " -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- " + _jinja_str(assistant + ":") + " -}}{%- endif -%}"
    )


@dataclass(frozen=True, slots=True)
class Task:
    """One kind of question GeoChat answers.

    ``template`` is a :meth:`str.format` string over ``{query}`` (the user's text, or the class-list
    question for ``classify``) and ``{region}`` (a formatted box, ``identify`` only). ``has_boxes`` is
    true when answers are expected to hold boxes (they can always be parsed with ``parse_answer``).
    ``default_query`` is used when the query is empty (``None``: a query is required).
    """

    name: str
    label: str
    description: str
    template: str
    has_boxes: bool
    default_query: str | None = None
    needs_region: bool = False
    takes_classes: bool = False


_TASK_LIST = (
    Task(
        name="grounding",
        label="Grounded description",
        description="Describe the image and locate the objects it mentions.",
        template="[grounding]{query}",
        has_boxes=True,
        default_query=DEFAULT_GROUNDING_QUERY,
    ),
    Task(
        name="refer",
        label="Find objects",
        description="Locate every object matching a short description (e.g. 'airplanes').",
        template="[refer] Give me the location of <p> {query} </p>",
        has_boxes=True,
    ),
    Task(
        name="identify",
        label="Describe a region",
        description="Say what object is at a given box (region captioning).",
        template="[identify] What is the object present at {region}",
        has_boxes=False,
        needs_region=True,
    ),
    Task(
        name="classify",
        label="Scene classification",
        description="Name the scene's class, chosen from a list of classes.",
        template=(
            "{query}\nClassify the image from the following classes. Answer in one word or a short phrase."
        ),
        has_boxes=False,
        takes_classes=True,
    ),
    Task(
        name="vqa",
        label="Short answer",
        description="Answer a question about the image in a single word or phrase.",
        template="{query}\nAnswer the question using a single word or phrase.",
        has_boxes=False,
    ),
    Task(
        name="chat",
        label="Chat",
        description="Free conversation about the image, several turns.",
        template="{query}",
        has_boxes=False,
    ),
)

#: Every task by name, in the order a GUI should list them (read-only).
TASKS: Mapping[str, Task] = MappingProxyType({t.name: t for t in _TASK_LIST})


def task_names() -> tuple[str, ...]:
    """The valid task names, in display order."""
    return tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name raises ConfigError listing the valid ones."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(task_names())}") from None


def format_class_list(classes: Sequence[str]) -> str:
    """``Classes: a, b, c.`` for ``classes``; ConfigError for an empty list or an unusable name."""
    if isinstance(classes, str):
        raise ConfigError("classes must be a sequence of class names, not one string")
    names = [str(c).strip() for c in classes]
    if not names:
        raise ConfigError("the class list is empty")
    for name in names:
        if not name:
            raise ConfigError("a class name is empty")
        if "," in name or "\n" in name or "\r" in name:
            raise ConfigError(f"class name {name!r} must not contain a comma or a line break")
    return "Classes: " + ", ".join(names) + "."


def build_query(
    task: str,
    query: str = "",
    *,
    classes: Sequence[str] | None = None,
    region: GridBox | None = None,
) -> str:
    """The user text of one turn for ``task``: the task's wording applied to ``query``.

    ``classes`` only for ``classify``; ``region`` only for ``identify`` (where ``query`` may instead
    hold exactly one box in GeoChat's notation). Wrong or missing arguments raise ConfigError.
    """
    spec = get_task(task)
    query = (query or "").strip()

    if classes is not None and not spec.takes_classes:
        raise ConfigError(f"task {task!r} takes no class list")
    if region is not None and not spec.needs_region:
        raise ConfigError(f"task {task!r} takes no region")

    if spec.needs_region:
        if region is None:
            parsed = parse_answer(query)
            if len(parsed.objects) != 1 or parsed.text or parsed.remainder:
                raise ConfigError(
                    f"task {task!r} needs a region: give one box in GeoChat's notation as the query, "
                    "e.g. --query '{<10><20><40><60>|<0>}' (x1 y1 x2 y2 on the tile's 0-100 grid, angle)"
                )
            region = parsed.objects[0].box
        elif query:
            raise ConfigError(f"task {task!r} takes a region, not a query (got {query!r})")
        return spec.template.format(region=format_box(region))

    if spec.takes_classes and classes is not None:
        class_text = format_class_list(classes)
        query = f"{query} {class_text}" if query else class_text

    if not query:
        if spec.default_query is None:
            raise ConfigError(f"task {task!r} needs a query")
        query = spec.default_query
    return spec.template.format(query=query)


def build_prompt(
    task: str,
    query: str = "",
    history: Sequence[tuple[str, str]] = (),
    *,
    classes: Sequence[str] | None = None,
    region: GridBox | None = None,
    image_token: str | None = IMAGE_TOKEN,
    template: ConversationTemplate = LLAVA_V1,
) -> str:
    """The full prompt for a new turn of ``task`` after the earlier ``history`` turns.

    ``history`` holds ``(user_text, answer)`` pairs of earlier turns, the user text exactly as it was
    sent (already built; the image token is added, unless that text already starts with it). The
    image token and a line break open the first user turn; ``image_token=None`` or ``""`` leaves it
    out (text-only prompt).
    """
    turns: list[tuple[str, str | None]] = [(str(q), str(a)) for q, a in history]
    turns.append((build_query(task, query, classes=classes, region=region), None))
    if image_token:
        first_q, first_a = turns[0]
        if not first_q.startswith(image_token):
            turns[0] = (f"{image_token}\n{first_q}", first_a)
    return template.render(turns)


_NOT_CLASS_CHARS = re.compile(r"[\s.]+")


def normalise_class_answer(text: str) -> str:
    """Scene-classification scoring form: lower-case, all whitespace and dots removed."""
    return _NOT_CLASS_CHARS.sub("", text.lower())
