"""The SQL store on SQLite and PostgreSQL: schema and migrations, URLs, idempotent writes,
transactions, the work queue (also under several worker processes), exports and run records."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from store import Store, normalise_url, redact_url
from store.errors import StoreError
from store.export import PairFilter, export_pairs
from store.models import Base, Candidate, Item, PreferencePair, Run, WorkItem
from store.queue import claim, complete, enqueue, progress, requeue_done, retry_failed
from store.records import (
    add_candidate,
    add_llm_call,
    add_pairs,
    code_version,
    create_run,
    finish_run,
    normalise_text,
    pair_hash,
    upsert_items,
)

# -- helpers ------------------------------------------------------------------------------------


def count(store: Store, model: Any) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def make_items(store: Store, n: int, dataset: str = "ds", tag: str = "q") -> list[int]:
    with store.session() as s:
        return upsert_items(s, dataset, [{"payload": {"instruction": f"{tag} {i}"}} for i in range(n)])


def make_run(store: Store, kind: str = "test", config: dict[str, Any] | None = None) -> str:
    with store.session() as s:
        return create_run(s, kind, config if config is not None else {"a": 1})


def pair(run_id: str, item_id: int | None, chosen: str, rejected: str = "bad answer", **extra: Any) -> dict:
    row = {
        "kind": "dpo", "run_id": run_id, "item_id": item_id,
        "prompt": [{"role": "user", "content": "What is 2+2?"}],
        "chosen": chosen, "rejected": rejected, "margin": 0.5,
    }
    row.update(extra)
    return row


def work_rows(store: Store, job_key: str) -> dict[int, WorkItem]:
    with store.session() as s:
        return {w.id: w for w in s.scalars(select(WorkItem).where(WorkItem.job_key == job_key))}


@pytest.fixture
def raw_store(db_url: str) -> Iterator[Store]:
    """A Store on an empty, unmigrated database (SQLite and PostgreSQL)."""
    s = Store(db_url)
    yield s
    s.dispose()


# -- 1. schema ----------------------------------------------------------------------------------


def test_ensure_schema_creates_every_model_table_at_head_revision(raw_store: Store):
    assert raw_store.current_revision() is None
    raw_store.ensure_schema()
    tables = set(inspect(raw_store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert tables - set(Base.metadata.tables) == {"alembic_version"}
    assert raw_store.current_revision() == "0007"
    assert raw_store.head_revision() == "0007"


def test_ensure_schema_twice_is_a_noop(raw_store: Store, monkeypatch: pytest.MonkeyPatch):
    raw_store.ensure_schema()
    ids = make_items(raw_store, 3)

    def no_upgrade(self: Store) -> None:
        raise AssertionError("ensure_schema must not migrate a store that is at head")

    monkeypatch.setattr(Store, "upgrade", no_upgrade)
    raw_store.ensure_schema()
    assert raw_store.current_revision() == "0007"
    assert count(raw_store, Item) == 3
    # a second Store on the same database opens it without migrating either
    again = Store(raw_store.url)
    try:
        again.ensure_schema()
        assert make_items(again, 3) == ids
    finally:
        again.dispose()


def test_migration_matches_models(store: Store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_ensure_schema_refuses_database_with_foreign_tables(raw_store: Store):
    with raw_store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(50))"))
    with pytest.raises(StoreError, match="no carealign schema version"):
        raw_store.ensure_schema()
    # nothing was created beside the foreign table
    assert set(inspect(raw_store.engine).get_table_names()) == {"customers"}
    assert raw_store.current_revision() is None


def test_ensure_schema_refuses_older_revision_and_says_run_db_upgrade(raw_store: Store):
    with raw_store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0000')"))
    with pytest.raises(StoreError) as info:
        raw_store.ensure_schema()
    message = str(info.value)
    assert "carealign db upgrade" in message
    assert "0000" in message and "0007" in message
    # it did not migrate on its own
    assert raw_store.current_revision() == "0000"
    assert set(inspect(raw_store.engine).get_table_names()) == {"alembic_version"}


# -- 2. URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, scheme", [
    ("mysql://x/y", "mysql"),
    ("redis://localhost:6379/0", "redis"),
])
def test_normalise_url_rejects_unsupported_scheme(url: str, scheme: str):
    with pytest.raises(StoreError, match=f"unsupported database URL scheme '{scheme}'"):
        normalise_url(url)


def test_unsupported_scheme_error_hides_password():
    with pytest.raises(StoreError) as info:
        normalise_url("mysql://bob:hunter2@db.example/y")
    assert "mysql" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_normalise_url_takes_bare_path_as_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "my store.db"
    assert normalise_url(str(path)) == f"sqlite:///{path}"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert normalise_url("~/x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    # and a Store opened that way is a working SQLite store
    store = Store(str(path))
    try:
        assert store.dialect == "sqlite"
        store.ensure_schema()
        assert path.exists()
    finally:
        store.dispose()


def test_normalise_url_pins_psycopg_for_postgresql():
    assert normalise_url("postgresql://u:pw@h:5432/db") == "postgresql+psycopg://u:pw@h:5432/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///a/b.db") == "sqlite:///a/b.db"


def test_redact_url_hides_password():
    url = "postgresql+psycopg://alice:s3cr3t@db.example:5432/prod"
    red = redact_url(url)
    assert "s3cr3t" not in red
    assert "alice" in red and "db.example:5432/prod" in red
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "s3cr3t" not in Store("postgresql://alice:s3cr3t@127.0.0.1:5432/prod").safe_url


def test_unreachable_postgres_is_a_store_error_without_password():
    store = Store("postgresql://alice:s3cr3t@127.0.0.1:1/nothing")
    try:
        with pytest.raises(StoreError, match="cannot connect") as info:
            store.ensure_schema()
        assert "s3cr3t" not in str(info.value)
    finally:
        store.dispose()


@pytest.mark.parametrize("as_url", [True, False])
def test_sqlite_store_in_missing_folder_names_the_folder(tmp_path: Path, as_url: bool):
    folder = tmp_path / "does-not-exist"
    path = folder / "store.db"
    with pytest.raises(StoreError) as info:
        Store(f"sqlite:///{path}" if as_url else str(path))
    assert str(folder.resolve()) in str(info.value)
    assert not folder.exists()


def test_sqlite_uses_wal_and_enforces_foreign_keys(sqlite_store: Store):
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_foreign_keys_are_enforced(store: Store):
    with pytest.raises(IntegrityError):
        with store.session() as s:
            enqueue(s, "job", [987654])
    assert count(store, WorkItem) == 0


# -- 3. idempotency -----------------------------------------------------------------------------


def test_upsert_items_twice_returns_same_ids_and_adds_no_rows(store: Store):
    records = [{"payload": {"instruction": f"q{i}"}, "source": f"f.jsonl:{i}"} for i in range(10)]
    with store.session() as s:
        first = upsert_items(s, "ds", records)
    assert len(set(first)) == 10
    assert count(store, Item) == 10
    with store.session() as s:
        second = upsert_items(s, "ds", records)
    assert second == first
    assert count(store, Item) == 10
    # ids come back in input order, also for a reordered mix of old and new records
    with store.session() as s:
        mixed = upsert_items(s, "ds", [records[3], {"payload": {"instruction": "new"}}, records[0]])
    assert mixed[0] == first[3] and mixed[2] == first[0]
    assert mixed[1] not in first
    assert count(store, Item) == 11


def test_upsert_items_duplicate_payload_in_one_call_is_one_row(store: Store):
    with store.session() as s:
        ids = upsert_items(s, "ds", [
            {"payload": {"a": 1, "b": 2}}, {"payload": {"x": "y"}}, {"payload": {"b": 2, "a": 1}},
        ])
    assert ids[0] == ids[2]  # same content (key order does not matter) -> same item
    assert ids[0] != ids[1]
    assert count(store, Item) == 2


def test_upsert_items_is_scoped_by_dataset(store: Store):
    with store.session() as s:
        a = upsert_items(s, "ds-a", [{"payload": {"q": 1}}])
        b = upsert_items(s, "ds-b", [{"payload": {"q": 1}}])
    assert a != b
    assert count(store, Item) == 2


def _llm_call(s, run_id: str, item_id: int) -> int:
    return add_llm_call(
        s, request_hash="r" * 64, run_id=run_id, item_id=item_id, model="m",
        messages=[{"role": "user", "content": "hi"}],
    )


def test_add_candidate_twice_returns_same_id(store: Store):
    run_id = make_run(store)
    (item_id,) = make_items(store, 1)
    with store.session() as s:
        call_id = _llm_call(s, run_id, item_id)
    fields = dict(run_id=run_id, item_id=item_id, llm_call_id=call_id, model="m", text="Hello  World")
    with store.session() as s:
        first = add_candidate(s, choice_index=0, **fields)
    with store.session() as s:
        again = add_candidate(s, choice_index=0, **fields)
        other_choice = add_candidate(s, choice_index=1, **fields)
    assert again == first
    assert other_choice != first
    assert count(store, Candidate) == 2
    with store.session() as s:
        cand = s.get(Candidate, first)
        assert cand.text == "Hello  World"
        assert cand.text_hash == hashlib.sha256(b"hello world").hexdigest()


def test_add_pairs_same_pair_twice_stores_one_row(store: Store):
    run_id = make_run(store)
    (item_id,) = make_items(store, 1)
    p = pair(run_id, item_id, "four")
    with store.session() as s:
        assert add_pairs(s, [p]) == 1
    with store.session() as s:
        assert add_pairs(s, [p]) == 0
    assert count(store, PreferencePair) == 1
    # a duplicate inside one batch is stored once too, and an empty batch is fine
    with store.session() as s:
        assert add_pairs(s, [pair(run_id, item_id, "4"), pair(run_id, item_id, "4")]) == 1
        assert add_pairs(s, []) == 0
    assert count(store, PreferencePair) == 2


def test_pair_hash_ignores_whitespace_and_case(store: Store):
    prompt = [{"role": "user", "content": "hi"}]
    assert normalise_text("  Hello\n\tWORLD  ") == "hello world"
    assert pair_hash("dpo", prompt, "Hello  World", "No") == pair_hash("dpo", prompt, " hello world\n", "NO")
    assert pair_hash("dpo", prompt, "a", "b") != pair_hash("rm", prompt, "a", "b")
    assert pair_hash("dpo", prompt, "a", "b") != pair_hash("dpo", prompt, "b", "a")
    run_id = make_run(store)
    with store.session() as s:
        assert add_pairs(s, [pair(run_id, None, "The answer is 4.", "It is 5.")]) == 1
    with store.session() as s:
        assert add_pairs(s, [pair(run_id, None, "the  ANSWER is\n4.", "  it IS 5.")]) == 0
        assert add_pairs(s, [pair(run_id, None, "The answer is 4.", "It is 5.", kind="rm")]) == 1
    assert count(store, PreferencePair) == 2


def test_add_pairs_counts_only_its_own_rows_with_a_concurrent_writer(store: Store, db_url: str):
    run_id = make_run(store)
    other = Store(db_url)
    fired: list[bool] = []

    def other_worker_commits(conn, cursor, statement, parameters, context, executemany):
        # just before add_pairs writes, another worker commits a different pair
        if not fired and statement.lower().startswith("insert into preference_pairs"):
            fired.append(True)
            with other.session() as s2:
                add_pairs(s2, [pair(run_id, None, "other worker's pair")])

    event.listen(store.engine, "before_cursor_execute", other_worker_commits)
    try:
        with store.session() as s:
            new = add_pairs(s, [pair(run_id, None, "my pair")])
    finally:
        event.remove(store.engine, "before_cursor_execute", other_worker_commits)
        other.dispose()
    assert fired
    assert count(store, PreferencePair) == 2
    assert new == 1


# -- 4. transactions ----------------------------------------------------------------------------


def test_session_rolls_back_everything_on_exception(store: Store):
    make_items(store, 2, tag="kept")
    before = count(store, Item)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with store.session() as s:
            upsert_items(s, "ds", [{"payload": {"n": i}} for i in range(5)])
            create_run(s, "test", {})
            s.flush()
            assert s.scalar(select(func.count()).select_from(Item)) == before + 5
            raise Boom
    assert count(store, Item) == before
    assert count(store, Run) == 0


def test_pair_batch_with_not_null_violation_stores_nothing(store: Store):
    run_id = make_run(store)
    (item_id,) = make_items(store, 1)
    good = pair(run_id, item_id, "fine", margin=0.8)
    bad = pair(run_id, item_id, "broken", margin=None)
    with pytest.raises(IntegrityError):
        with store.session() as s:
            add_pairs(s, [good, bad])
    assert count(store, PreferencePair) == 0
    # the store is still usable afterwards and the good pair is new
    with store.session() as s:
        assert add_pairs(s, [good]) == 1


# -- 5. work queue ------------------------------------------------------------------------------


def test_claim_gives_distinct_batches_to_two_workers(store: Store):
    items = make_items(store, 20)
    with store.session() as s:
        enqueue(s, "job", items)
    with store.session() as s:
        a = claim(s, "job", "w1", limit=5)
    with store.session() as s:
        b = claim(s, "job", "w2", limit=5)
    assert len(a) == 5 and len(b) == 5
    a_items, b_items = {i for _, i in a}, {i for _, i in b}
    assert len(a_items) == 5 and len(b_items) == 5
    assert not a_items & b_items
    assert (a_items | b_items) <= set(items)
    rows = work_rows(store, "job")
    for work_id, item_id in a:
        assert rows[work_id].item_id == item_id
        assert rows[work_id].status == "claimed" and rows[work_id].claimed_by == "w1"
        assert rows[work_id].attempts == 1 and rows[work_id].claimed_at is not None
    assert all(rows[w].claimed_by == "w2" for w, _ in b)
    with store.session() as s:
        assert progress(s, "job") == {"pending": 10, "claimed": 10, "done": 0, "partial": 0, "failed": 0}
        # another job's queue is separate
        assert claim(s, "other-job", "w1", limit=5) == []
        assert progress(s, "other-job") == {"pending": 0, "claimed": 0, "done": 0, "partial": 0, "failed": 0}


def test_complete_marks_done_and_failed_and_progress_counts(store: Store):
    items = make_items(store, 6)
    with store.session() as s:
        enqueue(s, "job", items)
        claimed = claim(s, "job", "w1", limit=4)
    (w_ok1, _), (w_ok2, _), (w_bad, _), (w_left, _) = claimed
    with store.session() as s:
        complete(s, w_ok1, "w1")
        complete(s, w_ok2, "w1")
        complete(s, w_bad, "w1", error="judge timed out")
    rows = work_rows(store, "job")
    assert rows[w_ok1].status == "done" and rows[w_ok1].error is None
    assert rows[w_bad].status == "failed" and rows[w_bad].error == "judge timed out"
    assert rows[w_left].status == "claimed"
    with store.session() as s:
        assert progress(s, "job") == {"pending": 2, "claimed": 1, "done": 2, "partial": 0, "failed": 1}


def test_retry_failed_and_requeue_done_put_items_back(store: Store):
    items = make_items(store, 5)
    with store.session() as s:
        enqueue(s, "job", items)
        claimed = claim(s, "job", "w1", limit=5)
        for n, (work_id, _) in enumerate(claimed):
            complete(s, work_id, "w1", error="bad" if n < 2 else None)
    with store.session() as s:
        assert progress(s, "job") == {"pending": 0, "claimed": 0, "done": 3, "partial": 0, "failed": 2}
        assert retry_failed(s, "job") == 2
        assert progress(s, "job") == {"pending": 2, "claimed": 0, "done": 3, "partial": 0, "failed": 0}
    rows = work_rows(store, "job")
    assert [rows[w].error for w, _ in claimed[:2]] == [None, None]
    with store.session() as s:
        again = claim(s, "job", "w2", limit=10)
    assert {w for w, _ in again} == {w for w, _ in claimed[:2]}
    assert all(work_rows(store, "job")[w].attempts == 2 for w, _ in again)
    with store.session() as s:
        for work_id, _ in again:
            complete(s, work_id, "w2")
        assert requeue_done(s, "job") == 5
        assert progress(s, "job") == {"pending": 5, "claimed": 0, "done": 0, "partial": 0, "failed": 0}
        assert retry_failed(s, "job") == 0
        assert len(claim(s, "job", "w3", limit=10)) == 5


def test_enqueue_again_does_not_duplicate_or_reset(store: Store):
    items = make_items(store, 20)
    with store.session() as s:
        enqueue(s, "job", items)
        (work_id, _), *_ = claim(s, "job", "w1", limit=1)
        complete(s, work_id, "w1")
    more = make_items(store, 3, tag="extra")
    with store.session() as s:
        enqueue(s, "job", items + more + items[:2])
        enqueue(s, "job", items)
    rows = work_rows(store, "job")
    assert len(rows) == 23
    assert sorted(r.item_id for r in rows.values()) == sorted(items + more)
    assert rows[work_id].status == "done"  # already-queued items keep their state
    with store.session() as s:
        assert progress(s, "job") == {"pending": 22, "claimed": 0, "done": 1, "partial": 0, "failed": 0}
        enqueue(s, "job-2", items[:4])  # the same items in another job are separate work
        assert progress(s, "job-2")["pending"] == 4


def test_claim_after_expired_lease_is_taken_over(store: Store):
    items = make_items(store, 4)
    with store.session() as s:
        enqueue(s, "job", items)
        first = claim(s, "job", "w1", limit=4)
    assert len(first) == 4
    with store.session() as s:
        assert claim(s, "job", "w2", limit=4) == []  # a live lease is respected
    # one claim is an hour old: reclaimable under the default 10-minute lease
    stale_id = first[0][0]
    with store.session() as s:
        s.execute(update(WorkItem).where(WorkItem.id == stale_id)
                  .values(claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    with store.session() as s:
        taken = claim(s, "job", "w2", limit=4)
    assert taken == [first[0]]
    row = work_rows(store, "job")[stale_id]
    assert row.claimed_by == "w2" and row.status == "claimed" and row.attempts == 2
    # the worker that lost the claim cannot complete it; the new owner can
    with store.session() as s:
        assert complete(s, stale_id, "w1") is False  # the runner then counts the item as lost, not done
    assert work_rows(store, "job")[stale_id].status == "claimed"
    with store.session() as s:
        assert complete(s, stale_id, "w2") is True
    assert work_rows(store, "job")[stale_id].status == "done"
    # with a zero lease every claim is stale at once
    time.sleep(0.01)
    with store.session() as s:
        rest = claim(s, "job", "w3", limit=10, lease_seconds=0)
    assert sorted(rest) == sorted(first[1:])
    assert {work_rows(store, "job")[w].claimed_by for w, _ in rest} == {"w3"}
    with store.session() as s:
        assert progress(s, "job") == {"pending": 0, "claimed": 3, "done": 1, "partial": 0, "failed": 0}


def test_complete_by_non_owner_does_nothing(store: Store):
    items = make_items(store, 2)
    with store.session() as s:
        enqueue(s, "job", items)
        (work_id, _), (_, _) = claim(s, "job", "owner", limit=2)
    with store.session() as s:
        complete(s, work_id, "intruder")
        complete(s, work_id, "intruder", error="sabotage")
    row = work_rows(store, "job")[work_id]
    assert row.status == "claimed" and row.claimed_by == "owner" and row.error is None
    with store.session() as s:
        assert progress(s, "job") == {"pending": 0, "claimed": 2, "done": 0, "partial": 0, "failed": 0}


# -- 6. concurrency: several worker processes ---------------------------------------------------


def queue_worker(url: str, job_key: str, worker: str, out_path: str, start: Any) -> None:
    """One worker process: claim 3 at a time and complete them until the job is empty."""
    store = Store(url)
    processed: list[int] = []
    try:
        start.wait(timeout=60)
        while True:
            with store.session() as s:
                batch = claim(s, job_key, worker, limit=3)
            if not batch:
                break
            time.sleep(0.002)  # a little "work", so the workers interleave
            with store.session() as s:
                for work_id, _ in batch:
                    complete(s, work_id, worker)
            processed.extend(item_id for _, item_id in batch)
    finally:
        store.dispose()
        Path(out_path).write_text(json.dumps(processed))


def test_worker_processes_share_a_job_without_overlap(store: Store, tmp_path: Path):
    items = make_items(store, 200)
    with store.session() as s:
        enqueue(s, "job", items)
    store.dispose()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    outs = [tmp_path / f"worker-{n}.json" for n in range(4)]
    procs = [
        ctx.Process(target=queue_worker, args=(store.url, "job", f"w{n}", str(outs[n]), start))
        for n in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    per_worker = [json.loads(o.read_text()) for o in outs]
    processed = [i for done in per_worker for i in done]
    assert len(processed) == len(set(processed)), "an item was processed by two workers"
    assert sorted(processed) == sorted(items)
    rows = work_rows(store, "job")
    assert len(rows) == 200
    assert {r.status for r in rows.values()} == {"done"}
    assert {r.attempts for r in rows.values()} == {1}
    by_item = {r.item_id: r.claimed_by for r in rows.values()}
    for n, done in enumerate(per_worker):
        assert all(by_item[i] == f"w{n}" for i in done)


# -- 7. export ----------------------------------------------------------------------------------

P1 = [{"role": "user", "content": "Q1"}]
P2 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q2"}]
P3 = [{"role": "user", "content": "Q3 — ünïcødé"}]


@pytest.fixture
def exported(store: Store) -> dict[str, Any]:
    """Five pairs over two runs, two kinds, three distinct prompts."""
    run_a = make_run(store, "generate", {"a": 1})
    run_b = make_run(store, "generate", {"b": 2})
    i1, i2, i3 = make_items(store, 3)
    cols = ("kind", "run_id", "item_id", "prompt", "chosen", "rejected", "margin", "language")
    specs = [dict(zip(cols, row, strict=True)) for row in [
        ("dpo", run_a, i1, P1, "A1", "R1", 0.9, "en"),
        ("dpo", run_a, i2, P2, "A2", "R2", 0.2, "fr"),
        ("rm", run_b, i1, P1, "A3", "R3", 0.5, "en"),
        ("rm", run_b, i3, P3, "A4", "R4", 1.5, None),
        ("dpo", run_b, None, P2, "A5", "R5", 0.7, "en"),
    ]]
    with store.session() as s:
        assert add_pairs(s, specs) == 5
    with store.session() as s:
        ids = {c: i for c, i in s.execute(select(PreferencePair.chosen, PreferencePair.id))}
    return {"store": store, "specs": specs, "run_a": run_a, "run_b": run_b, "ids": ids}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty folder for export output (the SQLite store lives beside it in tmp_path)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_export_jsonl_has_trl_conversational_shape(exported: dict[str, Any], out_dir: Path):
    out = out_dir / "pairs.jsonl"
    n = export_pairs(exported["store"], out, "jsonl")
    rows = read_jsonl(out)
    assert n == len(rows) == 5
    assert rows == [
        {
            "prompt": sp["prompt"],
            "chosen": [{"role": "assistant", "content": sp["chosen"]}],
            "rejected": [{"role": "assistant", "content": sp["rejected"]}],
        }
        for sp in exported["specs"]
    ]
    for row in rows:
        assert set(row) == {"prompt", "chosen", "rejected"}
        assert all(set(m) == {"role", "content"} for m in row["prompt"])
    assert "ünïcødé" in out.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert no_partials(out_dir)


def test_export_with_metadata_adds_traceability_fields(exported: dict[str, Any], out_dir: Path):
    out = out_dir / "pairs.jsonl"
    export_pairs(exported["store"], out, "jsonl", with_metadata=True)
    rows = read_jsonl(out)
    assert len(rows) == 5
    for row, sp in zip(rows, exported["specs"], strict=True):
        assert set(row) == {"prompt", "chosen", "rejected", "pair_id", "kind", "margin", "run_id", "item_id",
                            "language"}
        assert row["pair_id"] == exported["ids"][sp["chosen"]]
        assert (row["kind"], row["run_id"], row["item_id"], row["margin"], row["language"]) == (
            sp["kind"], sp["run_id"], sp["item_id"], sp["margin"], sp["language"]
        )


def test_export_prompt_shape_has_one_row_per_distinct_prompt(exported: dict[str, Any], out_dir: Path):
    out = out_dir / "prompts.jsonl"
    n = export_pairs(exported["store"], out, "jsonl", shape="prompt")
    rows = read_jsonl(out)
    assert n == 3
    assert rows == [{"prompt": P1}, {"prompt": P2}, {"prompt": P3}]
    out2 = out_dir / "prompts-dpo.jsonl"
    assert export_pairs(exported["store"], out2, "jsonl", shape="prompt", flt=PairFilter(kind="dpo")) == 2
    assert read_jsonl(out2) == [{"prompt": P1}, {"prompt": P2}]


FILTER_CASES = [
    (PairFilter(kind="dpo"), ["A1", "A2", "A5"]),
    (PairFilter(kind="rm"), ["A3", "A4"]),
    (PairFilter(min_margin=0.7), ["A1", "A4", "A5"]),
    (PairFilter(min_margin=0.0), ["A1", "A2", "A3", "A4", "A5"]),
    (PairFilter(kind="rm", min_margin=1.0), ["A4"]),
    (PairFilter(language="fr"), ["A2"]),
    (PairFilter(kind="nope"), []),
]


def test_export_filters_by_kind_margin_and_language(exported: dict[str, Any], out_dir: Path):
    out = out_dir / "pairs.jsonl"
    for flt, chosen in FILTER_CASES:
        if not chosen:  # an empty selection is refused (see test_export_empty_selection)
            continue
        n = export_pairs(exported["store"], out, "jsonl", flt=flt)
        got = [r["chosen"][0]["content"] for r in read_jsonl(out)]
        assert (flt, got) == (flt, chosen)
        assert n == len(chosen)


def test_export_filter_by_run(exported: dict[str, Any], out_dir: Path):
    out = out_dir / "pairs.jsonl"
    assert export_pairs(exported["store"], out, "jsonl", flt=PairFilter(run_id=exported["run_b"])) == 3
    assert [r["chosen"][0]["content"] for r in read_jsonl(out)] == ["A3", "A4", "A5"]
    flt = PairFilter(run_id=exported["run_a"], kind="dpo")
    assert export_pairs(exported["store"], out, "jsonl", flt=flt) == 2
    assert [r["chosen"][0]["content"] for r in read_jsonl(out)] == ["A1", "A2"]


def test_export_parquet_has_same_rows_as_jsonl(exported: dict[str, Any], out_dir: Path):
    import pyarrow.parquet as pq

    for with_metadata in (False, True):
        jsonl, parquet = out_dir / f"pairs-{with_metadata}.jsonl", out_dir / f"pairs-{with_metadata}.parquet"
        export_pairs(exported["store"], jsonl, "jsonl", with_metadata=with_metadata)
        n = export_pairs(exported["store"], parquet, "parquet", with_metadata=with_metadata)
        assert n == 5
        assert pq.read_table(parquet).to_pylist() == read_jsonl(jsonl)
    assert no_partials(out_dir)


def test_export_hf_loads_with_datasets(exported: dict[str, Any], out_dir: Path):
    from datasets import load_from_disk

    jsonl, folder = out_dir / "pairs.jsonl", out_dir / "hf"
    export_pairs(exported["store"], jsonl, "jsonl")
    assert export_pairs(exported["store"], folder, "hf") == 5
    ds = load_from_disk(str(folder))
    assert ds.num_rows == 5
    assert set(ds.column_names) == {"prompt", "chosen", "rejected"}
    assert ds.to_list() == read_jsonl(jsonl)
    # exporting again over the previous dataset folder replaces it
    assert export_pairs(exported["store"], folder, "hf", flt=PairFilter(kind="rm")) == 2
    assert load_from_disk(str(folder)).num_rows == 2
    assert no_partials(out_dir)


def test_export_empty_selection(exported: dict[str, Any], out_dir: Path):
    """Nothing selected is an error, not an empty file that trl cannot load; nothing is written."""
    flt = PairFilter(kind="nope")
    for fmt in ("jsonl", "parquet", "hf"):
        with pytest.raises(StoreError, match="no pairs match the selection \\(kind=nope\\)"):
            export_pairs(exported["store"], out_dir / f"e.{fmt}", fmt, flt=flt)
    assert list(out_dir.iterdir()) == []


def test_export_unknown_format_or_shape_is_a_store_error(exported: dict[str, Any], out_dir: Path):
    with pytest.raises(StoreError, match="unknown export format 'csv'"):
        export_pairs(exported["store"], out_dir / "pairs.csv", "csv")
    with pytest.raises(StoreError, match="unknown export shape 'sft'"):
        export_pairs(exported["store"], out_dir / "pairs.jsonl", "jsonl", shape="sft")
    assert list(out_dir.iterdir()) == []


def test_export_to_missing_folder_is_a_store_error(exported: dict[str, Any], out_dir: Path):
    out = out_dir / "missing" / "pairs.out"
    for fmt in ("jsonl", "parquet", "hf"):
        with pytest.raises(StoreError, match="does not exist") as info:
            export_pairs(exported["store"], out, fmt)
        assert str(out.parent) in str(info.value)
        assert list(out_dir.iterdir()) == []


def test_failed_export_leaves_no_partial_and_keeps_previous_file(
    exported: dict[str, Any], out_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    import store.export as export_module

    out = out_dir / "pairs.jsonl"
    export_pairs(exported["store"], out, "jsonl")
    previous = out.read_bytes()
    calls = {"n": 0}

    def failing(real):
        def convert(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("disk on fire")
            return real(*args, **kwargs)
        return convert

    monkeypatch.setattr(export_module, "to_record", failing(export_module.to_record))
    monkeypatch.setattr(export_module, "to_jsonl_line", failing(export_module.to_jsonl_line))
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_pairs(exported["store"], out, "jsonl", flt=PairFilter(kind="dpo"))
    assert out.read_bytes() == previous
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_pairs(exported["store"], out_dir / "new.parquet", "parquet")
    assert not (out_dir / "new.parquet").exists()
    assert sorted(p.name for p in out_dir.iterdir()) == ["pairs.jsonl"]


def test_export_file_onto_existing_folder_does_not_delete_it(exported: dict[str, Any], out_dir: Path):
    survived = {}
    for fmt in ("jsonl", "parquet"):
        out = out_dir / f"data-{fmt}"
        out.mkdir()
        (out / "keep.txt").write_text("user's own file")
        try:
            export_pairs(exported["store"], out, fmt)
        except StoreError:
            pass  # refusing is fine; destroying the folder is not
        survived[fmt] = (out / "keep.txt").exists()
    assert survived == {"jsonl": True, "parquet": True}


# -- 8. runs ------------------------------------------------------------------------------------


def test_code_version_is_a_non_empty_string():
    v = code_version()
    assert isinstance(v, str) and v.strip()
    assert v == v.strip()
    assert v.startswith(("git:", "carealign==")) or v == "unknown"


def test_create_run_records_config_hash_and_code_version(store: Store):
    config = {"model": "m", "n": 3, "nested": {"b": [1, 2], "a": "é"}}
    with store.session() as s:
        run_id = create_run(s, "generate", config, job_key="job-1")
    with store.session() as s:
        run = s.get(Run, run_id)
    assert isinstance(run_id, str) and len(run_id) == 32
    assert run.kind == "generate" and run.job_key == "job-1"
    assert run.status == "running"
    assert run.config == config
    canonical = json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert run.config_hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert run.code_version == code_version()
    assert run.started_at is not None and run.finished_at is None
    assert run.stats == {} and run.error is None
    # the hash does not depend on key order, and differs for a different config
    with store.session() as s:
        same = create_run(s, "generate", dict(reversed(list(config.items()))))
        other = create_run(s, "generate", {**config, "n": 4})
    with store.session() as s:
        assert s.get(Run, same).config_hash == run.config_hash
        assert s.get(Run, other).config_hash != run.config_hash


def test_finish_run_sets_status_finished_at_and_stats(store: Store):
    run_id = make_run(store)
    keep = make_run(store)
    with store.session() as s:
        finish_run(s, run_id, "failed", {"pairs": 3, "items": {"done": 2}}, error="boom")
    with store.session() as s:
        run, untouched = s.get(Run, run_id), s.get(Run, keep)
    assert run.status == "failed"
    assert run.finished_at is not None
    assert run.stats == {"pairs": 3, "items": {"done": 2}}
    assert run.error == "boom"
    assert run.config == {"a": 1}
    assert untouched.status == "running" and untouched.finished_at is None
    with store.session() as s:
        finish_run(s, keep, "done", {"pairs": 0})
    with store.session() as s:
        done = s.get(Run, keep)
    assert (done.status, done.stats, done.error) == ("done", {"pairs": 0}, None)
    assert done.finished_at is not None


def test_upgrade_from_0001_keeps_the_data_and_adds_the_new_tables(db_url: str):
    """A store created by the first release migrates in place: rows stay, the new table appears."""
    from alembic import command

    from store.db import alembic_config

    old = Store(db_url)
    command.upgrade(alembic_config(old.engine), "0001")
    with old.session() as s:
        run_id = create_run(s, "old", {"v": 1})
        upsert_items(s, "ds", [{"payload": {"prompt": "kept?"}}])
    with pytest.raises(StoreError, match="carealign db upgrade"):
        old.ensure_schema()  # a command never migrates by itself
    old.upgrade()
    assert old.current_revision() == "0007"
    new_tables = {"candidate_scores", "rubrics", "rubric_reviews", "check_answers"}
    assert new_tables <= set(inspect(old.engine).get_table_names())
    with old.session() as s:
        assert s.get(Run, run_id).config == {"v": 1} and count(old, Item) == 1
    old.dispose()


def test_upgrade_from_0004_keeps_the_data_and_adds_training_pairs_and_lineage_indexes(db_url: str):
    """A store at 0004 (before training runs kept their pairs) migrates in place, and back."""
    from alembic import command

    from store.db import alembic_config
    from store.lineage import record_training_pairs, trace_pair, training_pair_ids

    old = Store(db_url)
    command.upgrade(alembic_config(old.engine), "0004")
    run_id = make_run(old, "generate", {"v": 4})
    with old.session() as s:
        (item,) = upsert_items(s, "ds", [{"payload": {"prompt": "kept?"}, "external_id": "q-1", "source": "q.jsonl:1"}])
        add_pairs(s, [pair(run_id, item, "kept answer")])
    with old.session() as s:
        pair_id = s.scalar(select(PreferencePair.id))
    old.upgrade()
    assert old.current_revision() == "0007"
    inspector = inspect(old.engine)
    assert "training_pairs" in inspector.get_table_names()
    indexes = {t: {i["name"] for i in inspector.get_indexes(t)}
               for t in ("items", "preference_pairs", "training_pairs")}
    assert "ix_items_external_id" in indexes["items"] and "ix_preference_pairs_run_id" in indexes["preference_pairs"]
    assert "ix_training_pairs_pair_id" in indexes["training_pairs"]
    with old.session() as s:
        assert s.get(Run, run_id).config == {"v": 4}
        assert s.get(PreferencePair, pair_id).chosen == "kept answer" and s.get(Item, item).external_id == "q-1"
    train_run = make_run(old, "train-rm")
    with old.session() as s:
        record_training_pairs(s, train_run, [pair_id], [])
    with old.session() as s:
        assert training_pair_ids(s, train_run) == {"train": [pair_id], "eval": []}
    assert trace_pair(old, pair_id)["pair"]["trained_by"] == [{"run_id": train_run, "split": "train"}]
    command.downgrade(alembic_config(old.engine), "0004")
    assert "training_pairs" not in inspect(old.engine).get_table_names()
    assert count(old, PreferencePair) == 1 and count(old, Run) == 2
    old.dispose()


def _init_store(url: str) -> str:
    s = Store(url)
    s.ensure_schema()
    rev = s.current_revision()
    s.dispose()
    return rev


def test_workers_starting_together_on_an_empty_postgresql_database_all_succeed(pg_url: str):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        assert pool.map(_init_store, [pg_url] * 4) == ["0007"] * 4
