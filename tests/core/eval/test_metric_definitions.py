"""Caption metrics against the reference implementations: NLTK's METEOR on ROUGE's tokens, and
Google's ``rouge-score`` (when installed) for ROUGE-1/ROUGE-L F-measure."""

from __future__ import annotations

import re

import pytest

from rsvg_desktop.core.eval.meteor import meteor, wordnet_reader
from rsvg_desktop.core.eval.metrics import rouge1, rouge_l

PAIRS = [
    ("A small white car on the road.", "a small white car on the road"),
    ("Small vehicle, parked.", "a small vehicle"),
    ("the airplane is parked near the terminal", "an airplane parked at the terminal building"),
]


def _tokens(text: str) -> list[str]:  # lower-cased, every non-alphanumeric character a separator
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def test_meteor_tokenises_as_rouge_does() -> None:
    from nltk.translate.meteor_score import meteor_score

    for ref, hyp in PAIRS:
        want = meteor_score([_tokens(ref)], _tokens(hyp), wordnet=wordnet_reader())
        assert meteor(ref, hyp) == pytest.approx(want)
    assert meteor("the road.", "the road") == meteor("the road", "the road")  # "road." is "road"


def test_rouge_matches_the_rouge_score_package() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"])  # the package's default: no stemmer
    for ref, hyp in PAIRS:
        got = scorer.score(ref, hyp)
        assert rouge1(ref, hyp) == pytest.approx(got["rouge1"].fmeasure)
        assert rouge_l(ref, hyp) == pytest.approx(got["rougeL"].fmeasure)
