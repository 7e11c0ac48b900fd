"""``carealign review``: the review web app for clinicians, its accounts, and its agreement report.

    review serve [--host --port]                 the web app on the store (carealign.web)
    review user add NAME --role reviewer|admin   prints a one-time password (only its argon2 hash is kept)
    review user reset NAME                       a new one-time password; the account's sessions end
    review report [--json]                       progress and agreement per queue and criterion

The pages, sessions and queues are in ``carealign/web/``; the rows in ``store/review.py``.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from carealign.command import console, current, handles_errors
from carealign.options import config_option
from carealign.web.configuration import ReviewConfig

review_app = typer.Typer(no_args_is_help=True, help="Review web app: rubric drafts, fact-check variants and pairs.")
user_app = typer.Typer(no_args_is_help=True, help="Accounts of the review web app.")
review_app.add_typer(user_app, name="user")


@review_app.command("serve")
@handles_errors
def serve(
    host: str | None = config_option(ReviewConfig, "host", "--host"),
    port: int | None = config_option(ReviewConfig, "port", "--port"),
    reviews_per_item: int | None = config_option(ReviewConfig, "reviews_per_item", "--reviews-per-item"),
) -> None:
    """Serve the review pages until Ctrl-C (log in with an account from `review user add`)."""
    import uvicorn

    from carealign.web.app import create_app

    settings = current().settings_with("review", {"host": host, "port": port, "reviews_per_item": reviews_per_item})
    config = settings.review
    with current().store(init=True) as store:
        app = create_app(store, config)
        console.print(f"review app on {store.safe_url} at [bold]http://{config.host}:{config.port}/[/] "
                      f"({config.reviews_per_item} review(s) per item; Ctrl-C to stop)", soft_wrap=True)
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)


@user_app.command("add")
@handles_errors
def user_add(
    name: str = typer.Argument(..., help="the account's login name"),
    role: str = typer.Option("reviewer", "--role", help="reviewer or admin (admins also see progress and agreement)"),
) -> None:
    """Create an account and print its one-time password (shown once, stored only as an argon2 hash)."""
    from carealign.web.auth import add_account

    settings = current().settings()
    with current().store(init=True) as store:
        password = add_account(store, name, role, settings.review.password_bytes)
    console.print(f"user {name} ({role}) added; password (shown once, not stored): {password}", markup=False,
                  soft_wrap=True)


@user_app.command("reset")
@handles_errors
def user_reset(name: str = typer.Argument(..., help="the account's login name")) -> None:
    """A forgotten or leaked password: print a new one-time password (the next login must replace
    it); every open session of the account ends."""
    from carealign.web.auth import reset_account

    settings = current().settings()
    with current().store(init=True) as store:
        password = reset_account(store, name, settings.review.password_bytes)
    console.print(f"user {name}: password reset, open sessions ended; new one-time password (shown once, not "
                  f"stored): {password}", markup=False, soft_wrap=True)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@review_app.command("report")
@handles_errors
def report(
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    reviews_per_item: int | None = config_option(ReviewConfig, "reviews_per_item", "--reviews-per-item"),
) -> None:
    """Progress and agreement (Cohen's kappa for 2 reviews per item, Fleiss' for more) per queue and criterion."""
    from carealign.web.progress import review_report

    needed = current().settings_with("review", {"reviews_per_item": reviews_per_item}).review.reviews_per_item
    with current().existing_store() as store:
        store.ensure_schema()  # a store from before the review tables: "run `carealign db upgrade`"
        rep = review_report(store, needed)
    if as_json:
        print(json.dumps(rep, indent=2, ensure_ascii=False))
        return
    for q in rep["queues"].values():
        p = q["progress"]
        t = Table(title=f"{q['title']}: {p['open']} open, {p['complete']} complete, {p['reviews']} reviews "
                  f"({needed} per item)")
        for col in ("criterion", "items", "method", "kappa", "percent agreement"):
            t.add_column(col, justify="left" if col in ("criterion", "method") else "right")
        rows = [("all criteria", q["agreement"]["overall"]), *q["agreement"]["criteria"].items()]
        for crit, a in rows:
            t.add_row(crit, str(a["items"]), a["method"] or "", _fmt(a["kappa"]), _fmt(a["percent_agreement"]))
        console.print(t)
