"""The command line: bad input gives one clear line, a non-zero exit and an unchanged store;
db/runs commands work on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carealign.cli import app
from store import Store
from store.records import table_counts
from tests.test_generate import scripted

runner = CliRunner(env={"COLUMNS": "200"})


def cli(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def seeded_db(tmp_path: Path, fake_server) -> tuple[str, dict[str, int]]:
    """A store with one finished generate run in it, and its table counts."""
    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    src = tmp_path / "seed.jsonl"
    src.write_text(json.dumps({"prompt": "Is 120/80 a normal blood pressure?"}) + "\n")
    db = str(tmp_path / "seeded.db")
    res = cli("--db", db, "--base-url", fake_server.base_url, "generate", str(src), "--n", "3")
    assert res.exit_code == 0, res.output
    s = Store(db)
    with s.session() as sess:
        return db, table_counts(sess)


BAD_INPUTS = {
    "malformed_json": (b'{"prompt": "ok"}\n{"prompt": "broken\n', "bad.jsonl:2: invalid JSON"),
    "missing_field": (b'{"prompt": "ok"}\n{"id": 7, "lang": "en"}\n',
                      "bad.jsonl:2: give exactly one of 'prompt' or 'messages'"),
    "mistyped_field": (b'{"prompt": 5}\n', "bad.jsonl:1: field 'prompt': Input should be a valid string"),
    "unknown_field": (b'{"prompt": "x", "promt": "y"}\n', "bad.jsonl:1: field 'promt': Extra inputs are not permitted"),
    "bad_message_role": (b'{"messages": [{"role": "doctor", "content": "x"}]}\n',
                         "bad.jsonl:1: field 'messages.0.role'"),
    "not_an_object": (b'{"prompt": "a"}\n\n["a list"]\n', "bad.jsonl:3: expected a JSON object, got list"),
    "empty_file": (b"", "bad.jsonl: no records (the file is empty)"),
    "blank_lines_only": (b"\n\n  \n", "bad.jsonl: no records (3 blank rows)"),
    "non_utf8": ('{"prompt": "caf\u00e9"}\n'.encode("latin-1"), "bad.jsonl:1: not valid UTF-8"),
    "nul_character": (b'{"prompt": "ok"}\n{"prompt": "a\\u0000b"}\n', "bad.jsonl:2: field 'prompt': contains a NUL"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_leaves_the_store_unchanged(case, tmp_path, seeded_db, fake_server):
    db, before = seeded_db
    content, expected = BAD_INPUTS[case]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    n_requests = len(fake_server.requests)
    res = cli("--db", db, "--base-url", fake_server.base_url, "generate", str(bad))
    assert res.exit_code == 2
    assert expected in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") <= 1 and "Traceback" not in res.stderr
    with Store(db).session() as s:
        assert table_counts(s) == before
    assert len(fake_server.requests) == n_requests


def test_missing_input_file(tmp_path, fake_server):
    missing = str(tmp_path / "nope.jsonl")
    res = cli("--db", str(tmp_path / "x.db"), "--base-url", fake_server.base_url, "generate", missing)
    assert res.exit_code == 2 and "nope.jsonl: file does not exist" in res.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("url,expected", [
    ("mysql://root@127.0.0.1/test", "unsupported database URL scheme 'mysql'"),
    ("redis://127.0.0.1:6379/0", "unsupported database URL scheme 'redis'"),
])
def test_unknown_db_url_scheme(url, expected, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "x"}\n')
    res = cli("--db", url, "--base-url", "http://127.0.0.1:9/v1", "generate", str(src))
    assert res.exit_code == 2 and expected in res.stderr


def test_unreachable_model_server_writes_nothing(tmp_path, seeded_db):
    db, before = seeded_db
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "What is hypertension?"}\n')
    res = cli("--db", db, "--base-url", "http://127.0.0.1:9/v1", "generate", str(src))
    assert res.exit_code == 2
    assert "cannot reach the model server at http://127.0.0.1:9/v1" in res.stderr
    with Store(db).session() as s:
        assert table_counts(s) == before
    fresh = tmp_path / "fresh.db"
    res = cli("--db", str(fresh), "--base-url", "http://127.0.0.1:9/v1", "generate", str(src))
    assert res.exit_code == 2 and not fresh.exists()


def test_bad_config_file_names_file_and_field(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("concurrency = 0\n")
    res = cli("--config", str(cfg), "--db", str(tmp_path / "x.db"), "db", "init")
    assert res.exit_code == 2 and "setting 'concurrency'" in res.stderr and str(cfg) in res.stderr
    cfg.write_text("concurrency = \n")
    res = cli("--config", str(cfg), "db", "init")
    assert res.exit_code == 2 and "invalid TOML" in res.stderr and "line 1" in res.stderr


def test_debug_shows_the_traceback(tmp_path):
    res = cli("--debug", "--db", "mysql://x/y", "db", "init")
    assert res.exit_code != 0 and res.exception is not None


def test_db_init_stats_export_and_runs_on_both_databases(db_url, tmp_path, fake_server):
    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    assert cli("--db", db_url, "db", "init").exit_code == 0
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"prompt": f"Question {i} on asthma?"}) for i in range(3)) + "\n")
    res = cli("--db", db_url, "--base-url", fake_server.base_url, "generate", str(src), "--n", "3")
    assert res.exit_code == 0, res.output
    assert re.search(r"new pairs\s*│\s*3\s*│", res.stdout), res.stdout
    stats = cli("--db", db_url, "db", "stats")
    assert stats.exit_code == 0 and "preference_pairs" in stats.stdout
    out = tmp_path / "pairs.jsonl"
    res = cli("--db", db_url, "db", "export", "--out", str(out))
    assert res.exit_code == 0 and "wrote 3 rows" in res.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {"prompt", "chosen", "rejected"}
    runs = cli("--db", db_url, "runs", "list")
    assert runs.exit_code == 0 and "generate" in runs.stdout and "completed" in runs.stdout
    run_id = Store(db_url).engine.connect().exec_driver_sql("select id from runs").scalar()
    show = cli("--db", db_url, "runs", "show", run_id)
    assert show.exit_code == 0 and "completed" in show.stdout and "fake-model" not in show.stdout  # config on ask
    show = cli("--db", db_url, "runs", "show", run_id, "--config")
    assert show.exit_code == 0 and "config" in show.stdout and "fake-model" in show.stdout
    missing = cli("--db", db_url, "runs", "show", "nope")
    assert missing.exit_code == 2 and "no run 'nope'" in missing.stderr


def test_db_stats_on_an_uninitialised_database(tmp_path):
    for command in (["db", "stats"], ["runs", "list"], ["db", "export", "--out", str(tmp_path / "x.jsonl")]):
        res = cli("--db", str(tmp_path / "empty.db"), *command)
        assert res.exit_code == 2 and "carealign db init" in res.stderr
    assert not (tmp_path / "empty.db").exists()  # reading never creates a store


def test_db_upgrade_refuses_a_foreign_database(tmp_path):
    import sqlite3

    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("create table items (x int)")
    con.commit()
    con.close()
    res = cli("--db", str(db), "db", "upgrade")
    assert res.exit_code == 2 and "has tables but no carealign schema" in res.stderr
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("select name from sqlite_master where type='table'")] == ["items"]
    con.close()


def test_credentials_in_urls_never_reach_the_store_or_the_terminal(pg_url, tmp_path, fake_server):
    """A password in --db and a key in --base-url are used, but stored and shown without them."""
    from sqlalchemy.engine import make_url

    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    db = make_url(pg_url).set(password="hunter2pw").render_as_string(hide_password=False)  # trust auth
    base = fake_server.base_url.replace("http://", "http://user:sk-SECRET-KEY@")
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Is it safe to exercise with a cold?"}\n')
    res = cli("--db", db, "--base-url", base, "generate", str(src), "--n", "2")
    assert res.exit_code == 0, res.output
    shown = cli("--db", db, "runs", "show", Store(db).engine.connect().exec_driver_sql("select id from runs").scalar(),
                "--config")
    assert shown.exit_code == 0
    with Store(db).engine.connect() as conn:
        dump = " ".join(str(row) for table in ("runs", "llm_calls", "items", "preference_pairs")
                        for row in conn.exec_driver_sql(f"select * from {table}"))
    for secret in ("hunter2pw", "sk-SECRET-KEY"):
        assert secret not in dump and secret not in shown.stdout and secret not in res.output


def test_same_model_judging_warns(tmp_path, fake_server):
    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Is aspirin safe for children?"}\n')
    with pytest.warns(UserWarning, match="grades its own answers"):
        res = cli("--db", str(tmp_path / "w.db"), "--base-url", fake_server.base_url, "generate", str(src), "--n", "2")
    assert res.exit_code == 0


def test_export_refuses_to_clobber_folders_and_uninitialised_stores(tmp_path, seeded_db):
    db, _ = seeded_db
    res = cli("--db", str(tmp_path / "empty.db"), "db", "export", "--out", str(tmp_path / "x.jsonl"))
    assert res.exit_code == 2 and "carealign db init" in res.stderr
    folder = tmp_path / "mydata"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    for fmt in ("jsonl", "parquet", "hf"):
        res = cli("--db", db, "db", "export", "--out", str(folder), "--format", fmt)
        assert res.exit_code == 2, (fmt, res.output)
    assert (folder / "notes.txt").read_text() == "keep me"
    hf = tmp_path / "hf"
    assert cli("--db", db, "db", "export", "--out", str(hf), "--format", "hf").exit_code == 0
    assert cli("--db", db, "db", "export", "--out", str(hf), "--format", "hf").exit_code == 0  # replaces own export
    none = cli("--db", db, "db", "export", "--out", str(tmp_path / "none.jsonl"), "--kind", "esc_turn")
    assert none.exit_code == 2 and "no pairs match the selection (kind=esc_turn)" in none.stderr
    assert not (tmp_path / "none.jsonl").exists()


def test_no_cache_calls_the_model_again_and_still_stores_no_duplicate_pairs(tmp_path, fake_server):
    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Can adults take paracetamol with ibuprofen?"}\n')
    db = str(tmp_path / "nc.db")
    base = ["--db", db, "--base-url", fake_server.base_url, "generate", str(src), "--n", "3"]
    assert cli(*base).exit_code == 0
    first = len(fake_server.requests)
    assert cli(*base).exit_code == 0 and len(fake_server.requests) == first  # finished: nothing to do
    res = cli(*base, "--no-cache")
    assert res.exit_code == 0 and len(fake_server.requests) == 2 * first  # every call made again
    with Store(db).session() as s:
        counts = table_counts(s)
    assert counts["preference_pairs"] == 1 and counts["llm_calls"] == 2 * first


def test_db_upgrade_creates_then_keeps_the_schema(db_url):
    from alembic.script import ScriptDirectory

    from store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config(Store(db_url).engine)).get_current_head()
    res = cli("--db", db_url, "db", "upgrade")
    assert res.exit_code == 0 and f"(empty) -> {head}" in res.stdout
    res = cli("--db", db_url, "db", "upgrade")
    assert res.exit_code == 0 and f"{head} -> {head}" in res.stdout
    stats = cli("--db", db_url, "db", "stats")
    assert stats.exit_code == 0 and "llm_calls" in stats.stdout


async def test_open_engines_gives_every_judge_model_on_the_judges_server(fake_server, tmp_path):
    """A panel of judges (factbench filters, a second grader) is any number of models."""
    from carealign.engines import open_engines
    from carealign.settings import Settings

    settings = Settings(db=f"sqlite:///{tmp_path / 'e.db'}", base_url=fake_server.base_url, model="gen",
                        judge_model="judge-a")
    async with open_engines(settings, None, more_judge_models=["judge-b", "judge-c"]) as engines:
        assert [j.model for j in engines.judges] == ["judge-a", "judge-b", "judge-c"]
        assert engines.second_judge.model == "judge-b"
        assert all(j.backend.base_url == fake_server.base_url for j in engines.judges)
