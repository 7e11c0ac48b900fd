"""Probability-weighted judge scores, checked by hand."""

from __future__ import annotations

import math

import pytest

from agents.scoring import read_score


def toks(*pieces):
    """[[token, [[alt, logprob], ...]], ...] with the given alternatives as probabilities."""
    return [[t, [[a, math.log(p)] for a, p in alts.items()]] for t, alts in pieces]


def test_expected_score_is_the_probability_weighted_mean_over_integer_tokens():
    text = '{"score": 7, "reason": "ok"}'
    lp = toks(('{"', {}), ("score", {}), ('":', {}), (" ", {}), ("7", {"7": 0.5, "8": 0.3, "A": 0.1, "2": 0.1}),
              (', "', {}), ("reason", {}), ('":', {}), (' "', {}), ("ok", {}), ('"}', {}))
    r = read_score(text, lp)
    # "A" is not a score; the rest renormalise: (7*.5 + 8*.3 + 2*.1) / .9
    assert r.sampled == 7 and r.expected == pytest.approx((3.5 + 2.4 + 0.2) / 0.9)
    assert r.mass == pytest.approx(0.9) and r.value == r.expected
    assert r.as_dict()["scoring"] == "expected"


def test_score_of_a_named_criterion_in_an_all_in_one_reply():
    text = '{"accuracy": {"score": 3}, "safety": {"score": 9}}'
    pieces = [('{"accuracy": {"score": ', {}), ("3", {"3": 0.6, "4": 0.4}), ('}, "safety": {"score": ', {}),
              ("9", {"9": 0.9, "10": 0.1}), ("}}", {})]
    lp = toks(*pieces)
    assert read_score(text, lp, "accuracy").expected == pytest.approx(3.4)
    assert read_score(text, lp, "safety").expected == pytest.approx(9.1)
    assert read_score(text, lp, "clarity").sampled is None


def test_out_of_range_alternatives_are_ignored_and_no_logprobs_falls_back_to_the_written_integer():
    text = '{"score": 5}'
    lp = toks(('{"score": ', {}), ("5", {"5": 0.5, "11": 0.5}), ("}", {}))
    assert read_score(text, lp).expected == pytest.approx(5.0)
    plain = read_score(text, None)
    assert (plain.sampled, plain.expected, plain.value) == (5, None, 5.0)
    assert plain.as_dict()["scoring"] == "sampled"


def test_a_number_split_over_tokens_or_mismatched_tokens_falls_back():
    split = toks(('{"score": ', {}), ("1", {"1": 0.5, "2": 0.5}), ("0", {}), ("}", {}))
    assert read_score('{"score": 10}', split).expected is None
    assert read_score('{"score": 10}', split).sampled == 10
    other_text = toks(('{"score": ', {}), ("4", {"4": 1.0}), ("}", {}))
    assert read_score('{"score": 5}', other_text).expected is None
