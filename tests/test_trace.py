"""`carealign trace`: stores made by generate, rubric-prefs, esc-search, factcheck and training (fake
server, tiny model) are traced through the CLI's ``--json`` and every node is checked against the
rows it names; the tree shows model output verbatim; lineage queries use indexes only; a model whose
folder was moved away still traces to its data through the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from agents.prompts import prompt_hash
from carealign.cli import app
from store import Store
from store.lineage import pair_ids_sha256, resolve_target, trace
from store.models import (
    Candidate,
    CandidateScore,
    CheckAnswer,
    Item,
    Judgment,
    LLMCall,
    PreferencePair,
    Run,
    TrainingPair,
    TreeNode,
)
from store.records import add_judgments, add_llm_call, upsert_items
from tests.lineage_stores import (
    DRAFT,
    EDITED,
    MARKUP,
    build_esc,
    build_factcheck,
    build_generate,
    build_rubric_prefs,
    full_scans,
    sql_plans,
)


def cli_trace(store: Store, target: str, *extra: str) -> dict[str, Any]:
    res = CliRunner().invoke(app, ["--db", store.url, "trace", target, "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def cli_tree(store: Store, target: str) -> str:
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["--db", store.url, "trace", target])
    assert res.exit_code == 0, res.output
    return res.stdout


# -- checks of trace nodes against the rows -------------------------------------------------------
def check_call(s, got: dict[str, Any] | None, call_id: int) -> None:
    c = s.get(LLMCall, call_id)
    assert got is not None and got["id"] == call_id
    assert (got["model"], got["role"], got["prompt_name"], got["prompt_hash"], got["params"], got["run_id"],
            got["item_id"], got["ok"]) == (c.model, c.role, c.prompt_name, c.prompt_hash, c.params, c.run_id,
                                           c.item_id, c.ok)
    assert got["seed"] == c.params.get("seed")
    if c.prompt_name is not None:  # the template's content hash, not just a name
        assert got["prompt_hash"] == prompt_hash(c.prompt_name)


def check_item(s, got: dict[str, Any], item_id: int, input_file: Path | None) -> None:
    """The item node; ``input_file``: the file it was read from (None: stored without a source)."""
    item = s.get(Item, item_id)
    assert (got["id"], got["dataset"], got["external_id"], got["content_hash"], got["payload"]) == (
        item.id, item.dataset, item.external_id, item.content_hash, item.payload)
    assert got["source"] == item.source
    if input_file is None:
        assert got["line"] is None
        return
    assert got["file"] == input_file.name
    lines = input_file.read_text(encoding="utf-8").splitlines()
    assert 1 <= got["line"] <= len(lines)


def check_pair(s, got: dict[str, Any], input_file: Path | None) -> None:
    """Every node of a traced pair against the rows: the pair, both sides' candidates, generating
    calls, judgments with their grader calls, scores, the item, and who trained on it."""
    p = s.get(PreferencePair, got["id"])
    assert (got["kind"], got["margin"], got["language"], got["run_id"], got["prompt"], got["provenance"]) == (
        p.kind, p.margin, p.language, p.run_id, p.prompt, p.provenance)
    decided = set(p.provenance.get("judgment_ids", []))
    for side, cid, text in (("chosen", p.chosen_candidate_id, p.chosen), ("rejected", p.rejected_candidate_id,
                                                                            p.rejected)):
        g = got[side]
        assert g["text"] == text
        if cid is None:
            assert g["candidate"] is None and g["judgments"] == [] and g["scores"] == []
            continue
        c = s.get(Candidate, cid)
        assert (g["candidate"]["id"], g["candidate"]["model"], g["candidate"]["sample_index"],
                g["candidate"]["run_id"]) == (c.id, c.model, c.sample_index, c.run_id)
        check_call(s, g["call"], c.llm_call_id)
        rows = s.scalars(select(Judgment).where(Judgment.candidate_id == cid).order_by(Judgment.id)).all()
        assert [j["id"] for j in g["judgments"]] == [r.id for r in rows] and rows
        for j, r in zip(g["judgments"], rows, strict=True):
            assert (j["criterion"], j["criterion_kind"], j["score"], j["met"], j["judge_model"], j["run_id"]) == (
                r.criterion, r.criterion_kind, r.score, r.met, r.judge_model, r.run_id)
            assert j["decided_pair"] == (r.id in decided)
            check_call(s, j["call"], r.llm_call_id)
        scores = s.scalars(select(CandidateScore).where(CandidateScore.candidate_id == cid)).all()
        assert [(x["job_key"], x["s1"], x["s2"], x["s3"]) for x in g["scores"]] == [
            (r.job_key, r.s1, r.s2, r.s3) for r in scores]
    trained = s.execute(select(TrainingPair.run_id, TrainingPair.split).where(TrainingPair.pair_id == p.id)).all()
    assert sorted((t["run_id"], t["split"]) for t in got["trained_by"]) == sorted(trained)
    check_item(s, got["item"], p.item_id, input_file)


def check_runs(s, data: dict[str, Any]) -> None:
    """Every run the trace names is described, with its kind, code version and config hash."""
    named: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "run_id" and isinstance(v, str):
                    named.add(v)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk({k: v for k, v in data.items() if k != "runs"})
    assert named and named <= set(data["runs"])
    for rid, node in data["runs"].items():
        run = s.get(Run, rid)
        assert (node["kind"], node["code_version"], node["config_hash"], node["status"]) == (
            run.kind, run.code_version, run.config_hash, run.status)


# -- generate -------------------------------------------------------------------------------------
def heart_pair(s) -> int:
    """The id of the pair of the first question (items are processed concurrently: ids vary)."""
    return s.scalar(select(PreferencePair.id).join(Item, Item.id == PreferencePair.item_id)
                    .where(Item.external_id == "q-heart"))


async def test_a_generate_pair_traces_to_its_calls_judgments_input_line_and_run(store, fake_server, make_engine,
                                                                                tmp_path):
    built = await build_generate(store, fake_server, make_engine, tmp_path)
    with store.session() as s:  # another job's judge graded the chosen answer too: shown, but it decided nothing
        pair = s.get(PreferencePair, heart_pair(s))
        other = add_llm_call(s, request_hash="other-judge", run_id=pair.run_id, item_id=pair.item_id,
                             model="other-judge", role="judge", messages=[], params={"temperature": 0.0})
        add_judgments(s, [{"run_id": pair.run_id, "candidate_id": pair.chosen_candidate_id, "llm_call_id": other,
                           "criterion": "accuracy", "criterion_kind": "generic", "score": 3.0, "judge_model": "other"}])
    with store.session() as s:
        pair = s.get(PreferencePair, pair.id)
        data = cli_trace(store, f"pair:{pair.id}")
        assert data["target"] == {"kind": "pair", "value": pair.id}
        check_pair(s, data["pair"], built.input_file)
        check_runs(s, data)
        got = data["pair"]
        assert got["chosen"]["call"]["prompt_name"] == "answer" and got["chosen"]["call"]["seed"] == 0
        assert got["rejected"]["call"]["seed"] == 1 and got["chosen"]["call"]["params"]["temperature"] == 0.7
        assert {j["call"]["model"] for j in got["chosen"]["judgments"] if j["decided_pair"]} == {"judge-model"}
        assert [j["call"]["model"] for j in got["chosen"]["judgments"] if not j["decided_pair"]] == ["other-judge"]
        assert got["rubric"] == {"source": "file", "name": pair.provenance["rubric"]}
        item = got["item"]
        assert (item["external_id"], item["file"], item["line"]) == ("q-heart", "questions.jsonl", 1)
        assert data["runs"][built.report.run_id]["models"] == {}  # the run functions store no resolved models


async def test_run_and_item_targets_list_what_they_produced(store, fake_server, make_engine, tmp_path):
    built = await build_generate(store, fake_server, make_engine, tmp_path)
    run_id = built.report.run_id
    data = cli_trace(store, run_id[:8], "--pairs", "1")  # a bare prefix of 6+ characters is a run
    with store.session() as s:
        def n(model, *where):
            return s.scalar(select(func.count()).select_from(model).where(*where))

        assert data["target"] == {"kind": "run", "value": run_id}
        assert data["run"]["counts"] == {
            "llm_calls": n(LLMCall, LLMCall.run_id == run_id), "candidates": n(Candidate, Candidate.run_id == run_id),
            "judgments": n(Judgment, Judgment.run_id == run_id), "pairs": 2, "check_answers": 0}
        assert data["run"]["config"] == s.get(Run, run_id).config and data["trained_by"] == []
        first = s.scalar(select(func.min(PreferencePair.id)))
        assert [p["id"] for p in data["pairs"]["traced"]] == [first] and data["pairs"]["total"] == 2
        check_pair(s, data["pairs"]["traced"][0], built.input_file)

        data = cli_trace(store, "q-fever")
        (entry,) = data["items"]
        item_id = s.scalar(select(Item.id).where(Item.external_id == "q-fever"))
        check_item(s, entry["item"], item_id, built.input_file)
        assert entry["item"]["line"] == 2
        assert entry["candidates"] == n(Candidate, Candidate.item_id == item_id) == 3
        assert entry["pairs"]["ids"] == list(s.scalars(select(PreferencePair.id).where(
            PreferencePair.item_id == item_id)))
        check_pair(s, entry["pairs"]["traced"][0], built.input_file)
        check_runs(s, data)


async def test_targets_resolve_or_say_what_to_write(sqlite_store, fake_server, make_engine, tmp_path):
    store = sqlite_store
    built = await build_generate(store, fake_server, make_engine, tmp_path)
    with store.session() as s:  # an input whose external id is also a pair id
        upsert_items(s, "other", [{"payload": {"prompt": "x"}, "external_id": "1", "source": "other.jsonl:1"}])
    assert resolve_target(store, "pair:1") == ("pair", "1") and resolve_target(store, "item:1") == ("item", "1")
    assert resolve_target(store, f"run:{built.report.run_id[:3]}") == ("run", built.report.run_id)

    def error(target: str) -> str:
        res = CliRunner().invoke(app, ["--db", store.url, "trace", target])
        assert res.exit_code == 2, res.output
        return " ".join(res.output.split())

    assert "'1' names pair 1 and item '1' (dataset other): write pair:1 or item:1" in error("1")
    assert "no pair or run or item 'nothing-here'" in error("nothing-here")
    assert "no pair '999'" in error("pair:999")
    (tmp_path / "not-a-model").mkdir()
    assert "has no training_manifest.json" in error(str(tmp_path / "not-a-model"))
    res = CliRunner().invoke(app, ["--db", str(tmp_path / "missing.db"), "trace", "1"])
    assert res.exit_code == 2 and "no store at" in res.output and not (tmp_path / "missing.db").exists()


async def test_the_tree_shows_every_link_and_model_output_verbatim(sqlite_store, fake_server, make_engine, tmp_path):
    built = await build_generate(sqlite_store, fake_server, make_engine, tmp_path)
    with sqlite_store.session() as s:
        out = cli_tree(sqlite_store, f"pair:{heart_pair(s)}")
    assert MARKUP in out  # model output is never read as markup
    for text in ("pair ", "chosen:", "rejected:", "generated by: call #", "gen-model", "judge-model",
                 f"prompt answer@{prompt_hash('answer')}", "seed 0", "seed 1", "judgments (4", "rubric generic_medical",
                 "questions.jsonl line 1", "q-heart", built.report.run_id, "generate completed, code git:"):
        assert text in out, text


# -- rubric-prefs ---------------------------------------------------------------------------------
async def test_a_rubric_pair_shows_the_reviewed_rubric_its_draft_and_the_review(store, fake_server, make_engine,
                                                                                tmp_path):
    built = await build_rubric_prefs(store, fake_server, make_engine, tmp_path)
    data = cli_trace(store, "para-1")
    (entry,) = data["items"]
    (got,) = entry["pairs"]["traced"]
    with store.session() as s:
        check_pair(s, got, built.input_file)
        check_runs(s, data)
        r = got["rubric"]
        assert (r["source"], r["rubric_id"], r["human_edited_criteria"]) == ("store", built.extra["edit_id"], 1)
        assert [c["text"] for c in r["criteria"]] == [c["text"] for c in EDITED["criteria"]]
        edit, draft = r["history"]
        assert (edit["id"], edit["origin"], edit["status"], edit["parent_id"], edit["reviews"]) == (
            built.extra["edit_id"], "human_edited", "approved", built.extra["draft_id"], [])
        assert (draft["id"], draft["origin"], draft["status"], draft["writer_model"]) == (
            built.extra["draft_id"], "generated", "edited", "writer-model")
        (review,) = draft["reviews"]
        assert (review["decision"], review["reviewer"], review["reason"], review["result_rubric_id"]) == (
            "edit", "dr-lee", "the doctor advice needs a duration", built.extra["edit_id"])
        # safety first: the unsafe seed-0 answer was rejected on the veto judgment
        veto = [j for j in got["rejected"]["judgments"] if j["criterion_kind"] == "veto"]
        assert veto and veto[0]["met"] is True and veto[0]["decided_pair"]
        assert got["chosen"]["scores"][0]["job_key"] == built.extra["job_key"]
        assert got["rejected"]["scores"][0]["s3"] == 1
    tree = cli_tree(store, "para-1")
    for text in ("rubric rubric", "edited from rubric", "review: edit by dr-lee", "human_edited", "veto",
                 "rubric.jsonl line 1"):
        assert text in tree, text
    assert DRAFT["criteria"][1]["text"] not in tree  # the draft's criterion text was replaced by the edit


# -- esc-search -----------------------------------------------------------------------------------
async def test_an_esc_pair_shows_its_tree_nodes_and_each_sides_calls(store, fake_server, make_engine, tmp_path):
    built = await build_esc(store, fake_server, make_engine, tmp_path)
    with store.session() as s:
        pair = s.scalars(select(PreferencePair).where(PreferencePair.kind == "esc")).one()
        data = cli_trace(store, str(pair.id))
        got = data["pair"]
        check_pair(s, got, built.input_file)
        check_runs(s, data)
        prov = pair.provenance
        assert got["search"]["tree_id"] == prov["tree_id"] and got["search"]["parent_path"] == prov["parent_path"]
        for side in ("chosen", "rejected"):
            node = s.scalars(select(TreeNode).where(TreeNode.tree_id == prov["tree_id"],
                                                    TreeNode.path == prov[f"{side}_path"])).one()
            g = got[side]
            assert (g["node"]["path"], g["node"]["strategy"], g["node"]["q"], g["node"]["n"], g["node"]["ended"]) == (
                node.path, node.action, node.value, node.visits, node.ended)
            assert [c["id"] for c in g["calls"]] == prov["llm_call_ids"][side]
            for c in g["calls"]:
                check_call(s, c, c["id"])
            assert [c["role"] for c in g["calls"]] == ["esc_supporter", "esc_seeker", "esc_judge"]
        assert got["item"]["external_id"] == "seeds.json#0" and got["rubric"] is None


# -- factcheck ------------------------------------------------------------------------------------
async def test_a_fact_checked_text_shows_every_answer_round_and_call(store, fake_server, make_engine, tmp_path):
    built = await build_factcheck(store, fake_server, make_engine, tmp_path)
    data = cli_trace(store, "item:A")
    (entry,) = data["items"]
    with store.session() as s:
        item_id = s.scalar(select(Item.id).where(Item.external_id == "A"))
        check_item(s, entry["item"], item_id, built.input_file)
        rows = s.scalars(select(CheckAnswer).where(CheckAnswer.item_id == item_id).order_by(CheckAnswer.id)).all()
        assert len(rows) == 3 * 2 + 1
        assert [(a["id"], a["method"], a["role"], a["round"], a["agent"], a["verdict"], a["sentence_id"])
                for a in entry["check_answers"]] == [
            (r.id, r.method, r.role, r.round, r.agent, r.verdict, r.sentence_id) for r in rows]
        for a, r in zip(entry["check_answers"], rows, strict=True):
            if r.llm_call_id is None:
                assert a["call"] is None and r.role == "final"
            else:
                check_call(s, a["call"], r.llm_call_id)
        check_runs(s, data)
        run = cli_trace(store, f"run:{built.report.run_id}")
        grouped = s.execute(select(CheckAnswer.method, CheckAnswer.role, CheckAnswer.verdict, func.count())
                            .where(CheckAnswer.run_id == built.report.run_id)
                            .group_by(CheckAnswer.method, CheckAnswer.role, CheckAnswer.verdict)).all()
        assert sorted((a["method"], a["role"], a["verdict"], a["answers"]) for a in run["check_answers"]) == \
            sorted(tuple(g) for g in grouped)
        assert run["pairs"]["total"] == 0


# -- indexed queries ------------------------------------------------------------------------------
async def test_lineage_queries_never_scan_a_large_table(sqlite_store, fake_server, make_engine, tmp_path):
    store = sqlite_store
    g = await build_generate(store, fake_server, make_engine, tmp_path)
    await build_rubric_prefs(store, fake_server, make_engine, tmp_path)
    e = await build_esc(store, fake_server, make_engine, tmp_path)
    f = await build_factcheck(store, fake_server, make_engine, tmp_path)
    with store.session() as s:
        pairs = list(s.scalars(select(PreferencePair.id)))
        s.add(TrainingPair(run_id=e.report.run_id, pair_id=pairs[0], split="train"))  # a run that "trained"
    for target in [f"pair:{p}" for p in pairs] + ["q-heart", "para-1", "seeds.json#0", "A", g.report.run_id,
                                                  e.report.run_id, f.report.run_id]:
        with sql_plans(store) as plans:
            trace(store, target)
        assert plans, target
        assert full_scans(plans) == [], target


# -- training ---------------------------------------------------------------------------------------
@pytest.mark.train
def test_a_trained_model_traces_to_its_pairs_after_its_folder_is_moved(tmp_path):
    pytest.importorskip("trl")
    from tests.test_training import RUBRIC_DATA, TINY
    from tests.tiny_models import build_tiny_causal_lm
    from tests.training_data import populate
    from training.data_config import DataConfig
    from training.manifest import MANIFEST
    from training.rm_config import RMConfig
    from training.run import train_from_store

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.ensure_schema()
    data = populate(store)
    tiny = build_tiny_causal_lm(tmp_path / "tiny", data.texts())
    out = tmp_path / "models" / "rm"
    result = train_from_store(store, "rm", str(tiny), out, DataConfig(**RUBRIC_DATA), RMConfig(**TINY))
    manifest = json.loads((out / MANIFEST).read_text())
    with store.session() as s:  # the store records exactly the manifest's pairs and split
        rows = s.execute(select(TrainingPair.pair_id, TrainingPair.split)
                         .where(TrainingPair.run_id == result.run_id)).all()
    assert sorted(p for p, sp in rows if sp == "train") == manifest["pair_ids"] == result.train_pair_ids
    assert sorted(p for p, sp in rows if sp == "eval") == manifest["eval_pair_ids"]

    via_folder = cli_trace(store, str(out), "--pairs", "2")
    assert via_folder["target"] == {"kind": "training_run", "value": result.run_id}
    assert via_folder["model"] == {"path": str(out), "base_model": str(tiny), "method": "rm",
                                   "manifest": str(out / MANIFEST), "folder_present": True}
    p = via_folder["pairs"]
    assert (p["source"], p["train"], p["eval"], p["sha256_matches"], p["manifest_matches"]) == (
        "store", manifest["pair_ids"], manifest["eval_pair_ids"], True, True)
    assert p["sha256"] == manifest["pair_ids_sha256"] == pair_ids_sha256(p["train"])
    assert p["summary"]["kinds"] == {"rubric": len(p["train"])} and p["summary"]["languages"] == {"en": len(p["train"])}
    assert via_folder["training_run"]["config"]["data"]["language"] == "en"
    assert via_folder["training_run"]["stats"]["final_loss"] == result.stats["final_loss"]
    with store.session() as s:
        assert [x["id"] for x in p["traced"]] == manifest["pair_ids"][:2]
        for pair in p["traced"]:
            assert {"run_id": result.run_id, "split": "train"} in pair["trained_by"]
            check_pair(s, pair, None)  # the training test data is stored without input files
            assert pair["chosen"]["judgments"] and pair["chosen"]["call"]["model"] == "gen"
        check_runs(s, via_folder)

    shutil.move(str(out), str(tmp_path / "elsewhere"))  # the model folder is gone from where it was trained
    moved = cli_trace(store, result.run_id[:10])
    assert moved["model"]["folder_present"] is False
    assert (moved["pairs"]["train"], moved["pairs"]["eval"], moved["pairs"]["source"]) == (
        manifest["pair_ids"], manifest["eval_pair_ids"], "store")
    assert "folder gone: traced through the store" in cli_tree(store, result.run_id)
    res = CliRunner().invoke(app, ["--db", store.url, "trace", str(out)])
    assert res.exit_code == 2  # the old path names nothing any more

    # a run recorded before the store kept its pairs still traces through its folder's manifest
    with store.session() as s:
        s.execute(delete(TrainingPair).where(TrainingPair.run_id == result.run_id))
    old = cli_trace(store, str(tmp_path / "elsewhere"))
    assert (old["pairs"]["source"], old["pairs"]["train"], old["pairs"]["sha256_matches"]) == (
        "manifest", manifest["pair_ids"], True)
    store.dispose()


async def test_a_folder_whose_manifest_names_no_training_run_is_a_clear_error(store, fake_server, make_engine,
                                                                              tmp_path):
    from training.manifest import MANIFEST

    built = await build_generate(store, fake_server, make_engine, tmp_path)
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps({"run_id": built.report.run_id}))
    res = CliRunner().invoke(app, ["--db", store.url, "trace", str(folder)])
    assert res.exit_code == 2 and "is not a training run" in res.stderr
