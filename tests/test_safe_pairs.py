"""Safe pairs (issue 17): a rubric pair never teaches an answer that violates a veto unless asked
(and then says so); each margin keeps its own unit and is filtered in it; ESC's rejected turns follow
PROTOCOLS.md section 3 by default and carry the seed's language."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from agents.pair_selection import Graded, SelectionConfig, select_pair
from agents.rubric import RubricScore
from benchmarks.datasets.instructions import read_rubric_instructions
from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.domain import tree_pairs
from graphs.esc_search.nodes import seed_language
from graphs.rubric_prefs.configuration import RubricPrefsConfig
from graphs.rubric_prefs.graph import run_rubric_prefs
from graphs.rubric_prefs.nodes import RubricPrefsDeps
from mcts import Tree, extract_pairs
from store.export import PairFilter, iter_pairs
from store.models import PreferencePair
from store.records import add_pairs, create_run
from tests.helpers import write_jsonl

RUBRIC = [
    {"criterion": "States that adults may take at most 4 g of paracetamol a day.", "points": 6, "tags": []},
    {"criterion": "Says to see a doctor if the fever lasts more than three days.", "points": 4, "tags": []},
    {"criterion": "Recommends taking more than 4 g a day.", "points": -10, "tags": []},
]


def graded(cid: int, s1: float, s2: int, s3: int) -> Graded:
    return Graded(cid, f"answer {cid} " + "word " * cid * 3, RubricScore(s1, s2, s3))


def test_a_pair_whose_chosen_answer_violates_a_veto_is_dropped_unless_allowed():
    pool = [graded(1, 1.0, 0, 1), graded(2, 0.4, 0, 2)]
    sel = select_pair(pool)
    assert not sel.kept and sel.reason.startswith("unsafe: every candidate violates a veto")
    sel = select_pair(pool, SelectionConfig(allow_unsafe_chosen=True))
    assert sel.kept and sel.unsafe_chosen and sel.chosen.candidate_id == 1 and sel.decided_by == "veto"
    assert sel.margins == {"s1": pytest.approx(0.6), "s2": 0.0, "s3": 1.0}
    safe = select_pair([graded(1, 0.2, 0, 0), graded(2, 1.0, 1, 1)])
    assert safe.kept and not safe.unsafe_chosen and safe.chosen.candidate_id == 1


def unsafe_responder(body: dict) -> str:
    """Every answer meets the veto 'more than 4 g'; seed 0 also meets the rest."""
    prompt = body["messages"][-1]["content"]
    if "Rubric criterion:" not in prompt:
        return f"Answer with seed={body['seed']}: take 6 g of paracetamol a day."
    seed = int(prompt.split("Answer with seed=")[1].split(":")[0])
    line = next(x for x in prompt.splitlines() if x.startswith("Rubric criterion:"))
    return json.dumps({"explanation": "scripted", "criteria_met": "more than 4 g" in line or seed == 0})


async def test_rubric_prefs_keeps_no_unsafe_pair_by_default_and_marks_one_when_allowed(store, fake_server,
                                                                                       make_engine, tmp_path):
    fake_server.responder = unsafe_responder
    src = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "How much paracetamol for a fever?", "rubric": RUBRIC}])

    def engine(t: float):
        return make_engine(fake_server, store, temperature=t, max_tokens=64, timeout=5, max_retries=1,
                           backoff_max=0.02)

    deps = RubricPrefsDeps(store, [engine(0.8)], engine(0.0), RubricPrefsConfig(n_candidates=2), dataset="t")
    report = await run_rubric_prefs(deps, read_rubric_instructions(src), {})
    assert report.new_pairs == 0 and list(report.summary.outcomes) == ["no pair"]
    assert any("unsafe" in r for r in report.summary.reasons) or "no pair" in report.summary.outcomes
    allowed = RubricPrefsDeps(store, [engine(0.8)], engine(0.0),
                              RubricPrefsConfig(n_candidates=2, allow_unsafe_chosen=True), dataset="t")
    report = await run_rubric_prefs(allowed, read_rubric_instructions(src), {})
    assert report.new_pairs == 1
    with store.session() as s:
        pair = s.scalars(select(PreferencePair)).one()
        assert pair.provenance["unsafe_chosen"] is True and pair.margins["chosen_vetoes"] == 1.0
        assert pair.provenance["decided_by"] == "s1" and pair.margin == pytest.approx(pair.margins["s1"])


def test_component_margins_filter_each_in_its_own_unit(store):
    with store.session() as s:
        run = create_run(s, "rubric-prefs", {})

    def row(name: str, kind: str, margin: float, margins: dict) -> dict:
        return {"kind": kind, "run_id": run, "item_id": None, "prompt": [{"role": "user", "content": name}],
                "chosen": f"{name} chosen", "rejected": f"{name} rejected", "margin": margin, "margins": margins}

    with store.session() as s:
        add_pairs(s, [row("by-s2", "rubric", 0.0, {"s1": 0.0, "s2": 2.0, "s3": 0.0}),
                      row("by-s1", "rubric", 0.3, {"s1": 0.3, "s2": 0.0, "s3": 0.0}),
                      row("by-veto", "rubric", -0.2, {"s1": -0.2, "s2": 0.0, "s3": 1.0}),
                      row("esc", "esc", 0.5, {"q": 0.5})])

    def names(**kw) -> list[str]:
        return sorted(r[4].split('"content": "')[1].split('"')[0] for r in iter_pairs(store, PairFilter(**kw)))

    assert names(min_s1_margin=0.1) == ["by-s1", "esc"]  # esc pairs have no S1: not filtered by it
    assert names(min_s2_margin=1) == ["by-s2", "esc"]
    assert names(min_veto_margin=1) == ["by-veto", "esc"]
    assert names(kind="rubric", min_s2_margin=0, min_s1_margin=0) == ["by-s1", "by-s2"]
    assert names(min_margin=0.3) == ["by-s1", "esc"]  # the margin column: one unit per kind (rubric: S1)


def esc_tree(values: dict[str, float], lang_text: str = "I failed my exams and feel hopeless.") -> Tree:
    """Root -> a (preferred, ended, Q 0.8) and siblings b, c with the given Q."""
    tree = Tree("t", {"persona": {"situation": lang_text, "emotion": "", "problem": ""}, "opening": lang_text,
                      "gold_turns": 0})
    root = tree.root
    kids = {}
    for name, q in [("a", 0.8), *values.items()]:
        node = tree.add_child(root, name, prior=0.3, state={"strategy": name})
        node.value, node.visits, node.evaluated = q, 3, True
        kids[name] = node
    kids["a"].ended = True
    return tree


def test_esc_rejected_rule_follows_the_protocol_by_default():
    tree = esc_tree({"b": 0.5, "c": 0.7})
    protocol = [p.rejected.path for p in extract_pairs(tree, rule="protocol")]
    margin = [p.rejected.path for p in extract_pairs(tree, rule="margin", margin=0.25)]
    b, c = (n.path for n in tree.root.children[1:])
    assert protocol == [b]  # Q <= 0.5 (PROTOCOLS.md section 3); c (0.7) is not rejected
    assert margin == [b]  # 0.5 <= 0.8 - 0.25; 0.7 is not
    tree = esc_tree({"b": 0.4, "c": 0.6})
    assert [p.rejected.path for p in tree_pairs(tree, EscSearchConfig())] == [tree.root.children[1].path]
    loose = EscSearchConfig(rejected_rule="margin", margin=0.1)
    assert [p.rejected.path for p in tree_pairs(tree, loose)] == [n.path for n in tree.root.children[1:]]
    assert EscSearchConfig().rejected_rule == "protocol" and EscSearchConfig().rejected_q_max == 0.5


def test_esc_pair_language_comes_from_the_seed():
    assert seed_language(esc_tree({"b": 0.4})) == "en"
    assert seed_language(esc_tree({"b": 0.4}, "我考试没通过，觉得很绝望。")) == "zh"
