"""The noun phrase a group of boxes belongs to, in GeoChat's grounded descriptions.

GeoChat's grounding answers put boxes right after a noun phrase, without ``<p>`` tags: "there are
four tennis courts {…}{…}{…} {…} located close to each other". :func:`group_phrase` reads the phrase
of one *group* (boxes separated only by spaces or ``<delim>``) from the text around it:

1. **Before the group, in its clause.** The clause is the text since the last ``.``, ``!``, ``?``,
   ``;``, ``:``, ``,``, bracket, line break or earlier box group. From its end, words are taken back
   until a *stop word* (a verb such as "are" or "located", a preposition, a pronoun, an article or a
   quantifier such as "several") or a *count* (a number written as digits or as a word, "a"/"an"
   = 1), at most :data:`MAX_WORDS` words. A number inside the name ("Boeing 747 airplanes") is part
   of the phrase: a number is a count only when the word before it is a stop word or the clause start.
2. **Across a comma.** When nothing is left in the clause and a comma ends the text before it
   ("four tennis courts, {…}{…}"), the clause before the comma is read the same way.
3. **After the group.** When the group starts a sentence or the answer ("{…}{…} two ships are
   docked"), the words that follow it are read forward: leading stop words and a count are skipped,
   then words are taken until a stop word or the end of the clause ("ships").

The phrase keeps the words as written (case and plural included: "tennis courts"); the count is
returned apart (``4`` for "four", ``None`` when none was written). No phrase is found when the clause
holds no word besides stop words; the boxes then keep ``None``.
"""

from __future__ import annotations

import re

__all__ = ["MAX_WORDS", "group_phrase", "noun_phrase_after", "noun_phrase_before"]

#: The longest phrase kept, in words (its last words, which hold the noun).
MAX_WORDS = 6

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "single": 1,
    "two": 2,
    "pair": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "dozen": 12,
}

# Words that end a noun phrase read backwards (or start one read forwards). Lower case.
_STOP_WORDS = """
    the this that these those there here it its they them their we i you he she his her our your
    is are was were be been being am has have had do does did can could may might will would shall
    should must see seen sees saw shows show showing shown contains contain containing contained
    include includes including included appear appears appearing visible located positioned situated
    placed lying lies lie standing stands parked arranged scattered spread distributed found
    and or but nor so yet also as which who whom whose where when while what how than then
    of in on at near by to from into onto over under between beside besides behind above below
    along across around through throughout within without against among amongst next upon toward
    towards inside outside about for with like such
    some several many multiple few numerous various both all each every other another more most
    image picture photo total number
"""
_STOP = frozenset(_STOP_WORDS.split())

_WORD = re.compile(r"[^\W_](?:[\w'’-]*[^\W_])?")
_DIGITS = re.compile(r"[0-9]+")
# Clause boundaries; a comma is recorded separately (rule 2).
_BOUNDARY = re.compile(r"[.!?;:()\[\]\n]|,")


def _count(word: str) -> int | None:
    low = word.casefold()
    if _DIGITS.fullmatch(low):
        return int(low)
    return _NUMBER_WORDS.get(low)


def _is_stop(word: str) -> bool:
    return word.casefold() in _STOP


def noun_phrase_before(clause: str) -> tuple[str | None, int | None]:
    """The noun phrase that ends ``clause`` and its count (rule 1): ``("tennis courts", 4)`` for
    "there are four tennis courts"; ``(None, None)`` when the clause ends in a stop word or is empty."""
    words = _WORD.findall(clause)
    taken: list[str] = []
    count: int | None = None
    k = len(words) - 1
    while k >= 0:
        w = words[k]
        if _is_stop(w) and w.casefold() not in ("a", "an"):
            break
        c = _count(w)
        if c is not None:
            before = words[k - 1] if k > 0 else None
            leftmost = before is None or _is_stop(before) or _count(before) is not None
            if leftmost or w.casefold() in _NUMBER_WORDS or not taken:
                if taken:
                    count = c
                break
        taken.append(w)
        k -= 1
    if not taken:
        return None, None
    return " ".join(reversed(taken[:MAX_WORDS])), count


def noun_phrase_after(text: str) -> tuple[str | None, int | None]:
    """The noun phrase that starts ``text`` after stop words and a count (rule 3): ``("ships", 2)``
    for " two ships are docked"."""
    words = _WORD.findall(text)
    k = 0
    count: int | None = None
    while k < len(words) and (_is_stop(words[k]) or _count(words[k]) is not None):
        c = _count(words[k])
        if c is not None:
            count = c
        k += 1
    taken: list[str] = []
    while k < len(words) and not _is_stop(words[k]) and len(taken) < MAX_WORDS:
        taken.append(words[k])
        k += 1
    if not taken:
        return None, None
    return " ".join(taken), count


def _split_clauses(text: str) -> list[tuple[str, str]]:
    """``text`` cut at clause boundaries: ``[(clause, boundary that ends it), …]``; the last clause
    has the boundary ``""``."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _BOUNDARY.finditer(text):
        out.append((text[pos : m.start()], m.group(0)))
        pos = m.end()
    out.append((text[pos:], ""))
    return out


def group_phrase(before: str, after: str, *, at_start: bool) -> tuple[str | None, int | None]:
    """The phrase of a box group from the plain text ``before`` it (since the previous group or the
    answer's start; ``at_start`` when that is the answer's start) and the text ``after`` it (up to the
    next group). See the module documentation for the rules."""
    clauses = _split_clauses(before)
    last, _ = clauses[-1]
    phrase, count = noun_phrase_before(last)
    if phrase is not None:
        return phrase, count
    if not _WORD.search(last) and len(clauses) > 1 and clauses[-2][1] == ",":
        phrase, count = noun_phrase_before(clauses[-2][0])
        if phrase is not None:
            return phrase, count
    # The group opens its sentence (or the answer): read on.
    opens = not _WORD.search(last) and (at_start or len(clauses) > 1)
    if opens:
        head, _ = _split_clauses(after)[0]
        return noun_phrase_after(head)
    return None, None
