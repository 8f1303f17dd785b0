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


@pytest.mark.parametrize(
    ("reference", "hypothesis", "want_1", "want_l"),
    [
        # 3 shared tokens of 4 and 6, in order: P 1/2, R 3/4 → F 0.6 for both
        ("A red car parked.", "a car parked near the road", 0.6, 0.6),
        # the same tokens in the other order: unigrams all match, the LCS is 1 of 2
        ("car red", "Red, car!", 1.0, 0.5),
        ("nothing shared", "at all", 0.0, 0.0),
    ],
)
def test_rouge_is_the_packages_on_hand_counted_cases(
    reference: str, hypothesis: str, want_1: float, want_l: float
) -> None:
    """Our ROUGE is Google's ``rouge-score`` (no stemmer): checked against counts done by hand, and
    against the package called directly."""
    from rouge_score import rouge_scorer

    assert rouge1(reference, hypothesis) == pytest.approx(want_1)
    assert rouge_l(reference, hypothesis) == pytest.approx(want_l)
    got = rouge_scorer.RougeScorer(["rouge1", "rougeL"]).score(reference, hypothesis)
    assert (got["rouge1"].fmeasure, got["rougeL"].fmeasure) == pytest.approx((want_1, want_l))
