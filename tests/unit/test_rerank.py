"""Which first results are a near tie, and how the pixel check reorders them
(``daemon.rerank``), on plain scores."""

from __future__ import annotations

from findsimilar.daemon.model.spec import RerankRule, model_spec
from findsimilar.daemon.rerank import FLOOR, GAP, LIKELY, MOST, reorder, tied


def test_a_first_result_standing_alone_is_no_tie() -> None:
    assert tied([0.95, 0.95 - GAP - 0.01, 0.5]) == 0
    assert tied([0.9]) == 0
    assert tied([]) == 0


def test_results_within_the_gap_of_the_first_are_tied_at_most_three() -> None:
    assert tied([0.90, 0.88, 0.70]) == 2
    assert tied([0.90, 0.89, 0.88, 0.87, 0.86]) == MOST == 3
    assert tied([0.90, 0.89, 0.80], gap=0.2) == 3


def test_a_confirmed_same_picture_goes_first_the_others_keep_their_order() -> None:
    assert reorder(["sibling", "original"], [0.41, 0.97]) == ["original", "sibling"]
    assert reorder(["a", "b", "c"], [0.2, 0.5, 0.9]) == ["c", "a", "b"]
    assert reorder(["a", "b", "c"], [0.90, 0.95, None]) == ["b", "a", "c"]


def test_nothing_confirmed_or_unreadable_keeps_the_cosine_order() -> None:
    # A higher pixel score that is not a confirmation and does not lead by LEAD reorders
    # nothing: two shots of one scene score 0.5-0.87 against each other.
    assert reorder(["a", "b"], [0.6, 0.8]) == ["a", "b"]
    assert reorder(["a", "b", "c"], [0.3, 0.85, 0.6]) == ["a", "b", "c"]
    assert reorder(["a", "b"], [0.1, LIKELY - 0.01]) == ["a", "b"]
    assert reorder(["a", "b"], [None, None]) == ["a", "b"]


def test_an_unconfirmed_result_far_ahead_of_the_others_goes_first() -> None:
    # A copy blurred past confirmation: 0.87 against its original, -0.14 against the
    # other shot of the scene (skimage's motorcycle pair, blur 1 % of the side).
    assert reorder(["other shot", "original"], [-0.14, 0.87]) == ["original", "other shot"]
    assert reorder(["a", "b", "c"], [0.2, None, LIKELY]) == ["c", "a", "b"]
    assert reorder(["a", "b"], [0.3, 0.8], lead=0.6) == ["a", "b"]


def test_each_extractor_has_its_rule() -> None:
    assert model_spec("efficientnet-lite0-gem").rerank == RerankRule(GAP, FLOOR, MOST)
    wide = model_spec("efficientnet-lite0-gem512").rerank
    assert wide.gap > GAP and wide.floor < FLOOR and wide.most > MOST
    assert tied([0.45, 0.40, 0.37, 0.36, 0.36], wide.gap, wide.floor, wide.most) == 4
    assert tied([0.45, 0.40, 0.37, 0.36, 0.36]) == 0


def test_confirmed_results_with_close_pixel_scores_keep_their_cosine_order() -> None:
    # The check stops at the first alignment that passes: 0.933 against 0.929 ranks
    # nothing (a heavily blurred copy passes against its original and the other shot).
    assert reorder(["sibling", "original"], [0.933, 0.929]) == ["sibling", "original"]
    assert reorder(["sibling", "original"], [0.93, 0.99]) == ["original", "sibling"]
