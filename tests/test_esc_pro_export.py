"""ESC-Pro in the published shape (``graphs/esc_search/esc_pro.py``): exact JSON from a fixture tree,
CSO's converters (re-written here the way XingYuSSS/CSO change_data.py reads the file) yield exactly
the stored turn-level pairs, and the two commands that write it (``esc-search --export esc-pro``,
``db export --kind esc --format esc-pro``) end to end on the fake server, a Chinese dialogue included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carealign.cli import app
from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.esc_pro import provenance_path, tree_to_esc_pro, write_esc_pro
from graphs.esc_search.esc_pro_export import export_stored_esc_pro
from graphs.esc_search.nodes import EscDeps, pair_rows
from graphs.esc_search.report import esc_pro_dialogues
from mcts import SQLNodeStore, Tree
from store.export import PairFilter, export_pairs
from store.records import add_pairs, create_run
from tests.test_esc import SEED, scripted, seed_file

PERSONA = {"situation": "I lost my job last week.", "emotion": "anxiety", "problem": "job crisis"}


def turn(strategy: str, supporter: str, seeker: str | None, **more) -> dict:
    return {"strategy": strategy, "supporter": supporter, "seeker": seeker, "ended": False, **more}


def generated(tree: Tree, parent, strategy: str, supporter: str, seeker: str | None, q: float, n: int,
              ended: bool = False, evaluated: bool = True):
    node = tree.add_child(parent, strategy, state=turn(strategy, supporter, seeker, ended=ended), value=q, visits=n,
                          ended=ended)
    node.evaluated = evaluated
    return node


def fixture_tree(tree_id: str = "esc-fixture", run_id: str | None = None) -> Tree:
    """Gold Question turn, then: A (Q .9, N 4) -> A1 ended (Q .8, N 2, Chinese) with siblings A2 (Q .2:
    rejected), A3 (Q .7: within the margin) and A4 (never evaluated); B ended (Q .6, N 2: preferred but
    not the best child); C (Q -1) and D (Q .55, N 1): rejected against A."""
    tree = Tree(tree_id, {"persona": PERSONA, "opening": "Hi, I feel awful.", "gold_turns": 1}, run_id=run_id)
    gold = tree.add_fixed(tree.root, "Question", state=turn("Question", "What happened?", "I was laid off.",
                                                             tagged="[Question] What happened?", gold=True))
    a = generated(tree, gold, "Emotional Validation", "That sounds so painful.", "It really hurts.", 0.9, 4)
    generated(tree, gold, "Affirmation", "You are strong.", "Thanks, bye.", 0.6, 2, ended=True)
    generated(tree, gold, "Share Information", "Layoffs are common.", "Hm.", -1.0, 1)
    generated(tree, gold, "Avoid Judgment and Criticism", "No one blames you.", "Ok.", 0.55, 1)
    generated(tree, a, "Affirmation", "你已经做得很好了。", "谢谢，再见。", 0.8, 2, ended=True)
    generated(tree, a, "Share Information", "Here are some job sites.", "Ok.", 0.2, 1)
    generated(tree, a, "Collaborative Planning", "Let us plan your week.", "Sure.", 0.7, 1)
    generated(tree, a, "Reframe Negative Thoughts", "Maybe it is a chance.", None, 0.0, 0, evaluated=False)
    return tree


# q_min 0.5, n_min 2, margin 0.25; the margin rule for rejected turns (the default is PROTOCOLS.md's since issue 17)
CONFIG = EscSearchConfig(rejected_rule="margin")

EXPECTED = [
    {"description": "I lost my job last week.", "scene": "job crisis", "iter": 7, "messages": [
        {"role": "user", "content": "Hi, I feel awful."},
        {"role": "assistant", "content": "What happened?", "strategy": "Question", "negative": []},
        {"role": "user", "content": "I was laid off."},
        {"role": "assistant", "content": "You are strong.", "strategy": "Affirmation", "negative": []}]},
    {"description": "I lost my job last week.", "scene": "job crisis", "iter": 7, "messages": [
        {"role": "user", "content": "Hi, I feel awful."},
        {"role": "assistant", "content": "What happened?", "strategy": "Question", "negative": []},
        {"role": "user", "content": "I was laid off."},
        {"role": "assistant", "content": "That sounds so painful.", "strategy": "Emotional Validation",
         "negative": [{"content": "Layoffs are common.", "strategy": "Share Information"},
                      {"content": "No one blames you.", "strategy": "Avoid Judgment and Criticism"}]},
        {"role": "user", "content": "It really hurts."},
        {"role": "assistant", "content": "你已经做得很好了。", "strategy": "Affirmation",
         "negative": [{"content": "Here are some job sites.", "strategy": "Share Information"}]}]},
]


# -- CSO's converter, as change_data.py reads the file; and the stored pairs in the same terms ----
def cso_pairs(entries: list[dict]) -> set[tuple]:
    """(history, chosen, rejected) as text, the way change_data.py builds them: every assistant turn at
    an odd index, ``messages[:i]`` as history, paired with each of its negatives; ``(Strategy) text``."""
    def text(m: dict) -> str:
        return m["content"] if m["role"] == "user" else f"({m['strategy']}) {m['content']}"

    out = set()
    for d in entries:
        for i in range(1, len(d["messages"]), 2):
            history = tuple((m["role"], text(m)) for m in d["messages"][:i])
            for n in d["messages"][i]["negative"]:
                out.add((history, text(d["messages"][i]), f"({n['strategy']}) {n['content']}"))
    return out


def published_tag(tagged: str) -> str:
    """A stored turn ``[A] t1 [B] t2`` as ESC-Pro writes it: ``(A+B) t1 t2`` (the documented difference:
    the stored pairs tag every part of a turn in brackets, ESC-Pro has one strategy per turn)."""
    parts = re.split(r"\[([^\]]+)\] ", tagged)[1:]
    names: list[str] = []
    for name in parts[0::2]:
        if not names or names[-1] != name:
            names.append(name)
    return f"({'+'.join(names)}) {' '.join(t.strip() for t in parts[1::2])}"


def stored_pairs(rows: list[dict]) -> set[tuple]:
    """``db export`` rows in the same terms. The other documented difference: a stored prompt of a
    tree whose seed opens with the supporter starts with that turn; ESC-Pro leaves it out."""
    out = set()
    for r in rows:
        prompt = list(r["prompt"])
        while prompt and prompt[0]["role"] == "assistant":
            prompt.pop(0)
        history = tuple((m["role"], m["content"] if m["role"] == "user" else published_tag(m["content"]))
                        for m in prompt)
        out.add((history, published_tag(r["chosen"][0]["content"]), published_tag(r["rejected"][0]["content"])))
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- the conversion ----------------------------------------------------------------------------
def test_fixture_tree_gives_the_exact_published_shape(tmp_path):
    tree = fixture_tree()
    tree.meta.iterations = 7
    snapshot = tree.snapshot()
    got = tree_to_esc_pro(tree, CONFIG)
    assert got.entries == EXPECTED
    assert tree.snapshot() == snapshot  # pure: the tree is read, never changed
    assert (got.assistant_turns, got.negatives, got.skipped) == (5, 3, [])
    a1 = got.provenance[1]
    assert a1["path"] == "root/Question/Emotional Validation/Affirmation" and a1["folded_opening"] == []
    assert [t["path"] for t in a1["turns"]] == ["root/Question", "root/Question/Emotional Validation",
                                                "root/Question/Emotional Validation/Affirmation"]
    assert a1["turns"][1]["negative"] == [
        {"path": "root/Question/Share Information", "q": -1.0, "n": 1, "margin": pytest.approx(1.9)},
        {"path": "root/Question/Avoid Judgment and Criticism", "q": 0.55, "n": 1, "margin": pytest.approx(0.35)}]
    out = tmp_path / "cso.json"
    sidecar = write_esc_pro(out, got)
    assert sidecar == provenance_path(out) == tmp_path / "cso.provenance.jsonl"
    assert "你已经做得很好了。" in out.read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    assert json.loads(out.read_text(encoding="utf-8")) == EXPECTED
    assert [p["index"] for p in read_jsonl(sidecar)] == [0, 1]
    # a larger margin drops D; q_min above B's Q drops B's path
    narrower = tree_to_esc_pro(tree, EscSearchConfig(margin=0.4, q_min=0.7))
    assert len(narrower.entries) == 1 and [n["strategy"] for n in narrower.entries[0]["messages"][3]["negative"]] == [
        "Share Information"]


def test_a_supporter_opening_is_folded_and_a_gold_turn_of_two_strategies_is_one_message():
    """No seeker line before the first supporter turn: that turn (and its negatives) is left out, as
    CSO's build_compare leaves out the root's greeting; a gold turn of two strategies is ``A+B``.
    A kept path whose middle turn has no seeker reply cannot alternate: left out, with the reason."""
    tree = Tree("esc-fold", {"persona": PERSONA, "opening": "", "gold_turns": 2})
    hello = tree.add_fixed(tree.root, "Others", state=turn("Others", "Hello there.", "I can't sleep."))
    generated(tree, tree.root, "Share Information", "Sleep facts.", "Hm.", -2.0, 1)  # a pair without a prompt
    gold = tree.add_fixed(hello, "Question+Reflection of feelings", state=turn(
        "Question+Reflection of feelings", "Why? You sound tired.", "Work stress.",
        tagged="[Question] Why? [Reflection of feelings] You sound tired."))
    generated(tree, gold, "Affirmation", "You cope well.", "Bye.", 0.75, 2, ended=True)
    generated(tree, gold, "Share Information", "Stress facts.", "Hm.", -0.5, 1)
    mute = generated(tree, gold, "Emotional Validation", "That is hard.", None, 0.6, 2)
    generated(tree, mute, "Affirmation", "Hang in there.", "Bye.", 0.6, 2, ended=True)
    got = tree_to_esc_pro(tree, CONFIG)
    assert got.entries == [{"description": PERSONA["situation"], "scene": "job crisis", "iter": 0, "messages": [
        {"role": "user", "content": "I can't sleep."},
        {"role": "assistant", "content": "Why? You sound tired.", "strategy": "Question+Reflection of feelings",
         "negative": []},
        {"role": "user", "content": "Work stress."},
        {"role": "assistant", "content": "You cope well.", "strategy": "Affirmation",
         "negative": [{"content": "Stress facts.", "strategy": "Share Information"}]}]}]
    assert got.provenance[0]["folded_opening"] == ["root/Others"]
    (skipped,) = got.skipped
    assert skipped["path"] == "root/Others/Question+Reflection of feelings/Emotional Validation/Affirmation"
    assert "no seeker reply" in skipped["reason"]
    assert published_tag("[Question] Why? [Reflection of feelings] You sound tired.") == (
        "(Question+Reflection of feelings) Why? You sound tired.")


@pytest.fixture
def deps(make_engine, fake_server, store) -> EscDeps:
    """Dependencies for ``pair_rows`` (no model is asked anything)."""
    return EscDeps(store, make_engine(fake_server, store, model="supporter-model"),
                   make_engine(fake_server, store, model="judge-model"), CONFIG, dataset="esc-test")


def test_stored_export_matches_the_stored_pairs_and_counts_what_it_cannot_write(deps, store, tmp_path):
    """The fixture tree stored node by node with its pairs (as esc-search stores them), plus a pair the
    tree no longer supports: ``db export``'s esc-pro gives the exact JSON, CSO's converter reads back
    the stored pairs, and the stale pair is counted, not written."""
    with store.session() as s:
        run_id = create_run(s, "esc-search", {"test": True})
    tree = fixture_tree(run_id=run_id)
    tree.meta.iterations = 7
    SQLNodeStore(store).save(tree)
    rows, empty = pair_rows(deps, tree, run_id, None)
    assert (len(rows), empty) == (3, 0)
    # esc_pro_dialogues.json lists the same negatives per turn (none under B, not its parent's best)
    style = {d["path"]: [[r["strategy"] for r in t.get("rejected", [])] for t in d["dialog"]]
             for d in esc_pro_dialogues(deps, tree)}
    assert style == {"root/Question/Affirmation": [[], [], [], [], []],
                     "root/Question/Emotional Validation/Affirmation": [
                         [], [], [], ["Share Information", "Avoid Judgment and Criticism"], [], ["Share Information"],
                         []]}
    stale = {**rows[0], "rejected": "[Affirmation] an older sibling",
             "provenance": {**rows[0]["provenance"], "rejected_path": "root/Question/Gone"}}
    with store.session() as s:
        assert add_pairs(s, [*rows, stale]) == 4
    out = tmp_path / "esc_pro.json"
    written = export_stored_esc_pro(store, PairFilter(kind="esc"), out)
    assert json.loads(out.read_text(encoding="utf-8")) == EXPECTED
    assert (written.trees, written.selected_pairs, written.written_pairs, written.unwritten_pairs) == (1, 4, 3, 1)
    assert "1 selected pairs are in no dialogue: their trees as stored now no longer" in written.summary(out)
    prov = read_jsonl(provenance_path(out))
    assert prov[1]["tree_id"] == "esc-fixture" and prov[1]["run_id"] == run_id
    jsonl = tmp_path / "pairs.jsonl"
    export_pairs(store, jsonl, flt=PairFilter(kind="esc"))
    stored = stored_pairs(read_jsonl(jsonl))
    assert cso_pairs(EXPECTED) == stored - {s for s in stored if s[2] == "(Affirmation) an older sibling"}
    assert len(cso_pairs(EXPECTED)) == 3
    # a minimum margin narrows the negatives exactly as it narrows db export's pairs
    export_stored_esc_pro(store, PairFilter(kind="esc", min_margin=1.0), out)
    export_pairs(store, jsonl, flt=PairFilter(kind="esc", min_margin=1.0))
    narrowed = json.loads(out.read_text(encoding="utf-8"))
    assert cso_pairs(narrowed) == stored_pairs(read_jsonl(jsonl)) - {
        s for s in stored if s[2] == "(Affirmation) an older sibling"}
    assert len(cso_pairs(narrowed)) == 1 and len(narrowed) == 2  # every kept path is still a dialogue


# -- the commands, end to end on the fake server -------------------------------------------------
CHINESE = {
    "experience_type": "Current Experience", "emotion_type": "sadness", "problem_type": "学业压力",
    "situation": "我考试没考好，很难过。",
    "dialog": [
        {"speaker": "seeker", "annotation": {}, "content": "你好，我心情很差。"},
        {"speaker": "supporter", "annotation": {"strategy": "Questions"}, "content": "发生了什么事？"},
        {"speaker": "seeker", "annotation": {}, "content": "我考试不及格。"},
    ],
}
SUPPORTER_FIRST = dict(SEED[0], situation="My partner left.", problem_type="breakup",
                       dialog=[{"speaker": "supporter", "annotation": {"strategy": "Others"}, "content": "Hello!"},
                               *SEED[0]["dialog"]])


def chinese_too(responder):
    """The scripted agents, answering in Chinese when the dialogue is in Chinese."""
    def reply(body: dict) -> str:
        text = responder(body)
        if "考试" not in body["messages"][-1]["content"]:
            return text
        value = json.loads(text)
        if "reply" in value:
            value["reply"] = f"我还是很难过（{value['reply']}）"
        elif "response" in value:
            value["response"] += "，我理解你"
        elif all(isinstance(v, str) for v in value.values()):
            value = {k: v + "，我理解你" for k, v in value.items()}
        return json.dumps(value, ensure_ascii=False)

    return reply


def invoke(*args: str):
    # the scripted agents read the English templates; this test is about the export's shape, and
    # tests/test_prompt_language.py covers the Chinese ESC prompts a Chinese seed gets by default
    return CliRunner(env={"COLUMNS": "200", "CAREALIGN_ESC__PROMPT_LANGUAGE": "en"}).invoke(app, list(args))


def test_esc_search_and_db_export_write_what_csos_converters_read(tmp_path, fake_server):
    fake_server.responder = chinese_too(scripted(end_after=2))
    db, out = str(tmp_path / "cli.db"), tmp_path / "out"
    seeds = seed_file(tmp_path, [SEED[0], CHINESE, SUPPORTER_FIRST])
    res = invoke("--db", db, "--base-url", fake_server.base_url, "--model", "fake-model", "esc-search", str(seeds),
                 "--iterations", "12", "--gold-turns", "1", "--expand-k", "2", "--judge-model", "judge-model",
                 "--out-dir", str(out), "--export", "esc-pro")
    assert res.exit_code == 0, res.output
    assert "in the published ESC-Pro shape" in res.output
    searched = json.loads((out / "esc_pro_cso.json").read_text(encoding="utf-8"))
    assert (out / "esc_pro_dialogues.json").is_file() and (out / "esc_pro_cso.provenance.jsonl").is_file()
    for d in searched:  # the published shape, exactly
        assert list(d) == ["description", "scene", "iter", "messages"] and d["iter"] == 12
        roles = [m["role"] for m in d["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles  # user first, assistant last
        for m in d["messages"][1::2]:
            assert list(m) == ["role", "content", "strategy", "negative"]
            assert all(list(n) == ["content", "strategy"] for n in m["negative"])
    scenes = {d["scene"] for d in searched}
    assert scenes == {"job crisis", "学业压力", "breakup"}
    chinese = [d for d in searched if d["scene"] == "学业压力"]
    assert chinese[0]["description"] == "我考试没考好，很难过。" and "我理解你" in chinese[0]["messages"][3]["content"]
    assert "学业压力" in (out / "esc_pro_cso.json").read_text(encoding="utf-8")
    # the seed that opens with the supporter: its greeting (or a generated first turn) is left out
    prov = read_jsonl(out / "esc_pro_cso.provenance.jsonl")
    folded = [(d, p) for d, p in zip(searched, prov, strict=True) if d["scene"] == "breakup"]
    assert folded and all(len(p["folded_opening"]) == 1 for _, p in folded)
    greeting_left_out = [d for d, p in folded if p["folded_opening"] == ["root/Others"]]
    assert greeting_left_out and all(d["messages"][0]["content"] == "Hi, I feel awful." for d in greeting_left_out)

    exported = tmp_path / "esc_pro.json"
    res = invoke("--db", db, "db", "export", "--kind", "esc", "--format", "esc-pro", "--out", str(exported))
    assert res.exit_code == 0, res.output
    summary = res.output
    from_store = json.loads(exported.read_text(encoding="utf-8"))
    # one run: the same dialogues from the store as from the search (trees in pair order, not input order)
    assert sorted(map(json.dumps, from_store)) == sorted(map(json.dumps, searched))
    pairs = tmp_path / "pairs.jsonl"
    res = invoke("--db", db, "db", "export", "--kind", "esc", "--out", str(pairs))
    assert res.exit_code == 0, res.output
    stored = read_jsonl(pairs)
    assert cso_pairs(from_store) == stored_pairs(stored) and len(stored) >= 3
    assert len(cso_pairs(from_store)) == len(stored)  # every stored pair once, none invented
    assert f"{len(stored)} of the {len(stored)} selected pairs" in summary
    assert any("学业压力" == d["scene"] for d in from_store if any(m["negative"] for m in d["messages"][1::2]))
    # a Chinese dialogue's pairs say so (--language zh selects them)
    zh = tmp_path / "zh.jsonl"
    res = invoke("--db", db, "db", "export", "--kind", "esc", "--language", "zh", "--out", str(zh))
    assert res.exit_code == 0, res.output
    zh_pairs = read_jsonl(zh)
    assert zh_pairs and all("我" in json.dumps(p, ensure_ascii=False) for p in zh_pairs)
    assert len(zh_pairs) < len(stored)


def test_db_export_esc_pro_refuses_what_it_cannot_write(tmp_path, fake_server):
    fake_server.responder = scripted(end_after=1)
    db, out = str(tmp_path / "cli.db"), tmp_path / "x.json"
    res = invoke("--db", db, "--base-url", fake_server.base_url, "--model", "fake-model", "esc-search",
                 str(seed_file(tmp_path)), "--iterations", "3", "--gold-turns", "1", "--expand-k", "2",
                 "--judge-model", "judge-model", "--out-dir", str(tmp_path / "o"), "--export", "esc-pro")
    assert res.exit_code == 0, res.output
    for args, message in (((), "needs --kind esc"), (("--kind", "rubric"), "needs --kind esc"),
                          (("--kind", "esc", "--shape", "prompt"), "do not apply"),
                          (("--kind", "esc", "--run", "nope"), "no pairs match")):
        res = invoke("--db", db, "db", "export", "--format", "esc-pro", "--out", str(out), *args)
        assert res.exit_code == 2 and message in res.output, res.output
        assert not out.exists() and not provenance_path(out).exists()
    res = invoke("--db", db, "db", "export", "--kind", "esc", "--format", "esc-pro", "--out", str(tmp_path))
    assert res.exit_code == 2 and "is a folder" in res.output
    res = invoke("--db", db, "db", "export", "--kind", "esc", "--format", "esc-pro", "--out", str(out))
    assert res.exit_code == 0 and "1 of the 1 selected pairs" in res.output, res.output
    res = invoke("--db", db, "--base-url", fake_server.base_url, "esc-search", str(seed_file(tmp_path)),
                 "--export", "esc-pro-v2", "--out-dir", str(tmp_path / "o"))
    assert res.exit_code == 2 and "unknown format" in res.output
