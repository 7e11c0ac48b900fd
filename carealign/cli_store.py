"""``carealign db`` and ``carealign runs``: create, migrate, inspect and export the store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from carealign.command import console, current, handles_errors
from carealign.tables import runs_table, show_run
from graphs.esc_search.esc_pro import FORMAT as ESC_PRO
from graphs.esc_search.esc_pro_export import check_esc_pro_options, export_stored_esc_pro
from store.dataset_card import CardOptions, card_path, push_export
from store.export import PairFilter, export_pairs
from store.records import table_counts

db_app = typer.Typer(no_args_is_help=True, help="Create, migrate, inspect and export the store.")
runs_app = typer.Typer(no_args_is_help=True, help="Runs recorded in the store.")


@db_app.command("init")
@handles_errors
def db_init() -> None:
    """Create the schema in an empty database (SQLite file or PostgreSQL)."""
    with current().store(init=True) as store:
        console.print(f"store ready at {store.safe_url} (schema {store.current_revision()})")


@db_app.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    """Migrate the schema to this version of carealign."""
    with current().store(init=False) as store:
        before = store.current_revision()
        store.upgrade()
        console.print(f"{store.safe_url}: schema {before or '(empty)'} -> {store.current_revision()}")


@db_app.command("stats")
@handles_errors
def db_stats() -> None:
    """Row counts per table."""
    with current().existing_store() as store, store.session() as s:
        counts = table_counts(s)
        title = f"{store.safe_url} (schema {store.current_revision()})"
    table = Table(title=title)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


@db_app.command("export")
@handles_errors
def db_export(
    out: Path = typer.Option(..., "--out", "-o", help="output file (jsonl, parquet) or folder (hf)"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | parquet | hf | esc-pro (ESC dialogues in the "
                            "published ESC-Pro shape, from the pairs' trees; needs --kind esc)"),
    shape: str = typer.Option("preference", "--shape", help="preference (DPO/reward) | prompt (GRPO)"),
    kind: str | None = typer.Option(None, "--kind", help="only pairs of this kind (generic, rubric, esc)"),
    run: str | None = typer.Option(None, "--run", help="only pairs of this run id"),
    min_margin: float | None = typer.Option(None, "--min-margin", help="only pairs with at least this margin, in "
                                            "the unit of each kind: judge score difference (generic), S1 difference "
                                            "(rubric), Q difference (esc)"),
    min_veto_margin: float | None = typer.Option(None, "--min-veto-margin", help="rubric pairs: at least this many "
                                                 "fewer vetoes violated by the chosen answer"),
    min_s1_margin: float | None = typer.Option(None, "--min-s1-margin", help="rubric pairs: S1 difference at least"),
    min_s2_margin: float | None = typer.Option(None, "--min-s2-margin", help="rubric pairs: S2 difference (bonus "
                                               "criteria met) at least"),
    language: str | None = typer.Option(None, "--language", help="only pairs in this language"),
    with_metadata: bool = typer.Option(False, "--with-metadata", help="add pair_id, kind, margin, run_id columns"),
    include_flagged: bool = typer.Option(False, "--include-flagged", help="also export pairs a reviewer flagged as "
                                         "wrong in the review app (left out by default)"),
    push_to_hub: str | None = typer.Option(None, "--push-to-hub", help="then upload the export and its card to this "
                                           "Hugging Face dataset repo (user/name; needs network and a token)"),
) -> None:
    """Export preference pairs in the formats trl's trainers load, with a dataset card beside them."""
    if push_to_hub and fmt == ESC_PRO:
        raise ValueError("--push-to-hub uploads jsonl, parquet and hf exports (with their dataset card), not esc-pro")
    flt = PairFilter(kind, run, min_margin, language, include_flagged, min_veto_margin=min_veto_margin,
                     min_s1_margin=min_s1_margin, min_s2_margin=min_s2_margin)
    if fmt == ESC_PRO:
        check_esc_pro_options(kind, shape, with_metadata)
        with current().existing_store() as store:
            written = export_stored_esc_pro(store, flt, out)
        console.print(escape(written.summary(out)))
        return
    with current().existing_store() as store:
        n = export_pairs(store, out, fmt, shape, flt, with_metadata,
                         card=CardOptions(license=current().settings().export_license))
    console.print(f"wrote {n:,} rows to {out} ({fmt}, {shape})")
    console.print(escape(f"dataset card: {card_path(out, fmt)}"), soft_wrap=True)
    if push_to_hub:
        console.print(escape(f"pushed to {push_export(out, fmt, push_to_hub)}"), soft_wrap=True)


@runs_app.command("list")
@handles_errors
def runs_list(limit: int = typer.Option(20, "--limit", min=1, help="the newest N runs")) -> None:
    """The most recent runs."""
    with current().existing_store() as store:
        console.print(runs_table(store, limit))


@runs_app.command("show")
@handles_errors
def runs_show(
    run: str = typer.Argument(..., help="run id (a unique prefix is enough)"),
    errors: bool = typer.Option(False, "--errors", help="list every failed or partial item with its reason"),
    config: bool = typer.Option(False, "--config", help="print the run's full config"),
) -> None:
    """One run: status, timings, what it produced and why items failed."""
    with current().existing_store() as store:
        show_run(console, store, run, errors=errors, config=config)
