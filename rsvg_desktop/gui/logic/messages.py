"""Error text for the app: the engine's messages speak to the command line and the Python API ("use
--overwrite, or overwrite=True"); in the window they speak of what the analyst can do there.

:func:`app_message` keeps the file and the problem, drops command-line and API advice (options,
``name=True`` arguments) and library boilerplate ("See previous exception for details."), and adds the
app's own way to do the same where there is one (``hints``: option → words). Commands (``rsvg model
calibrate …``) become the app's menu or button that does the same (:data:`COMMAND_HINTS`); an option
left outside a parenthesis loses its dashes; a raw ``[Errno N]`` becomes words (a network failure says
so). Qt-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["COMMAND_HINTS", "DEFAULT_HINTS", "app_message"]

#: What the app offers instead of a command-line option.
DEFAULT_HINTS: Mapping[str, str] = {
    "--overwrite": "choose to replace it",
    "--pixel-mode": "",  # the app asks whether to open in pixel mode
}

#: What the app offers instead of a command of the command line.
COMMAND_HINTS: Mapping[str, str] = {
    "rsvg model calibrate": "Model panel ▸ Calibrate q4cal…",
    "rsvg model download": "Model panel ▸ Get a model…",
    "rsvg model convert": "Model panel ▸ Get a model…",
}

_BOILERPLATE = (
    "See previous exception for details.",
    "See the previous exception for details.",
)
# A parenthesis that gives command-line or API advice: it names an option or a name=value argument.
_ADVICE = re.compile(r"\s*\(([^()]*?(?:--[a-z][\w-]*|\b[a-z_]+=(?:True|False)\b)[^()]*)\)")
_OPTION = re.compile(r"--[a-z][\w-]*")
# A command, quoted in backticks (with its arguments) or bare, then an optional "(or …)" alternative.
_COMMAND = re.compile(
    r"`(?P<quoted>rsvg(?: [a-z][\w-]*){1,2})\b[^`]*`(?:\s*\(or [^()]*\))?"
    r"|\b(?P<bare>rsvg(?: [a-z][\w-]*){1,2})\b(?: [\w{}.${}-]+)?(?:\s*\(or [^()]*\))?"
)
# The OS's error numbers: name resolution and connection failures speak of the network.
_NETWORK_ERRNO = re.compile(r"\[Errno (?:-2|-3|-5|101|104|110|111|113)\][^\]\n]*?(?=$|[\n\])'\"]|\)\)|>)")
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")


def app_message(text: str, hints: Mapping[str, str] | None = None) -> str:
    """``text`` in the app's words (see the module doc)."""
    hints = DEFAULT_HINTS if hints is None else hints

    def replace(match: re.Match[str]) -> str:
        for option in _OPTION.findall(match.group(1)):
            hint = hints.get(option)
            if hint:
                return f" ({hint})"
        return ""

    def command(match: re.Match[str]) -> str:
        name = match.group("quoted") or match.group("bare")
        for prefix, hint in COMMAND_HINTS.items():
            if name.startswith(prefix):
                return hint
        return match.group(0)

    out = _COMMAND.sub(command, text)
    out = _ADVICE.sub(replace, out)
    out = _NETWORK_ERRNO.sub("the server could not be reached (check the network connection)", out)
    out = _ERRNO.sub("", out)
    out = _OPTION.sub(lambda m: hints.get(m.group(0)) or m.group(0)[2:].replace("-", " "), out)
    for phrase in _BOILERPLATE:
        out = out.replace(phrase, "")
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r"\s+([.,;:])", r"\1", out)
    return out.strip()
