"""Answer files → answers keyed by question ``(file, question_id)``.

A label's answers come from answer files or folders of them (``--answers LABEL=PATH``, a label given
any number of times). An answer file's task is told from its name as a question file's is
(:mod:`rsvg_desktop.core.eval.names`); one whose task cannot be told is a :class:`BenchDataError`
naming it and the names accepted, never scored as another task.

Each answer is joined to one question file: the one its line names (field ``file``, written by
``rsvg bench run``), else the question file of the same name (``UCmerced.jsonl`` answers
``UCmerced.jsonl``), else the only question file of the task, else the one whose dataset the line
names (field ``dataset``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rsvg_desktop.core.eval.data import BenchAnswer, BenchRecord, read_answers
from rsvg_desktop.core.eval.names import accepted_names, task_of_path
from rsvg_desktop.errors import BenchDataError, BenchDataNotFoundError

__all__ = [
    "SAMPLE_FILE",
    "LabelAnswers",
    "answer_files",
    "join_answers",
    "read_label_answers",
    "read_sample",
    "sample_json",
]

#: Beside the answer files: the seeded sample ``bench run --limit N --seed S`` asked.
SAMPLE_FILE = "sample.json"

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass(slots=True)
class LabelAnswers:
    """One label's answers per task, keyed by ``(file, question_id)``, and the question files they
    answer (the questions the label was asked)."""

    by_task: dict[str, dict[Key, str]] = field(default_factory=dict)
    files: dict[str, set[str]] = field(default_factory=dict)
    sample: set[Key] | None = None
    sample_files: list[Path] = field(default_factory=list)

    def asked(self, task: str, records: Sequence[BenchRecord]) -> list[BenchRecord]:
        """The questions of ``task`` this label was asked: its files' questions, or the sample."""
        files = self.files.get(task, set())
        return [r for r in records if r.file in files and (self.sample is None or r.key in self.sample)]


def answer_files(path: Path) -> list[tuple[Path, str]]:
    """``(answer file, task)`` for a file or each ``.jsonl`` of a folder (and its task folders)."""
    if path.is_dir():
        found = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        if not found:
            raise BenchDataError(f"{path}: no answer files (.jsonl) in this folder")
    elif path.is_file():
        found = [path]
    else:
        raise BenchDataNotFoundError(f"{path}: answer file not found")
    out = []
    for f in found:
        named = task_of_path(f)
        if named is None:
            raise BenchDataError(
                f"{f}: cannot tell the task from the file name; names accepted: {accepted_names()}"
            )
        out.append((f, named[0]))
    return out


def _file_for(answer: BenchAnswer, path: Path, records: Sequence[BenchRecord]) -> str:
    files = sorted({r.file for r in records})
    if answer.file:
        return answer.file
    same = [f for f in files if Path(f).name.lower() == path.name.lower()]
    if len(same) == 1:
        return same[0]
    if len(files) == 1:
        return files[0]
    return ""


def join_answers(
    path: Path, answers: Sequence[BenchAnswer], records: Sequence[BenchRecord]
) -> dict[Key, str]:
    """``answers`` (read from ``path``) keyed by the ``(file, question_id)`` of ``records`` they answer."""
    by_dataset: dict[str, set[str]] = {}
    for r in records:
        by_dataset.setdefault(r.dataset.lower(), set()).add(r.file)
    out: dict[Key, str] = {}
    for a in answers:
        file = _file_for(a, path, records)
        if not file:
            candidates = by_dataset.get(a.dataset.lower(), set()) if a.dataset else set()
            if len(candidates) != 1:
                files = ", ".join(sorted({r.file for r in records}))
                raise BenchDataError(
                    f"{a.source}: cannot tell which question file this answers (the data holds {files}; "
                    "name the answer file after one of them)"
                )
            file = next(iter(candidates))
        out[(file, a.question_id)] = a.answer
    return out


def sample_json(limit: int, seed: int, keys: Sequence[Key]) -> str:
    """The text of a sample file: ``{"limit", "seed", "questions": [[file, question_id], ...]}``."""
    return json.dumps({"limit": limit, "seed": seed, "questions": [list(k) for k in keys]}, indent=0)


def read_sample(path: Path) -> set[Key]:
    """The ``(file, question_id)`` keys of a sample file (BenchDataError when unreadable)."""
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
        return {(str(f), str(q)) for f, q in got["questions"]}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BenchDataError(f"{path}: not a sample file of bench run ({exc})") from None


def _sample_of(path: Path) -> Path | None:
    cand = (path if path.is_dir() else path.parent) / SAMPLE_FILE
    return cand if cand.is_file() else None


def read_label_answers(
    paths: Sequence[str | Path], data: Mapping[str, Sequence[BenchRecord]]
) -> LabelAnswers:
    """Every answer of one label, from its answer files and folders (see the module doc)."""
    got = LabelAnswers()
    for p in paths:
        sample = _sample_of(Path(p))
        if sample is not None and sample not in got.sample_files:
            got.sample = (got.sample or set()) | read_sample(sample)
            got.sample_files.append(sample)
        for f, task in answer_files(Path(p)):
            if task not in data:
                raise BenchDataError(
                    f"{f}: answers to {task} questions, but the data holds none "
                    f"(it holds {', '.join(data) or 'no task'})"
                )
            joined = join_answers(f, read_answers(f), data[task])
            known = {r.key for r in data[task]}
            stray = [k for k in joined if k not in known]
            if stray:
                log.warning(
                    "%s: %d answers to unknown questions ignored (e.g. %r)", f, len(stray), stray[0][1]
                )
            mine = got.by_task.setdefault(task, {})
            twice = [k for k in joined if k in mine and k in known]
            if twice:
                log.warning("%s: %d questions answered again, the later answer kept", f, len(twice))
            mine.update({k: v for k, v in joined.items() if k in known})
            got.files.setdefault(task, set()).update(k[0] for k in joined if k in known)
    return got
