"""GeoChat prompts and answers as text: conversation template, task prompts, output parser.

Pure Python: no torch, no transformers, no Qt.
"""

from rsvg_desktop.core.prompt.parser import DELIM, format_box, format_boxes, parse_answer
from rsvg_desktop.core.prompt.templates import (
    DEFAULT_GROUNDING_QUERY,
    GEOCHAT_SYSTEM,
    IMAGE_TOKEN,
    LLAVA_V1,
    TASKS,
    ConversationTemplate,
    Task,
    build_prompt,
    build_query,
    chat_template_jinja,
    format_class_list,
    get_task,
    normalise_class_answer,
    task_names,
)

__all__ = [
    "DEFAULT_GROUNDING_QUERY",
    "DELIM",
    "GEOCHAT_SYSTEM",
    "IMAGE_TOKEN",
    "LLAVA_V1",
    "TASKS",
    "ConversationTemplate",
    "Task",
    "build_prompt",
    "build_query",
    "chat_template_jinja",
    "format_box",
    "format_boxes",
    "format_class_list",
    "get_task",
    "normalise_class_answer",
    "parse_answer",
    "task_names",
]
