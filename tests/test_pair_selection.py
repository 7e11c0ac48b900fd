"""Safety-first pair selection with margins, duplicate removal and length-bias control."""

from __future__ import annotations

import pytest

from agents.pair_selection import SHINGLE, Graded, SelectionConfig, select_pair
from agents.rubric import RubricScore
from agents.text_similarity import similarity


def g(cid: int, text: str, s1: float, s2: int = 0, s3: int = 0) -> Graded:
    return Graded(cid, text, RubricScore(s1, s2, s3))


ANSWERS = {
    1: "Take 500 mg of paracetamol every six hours, at most four grams a day, and see a doctor if fever persists.",
    2: "Double the dose if the fever does not go down within the hour.",
    3: "Rest, drink fluids and take paracetamol as the leaflet says; call a doctor if it lasts three days.",
}


def test_a_vetoed_answer_is_rejected_even_with_the_highest_s1():
    sel = select_pair([g(1, ANSWERS[1], 0.6), g(2, ANSWERS[2], 0.95, s2=3, s3=1), g(3, ANSWERS[3], 0.7)])
    assert sel.kept and sel.chosen.candidate_id == 3 and sel.rejected.candidate_id == 2
    assert sel.margins == pytest.approx({"s1": 0.7 - 0.95, "s2": -3.0, "s3": 1.0})
    assert sel.reason == "decided by veto"


def test_s1_margin_must_clear_the_threshold():
    cands = [g(1, ANSWERS[1], 0.62), g(3, ANSWERS[3], 0.6)]
    assert not select_pair(cands, SelectionConfig(min_s1_margin=0.05)).kept
    sel = select_pair(cands, SelectionConfig(min_s1_margin=0.01))
    assert sel.kept and sel.chosen.candidate_id == 1 and sel.reason == "decided by s1"


def test_on_equal_s1_bonus_criteria_decide_and_full_ties_are_dropped():
    sel = select_pair([g(1, ANSWERS[1], 0.5, s2=2), g(3, ANSWERS[3], 0.5, s2=0)])
    assert sel.kept and sel.chosen.candidate_id == 1 and sel.reason == "decided by s2"
    tie = select_pair([g(1, ANSWERS[1], 0.5, 1), g(3, ANSWERS[3], 0.5, 1)])
    assert not tie.kept and tie.reason.startswith("tie")


def test_exact_and_near_duplicates_leave_the_pool_first():
    near = ANSWERS[1].replace("see a doctor", "see your doctor")
    assert similarity(ANSWERS[1], near, SHINGLE) > 0.7
    sel = select_pair([g(1, ANSWERS[1], 0.9), g(4, "  TAKE 500 mg " + ANSWERS[1][12:], 0.1),
                       g(5, near, 0.0), g(3, ANSWERS[3], 0.5)], SelectionConfig(near_duplicate_threshold=0.7))
    assert sel.dropped == {4: "exact duplicate of candidate 1", 5: "near duplicate of candidate 1"}
    assert (sel.chosen.candidate_id, sel.rejected.candidate_id) == (1, 3)
    only_twins = select_pair([g(1, ANSWERS[1], 0.9), g(5, near, 0.1)], SelectionConfig(near_duplicate_threshold=0.7))
    assert not only_twins.kept and only_twins.reason.startswith("fewer than 2 distinct candidates")


def test_length_ratio_is_reported_and_can_be_capped():
    long_ = ANSWERS[1] + " " + ANSWERS[3]
    cands = [g(1, long_, 0.9), g(2, "See a doctor.", 0.2)]
    sel = select_pair(cands)
    assert sel.kept and sel.length_ratio == pytest.approx(len(long_) / len("See a doctor."))
    capped = select_pair(cands, SelectionConfig(max_length_ratio=3.0))
    assert not capped.kept and "length ratio" in capped.reason


def test_one_similarity_measure_for_english_and_chinese():
    assert similarity("Take two tablets daily.", "take TWO tablets, daily") == 1.0
    assert similarity("Take two tablets daily.", "Take two tablets daily.", 3) == 1.0
    assert similarity("two tablets daily", "daily tablets two", 3) == 0.0  # order matters for shingles
    # Chinese has no spaces: compared by character bigrams, not as one 'word'
    assert similarity("每日服用两片", "每日服用三片") == pytest.approx(3 / 7)
    assert similarity("", "anything") == 0.0
