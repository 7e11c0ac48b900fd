"""``create_app``: the review web app on one store (FastAPI, server-rendered Jinja2 pages).

Every route but the login page needs a session: pages redirect to ``/login``, JSON answers 401,
and the static files are served by a route that checks the session too. Every form carries the
session's CSRF token and is refused (403) without it. Jinja2 autoescapes everything: model output
is shown as text, never as HTML.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as UrlPath
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader
from starlette.middleware.sessions import SessionMiddleware

from carealign.web import auth
from carealign.web.configuration import ReviewConfig
from carealign.web.progress import QUEUE_TITLES, review_report
from carealign.web.queues import QUEUES, FormErrors, Queue, language_of, rubric_rows, variant_segments
from store import Store, StoreError
from store import factbench as factbench_store
from store import review as review_store
from store.review import Account

HERE = Path(__file__).parent
# an item id the store can hold: a larger number is a 422, not an overflow inside the database driver
ItemId = Annotated[int, UrlPath(ge=1, le=2**63 - 1)]
STATIC = HERE / "static"
log = logging.getLogger(__name__)


class NotFound(Exception):
    pass


class ReviewApp:
    """What the routes share: the store, the settings, the templates and the reviewers' runs."""

    def __init__(self, store: Store, config: ReviewConfig):
        self.store, self.config = store, config
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.env.globals["language_of"] = language_of
        self.runs: dict[tuple[int, int], str] = {}
        self.reviewed: dict[str, int] = {}

    def review_run(self, account: Account, round_: int) -> str:
        """The factbench review session (a ``factbench-review`` run) of this reviewer and round."""
        key = (account.id, int(round_))
        if key not in self.runs:
            self.runs[key] = factbench_store.start_review(self.store, account.name, int(round_),
                                                          {"front_end": "review web app"})
        self.reviewed[self.runs[key]] = self.reviewed.get(self.runs[key], 0) + 1
        return self.runs[key]

    def close(self) -> None:
        for run_id in self.runs.values():
            factbench_store.finish_review(self.store, run_id, {"reviewed": self.reviewed.get(run_id, 0)})
        self.runs.clear()

    def claim_expiry(self) -> datetime:
        return datetime.now(UTC) - timedelta(minutes=self.config.claim_minutes)

    def render(self, request: Request, name: str, status: int = 200, account: Account | None = None,
               **ctx: Any) -> HTMLResponse:
        nav = []
        if account is not None and not account.must_change_password:
            counts = review_store.progress(self.store, self.config.reviews_per_item, account.id)
            nav = [{"name": q, "title": QUEUE_TITLES[q], "progress": counts[q]} for q in review_store.QUEUES]
        html = self.env.get_template(name).render(
            request=request, account=account, csrf=auth.csrf_token(request.session), nav=nav,
            flash=request.session.pop("flash", None), **ctx)
        return HTMLResponse(html, status_code=status)


def _queue(name: str) -> Queue:
    if name not in QUEUES:
        raise NotFound(f"no review queue {name!r}; the queues are {', '.join(QUEUES)}")
    return QUEUES[name]


def create_app(store: Store, config: ReviewConfig, secret: str | None = None) -> FastAPI:
    """The app on ``store``; ``secret`` signs session cookies (default: ``review.secret_env`` or random)."""
    state = ReviewApp(store, config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        state.close()

    app = FastAPI(title="carealign review", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=secret or auth.session_secret(config.secret_env),
                       session_cookie="carealign_review", max_age=int(config.session_hours * 3600),
                       same_site="strict", https_only=config.secure_cookies)
    app.state.review = state

    def account(request: Request, password_change: bool = False) -> Account:
        """The session's account; one still on its one-time password may only replace it."""
        who = auth.account_of(request.session, store)
        if who.must_change_password and not password_change:
            raise auth.MustChangePassword
        return who

    async def posted(request: Request, password_change: bool = False) -> tuple[Account, Any]:
        """The account and the form of a POST, its CSRF token checked."""
        who = account(request, password_change)
        form = await request.form()
        auth.check_csrf(request.session, form.get("csrf"))
        return who, form

    @app.exception_handler(auth.NotLoggedIn)
    async def not_logged_in(request: Request, _: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "log in first"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(auth.MustChangePassword)
    async def must_change(request: Request, _: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "choose your own password first (/password)"}, status_code=403)
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(auth.Forbidden)
    async def forbidden(request: Request, exc: Exception) -> Response:
        return state.render(request, "message.html", 403, title="Not allowed", message=str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: Exception) -> Response:
        return state.render(request, "message.html", 404, title="Not found", message=str(exc))

    # -- login ------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        return state.render(request, "login.html", css=(STATIC / "app.css").read_text(encoding="utf-8"))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        auth.check_csrf(request.session, form.get("csrf"))
        who = auth.check_password(store, str(form.get("name", "")), str(form.get("password", "")))
        if who is None:
            log.warning("review app: failed login for a name of %d characters", len(str(form.get("name", ""))))
            return state.render(request, "login.html", 401, error="wrong name or password",
                                css=(STATIC / "app.css").read_text(encoding="utf-8"))
        auth.log_in(request.session, who, store)
        return RedirectResponse("/", status_code=303)

    @app.get("/password", response_class=HTMLResponse)
    async def password_page(request: Request) -> Response:
        who = account(request, password_change=True)
        return state.render(request, "password.html", account=who, min_length=config.min_password_length)

    @app.post("/password")
    async def change_password(request: Request) -> Response:
        who, form = await posted(request, password_change=True)
        problem = auth.change_password(store, who, str(form.get("new", "")), str(form.get("again", "")),
                                       config.min_password_length)
        if problem:
            return state.render(request, "password.html", 422, account=who, min_length=config.min_password_length,
                                error=problem)
        # this session goes on with the new password (any other session of the account ends), with
        # a fresh CSRF token and the items it skipped still skipped
        skipped = request.session.get("skip")
        auth.log_in(request.session, review_store.user_by_id(store, who.id), store)
        if skipped:
            request.session["skip"] = skipped
        request.session["flash"] = "password changed"
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request, password_change=True)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- pages ------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        return state.render(request, "home.html", account=account(request), queues=QUEUES,
                            needed=config.reviews_per_item)

    @app.get("/admin", response_class=HTMLResponse)
    async def admin(request: Request) -> Response:
        who = account(request)
        if who.role != "admin":
            raise auth.Forbidden("the admin page is for admin accounts")
        return state.render(request, "admin.html", account=who, report=review_report(store, config.reviews_per_item),
                            users=review_store.users(store))

    @app.get("/api/progress")
    async def api_progress(request: Request) -> Response:
        who = account(request)
        return JSONResponse(review_store.progress(store, config.reviews_per_item, who.id))

    @app.get("/static/{name}")
    async def static(request: Request, name: str) -> Response:
        account(request)
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise NotFound(f"no file {name!r}")
        return FileResponse(path)

    @app.get("/q/{queue}/next")
    async def next_item(request: Request, queue: str) -> Response:
        who, q = account(request), _queue(queue)
        skip = request.session.get("skip", {}).get(q.name, [])
        item_id = review_store.claim_next(store, q.name, who.id, config.reviews_per_item, state.claim_expiry(), skip)
        if item_id is None:
            return state.render(request, "message.html", account=who, title=q.title,
                                message="Nothing left for you in this queue." + (
                                    f" You skipped {len(skip)} item(s) in this session." if skip else ""),
                                queue=q.name)
        return RedirectResponse(f"/q/{q.name}/{item_id}", status_code=303)

    def load(q: Queue, item_id: int) -> Any:
        """The item's view; a 404 for an id the queue does not hold or cannot show (e.g. a variant
        decision without its span check)."""
        try:
            view = q.load(store, item_id)
        except StoreError as exc:
            raise NotFound(f"{q.title.lower()} item {item_id}: {exc}") from None
        if view is None:
            raise NotFound(f"no {q.title.lower()} item {item_id}")
        return view

    def item_page(request: Request, who: Account, q: Queue, item_id: int, status: int = 200,
                  errors: FormErrors | None = None, message: str | None = None, form: Any = None) -> Response:
        view = load(q, item_id)
        slot = review_store.slot_of(store, q.name, item_id, who.id)
        if slot is None:
            raise auth.Forbidden(f"{q.name} {item_id} is not assigned to you: open the queue to get your next item")
        extra: dict[str, Any] = {}
        if q.name == "variant":
            extra["segments"] = variant_segments(view)
        elif q.name == "rubric":
            extra["rows"] = rubric_rows(view, form)
        return state.render(request, q.template, status, account=who, q=q, view=view, slot=slot,
                            editable=slot["status"] == review_store.ASSIGNED, errors=errors, message=message,
                            form=form, **q.extra, **extra)

    @app.get("/q/{queue}/{item_id}", response_class=HTMLResponse)
    async def show_item(request: Request, queue: str, item_id: ItemId) -> Response:
        return item_page(request, account(request), _queue(queue), item_id)

    @app.post("/q/{queue}/{item_id}")
    async def decide(request: Request, queue: str, item_id: ItemId) -> Response:
        who, form = await posted(request)
        q = _queue(queue)
        view = load(q, item_id)
        try:
            done = q.decide(state, who, view, form)
        except FormErrors as exc:
            return item_page(request, who, q, item_id, 422, errors=exc, form=form)
        except StoreError as exc:  # decided meanwhile, or the claim went to another reviewer
            return state.render(request, "message.html", 409, account=who, title="Not recorded",
                                message=str(exc), queue=q.name)
        request.session["flash"] = done
        return RedirectResponse(f"/q/{q.name}/next", status_code=303)

    @app.post("/q/{queue}/{item_id}/skip")
    async def skip_item(request: Request, queue: str, item_id: ItemId) -> Response:
        who, _ = await posted(request)
        q = _queue(queue)
        review_store.release_slot(store, q.name, item_id, who.id)
        skips = request.session.setdefault("skip", {})
        skips[q.name] = [*skips.get(q.name, []), item_id][-200:]
        request.session["skip"] = skips
        return RedirectResponse(f"/q/{q.name}/next", status_code=303)

    @app.get("/q/{queue}/{item_id}/prev")
    async def previous_item(request: Request, queue: str, item_id: ItemId) -> Response:
        who, q = account(request), _queue(queue)
        done = review_store.decided_by(store, q.name, who.id)
        before = done[:done.index(item_id)] if item_id in done else done
        if not before:
            return state.render(request, "message.html", account=who, title=q.title,
                                message="No earlier item: you have not decided one before this.", queue=q.name)
        return RedirectResponse(f"/q/{q.name}/{before[-1]}", status_code=303)

    return app
