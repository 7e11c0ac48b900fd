"""The review web app in a real browser: Debian's headless Chromium driven by Playwright against the
real app under uvicorn on 127.0.0.1. Each queue's decisions, two reviewers with an overlap of 2 and
their agreement, the stale-form race, login everywhere, a <script> in model output, Chinese text.

Without Playwright or Chromium these tests skip, saying why; with CAREALIGN_REQUIRE_BROWSER=1 (CI)
they fail instead. Screenshots of every page go to the test's tmp folder (``shots/``), or to
CAREALIGN_REVIEW_SCREENSHOTS when set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from carealign.cli import app as cli_app
from carealign.web.configuration import ReviewConfig
from store import rubrics as rubric_store
from store.models import Judgment, PairFlag, PreferencePair, ReviewSlot, RubricRecord, RubricReview
from tests.review_seed import (
    XSS,
    ZH_ANSWER,
    ZH_QUESTION,
    LiveServer,
    accounts,
    seed_drafts,
    seed_pairs,
    seed_variants,
)

pytestmark = pytest.mark.browser


def _browser_problem() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        return f"Playwright is not installed ({exc}): pip install -e '.[dev]'"
    if not shutil.which("chromium"):
        return "Debian's chromium is not installed (apt-get install chromium fonts-noto-cjk)"
    return None


@pytest.fixture
def shots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where a test's screenshots go: the test's tmp folder, or CAREALIGN_REVIEW_SCREENSHOTS/TEST when set
    (to keep them for a look after the run)."""
    keep = os.environ.get("CAREALIGN_REVIEW_SCREENSHOTS")
    return Path(keep) / request.node.name if keep else tmp_path / "shots"


@pytest.fixture
async def browser() -> AsyncIterator:
    problem = _browser_problem()
    if problem:
        if os.environ.get("CAREALIGN_REQUIRE_BROWSER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        await b.close()


class Reviewer:
    """One browser context (its own cookies) logged in as one account; screenshots every page it shows."""

    def __init__(self, page, base: str, shots: Path, name: str):
        self.page, self.base, self.shots, self.name, self.n = page, base, shots, name, 0

    @classmethod
    async def open(cls, browser, server: LiveServer, shots: Path, name: str, password: str) -> Reviewer:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        r = cls(await context.new_page(), server.url, shots, name)
        await r.page.goto(server.url + "/")
        assert r.page.url.endswith("/login")  # every page asks for a login first
        await r.page.fill("input[name=name]", name)
        await r.page.fill("input[name=password]", password)
        await r.page.click("button[type=submit]")
        await r.page.wait_for_url(lambda url: not url.endswith("/login"))
        if r.page.url.endswith("/password"):  # a one-time password: choose one's own first
            await r.shot("password")
            for field in ("new", "again"):
                await r.page.fill(f"input[name={field}]", f"{name} chose this one")
            await r.page.click("#set-password")
        await r.page.wait_for_url(server.url + "/")
        await r.shot("home")
        return r

    async def shot(self, what: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.n += 1
        path = self.shots / f"{self.name}-{self.n:02d}-{what}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def text(self, selector: str = "body") -> str:
        return await self.page.inner_text(selector)

    def item_id(self) -> int:
        return int(self.page.url.rstrip("/").rsplit("/", 1)[1])


EDITS = {"A": ("1 g", "5 g"), "D": ("a calcium channel blocker", "a beta blocker"), "E": ("relieve", "cause")}


def status_of(store, rid: int) -> str:
    with store.session() as s:
        return s.get(RubricRecord, rid).status


# -- rubric drafts -------------------------------------------------------------------------------------
async def test_rubric_queue_approve_edit_reject_with_shortcuts_cjk_and_escaping(store, browser, shots, tmp_path):
    drafts = seed_drafts(store)
    pw = accounts(store, "dr-a")
    with LiveServer(store) as server:
        r = await Reviewer.open(browser, server, shots, "dr-a", pw["dr-a"])
        await r.goto("/q/rubric/next")
        assert r.item_id() == drafts[0]
        shortcuts = await r.text("#shortcuts")
        assert "approve" in shortcuts and "reject (reason)" in shortcuts and "previous item" in shortcuts
        assert await r.page.get_attribute("#item", "lang") == "en"
        await r.shot("rubric-draft")
        await r.page.keyboard.press("a")  # approve
        await r.page.wait_for_url(server.url + f"/q/rubric/{drafts[1]}")
        assert status_of(store, drafts[0]) == "approved"
        assert f"rubric {drafts[0]}: approved" in await r.text(".flash")

        # the Chinese draft: lang, text; an edit that breaks the weights is shown next to the field
        assert await r.page.get_attribute("#item", "lang") == "zh"
        assert ZH_QUESTION in await r.text("#item")
        assert "说明每日最大剂量。" in await r.page.input_value("textarea[name=c-0-text]")
        await r.shot("rubric-zh")
        await r.page.fill("input[name=c-0-weight]", "0.9")
        dialogs: list[str] = []

        async def dismiss(d):
            dialogs.append(d.message)
            await d.dismiss()

        r.page.on("dialog", dismiss)
        await r.page.evaluate("document.activeElement.blur()")
        await r.page.keyboard.press("n")  # next, with an unsaved edit: warned, and staying
        assert dialogs and "unsaved changes" in dialogs[0]
        assert r.item_id() == drafts[1]
        await r.page.fill("#reason", "the dose criterion matters more")
        await r.page.keyboard.press("Control+Enter")  # save the edit
        await r.page.wait_for_selector(".field-error")
        assert "proficiency weights must sum to 1" in await r.text("#err-criteria")
        assert await r.page.input_value("input[name=c-0-weight]") == "0.9"  # the edit survives the error
        await r.shot("rubric-edit-error")
        assert status_of(store, drafts[1]) == "pending"
        await r.page.fill("input[name=c-1-weight]", "0.1")
        await r.page.click("#add-criterion")
        await r.page.fill("table#criteria tbody tr:last-child textarea", "提到发烧的不适。")
        await r.page.select_option("table#criteria tbody tr:last-child select", "bonus")
        await r.page.fill("table#criteria tbody tr:last-child input[name$=-weight]", "")
        await r.page.click("table#criteria tbody tr:nth-child(2) .up")  # reorder: doctor first
        await r.page.click("#save-edit")
        await r.page.wait_for_url(server.url + f"/q/rubric/{drafts[2]}")
        with store.session() as s:
            edit = s.scalars(select(RubricRecord).where(RubricRecord.parent_id == drafts[1])).one()
            assert [c["id"] for c in edit.rubric["criteria"]] == ["doctor", "dose", "overdose", "new1"]
            assert edit.rubric["criteria"][3]["text"] == "提到发烧的不适。"
        assert status_of(store, drafts[1]) == "edited"

        # HTML in a criterion is text; reject needs a reason (r, type it, Ctrl+Enter)
        assert '<img src=x onerror="window.__xss = 2">' in await r.page.input_value("textarea[name=c-0-text]")
        assert await r.page.evaluate("window.__xss === undefined")
        await r.page.keyboard.press("r")
        assert await r.page.evaluate("document.activeElement.id") == "reason"
        await r.page.keyboard.type("the dose is not checkable")
        await r.page.keyboard.press("Control+Enter")
        await r.page.wait_for_selector("#message")
        assert "Nothing left for you in this queue" in await r.text("#message")
        await r.shot("rubric-done")
        assert status_of(store, drafts[2]) == "rejected"
        await r.goto(f"/q/rubric/{drafts[2]}/prev")  # previous: the edited one, read-only with my decision
        assert r.item_id() == drafts[1] and "You decided this item: decision: edit" in await r.text("#decided")
    with store.session() as s:
        got = [(v.rubric_id, v.decision, v.reviewer) for v in s.scalars(select(RubricReview).order_by(RubricReview.id))]
    assert got == [(drafts[0], "approve", "dr-a"), (drafts[1], "edit", "dr-a"), (drafts[2], "reject", "dr-a")]


# -- fact-check variants ---------------------------------------------------------------------------------
async def test_variant_queue_agree_and_disagree_per_criterion(sqlite_store, sqlite_url, browser, shots, fake_server,
                                                              tmp_path):
    store = sqlite_store
    await seed_variants(store, sqlite_url, fake_server, tmp_path)
    pw = accounts(store, "dr-v")
    with LiveServer(store) as server:
        r = await Reviewer.open(browser, server, shots, "dr-v", pw["dr-v"])
        await r.goto("/q/variant/next")
        case = re.search(r"Case ([ADE])", await r.text("#variant")).group(1)  # the edit, highlighted
        assert (await r.text("#source mark"), await r.text("#variant mark")) == EDITS[case]
        await r.shot("variant")
        await r.page.keyboard.press("y")  # agree with every criterion
        await r.page.keyboard.press("Control+Enter")
        await r.page.wait_for_selector(".flash")
        assert "0 disagreement(s) recorded" in await r.text(".flash")
        # the second variant: disagree on criterion 2 with a note; a note is required
        await r.page.keyboard.press("2")
        await r.page.keyboard.press("d")
        await r.page.keyboard.press("Escape")
        await r.page.locator("h1").click()
        await r.page.keyboard.press("y")
        await r.page.click("#save")
        await r.page.wait_for_selector(".field-error")
        assert "a disagreement needs a note" in await r.text("#decision-form")
        crit = await r.page.get_attribute("tr.crit[data-index='2']", "data-criterion")
        await r.page.fill(f"textarea[name=n-{crit}]", "plainly detectable")
        await r.shot("variant-disagree")
        await r.page.click("#save")
        await r.page.wait_for_selector(".flash")
        assert "1 disagreement(s) recorded" in await r.text(".flash")
    with store.session() as s:
        rows = list(s.scalars(select(Judgment).where(Judgment.criterion_kind == "factbench_review")))
    assert len(rows) == 10 and {j.judge_model for j in rows} == {"human:dr-v"}
    assert [(j.details["criterion_id"], j.reason) for j in rows if not j.details["agree"]] == [
        (crit, "plainly detectable")]


# -- preference pairs ------------------------------------------------------------------------------------
async def test_pair_queue_escapes_model_output_shows_chinese_and_flags(sqlite_store, browser, shots, fake_server,
                                                                       make_engine, tmp_path):
    store = sqlite_store
    pairs = await seed_pairs(store, fake_server, make_engine, tmp_path)
    with store.session() as s:
        zh = s.scalars(select(PreferencePair.id).where(PreferencePair.language == "zh")).one()
    pw = accounts(store, "dr-p")
    with LiveServer(store) as server:
        r = await Reviewer.open(browser, server, shots, "dr-p", pw["dr-p"])
        await r.goto("/q/pair/next")
        for i, pid in enumerate(pairs):  # in id order (the pipeline stores them as items finish)
            assert r.item_id() == pid
            if pid == zh:  # the Chinese pair: lang, text; flagged as wrong (w, the reason, Ctrl+Enter)
                assert await r.page.get_attribute("#item", "lang") == "zh"
                body = await r.text("#item")
                assert ZH_QUESTION in body and ZH_ANSWER.format(seed=0) in body
                shot = await r.shot("pair-zh")
                assert shot.stat().st_size > 10_000
                await r.page.keyboard.press("w")
                await r.page.keyboard.type("拒绝的回答更安全")
                await r.page.keyboard.press("Control+Enter")
            else:  # an English pair whose answers carry a <script>: shown as text, never run; kept (o)
                assert XSS in await r.text("#chosen") and XSS in await r.text("#rejected")
                assert await r.page.evaluate("window.__xss === undefined")
                assert "S1 1.000 · S2 0 · S3 0" in await r.text("#chosen") and "S1 0.000" in await r.text("#rejected")
                assert await r.page.locator("#chosen table.judgments tbody tr").count() == 3  # a row per criterion
                await r.shot("pair-xss")
                await r.page.keyboard.press("o")
            if i + 1 < len(pairs):
                await r.page.wait_for_url(f"{server.url}/q/pair/{pairs[i + 1]}")
        await r.page.wait_for_selector("#message")
        await r.shot("pair-done")
    with store.session() as s:
        assert [(f.pair_id, f.reason) for f in s.scalars(select(PairFlag))] == [(zh, "拒绝的回答更安全")]


# -- two reviewers, overlap 2 -------------------------------------------------------------------------------
async def test_two_reviewers_each_review_every_pair_and_agreement_is_reported(store, db_url, browser, shots,
                                                                              fake_server, make_engine, tmp_path):
    pairs = await seed_pairs(store, fake_server, make_engine, tmp_path)
    pw = accounts(store, "dr-a", "dr-b", "dr-c") | accounts(store, "boss", role="admin")
    verdicts = {"dr-a": ["ok", "ok", "ok", "wrong"], "dr-b": ["ok", "ok", "wrong", "wrong"]}
    with LiveServer(store, ReviewConfig(reviews_per_item=2)) as server:
        a = await Reviewer.open(browser, server, shots, "dr-a", pw["dr-a"])
        b = await Reviewer.open(browser, server, shots, "dr-b", pw["dr-b"])
        for i in range(len(pairs)):  # interleaved: both hold the same pair at once, in different slots
            for who in (a, b):
                await who.goto("/q/pair/next")
                assert who.item_id() == pairs[i]
            for who in (a, b):
                await who.page.reload()  # b's page after a decided: nothing of a's decision shows
                assert "reason of dr-" not in await who.text("body") and await who.page.locator("#decided").count() == 0
                if verdicts[who.name][i] == "wrong":
                    await who.page.fill("#reason", f"reason of {who.name}")
                    await who.page.click("#flag")
                else:
                    await who.page.click("#ok")
                await who.page.wait_for_selector(".flash, #message")
        c = await Reviewer.open(browser, server, shots, "dr-c", pw["dr-c"])
        await c.goto("/q/pair/next")
        assert "Nothing left for you" in await c.text("#message")  # every pair has its two reviews
        boss = await Reviewer.open(browser, server, shots, "boss", pw["boss"])
        await boss.goto("/admin")
        await boss.shot("admin")
        row = await boss.text("#admin-pair tr[data-criterion=verdict]")
        # by hand: p_o = 3/4; p_e = (3/4)(1/2) + (1/4)(1/2) = 1/2; kappa = (3/4 - 1/2) / (1/2) = 0.5
        assert "cohen" in row and "0.500" in row and "0.750" in row
        await b.goto("/admin")
        assert "Not allowed" in await b.text("h1")
    with store.session() as s:
        slots = [(x.item_id, x.slot, x.user_id) for x in s.scalars(select(ReviewSlot))]
    assert len(slots) == 8 and len({(i, n) for i, n, _ in slots}) == 8  # two reviewers never share a slot
    res = CliRunner().invoke(cli_app, ["--db", db_url, "review", "report", "--json", "--reviews-per-item", "2"])
    assert res.exit_code == 0, res.output
    verdict = json.loads(res.output)["queues"]["pair"]["agreement"]["criteria"]["verdict"]
    assert verdict == {"items": 4, "raters": 2, "method": "cohen", "kappa": pytest.approx(0.5),
                       "percent_agreement": pytest.approx(0.75)}


# -- the stale-form race, and login everywhere ---------------------------------------------------------------
async def test_stale_form_in_the_browser_and_login_everywhere(sqlite_store, browser, shots, tmp_path):
    store = sqlite_store
    drafts = seed_drafts(store)
    pw = accounts(store, "dr-a", one_time=True)  # the first login replaces it in the page
    with LiveServer(store) as server:
        ctx = await browser.new_context()
        anon = await ctx.new_page()
        for path in ("/", "/admin", "/q/rubric/next", f"/q/rubric/{drafts[0]}", "/static/app.css"):
            await anon.goto(server.url + path)
            assert anon.url == server.url + "/login", path
        r = await Reviewer.open(browser, server, shots, "dr-a", pw["dr-a"])
        await r.goto("/q/rubric/next")
        with store.session() as s:  # another reviewer decides it in the terminal meanwhile
            rubric_store.decide(s, drafts[0], "approve", "dr-terminal")
        await r.page.click("#approve")
        await r.page.wait_for_selector("#message")
        assert f"rubric {drafts[0]} was already decided (it is approved); nothing recorded" in await r.text("#message")
        await r.shot("stale")
    with store.session() as s:
        assert [(v.decision, v.reviewer) for v in s.scalars(select(RubricReview))] == [("approve", "dr-terminal")]
