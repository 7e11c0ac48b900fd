"""The review web app without a browser: agreement figures, login and CSRF on every route, accounts,
stale forms, rubric edit validation, pair flags in exports and lineage, and `carealign review`."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from benchmarks.agreement import agreement, cohen_kappa, fleiss_kappa, percent_agreement
from carealign.cli import app as cli_app
from carealign.web.app import create_app
from carealign.web.configuration import ReviewConfig
from carealign.web.progress import review_report
from store import Store
from store import rubrics as rubric_store
from store.export import PairFilter, export_pairs
from store.lineage import trace_pair
from store.models import PairFlag, ReviewSlot, ReviewUser, RubricRecord, RubricReview
from tests.review_seed import accounts, seed_drafts, seed_pairs

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


# -- agreement figures, by hand --------------------------------------------------------------------
def test_agreement_figures_match_hand_computation():
    a = ["ok", "ok", "ok", "wrong"]
    b = ["ok", "ok", "wrong", "wrong"]
    # p_o = 3/4; p_e = 3/4*1/2 + 1/4*1/2 = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert percent_agreement(list(zip(a, b, strict=True))) == pytest.approx(0.75)
    # three raters: P_i = 1, 1/3, 1, 1/3 -> P_bar = 2/3; p_a = p_b = 1/2 -> P_e = 1/2; kappa = 1/3
    three = [["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"], ["a", "b", "b"]]
    assert fleiss_kappa(three) == pytest.approx(1 / 3)
    assert percent_agreement(three) == pytest.approx(2 / 3)
    got = agreement([*three, ["a"]])  # an item with one rating is not compared
    assert (got["method"], got["items"], got["raters"]) == ("fleiss", 4, 3)
    assert agreement(list(zip(a, b, strict=True)))["method"] == "cohen"
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None  # chance agreement 1: undefined, not 1.0
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([["a", "b"], ["a", "b", "b"]])


# -- helpers --------------------------------------------------------------------------------------------
def client_for(store: Store, **config) -> TestClient:
    return TestClient(create_app(store, ReviewConfig(**config), secret="s3cret-for-tests"))


def login(client: TestClient, name: str, password: str) -> str:
    """Log in; returns the session's CSRF token."""
    token = CSRF.search(client.get("/login").text).group(1)
    r = client.post("/login", data={"csrf": token, "name": name, "password": password}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return CSRF.search(client.get("/").text).group(1)


def claim(client: TestClient, queue: str) -> int:
    r = client.get(f"/q/{queue}/next", follow_redirects=False)
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def reviews(store: Store) -> list[tuple[int, str, str]]:
    with store.session() as s:
        rows = s.scalars(select(RubricReview).order_by(RubricReview.id))
        return [(r.rubric_id, r.decision, r.reviewer) for r in rows]


# -- sessions, CSRF, roles ----------------------------------------------------------------------------
def test_every_route_needs_a_session(store):
    drafts = seed_drafts(store)
    client = client_for(store)
    routes = [r for r in client.app.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 11
    walked = 0
    for route in routes:
        for method in route.methods:
            if route.path == "/login":
                continue
            path = route.path.replace("{queue}", "rubric").replace("{item_id}", str(drafts[0])) \
                .replace("{name}", "app.css")
            r = client.request(method, path, data={"csrf": "x", "action": "approve"}, follow_redirects=False)
            walked += 1
            if path.startswith("/api/"):
                assert r.status_code == 401, (method, path)
            else:
                assert r.status_code == 303 and r.headers["location"] == "/login", (method, path, r.status_code)
            assert "States the maximum" not in r.text and ".queue" not in r.text
    assert walked == len(routes) - 2  # every route but the login page (GET and POST)
    assert reviews(store) == []
    with store.session() as s:
        assert s.get(RubricRecord, drafts[0]).status == "pending"


def test_login_csrf_roles_and_another_stores_cookie(store, tmp_path):
    drafts = seed_drafts(store)
    pw = accounts(store, "dr-a") | accounts(store, "boss", role="admin")
    client = client_for(store)
    token = CSRF.search(client.get("/login").text).group(1)
    assert client.post("/login", data={"name": "dr-a", "password": pw["dr-a"]}).status_code == 403  # no token
    bad = client.post("/login", data={"csrf": token, "name": "dr-a", "password": "wrong"}, follow_redirects=False)
    assert bad.status_code == 401 and "wrong name or password" in bad.text
    nobody = client.post("/login", data={"csrf": token, "name": "nobody", "password": "x"}, follow_redirects=False)
    assert nobody.status_code == 401
    csrf = login(client, "dr-a", pw["dr-a"])
    rid = claim(client, "rubric")
    assert rid == drafts[0]
    for sent in ({}, {"csrf": "forged"}, {"csrf": token}):  # no token, a made-up one, the pre-login one
        r = client.post(f"/q/rubric/{rid}", data={**sent, "action": "approve"}, follow_redirects=False)
        assert r.status_code == 403 and "security token" in r.text
    assert reviews(store) == []
    assert client.get("/admin").status_code == 403
    assert client.get("/q/rubric/999999").status_code == 404
    assert client.get("/q/nope/next").status_code == 404
    assert client.get(f"/q/rubric/{drafts[1]}").status_code == 403  # not assigned to dr-a
    assert client.get("/api/progress").json()["rubric"]["open"] == 3
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/../app.py").status_code == 404
    r = client.post(f"/q/rubric/{rid}", data={"csrf": csrf, "action": "approve"}, follow_redirects=False)
    assert r.status_code == 303 and reviews(store) == [(rid, "approve", "dr-a")]

    admin = client_for(store)
    login(admin, "boss", pw["boss"])
    page = admin.get("/admin")
    assert page.status_code == 200 and "dr-a" in page.text and "$argon2" not in page.text

    # the same secret on another store: the cookie names a store it is not for
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    other.ensure_schema()
    accounts(other, "dr-a")
    foreign = client_for(other)
    foreign.cookies = client.cookies
    assert foreign.get("/", follow_redirects=False).headers["location"] == "/login"
    other.dispose()

    logout = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert logout.status_code == 303 and client.get("/", follow_redirects=False).status_code == 303


def test_one_time_password_must_be_replaced_and_no_secret_reaches_the_store_or_logs(tmp_path, monkeypatch,
                                                                                     caplog):
    db = tmp_path / "acc.db"
    monkeypatch.setenv("CAREALIGN_REVIEW_SECRET", "env-secret-that-must-not-leak")
    runner = CliRunner()
    res = runner.invoke(cli_app, ["--db", str(db), "review", "user", "add", "dr-b", "--role", "admin"])
    assert res.exit_code == 0, res.output
    password = re.search(r"not stored\): (\S+)", res.output).group(1)
    again = runner.invoke(cli_app, ["--db", str(db), "review", "user", "add", "dr-b"])
    assert again.exit_code == 2 and "already exists" in again.output
    wrong_role = runner.invoke(cli_app, ["--db", str(db), "review", "user", "add", "x", "--role", "god"])
    assert wrong_role.exit_code == 2 and "unknown role" in wrong_role.output
    store = Store(f"sqlite:///{db}")
    client = TestClient(create_app(store, ReviewConfig()))  # the secret from CAREALIGN_REVIEW_SECRET
    token = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"csrf": token, "name": "dr-b", "password": password + "x"})
    r = client.post("/login", data={"csrf": token, "name": "dr-b", "password": password}, follow_redirects=False)
    assert r.status_code == 303
    # the one-time password opens only the page that replaces it
    for path in ("/", "/admin", "/q/rubric/next"):
        assert client.get(path, follow_redirects=False).headers["location"] == "/password"
    assert client.get("/api/progress").status_code == 403
    csrf = CSRF.search(client.get("/password").text).group(1)
    own = "a much better passphrase"
    for new, again_, problem in ((own, own + "?", "the two passwords differ"), ("short", "short", "at least 12"),
                                 (password, password, "not the current one")):
        r = client.post("/password", data={"csrf": csrf, "new": new, "again": again_})
        assert r.status_code == 422 and problem in r.text
    assert client.post("/password", data={"new": own, "again": own}).status_code == 403  # CSRF here too
    r = client.post("/password", data={"csrf": csrf, "new": own, "again": own}, follow_redirects=False)
    assert r.status_code == 303 and client.get("/admin").status_code == 200
    client.post("/logout", data={"csrf": csrf})
    token = CSRF.search(client.get("/login").text).group(1)
    spent = client.post("/login", data={"csrf": token, "name": "dr-b", "password": password}, follow_redirects=False)
    assert spent.status_code == 401  # the one-time password is spent
    login(client, "dr-b", own)
    store.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("acc.db"))
    assert b"$argon2id$" in raw
    for secret in (password, own, "env-secret-that-must-not-leak"):
        assert secret.encode() not in raw and secret not in caplog.text


def test_a_reset_password_ends_the_accounts_sessions_and_must_be_replaced(db_url, monkeypatch):
    """`review user reset NAME`: the old password and every open session stop working, the new
    one-time password opens only the page that replaces it. A session that changes its own password
    goes on and the account's other sessions end; a rehash of the same password (new argon2
    parameters) ends none."""
    import argon2

    from carealign.web import auth

    db = db_url
    runner = CliRunner()
    res = runner.invoke(cli_app, ["--db", str(db), "review", "user", "add", "dr-c"])
    first = re.search(r"not stored\): (\S+)", res.output).group(1)
    store = Store(db)

    def logged_in(client: TestClient) -> bool:
        return client.get("/", follow_redirects=False).status_code == 200

    def change(client: TestClient, csrf: str, new: str) -> None:
        assert client.post("/password", data={"csrf": csrf, "new": new, "again": new},
                           follow_redirects=False).status_code == 303

    try:
        mine, other, third = client_for(store), client_for(store), client_for(store)
        own = "my own long passphrase"
        change(mine, login(mine, "dr-c", first), own)
        assert logged_in(mine)  # its own change keeps it logged in
        login(other, "dr-c", own)
        csrf = CSRF.search(mine.get("/").text).group(1)
        change(mine, csrf, own + " two")
        assert logged_in(mine) and not logged_in(other)  # the other session had the old password
        own += " two"

        login(other, "dr-c", own)  # new argon2 parameters: the next login rehashes the stored hash
        monkeypatch.setattr(auth, "HASHER", argon2.PasswordHasher(time_cost=auth.HASHER.time_cost + 1))
        login(third, "dr-c", own)
        with store.session() as s:
            assert f"t={auth.HASHER.time_cost}" in s.scalars(select(ReviewUser.password_hash)).one()
        assert logged_in(mine) and logged_in(other) and logged_in(third)  # a rehash ends no session

        res = runner.invoke(cli_app, ["--db", str(db), "review", "user", "reset", "dr-c"])
        assert res.exit_code == 0, res.output
        fresh = re.search(r"not stored\): (\S+)", res.output).group(1)
        for client in (mine, other, third):  # every session was opened with the replaced password
            assert client.get("/", follow_redirects=False).headers["location"] == "/login"
        token = CSRF.search(other.get("/login").text).group(1)
        old = other.post("/login", data={"csrf": token, "name": "dr-c", "password": own}, follow_redirects=False)
        assert old.status_code == 401
        login(other, "dr-c", fresh)
        assert other.get("/", follow_redirects=False).headers["location"] == "/password"
        with store.session() as s:
            row = s.scalars(select(ReviewUser).where(ReviewUser.name == "dr-c")).one()
            assert row.must_change_password and fresh not in row.password_hash
    finally:
        store.dispose()
    nobody = runner.invoke(cli_app, ["--db", str(db), "review", "user", "reset", "dr-nobody"])
    assert nobody.exit_code == 2 and "no user 'dr-nobody'" in nobody.output


# -- decisions: stale forms, claims, validation -----------------------------------------------------------
def test_a_stale_form_is_refused_with_a_clear_message_and_the_store_unchanged(store):
    drafts = seed_drafts(store)
    pw = accounts(store, "dr-a", "dr-b")
    a = client_for(store)
    csrf_a = login(a, "dr-a", pw["dr-a"])
    rid = claim(a, "rubric")
    with store.session() as s:  # decided meanwhile in the terminal
        rubric_store.decide(s, rid, "reject", "dr-terminal", "not specific")
    r = a.post(f"/q/rubric/{rid}", data={"csrf": csrf_a, "action": "approve"})
    assert r.status_code == 409 and f"rubric {rid} was already decided (it is rejected); nothing recorded" in r.text
    assert reviews(store) == [(rid, "reject", "dr-terminal")]

    # a claim that ran out goes to the next reviewer; the first one's form is then refused
    fast = dict(claim_minutes=0.0005)  # 30 ms
    a, b = client_for(store, **fast), client_for(store, **fast)
    csrf_a, csrf_b = login(a, "dr-a", pw["dr-a"]), login(b, "dr-b", pw["dr-b"])
    got_a = claim(a, "rubric")
    time.sleep(0.1)
    assert claim(b, "rubric") == got_a == drafts[1]
    r = a.post(f"/q/rubric/{got_a}", data={"csrf": csrf_a, "action": "approve"})
    assert r.status_code == 409 and "no longer assigned to you" in r.text
    assert reviews(store) == [(rid, "reject", "dr-terminal")]
    r = b.post(f"/q/rubric/{got_a}", data={"csrf": csrf_b, "action": "approve"}, follow_redirects=False)
    assert r.status_code == 303 and reviews(store)[-1] == (got_a, "approve", "dr-b")


def test_an_invalid_edit_is_shown_next_to_its_field_and_stores_nothing(store):
    drafts = seed_drafts(store)
    pw = accounts(store, "dr-a")
    c = client_for(store)
    csrf = login(c, "dr-a", pw["dr-a"])
    rid = claim(c, "rubric")
    page = c.get(f"/q/rubric/{rid}").text
    assert 'lang="en"' in page and "Keyboard" in page and "<kbd>a</kbd>" in page
    form = {"csrf": csrf, "action": "edit", "reason": "the weights were off",
            "c-0-orig": "0", "c-0-id": "dose", "c-0-kind": "proficiency", "c-0-dimension": "", "c-0-weight": "0.7",
            "c-0-text": "States the maximum daily amount.",
            "c-1-orig": "1", "c-1-id": "doctor", "c-1-kind": "proficiency", "c-1-dimension": "", "c-1-weight": "0.4",
            "c-1-text": "Advises seeing a doctor when needed.",
            "c-2-orig": "2", "c-2-id": "overdose", "c-2-kind": "veto", "c-2-dimension": "", "c-2-weight": "0.2",
            "c-2-text": "Recommends an overdose."}
    r = c.post(f"/q/rubric/{rid}", data=form)
    assert r.status_code == 422
    assert "only proficiency criteria carry a weight" in r.text and 'value="0.7"' in r.text  # the edit is kept
    form["c-2-weight"] = ""
    r = c.post(f"/q/rubric/{rid}", data=form)
    assert r.status_code == 422 and "proficiency weights must sum to 1 (they sum to 1.100000)" in r.text
    r = c.post(f"/q/rubric/{rid}", data={**form, "reason": ""})
    assert r.status_code == 422 and "a reason is required to edit a rubric" in r.text
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(RubricRecord)) == len(drafts)
        assert s.get(RubricRecord, rid).status == "pending" and reviews(store) == []
    # reordered (doctor first), one removed, one added: stored as the reviewer's edit
    order = {k: v for k, v in form.items() if not k.startswith("c-")}
    for key in ("1", "0"):
        order.update({k: v for k, v in form.items() if k.startswith(f"c-{key}-")})
    order.update({"c-0-weight": "0.6", "c-n1-orig": "", "c-n1-id": "fever", "c-n1-kind": "bonus",
                  "c-n1-dimension": "empathy", "c-n1-weight": "", "c-n1-text": "Acknowledges the fever's discomfort."})
    r = c.post(f"/q/rubric/{rid}", data=order, follow_redirects=False)
    assert r.status_code == 303
    with store.session() as s:
        draft = s.get(RubricRecord, rid)
        edit = s.scalars(select(RubricRecord).where(RubricRecord.parent_id == rid)).one()
        assert draft.status == "edited" and edit.status == "approved" and edit.origin == "human_edited"
        assert [c["id"] for c in edit.rubric["criteria"]] == ["doctor", "dose", "fever"]
        assert [c["origin"] for c in edit.rubric["criteria"]] == ["generated", "generated", "human_edited"]
    assert reviews(store) == [(rid, "edit", "dr-a")]


# -- pairs: flags in exports and lineage; the report command -----------------------------------------------
async def test_flagged_pairs_leave_exports_and_show_in_lineage(sqlite_store, sqlite_url, fake_server, make_engine,
                                                               tmp_path):
    store = sqlite_store
    pairs = await seed_pairs(store, fake_server, make_engine, tmp_path)
    pw = accounts(store, "dr-a")
    c = client_for(store)
    csrf = login(c, "dr-a", pw["dr-a"])
    pid = claim(c, "pair")
    r = c.post(f"/q/pair/{pid}", data={"csrf": csrf, "action": "wrong", "reason": ""})
    assert r.status_code == 422 and "needs a reason" in r.text
    r = c.post(f"/q/pair/{pid}", data={"csrf": csrf, "action": "wrong", "reason": "the rejected answer is safer"},
               follow_redirects=False)
    assert r.status_code == 303
    with store.session() as s:
        assert [(f.pair_id, f.reviewer) for f in s.scalars(select(PairFlag))] == [(pid, "dr-a")]
    out = tmp_path / "pairs.jsonl"
    assert export_pairs(store, out, flt=PairFilter(), with_metadata=True) == len(pairs) - 1
    assert pid not in [json.loads(x)["pair_id"] for x in out.read_text().splitlines()]
    assert export_pairs(store, out, flt=PairFilter(include_flagged=True)) == len(pairs)
    flags = trace_pair(store, pid)["pair"]["flags"]
    assert [(f["reviewer"], f["reason"]) for f in flags] == [("dr-a", "the rejected answer is safer")]

    runner = CliRunner(env={"COLUMNS": "200"})
    res = runner.invoke(cli_app, ["--db", sqlite_url, "db", "export", "--out", str(out)])
    assert res.exit_code == 0 and f"wrote {len(pairs) - 1} rows" in res.output, res.output
    res = runner.invoke(cli_app, ["--db", sqlite_url, "db", "export", "--out", str(out), "--include-flagged"])
    assert res.exit_code == 0 and f"wrote {len(pairs)} rows" in res.output, res.output
    res = runner.invoke(cli_app, ["--db", sqlite_url, "trace", f"pair:{pid}"])
    assert res.exit_code == 0 and "flagged wrong by dr-a: the rejected answer is safer" in res.output, res.output
    res = runner.invoke(cli_app, ["--db", sqlite_url, "review", "report", "--json"])
    rep = json.loads(res.output)
    assert rep["queues"]["pair"]["progress"] == {"open": len(pairs) - 1, "complete": 1, "reviews": 1}
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(ReviewSlot)) == 1


def test_upgrade_from_0005_adds_the_review_tables_keeps_the_data_and_goes_back(db_url):
    from alembic import command
    from sqlalchemy import inspect

    from store.db import alembic_config

    old = Store(db_url)
    command.upgrade(alembic_config(old.engine), "0005")
    with old.session() as s:
        rid = rubric_store.add_rubric(s, instruction=[{"role": "user", "content": "kept?"}], status="pending",
                                      rubric={"criteria": []}, origin="generated", in_pool=False)
    with pytest.raises(Exception, match="carealign db upgrade"):
        old.ensure_schema()
    old.upgrade()
    assert old.current_revision() == "0007"
    inspector = inspect(old.engine)
    assert {"review_users", "review_slots", "pair_flags"} <= set(inspector.get_table_names())
    assert "password_epoch" in {c["name"] for c in inspector.get_columns("review_users")}
    assert "ix_judgments_criterion_kind" in {i["name"] for i in inspector.get_indexes("judgments")}
    with old.session() as s:
        assert s.get(RubricRecord, rid).instruction == [{"role": "user", "content": "kept?"}]
    command.downgrade(alembic_config(old.engine), "0005")
    assert "review_slots" not in inspect(old.engine).get_table_names()
    with old.session() as s:
        assert s.get(RubricRecord, rid).status == "pending"
    old.dispose()


def test_review_serve_starts_the_app_on_the_given_port(tmp_path):
    """`carealign review serve` as a user runs it: a process that answers on --host/--port."""
    import subprocess
    import sys

    import httpx

    from tests.review_seed import free_port

    db, port = tmp_path / "serve.db", free_port()
    env = {k: v for k, v in os.environ.items() if k != "CAREALIGN_REVIEW_SECRET"}
    proc = subprocess.Popen([sys.executable, "-m", "carealign.cli", "--db", str(db), "review", "serve", "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    try:
        deadline, page = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert page is not None and page.status_code == 200 and "Log in" in page.text, proc.poll()
        assert str(page.url).endswith("/login")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/" in out and "1 review(s) per item" in out, out


def test_with_two_reviews_per_draft_the_first_decides_and_the_second_is_an_independent_review(sqlite_store):
    store = sqlite_store
    drafts = seed_drafts(store)
    pw = accounts(store, "dr-a", "dr-b")
    a, b = client_for(store, reviews_per_item=2), client_for(store, reviews_per_item=2)
    csrf_a, csrf_b = login(a, "dr-a", pw["dr-a"]), login(b, "dr-b", pw["dr-b"])
    assert claim(a, "rubric") == claim(b, "rubric") == drafts[0]
    assert a.post(f"/q/rubric/{drafts[0]}", data={"csrf": csrf_a, "action": "approve"},
                  follow_redirects=False).status_code == 303
    page = b.get(f"/q/rubric/{drafts[0]}").text  # b still sees the draft, not a's decision
    assert "approved" not in page and "dr-a" not in page
    r = b.post(f"/q/rubric/{drafts[0]}", data={"csrf": csrf_b, "action": "reject", "reason": "not checkable"},
               follow_redirects=False)
    assert r.status_code == 303 and "independent review" in b.get("/").text
    assert reviews(store) == [(drafts[0], "approve", "dr-a")]  # the draft was decided once
    with store.session() as s:
        labels = sorted((x.slot, x.labels["decision"], x.labels.get("_notes", {}).get("reason"))
                        for x in s.scalars(select(ReviewSlot)))
    assert labels == [(0, "approve", None), (1, "reject", "not checkable")]
    assert claim(a, "rubric") == drafts[1]  # the first draft has its two reviews
    rep = review_report(store, 2)
    assert rep["queues"]["rubric"]["agreement"]["criteria"]["decision"]["percent_agreement"] == 0.0


def test_a_decided_draft_still_gets_its_second_review_and_odd_ids_are_client_errors(sqlite_store):
    """With two reviews per draft, a second reviewer who comes after the first decided still gets
    the draft; an id past what the store holds, or a malformed edit row, is a 4xx, never a 500."""
    store = sqlite_store
    drafts = seed_drafts(store)
    pw = accounts(store, "dr-a", "dr-b")
    a, b = client_for(store, reviews_per_item=2), client_for(store, reviews_per_item=2)
    csrf_a, csrf_b = login(a, "dr-a", pw["dr-a"]), login(b, "dr-b", pw["dr-b"])
    assert claim(a, "rubric") == drafts[0]
    assert a.post(f"/q/rubric/{drafts[0]}", data={"csrf": csrf_a, "action": "approve"},
                  follow_redirects=False).status_code == 303
    assert claim(b, "rubric") == drafts[0]  # decided, but one review short
    r = b.post(f"/q/rubric/{drafts[0]}", data={"csrf": csrf_b, "action": "approve"}, follow_redirects=False)
    assert r.status_code == 303 and reviews(store) == [(drafts[0], "approve", "dr-a")]
    assert review_report(store, 2)["queues"]["rubric"]["progress"]["complete"] >= 1

    assert a.get("/q/rubric/99999999999999999999").status_code == 422
    assert a.post("/q/rubric/99999999999999999999/skip", data={"csrf": csrf_a}).status_code == 422
    rid = claim(a, "rubric")
    r = a.post(f"/q/rubric/{rid}", data={"csrf": csrf_a, "action": "edit", "reason": "x", "c-0-id": "d",
                                          "c-0-kind": "proficiency", "c-0-weight": "1", "c-0-text": "t",
                                          "c-0-orig": "\u00b2"})
    assert r.status_code < 500, r.text
