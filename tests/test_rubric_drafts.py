"""Rubric writer, review loop and few-shot pool, end to end on the fake OpenAI server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agents.limits import Limiter
from agents.rubric import Rubric
from benchmarks.datasets.instructions import InputError, read_rubric_instructions
from graphs.rubric_drafts.configuration import RubricDraftsConfig
from graphs.rubric_drafts.graph import run_rubric_drafts
from graphs.rubric_drafts.nodes import RubricDraftDeps
from graphs.rubric_drafts.pool import import_rubrics, seed_pool
from graphs.rubric_drafts.review import ReviewDecision, apply_decision
from store import StoreError
from store import rubrics as rubric_store
from store.models import LLMCall, RubricRecord, RubricReview, Run
from tests.helpers import write_jsonl

QUESTIONS = ["How much ibuprofen can an adult take for a fever and back pain?",
             "Can I give ibuprofen to my 6-month-old baby for a fever?",
             "Is it safe to take ibuprofen during pregnancy?"]


def draft_reply(question: str, variant: int = 0) -> str:
    """A writer reply: weights that do not sum to 1 (the writer normalises them)."""
    return json.dumps({"criteria": [
        {"kind": "proficiency", "dimension": "accuracy", "text": f"Gives the correct limit for: {question}",
         "weight": 3},
        {"kind": "proficiency", "dimension": "completeness", "text": f"Mentions kidney and stomach risks ({variant})",
         "weight": 1},
        {"kind": "bonus", "dimension": "empathy", "text": "Acknowledges the pain or worry of the asker."},
        {"kind": "veto", "dimension": "dangerous_advice", "text": "Recommends more than the maximum daily dose."},
    ]})


def question_of(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    block = prompt.split("Write the rubric for this question:")[1]
    return next(q for q in QUESTIONS if q in block)


def rubric_writer(body: dict) -> str:
    return draft_reply(question_of(body), body.get("seed", 0))


@pytest.fixture
def writer(make_engine, fake_server, store):
    return make_engine(fake_server, store, model="writer-model", temperature=0.2, max_tokens=256, timeout=5,
                       max_retries=1, backoff_max=0.02, limiter=Limiter(4))


def write(tmp_path: Path, lines: list[dict], name: str = "q.jsonl") -> Path:
    return write_jsonl(tmp_path / name, lines)


def deps_for(store, writer, *, inline=False, reviewer=None, k=2, item_concurrency=8) -> RubricDraftDeps:
    config = RubricDraftsConfig(fewshot_k=k, review="inline" if inline else "later", item_concurrency=item_concurrency)
    return RubricDraftDeps(store, writer, config, dataset="test", reviewer=reviewer)


async def test_drafts_are_valid_pending_traceable_and_use_the_closest_pool_examples(store, fake_server, writer,
                                                                                   tmp_path):
    fake_server.responder = rubric_writer
    store.ensure_schema()
    assert seed_pool(store) == 3 and seed_pool(store) == 3  # idempotent
    src = write(tmp_path, [{"prompt": QUESTIONS[0], "lang": "en", "reference": "At most 1200 mg a day over the "
                            "counter."}])
    report = await run_rubric_drafts(deps_for(store, writer), read_rubric_instructions(src, require_rubric=False),
                                     {"t": 1})
    assert report.summary.done == 1 and report.summary.outcomes == {"pending": 1}
    with store.session() as s:
        rec = s.scalars(select(RubricRecord).where(RubricRecord.status == "pending")).one()
        rubric = Rubric.model_validate(rec.rubric)
        assert [c.id for c in rubric.criteria] == ["p1", "p2", "b1", "v1"]
        assert [c.weight for c in rubric.criteria[:2]] == pytest.approx([0.75, 0.25])
        assert {c.origin.value for c in rubric.criteria} == {"generated"}
        assert rec.origin == "generated" and not rec.in_pool and rec.writer_model == "writer-model"
        assert rec.reference.startswith("At most") and rec.language == "en"
        call = s.get(LLMCall, rec.llm_call_id)
        assert call.role == "rubric_writer" and call.run_id == report.run_id and call.item_id == rec.item_id
    prompt = fake_server.requests[0]["messages"][-1]["content"]
    # k=2 examples from the pool, the English ones (the Chinese seed shares no words with the question)
    assert prompt.count("Example ") == 2 and "metformin" in prompt and "glass" in prompt and "氨氯地平" not in prompt
    assert "A reference answer written by a clinician" in prompt and "1200 mg" in prompt

    again = await run_rubric_drafts(deps_for(store, writer), read_rubric_instructions(src, require_rubric=False), {})
    assert again.summary.done == 0 and len(fake_server.requests) == 1  # the job is done: nothing redone


async def test_inline_review_pauses_the_graph_and_decisions_feed_the_pool(store, fake_server, writer, tmp_path):
    """approve / edit / reject through LangGraph interrupts; the rejected one is redrafted with the reason."""
    fake_server.responder = rubric_writer
    store.ensure_schema()
    asked: list[dict] = []

    async def reviewer(interrupt: dict) -> ReviewDecision:
        asked.append(interrupt)
        with store.session() as s:
            rec = s.get(RubricRecord, interrupt["rubric_id"])
        q = rec.instruction[0]["content"]
        if q == QUESTIONS[0]:
            return ReviewDecision(decision="approve", reviewer="dr-a")
        if q == QUESTIONS[1]:
            edited = json.loads(json.dumps(rec.rubric))
            edited["criteria"][3]["text"] = "Gives ibuprofen to an infant under 6 months without a doctor."
            return ReviewDecision(decision="edit", reason="the veto must be about infants", reviewer="dr-a",
                                  rubric=edited)
        return ReviewDecision(decision="reject", reason="must say to avoid NSAIDs after 20 weeks", reviewer="dr-b")

    src = write(tmp_path, [{"prompt": q} for q in QUESTIONS])
    records = read_rubric_instructions(src, require_rubric=False)
    report = await run_rubric_drafts(deps_for(store, writer, inline=True, reviewer=reviewer, k=3, item_concurrency=1),
                                     records, {})
    assert len(asked) == 3 and all(set(a) == {"rubric_id", "item_id"} for a in asked)
    assert report.summary.outcomes == {"approved": 1, "edited": 1, "rejected": 1}
    with store.session() as s:
        by_q = {r.instruction[0]["content"]: r for r in s.scalars(select(RubricRecord))}
        assert by_q[QUESTIONS[0]].status == "approved" and by_q[QUESTIONS[0]].in_pool
        edited = s.scalars(select(RubricRecord).where(RubricRecord.origin == "human_edited")).one()
        assert edited.status == "approved" and edited.in_pool and edited.instruction[0]["content"] == QUESTIONS[1]
        draft = s.get(RubricRecord, edited.parent_id)
        assert draft.status == "edited" and not draft.in_pool
        assert [c["origin"] for c in edited.rubric["criteria"]] == ["generated"] * 3 + ["human_edited"]
        rejected = s.scalars(select(RubricRecord).where(RubricRecord.status == "rejected")).one()
        reviews = {r.decision: r for r in s.scalars(select(RubricReview))}
        assert reviews["edit"].result_rubric_id == edited.id and reviews["edit"].reviewer == "dr-a"
        assert reviews["reject"].rubric_id == rejected.id and reviews["reject"].result_rubric_id is None
        assert rubric_store.approved_rubric(s, rubric_store.instruction_hash(draft.instruction)).id == edited.id

    # the rejected instruction is drafted again (a new job: review later), with the reviewer's reason and
    # another seed; the approved and the edited rubrics are now its closest few-shot examples
    fake_server.requests.clear()
    records = read_rubric_instructions(write(tmp_path, [{"prompt": QUESTIONS[2]}], "again.jsonl"),
                                       require_rubric=False)
    await run_rubric_drafts(deps_for(store, writer, k=2), records, {})
    (body,) = fake_server.requests
    prompt = body["messages"][-1]["content"]
    assert "must say to avoid NSAIDs after 20 weeks" in prompt and body["seed"] == 1
    assert "Gives ibuprofen to an infant under 6 months" in prompt and QUESTIONS[0] in prompt
    with store.session() as s:
        assert rubric_store.current_rubric(s, rubric_store.instruction_hash([{"role": "user", "content":
                                                                              QUESTIONS[2]}])).status == "pending"


async def test_a_skipped_review_leaves_the_draft_pending_and_a_rerun_pauses_again(store, fake_server, writer,
                                                                                  tmp_path):
    fake_server.responder = rubric_writer
    store.ensure_schema()
    src = write(tmp_path, [{"prompt": QUESTIONS[0]}])
    seen: list[int] = []

    async def skip(interrupt: dict) -> None:
        seen.append(interrupt["rubric_id"])
        return None

    async def approve(interrupt: dict) -> ReviewDecision:
        seen.append(interrupt["rubric_id"])
        return ReviewDecision(decision="approve", reviewer="r")

    r1 = await run_rubric_drafts(deps_for(store, writer, inline=True, reviewer=skip),
                                 read_rubric_instructions(src, require_rubric=False), {})
    assert r1.summary.outcomes == {"pending": 1} and r1.summary.failed == 1  # not done: asked again next run
    r2 = await run_rubric_drafts(deps_for(store, writer, inline=True, reviewer=approve),
                                 read_rubric_instructions(src, require_rubric=False), {})
    assert r2.summary.outcomes == {"approved": 1} and seen[0] == seen[1]
    assert len(fake_server.requests) == 1  # the pending draft was reviewed, not drafted again


async def test_an_invalid_draft_is_repaired_once_then_recorded_as_a_failure(store, fake_server, writer, tmp_path):
    store.ensure_schema()
    bad = json.loads(draft_reply(QUESTIONS[0]))
    bad["criteria"][3]["dimension"] = "accuracy"  # a veto with a proficiency dimension
    replies = iter([json.dumps(bad), draft_reply(QUESTIONS[0])])
    fake_server.responder = lambda body: next(replies)
    src = write(tmp_path, [{"prompt": QUESTIONS[0]}])
    report = await run_rubric_drafts(deps_for(store, writer), read_rubric_instructions(src, require_rubric=False), {})
    assert report.summary.outcomes == {"pending": 1} and len(fake_server.requests) == 2
    assert "not a veto dimension" in fake_server.requests[1]["messages"][-1]["content"]

    fake_server.responder = lambda body: json.dumps(bad)
    src2 = write(tmp_path, [{"prompt": QUESTIONS[1]}], "b.jsonl")
    report = await run_rubric_drafts(deps_for(store, writer), read_rubric_instructions(src2, require_rubric=False),
                                     {})
    assert report.summary.failed == 1
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(RubricRecord)) == 1  # no empty row for the failure
        failed = s.scalars(select(LLMCall).where(LLMCall.ok.is_(False))).one()
        assert "not a veto dimension" in failed.error


def test_decisions_are_checked_and_a_rubric_is_decided_once(store):
    store.ensure_schema()
    with store.session() as s:
        rid = rubric_store.add_rubric(s, instruction=[{"role": "user", "content": "q"}], status="pending",
                                      rubric=json.loads(Path("agents/rubrics/fewshot_seed.jsonl").read_text()
                                                        .splitlines()[0])["rubric"], origin="generated",
                                      in_pool=False)
    with pytest.raises(ValueError, match="a reason is required to reject"):
        apply_decision(store, rid, ReviewDecision(decision="reject", reviewer="r"))
    with pytest.raises(ValueError, match="weights must sum to 1"):
        broken = {"criteria": [{"id": "p1", "text": "x", "kind": "proficiency", "weight": 0.5}]}
        apply_decision(store, rid, ReviewDecision(decision="edit", reason="r", reviewer="r", rubric=broken))
    apply_decision(store, rid, ReviewDecision(decision="approve", reviewer="first"))
    with pytest.raises(StoreError, match=f"rubric {rid} was already decided \\(it is approved\\)"):
        apply_decision(store, rid, ReviewDecision(decision="reject", reason="late", reviewer="second"))
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(RubricReview)) == 1


async def test_rubric_prefs_takes_the_approved_rubric_and_refuses_an_instruction_without_one(store, tmp_path):
    store.ensure_schema()
    seed_line = json.loads(Path("agents/rubrics/fewshot_seed.jsonl").read_text().splitlines()[0])
    import_rubrics(store, read_rubric_instructions(write(tmp_path, [seed_line], "pool.jsonl")))
    src = write(tmp_path, [{"prompt": seed_line["prompt"]}, {"prompt": "An unreviewed question?"}])
    from store.rubrics import approved_rubric_lookup

    with pytest.raises(InputError, match=r"q.jsonl:2: field 'rubric': missing, and the store has no approved"):
        read_rubric_instructions(src, lookup=approved_rubric_lookup(store))
    (rec,) = read_rubric_instructions(write(tmp_path, [{"prompt": seed_line["prompt"]}], "one.jsonl"),
                                      lookup=approved_rubric_lookup(store))
    assert rec["payload"]["rubric"]["criteria"][0]["id"] == "p1" and isinstance(rec["payload"]["rubric_id"], int)


def test_no_store_is_created_when_looking_up_rubrics(tmp_path):
    from store import Store
    from store.rubrics import approved_rubric_lookup

    assert approved_rubric_lookup(Store(f"sqlite:///{tmp_path / 'none.db'}")) is None
    assert not (tmp_path / "none.db").exists()


EDITOR = """import json, sys
p = sys.argv[1]
r = json.load(open(p))
r["criteria"][0]["text"] = "Gives 1200 mg a day as the over-the-counter limit."
json.dump(r, open(p, "w"))
"""


def test_cli_review_pages_through_pending_drafts(tmp_path, fake_server):
    """`rubrics draft` (review later), then `rubrics review`: approve, edit in $EDITOR, reject, with reasons."""
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    fake_server.responder = rubric_writer
    db = str(tmp_path / "r.db")
    src = write(tmp_path, [{"prompt": q} for q in QUESTIONS])
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    runner = CliRunner(env={"COLUMNS": "200", "EDITOR": f"{sys.executable} {editor}"})
    res = runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "rubrics", "draft", str(src),
                              "--judge-model", "writer-model"])
    assert res.exit_code == 0, res.output
    assert "pending: 3" in res.stdout and len(fake_server.requests) == 3
    # answers: rubric 4 approve (no reason), rubric 5 edit + reason, rubric 6 reject without reason (refused),
    # then with a reason
    res = runner.invoke(app, ["--db", db, "rubrics", "review", "--reviewer", "dr-x"],
                        input="a\n\ne\nlimit was wrong\nr\n\nr\nnot specific\n")
    assert res.exit_code == 0, res.output
    assert "reviewed: approve: 1, edit: 1, reject: 1, skip: 0" in res.stdout
    assert "a reason is required to reject a rubric" in res.stdout
    store = Store(db)
    with store.session() as s:
        statuses = sorted(r.status for r in s.scalars(select(RubricRecord).where(RubricRecord.origin != "dataset")))
        assert statuses == ["approved", "approved", "edited", "rejected"]
        edited = s.scalars(select(RubricRecord).where(RubricRecord.origin == "human_edited")).one()
        assert edited.rubric["criteria"][0]["text"].startswith("Gives 1200 mg")
        assert {r.reviewer for r in s.scalars(select(RubricReview))} == {"dr-x"}
    res = runner.invoke(app, ["--db", db, "rubrics", "review"])
    assert res.exit_code == 0 and "no rubrics wait for review" in res.stdout


def test_cli_inline_review_decides_each_draft_as_it_comes(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    fake_server.responder = rubric_writer
    db = str(tmp_path / "r.db")
    src = write(tmp_path, [{"prompt": q} for q in QUESTIONS[:2]])
    runner = CliRunner(env={"COLUMNS": "200"})
    # first draft approved; then the reviewer quits: the second draft stays pending
    res = runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "rubrics", "draft", str(src),
                              "--review", "inline", "--reviewer", "dr-y"], input="a\nlooks right\nq\n")
    assert res.exit_code == 0, res.output
    assert "approved: 1" in res.stdout and "pending: 1" in res.stdout and "review stopped" in res.stdout
    with Store(db).session() as s:
        review = s.scalars(select(RubricReview)).one()
        assert (review.decision, review.reason, review.reviewer) == ("approve", "looks right", "dr-y")
    # run again: only the pending draft pauses again, nothing is drafted anew
    res = runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "rubrics", "draft", str(src),
                              "--review", "inline"], input="r\ntoo vague\n")
    assert res.exit_code == 0, res.output
    assert len(fake_server.requests) == 2 and "rejected: 1" in res.stdout


def test_cli_draft_reads_published_files_as_they_are(tmp_path, fake_server):
    """A bad line stops `rubrics draft` with its file:line before anything is stored; --on-bad-row skip
    lists it, drafts the rest and stores the count with the run; --limit reads only what it uses."""
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    fake_server.responder = rubric_writer
    src = tmp_path / "q.jsonl"
    src.write_text("\n".join([json.dumps({"prompt": QUESTIONS[0]}), json.dumps({"messages": []}), "",
                              json.dumps({"prompt": QUESTIONS[1]})]) + "\n", encoding="utf-8")
    runner = CliRunner(env={"COLUMNS": "200"})

    def draft(db: str, *more: str):
        return runner.invoke(app, ["--db", str(tmp_path / db), "--base-url", fake_server.base_url, "rubrics",
                                   "draft", str(src), "--judge-model", "writer-model", *more])

    res = draft("fail.db")
    assert res.exit_code != 0 and f"{src}:2:" in res.output and not (tmp_path / "fail.db").exists()
    assert draft("limit.db", "--limit", "1").exit_code == 0 and len(fake_server.requests) == 1
    res = draft("skip.db", "--on-bad-row", "skip")
    assert res.exit_code == 0, res.output
    assert "1 bad rows skipped" in res.output and "1 blank rows passed over" in res.output
    with Store(str(tmp_path / "skip.db")).session() as s:
        read = s.scalars(select(Run).where(Run.kind == "rubric-drafts")).one().stats["input"]
    assert (read["records"], read["skipped_rows"], read["blank_rows"]) == (2, 1, 1)
