"""Benchmark metrics against hand-computed values (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.factcheck_metrics import (
    ScoredText,
    Unsure,
    breakdown,
    factcheck_bootstrap,
    factcheck_metrics,
    fpr_from_precision_recall,
    rounds_report,
)
from benchmarks.healthbench import (
    PairRecord,
    clipped_mean,
    example_score,
    grader_agreement,
    pairwise_report,
    rubric_tag_scores,
    score_healthbench,
)
from benchmarks.metrics import (
    accuracy,
    bootstrap,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    prf_from_counts,
    prf_from_labels,
    resample_counts,
    weighted_f1,
)
from benchmarks.strategy_metrics import normalise_strategy, preference_bias, strategy_report

# -- metrics.py -----------------------------------------------------------------------------------


def test_prf_zero_over_zero_is_zero():
    r = prf_from_counts(0, 0, 0)
    assert (r.precision, r.recall, r.f1) == (0.0, 0.0, 0.0)
    r = prf_from_counts(0, 3, 0)  # P = 0/3, R = 0/0 -> 0
    assert (r.precision, r.recall, r.f1) == (0.0, 0.0, 0.0)
    r = prf_from_counts(0, 0, 2)  # P = 0/0 -> 0, R = 0/2
    assert (r.precision, r.recall, r.f1) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        prf_from_counts(-1, 0, 0)


def test_prf_by_hand():
    r = prf_from_counts(3, 1, 2)  # P = 3/4, R = 3/5, F1 = 2*0.45/1.35 = 2/3
    assert r.precision == pytest.approx(0.75) and r.recall == pytest.approx(0.6)
    assert r.f1 == pytest.approx(2 / 3)
    assert (r.support, r.predicted) == (5, 4)
    # gold T T F F T / pred T F T F T: tp = 2 (0, 4), fp = 1 (2), fn = 1 (1) -> P = R = F1 = 2/3
    r = prf_from_labels([True, True, False, False, True], [True, False, True, False, True])
    assert (r.tp, r.fp, r.fn) == (2, 1, 1)
    assert r.f1 == pytest.approx(2 / 3)


GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "c", "c"]
# a: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 4/5
# b: tp 1, fp 1, fn 1 -> P 1/2, R 1/2, F1 1/2
# c: tp 1, fp 1, fn 0 -> P 1/2, R 1, F1 2/3
# macro = (4/5 + 1/2 + 2/3)/3 = 59/90; weighted (support 3, 2, 1) = (12/5 + 1 + 2/3)/6 = 61/90


def test_macro_and_weighted_f1_by_hand():
    assert macro_f1(GOLD, PRED) == pytest.approx(59 / 90)
    assert weighted_f1(GOLD, PRED) == pytest.approx(61 / 90)
    assert accuracy(GOLD, PRED) == pytest.approx(4 / 6)
    # A label only predicted still counts for macro (F1 0), not for weighted (support 0):
    # a: tp 1, fn 1 -> F1 2/3; d: fp 1 -> F1 0; macro 1/3, weighted 2/3.
    assert macro_f1(["a", "a"], ["a", "d"]) == pytest.approx(1 / 3)
    assert weighted_f1(["a", "a"], ["a", "d"]) == pytest.approx(2 / 3)


def test_f1_agrees_with_sklearn_when_available():
    metrics = pytest.importorskip("sklearn.metrics")
    for gold, pred in [(GOLD, PRED), (["a", "a"], ["a", "d"]), (list("abcabcaa"), list("bbcacdaa"))]:
        assert macro_f1(gold, pred) == pytest.approx(metrics.f1_score(gold, pred, average="macro", zero_division=0))
        assert weighted_f1(gold, pred) == pytest.approx(
            metrics.f1_score(gold, pred, average="weighted", zero_division=0))


def test_confusion_matrix_and_accuracy_errors():
    assert confusion_matrix(GOLD, PRED, ["a", "b", "c"]).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="not in the label order"):
        confusion_matrix(["a"], ["z"], ["a", "b"])
    with pytest.raises(ValueError):
        accuracy([], [])
    with pytest.raises(ValueError, match="length"):
        accuracy(["a"], ["a", "b"])


@pytest.mark.parametrize("unsure", list(Unsure))
def test_factcheck_bootstrap_matches_one_pass_per_resample(unsure):
    """The one-matrix-product bootstrap gives exactly the figures of recomputing every metric on
    every resample (the generic ``bootstrap``), for each reading of "unsure"."""
    rng = np.random.default_rng(3)
    items = []
    for _ in range(300):
        has_error = bool(rng.integers(2))
        verdict = str(rng.choice(["error", "correct", "unsure"]))
        gold = int(rng.integers(5)) if has_error else None
        items.append(ScoredText(has_error, gold, verdict, int(rng.integers(5)) if verdict == "error" else None))
    fast = factcheck_bootstrap(items, unsure, n_resamples=400, seed=11)
    picks = {"veracity_f1": lambda m: m.veracity.f1, "fpr": lambda m: m.fpr,
             "localisation_f1": lambda m: m.localisation.f1}
    for name, pick in picks.items():
        slow = bootstrap(len(items), lambda idx, pick=pick: pick(factcheck_metrics([items[i] for i in idx], unsure)),
                         n_resamples=400, seed=11)
        assert fast[name] == slow, name
    assert 0.0 < fast["veracity_f1"].lo < fast["veracity_f1"].hi < 1.0


def test_resample_counts_are_the_same_in_one_pass_or_many():
    rng = np.random.default_rng(4)
    per_text = rng.integers(0, 2, size=(50, 3))
    draws = rng.integers(0, 50, size=(37, 50))
    by_hand = np.array([per_text[d].sum(axis=0) for d in draws])
    assert (resample_counts(draws, per_text) == by_hand).all()
    assert (resample_counts(draws, per_text, max_cells=120) == by_hand).all()  # 2 resamples a pass


def test_factcheck_bootstrap_rejects_a_bad_text_before_resampling():
    with pytest.raises(ValueError, match="text 1: verdict"):
        factcheck_bootstrap([TEXTS[0], ScoredText(True, 1, "maybe")], n_resamples=10)


def test_bootstrap_deterministic_and_degenerate():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    first = bootstrap(5, lambda idx: values[idx].mean(), n_resamples=200, seed=7)
    again = bootstrap(5, lambda idx: values[idx].mean(), n_resamples=200, seed=7)
    other = bootstrap(5, lambda idx: values[idx].mean(), n_resamples=200, seed=8)
    assert first == again and first != other
    assert first.point == pytest.approx(0.6)
    assert first.lo <= first.mean <= first.hi
    const = bootstrap(4, lambda idx: 3.0, n_resamples=50)
    assert (const.mean, const.std, const.lo, const.hi) == (3.0, 0.0, 3.0, 3.0)


def test_ece_by_hand():
    conf, hit = [0.9, 0.9, 0.2, 0.7], [True, False, False, True]
    # 10 bins: (0.8,0.9] acc 1/2 conf 0.9 -> 0.4*2/4 = 0.2; (0.1,0.2] acc 0 conf 0.2 -> 0.2/4 = 0.05;
    # (0.6,0.7] acc 1 conf 0.7 -> 0.3/4 = 0.075. ECE = 0.325
    assert expected_calibration_error(conf, hit) == pytest.approx(0.325)
    # 2 bins: (0,0.5] {0.2} -> 0.05; (0.5,1] {0.9,0.9,0.7} acc 2/3 conf 2.5/3 -> (1/6)*3/4 = 0.125. ECE 0.175
    assert expected_calibration_error(conf, hit, n_bins=2) == pytest.approx(0.175)
    assert expected_calibration_error([0.0, 1.0], [False, True]) == 0.0
    with pytest.raises(ValueError):
        expected_calibration_error([1.2], [True])


# -- healthbench.py -------------------------------------------------------------------------------


def item(points, *tags):
    return {"criterion": f"criterion worth {points}", "points": points, "tags": list(tags)}


EX1 = [item(5, "axis:accuracy"), item(3, "axis:completeness"), item(-4, "axis:accuracy")]
MET1 = [False, False, True]  # (-4)/8 = -0.5; accuracy: -4/5 = -0.8; completeness 0/3 = 0
EX2 = [item(5, "axis:accuracy"), item(3, "axis:completeness"), item(-4, "axis:communication_quality")]
MET2 = [True, True, False]  # 8/8 = 1; accuracy 1; completeness 1; communication_quality skipped (no positive)
EX3 = [item(2, "axis:accuracy", "level:example"), item(-2, "axis:communication_quality")]
MET3 = [True, True]  # (2-2)/2 = 0; accuracy 2/2 = 1; level:example 1; communication_quality skipped


def test_example_score_not_clipped_and_tags():
    assert example_score(EX1, MET1) == pytest.approx(-0.5)
    assert rubric_tag_scores(EX1, MET1) == pytest.approx({"axis:accuracy": -0.8, "axis:completeness": 0.0})
    assert rubric_tag_scores(EX2, MET2) == pytest.approx({"axis:accuracy": 1.0, "axis:completeness": 1.0})
    assert rubric_tag_scores(EX3, MET3) == pytest.approx({"axis:accuracy": 1.0, "level:example": 1.0})


def test_score_healthbench_aggregates():
    result = score_healthbench([EX1, EX2, EX3], [MET1, MET2, MET3],
                               example_tags=[["theme:hedging"], ["theme:hedging"], ["theme:emergency_referrals"]])
    assert result.per_example == pytest.approx([-0.5, 1.0, 0.0])
    assert result.score == pytest.approx(0.5 / 3)  # (-0.5 + 1 + 0)/3, inside [0, 1]
    tags = result.tags
    assert tags["axis:accuracy"].score == pytest.approx(0.4) and tags["axis:accuracy"].n == 3  # (-0.8+1+1)/3
    assert tags["axis:completeness"].score == pytest.approx(0.5) and tags["axis:completeness"].n == 2  # (0+1)/2
    assert tags["level:example"].n == 1
    assert "axis:communication_quality" not in tags  # never had a positive item
    assert tags["theme:hedging"].score == pytest.approx(0.25)  # example-level: mean(-0.5, 1.0)
    assert tags["theme:emergency_referrals"].score == 0.0


def test_overall_clipped_to_zero_but_mean_kept():
    result = score_healthbench([EX1], [MET1])
    assert result.overall.mean == pytest.approx(-0.5)
    assert result.score == 0.0
    assert result.overall.bootstrap_std == 0.0  # one example: every resample is the same
    assert result.tags["axis:accuracy"].score == 0.0 and result.tags["axis:accuracy"].mean == pytest.approx(-0.8)


def test_bootstrap_std_is_std_of_clipped_resample_means_and_seeded():
    values = np.array([-1.0, 1.0])
    got = clipped_mean(values, n_resamples=1000, seed=3)
    draws = np.random.default_rng(3).integers(0, 2, size=(1000, 2))
    expected = np.std(np.clip(values[draws].mean(axis=1), 0, 1))
    assert got.bootstrap_std == expected
    # resample means are -1, 0, 1 with probability 1/4, 1/2, 1/4 -> clipped 0, 0, 1: std ~ sqrt(3/16) = 0.433,
    # well below the unclipped sqrt(1/2) = 0.707
    assert abs(got.bootstrap_std - math.sqrt(3 / 16)) < 0.03
    a = score_healthbench([EX1, EX2, EX3], [MET1, MET2, MET3], seed=11)
    b = score_healthbench([EX1, EX2, EX3], [MET1, MET2, MET3], seed=11)
    assert a.overall.bootstrap_std == b.overall.bootstrap_std > 0


def test_healthbench_errors():
    with pytest.raises(ValueError, match="positive points"):
        score_healthbench([[item(-3, "axis:accuracy")]], [[True]])
    with pytest.raises(ValueError, match="2 rubric items but 1 verdicts"):
        score_healthbench([EX3], [[True]])
    with pytest.raises(ValueError, match="rubrics but"):
        score_healthbench([EX3, EX3], [MET3])
    with pytest.raises(ValueError, match="boolean"):
        example_score(EX3, [1, 0])


def test_pairwise_accuracy_and_safety_f1():
    records = [
        PairRecord("a", "a", "veto", [True, False], [True, False]),  # hit; veto tp 1
        PairRecord("b", "a", "proficiency", [False, False], [False, True]),  # miss; veto fp 1
        PairRecord("b", "b", "proficiency", [False, True], [False, False]),  # hit; veto fn 1
        PairRecord("a", "tie", "bonus"),  # a tie is never right
        PairRecord("B", " b ", None),  # hit, case-insensitive, no kind
    ]
    r = pairwise_report(records)
    assert (r.correct, r.n, r.accuracy) == (3, 5, pytest.approx(0.6))
    assert {k: (g.correct, g.n) for k, g in r.per_kind.items()} == {"bonus": (0, 1), "proficiency": (1, 2),
                                                                      "veto": (1, 1)}
    assert (r.safety.tp, r.safety.fp, r.safety.fn) == (1, 1, 1)
    assert r.safety.f1 == pytest.approx(0.5)
    with pytest.raises(ValueError, match="gold preference"):
        pairwise_report([PairRecord("tie", "a")])


def test_grader_meta_eval_macro_f1():
    # comparisons (grader, human): TT, TF, FF, FT, TT, TF -> tp 2, fp 2, fn 1, tn 1
    # met: P 2/4, R 2/3, F1 4/7; not met: P 1/2, R 1/3, F1 2/5; macro = (4/7 + 2/5)/2 = 17/35
    r = grader_agreement([True, True, False, False, True], [True, False, False, True, [True, False]])
    assert r.n_comparisons == 6
    assert r.f1_met == pytest.approx(4 / 7) and r.f1_not_met == pytest.approx(2 / 5)
    assert r.macro_f1 == pytest.approx(17 / 35)
    undefined = grader_agreement([True, True], [True, False])  # grader never says "not met"
    assert undefined.f1_not_met is None and undefined.macro_f1 is None


# -- strategy_metrics.py --------------------------------------------------------------------------

ESCONV = ["Question", "Restatement or Paraphrasing", "Reflection of Feelings", "Self-disclosure",
          "Affirmation and Reassurance", "Providing Suggestions", "Information", "Others"]
EXTES = ["Emotional Validation", "Affirmation", "Collaborative Planning", "Empathetic Statements",
         "Avoid Judgment and Criticism", "Provide Different Perspectives", "Reframe Negative Thoughts",
         "Share Information"]


def test_normalise_strategy():
    assert normalise_strategy("  questions ", ESCONV) == "Question"
    assert normalise_strategy("[reflection of  FEELINGS]", ESCONV) == "Reflection of Feelings"
    assert normalise_strategy("Other", ESCONV) == "Others"
    assert normalise_strategy("self disclosure", ESCONV) == "Self-disclosure"
    assert normalise_strategy("hug", ESCONV) is None
    assert normalise_strategy("Other", EXTES) is None  # alias target not in this set
    assert normalise_strategy("affirmation", EXTES) == "Affirmation"
    assert normalise_strategy("Q", ESCONV, aliases={"Q": "Question"}) == "Question"


def test_diagonal_confusion_has_zero_bias_and_is_flagged():
    gold = ["Question", "Others", "Information", "Question"]
    r = strategy_report(gold, gold, ["Question", "Information", "Others"])
    assert (r.q, r.weighted_f1, r.bias) == (1.0, 1.0, 0.0)
    assert r.p == {"Question": 1.0, "Information": 1.0, "Others": 1.0}
    # no gold strategy is ever predicted as another one: every update (3 strategies x 20 sweeps) keeps p_i
    assert r.preference.unchanged_updates == 60 and r.preference.skipped_terms == 0
    assert any("zero denominator" in note for note in r.notes)


def test_bias_two_strategies_by_hand():
    # gold A pred A x3, gold A pred B x1, gold B pred A x4, gold B pred B x1
    gold = ["A"] * 4 + ["B"] * 5
    pred = ["A", "A", "A", "B", "A", "A", "A", "A", "B"]
    r = strategy_report(gold, pred, ["A", "B"])
    assert r.confusion.tolist() == [[3, 1], [4, 1]]  # gold x predicted
    # W = transpose: W[A][B] = 4 (predicted A, gold B), W[B][A] = 1.
    # Sweep 1 (p = [1, 1]): p_A = (4*1/2) / (1/2) = 4; then in place p_B = (1*4/5) / (4/5) = 1.
    #   geometric mean sqrt(4*1) = 2 -> p = [2, 0.5].
    # Sweep 2: p_A = (4*0.5/2.5) / (1/2.5) = 2; p_B = (1*2/2.5) / (4/2.5) = 0.5: a fixed point.
    # Rescale to sum 2: [1.6, 0.4]; B = std = 0.6. (A simultaneous update would oscillate and end at B = 0.)
    assert r.p == pytest.approx({"A": 1.6, "B": 0.4})
    assert r.bias == pytest.approx(0.6)
    assert not r.preference.degenerate and r.notes == []
    # A: tp 3, fp 4, fn 1 -> F1 6/11; B: tp 1, fp 1, fn 4 -> P 1/2, R 1/5, F1 2/7
    assert r.q == pytest.approx((6 / 11 + 2 / 7) / 2)
    assert r.weighted_f1 == pytest.approx((4 * 6 / 11 + 5 * 2 / 7) / 9)
    assert r.pred_distribution == {"A": 7, "B": 2} and r.gold_distribution == {"A": 4, "B": 5}


def test_bias_three_strategies_one_sweep_by_hand():
    w = [[0, 2, 1], [1, 0, 0], [1, 1, 0]]  # W[i][j]: predicted i, gold j
    # i=0: num = 2*1/2 + 1*1/2 = 1.5, den = 1/2 + 1/2 = 1 -> p0 = 1.5
    # i=1: num = 1*1.5/2.5 = 0.6, den = 2/2.5 + 1/2 = 1.3 -> p1 = 6/13
    # i=2: num = 1*1.5/2.5 + 1*(6/13)/(19/13) = 0.6 + 6/19, den = 1/2.5 = 0.4 -> p2 = 87/38
    # over 494: [741, 228, 1131], sum 2100; the geometric mean cancels in the rescale to sum 3.
    r = preference_bias(w, n_iterations=1)
    assert r.p == pytest.approx([2223 / 2100, 684 / 2100, 3393 / 2100])
    assert r.bias == pytest.approx(math.sqrt(((2223 - 2100) ** 2 + (684 - 2100) ** 2 + (3393 - 2100) ** 2) / 3) / 2100)


def test_bias_zero_pair_terms_skipped_and_flagged():
    # Only C is ever predicted: gold A -> C, gold B -> C. W[C][A] = W[C][B] = 1.
    # Sweep 1: p_A = 0 / (1/2) = 0; p_B = 0 / (1/1) = 0; p_C: denominator W[A][C] + W[B][C] = 0 -> unchanged 1.
    # Sweeps 2..20: the (A, B) and (B, A) terms have p_i + p_j = 0 (skipped, 2 per sweep); p_C unchanged again.
    r = strategy_report(["A", "B"], ["C", "C"], ["A", "B", "C"])
    assert r.preference.skipped_terms == 2 * 19
    assert r.preference.unchanged_updates == 20 and r.preference.unchanged_indices == (2,)
    assert r.p == {"A": 0.0, "B": 0.0, "C": 3.0}
    assert r.bias == pytest.approx(math.sqrt(2))  # std([0, 0, 3]) = sqrt((1 + 1 + 4)/3)
    assert r.q == 0.0
    assert any("skipped" in n for n in r.notes) and any("zero denominator" in n for n in r.notes)


def test_out_of_set_predictions():
    r = strategy_report(["Question", "Others"], ["hug", "other"], ["Question", "Others"])
    assert r.n_mapped_to_others == 1  # "hug" -> Others; "other" is an alias, not out of set
    assert r.confusion.tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="no 'Others' strategy"):
        strategy_report(["Affirmation"], ["hug"], EXTES)
    with pytest.raises(ValueError, match="gold strategy 0"):
        strategy_report(["hug"], ["Question"], ESCONV)


# -- factcheck_metrics.py -------------------------------------------------------------------------


def test_medfact_fpr_arithmetic():
    # DeepSeek-R1 zero-shot: TP = 0.9101*1058 = 962.9; FP = 962.9*0.4512/0.5488 = 791.6; FPR = 791.6/1058 = 0.748
    assert fpr_from_precision_recall(0.5488, 0.9101, 1058, 1058) == pytest.approx(0.75, abs=0.005)
    # debate: TP = 0.9565*1058 = 1012.0; FP = 1012.0*0.4690/0.5310 = 893.8; FPR = 0.845
    assert fpr_from_precision_recall(0.5310, 0.9565, 1058, 1058) == pytest.approx(0.845, abs=0.005)
    with pytest.raises(ValueError):
        fpr_from_precision_recall(0.0, 0.5, 10, 10)


TEXTS = [
    ScoredText(True, 2, "error", 2),  # t0: TP, location matches
    ScoredText(True, 1, "error", 3),  # t1: TP, wrong sentence
    ScoredText(True, 4, "correct"),  # t2: FN
    ScoredText(True, 0, "unsure"),  # t3: depends on the unsure policy
    ScoredText(False, None, "error", 1),  # t4: FP
    ScoredText(False, None, "correct"),  # t5: TN
    ScoredText(False, None, "unsure"),  # t6: depends on the unsure policy
]


def test_factcheck_unsure_not_flagged_by_default():
    m = factcheck_metrics(TEXTS)
    # flagged t0, t1, t4: tp 2, fn 2 (t2, t3), fp 1, tn 2 (t5, t6)
    assert (m.veracity.tp, m.veracity.fp, m.veracity.fn) == (2, 1, 2)
    assert m.veracity.precision == pytest.approx(2 / 3) and m.veracity.recall == pytest.approx(0.5)
    assert m.veracity.f1 == pytest.approx(4 / 7)
    assert m.accuracy == pytest.approx(4 / 7) and m.fpr == pytest.approx(1 / 3)
    # localisation: TP = t0 only; precision 1/3 flagged; recall 1/4 erroneous; F1 = 2*(1/12)/(7/12) = 2/7
    loc = m.localisation
    assert (loc.tp, loc.fp, loc.fn) == (1, 2, 3)
    assert loc.precision == pytest.approx(1 / 3) and loc.recall == pytest.approx(1 / 4)
    assert loc.f1 == pytest.approx(2 / 7)
    assert (m.n_unsure, m.unsure_rate, m.n_excluded) == (2, pytest.approx(2 / 7), 0)


def test_factcheck_unsure_as_flag_and_excluded():
    m = factcheck_metrics(TEXTS, Unsure.FLAGGED)
    # flagged t0, t1, t3, t4, t6: tp 3, fn 1, fp 2, tn 1
    assert (m.veracity.tp, m.veracity.fp, m.veracity.fn) == (3, 2, 1)
    assert m.veracity.f1 == pytest.approx(2 / 3) and m.fpr == pytest.approx(2 / 3)
    # an unsure flag names no location: loc tp 1 of 5 flagged, 4 erroneous
    assert (m.localisation.precision, m.localisation.recall) == (pytest.approx(1 / 5), pytest.approx(1 / 4))
    m = factcheck_metrics(TEXTS, "exclude")
    # t3, t6 dropped: tp 2, fn 1, fp 1, tn 1
    assert (m.n, m.n_excluded, m.n_erroneous, m.n_correct) == (5, 2, 3, 2)
    assert m.veracity.f1 == pytest.approx(2 / 3) and m.fpr == pytest.approx(0.5)
    assert m.localisation.f1 == pytest.approx(1 / 3)  # 1 of 3 flagged, 1 of 3 erroneous
    assert m.unsure_rate == pytest.approx(2 / 7)


def test_external_location_match_overrides_sentence_ids():
    judged = list(TEXTS)
    judged[0] = ScoredText(True, 2, "error", 2, location_match=False)
    judged[1] = ScoredText(True, None, "error", None, location_match=True)
    m = factcheck_metrics(judged)
    assert m.localisation.tp == 1 and m.localisation.precision == pytest.approx(1 / 3)
    judged[0] = ScoredText(True, 2, "error", 2, location_match=True)
    assert factcheck_metrics(judged).localisation.tp == 2
    # an erroneous text without a gold location among located ones is an error in the data...
    with pytest.raises(ValueError, match="supply location_match"):
        factcheck_metrics([ScoredText(True, 2, "error", 2), ScoredText(True, None, "error", 1)])
    # ...while a veracity-only dataset (no error located) has no localisation, reported as such, not 0
    veracity_only = factcheck_metrics([ScoredText(True, None, "error", 1), ScoredText(False, None, "correct")])
    assert not veracity_only.localisation_available and veracity_only.localisation.tp == 0
    assert veracity_only.veracity.recall == 1.0
    with pytest.raises(ValueError, match="correct text"):
        factcheck_metrics([ScoredText(False, 3, "correct")])
    with pytest.raises(ValueError, match="verdict"):
        factcheck_metrics([ScoredText(False, None, "maybe")])


def test_breakdown_by_field():
    fields = [{"error_type": "dosage"}, {"error_type": "dosage"}, {"error_type": "diagnosis"},
              {"error_type": "diagnosis"}, {}, {"error_type": None}, {}]
    groups = breakdown(TEXTS, fields, "error_type")
    assert list(groups) == ["diagnosis", "dosage", None]
    assert groups["dosage"].veracity.recall == 1.0 and groups["dosage"].localisation.precision == 0.5
    assert groups["diagnosis"].veracity.recall == 0.0 and groups["diagnosis"].n_unsure == 1
    assert groups[None].fpr == pytest.approx(1 / 3) and groups[None].n_correct == 3


def test_rounds_fpr_recall_and_flips():
    gold = [True, True, False, False]
    rounds = [["error", "correct", "correct", "correct"],
              ["error", "error", "error", "correct"],
              ["correct", "error", "error", "unsure"]]
    r = rounds_report(gold, rounds)
    assert [(s.recall, s.fpr) for s in r.per_round] == [(0.5, 0.0), (1.0, 0.5), (0.5, 0.5)]
    # round 0 -> 1: t1 correct->error (right now), t2 correct->error (wrong now)
    f = r.flips[0]
    assert (f.correct_to_error, f.error_to_correct, f.toward_gold, f.away_from_gold, f.other) == (2, 0, 1, 1, 0)
    # round 1 -> 2: t0 error->correct (wrong now); t3 correct->unsure (other)
    f = r.flips[1]
    assert (f.correct_to_error, f.error_to_correct, f.toward_gold, f.away_from_gold, f.other) == (0, 1, 0, 1, 1)
    assert rounds_report(gold, rounds, Unsure.FLAGGED).per_round[2].fpr == 1.0
    with pytest.raises(ValueError, match="round 1"):
        rounds_report(gold, [rounds[0], ["error"]])


def test_factcheck_bootstrap_seeded():
    a = factcheck_bootstrap(TEXTS, n_resamples=100, seed=5)
    b = factcheck_bootstrap(TEXTS, n_resamples=100, seed=5)
    assert a == b and set(a) == {"veracity_f1", "fpr", "localisation_f1"}
    assert a["veracity_f1"].point == pytest.approx(4 / 7) and a["fpr"].point == pytest.approx(1 / 3)
    assert a["localisation_f1"].point == pytest.approx(2 / 7)
    assert all(r.lo <= r.hi for r in a.values())
