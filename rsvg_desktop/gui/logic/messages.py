"""Error text for the app: the engine's messages speak to the command line and the Python API ("use
--overwrite, or overwrite=True"); in the window they speak of what the analyst can do there.

:func:`app_message` keeps the file and the problem, drops command-line and API advice (options,
``name=True`` arguments) and library boilerplate ("See previous exception for details."), and adds the
app's own way to do the same where there is one (``hints``: option → words). Qt-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["DEFAULT_HINTS", "app_message"]

#: What the app offers instead of a command-line option.
DEFAULT_HINTS: Mapping[str, str] = {
    "--overwrite": "choose to replace it",
    "--pixel-mode": "",  # the app asks whether to open in pixel mode
}

_BOILERPLATE = (
    "See previous exception for details.",
    "See the previous exception for details.",
)
# A parenthesis that gives command-line or API advice: it names an option or a name=value argument.
_ADVICE = re.compile(r"\s*\(([^()]*?(?:--[a-z][\w-]*|\b[a-z_]+=(?:True|False)\b)[^()]*)\)")
_OPTION = re.compile(r"--[a-z][\w-]*")


def app_message(text: str, hints: Mapping[str, str] | None = None) -> str:
    """``text`` in the app's words (see the module doc)."""
    hints = DEFAULT_HINTS if hints is None else hints

    def replace(match: re.Match[str]) -> str:
        for option in _OPTION.findall(match.group(1)):
            hint = hints.get(option)
            if hint:
                return f" ({hint})"
        return ""

    out = _ADVICE.sub(replace, text)
    for phrase in _BOILERPLATE:
        out = out.replace(phrase, "")
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r"\s+([.,;:])", r"\1", out)
    return out.strip()
