"""METEOR for region captions: NLTK's METEOR with WordNet 3.0 from Debian's ``wordnet-base`` package.

Variant (named in every report, :data:`METEOR_VARIANT`): ``nltk.translate.meteor_score`` (NLTK's
re-implementation of METEOR 1.0: unigram matching in three stages, exact → Porter stem → WordNet
synonym; F-mean with α = 0.9, fragmentation penalty β = 3, γ = 0.5), one reference per caption,
tokenised as for ROUGE: lower-cased, punctuation stripped (``"Road."`` is ``road``).
Its synonym data is WordNet 3.0 as the Debian package ``wordnet-base`` ships it in
``/usr/share/wordnet`` (installed by ``make venv``; ``RSVG_WORDNET_DIR`` points elsewhere).
That package lacks WordNet's small ``lexnames`` table, which NLTK's reader opens: it is written
beside a copy of the package's files (30 MB) in ``~/.cache/rsvg-desktop/wordnet``.

No torch, no Qt; NLTK is imported only when METEOR is computed.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from rsvg_desktop.core.eval.metrics import tokens
from rsvg_desktop.errors import ConfigError

__all__ = ["DEFAULT_WORDNET_DIR", "METEOR_VARIANT", "meteor", "wordnet_reader"]

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
METEOR_VARIANT = (
    "NLTK meteor_score (METEOR 1.0 matching: exact, Porter stem, WordNet 3.0 synonyms; "
    "alpha 0.9, beta 3, gamma 0.5; WordNet from Debian wordnet-base; tokens as for ROUGE: "
    "lower-cased, punctuation stripped)"
)

# WordNet 3.0's lexicographer files (lexnames(5WN)): name and syntactic category number.
_LEXNAMES = (
    ("adj.all", 3),
    ("adj.pert", 3),
    ("adv.all", 4),
    *(
        (f"noun.{n}", 1)
        for n in [
            "Tops",
            "act",
            "animal",
            "artifact",
            "attribute",
            "body",
            "cognition",
            "communication",
            "event",
            "feeling",
            "food",
            "group",
            "location",
            "motive",
            "object",
            "person",
            "phenomenon",
            "plant",
            "possession",
            "process",
            "quantity",
            "relation",
            "shape",
            "state",
            "substance",
            "time",
        ]
    ),
    *(
        (f"verb.{n}", 2)
        for n in [
            "body",
            "change",
            "cognition",
            "communication",
            "competition",
            "consumption",
            "contact",
            "creation",
            "emotion",
            "motion",
            "perception",
            "possession",
            "social",
            "stative",
            "weather",
        ]
    ),
    ("adj.ppl", 3),
)


def _prepared_root(source: Path) -> Path:
    """A folder holding links to ``source``'s WordNet files and the ``lexnames`` table."""
    if (source / "lexnames").is_file():
        return source
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(cache) / "rsvg-desktop" / "wordnet"
    root.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        copy = root / f.name
        if f.is_file() and (
            copy.is_symlink() or not copy.is_file() or copy.stat().st_size != f.stat().st_size
        ):
            tmp = root / f".{f.name}.{os.getpid()}"
            shutil.copyfile(f, tmp)  # NLTK refuses links that leave its root
            tmp.replace(copy)
    lex = root / "lexnames"
    if not lex.is_file():
        tmp = root / f".lexnames.{os.getpid()}"
        tmp.write_text(
            "".join(f"{i:02d}\t{n}\t{c}\n" for i, (n, c) in enumerate(_LEXNAMES)), encoding="ascii"
        )
        tmp.replace(lex)
    return root


@functools.cache
def wordnet_reader(folder: str | None = None) -> Any:
    """NLTK's WordNet reader over the WordNet 3.0 database files (ConfigError when absent)."""
    import warnings

    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    source = Path(folder or os.environ.get("RSVG_WORDNET_DIR") or DEFAULT_WORDNET_DIR)
    if not (source / "data.noun").is_file():
        raise ConfigError(
            f"{source}: no WordNet 3.0 database for METEOR (install the Debian package wordnet-base, "
            "or set RSVG_WORDNET_DIR)"
        )
    root = _prepared_root(source)
    for allowed in (str(root), str(source.resolve())):
        if allowed not in nltk.data.path:  # NLTK reads corpora only below its data paths
            nltk.data.path.append(allowed)

    class _EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            return None  # a map to NLTK's own WordNet copy is for multilingual data only: not needed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed
        return _EnglishWordNet(str(root), None)


def meteor(reference: str, hypothesis: str) -> float:
    """METEOR of one caption against one reference, in [0, 1] (see :data:`METEOR_VARIANT`)."""
    from nltk.translate.meteor_score import meteor_score

    ref, hyp = tokens(reference), tokens(hypothesis)
    if not ref or not hyp:
        return 0.0
    return float(meteor_score([ref], hyp, wordnet=wordnet_reader()))
