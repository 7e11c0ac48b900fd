"""``carealign db`` and ``carealign runs``: create, migrate, inspect and export the store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from carealign.command import console, current, handles_errors
from carealign.tables import runs_table, show_run
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
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | parquet | hf"),
    shape: str = typer.Option("preference", "--shape", help="preference (DPO/reward) | prompt (GRPO)"),
    kind: str | None = typer.Option(None, "--kind", help="only pairs of this kind (generic, rubric, esc)"),
    run: str | None = typer.Option(None, "--run", help="only pairs of this run id"),
    min_margin: float | None = typer.Option(None, "--min-margin", help="only pairs with at least this margin"),
    language: str | None = typer.Option(None, "--language", help="only pairs in this language"),
    with_metadata: bool = typer.Option(False, "--with-metadata", help="add pair_id, kind, margin, run_id columns"),
) -> None:
    """Export preference pairs in the formats trl's trainers load."""
    with current().existing_store() as store:
        n = export_pairs(store, out, fmt, shape, PairFilter(kind, run, min_margin, language), with_metadata)
    console.print(f"wrote {n:,} rows to {out} ({fmt}, {shape})")


@runs_app.command("list")
@handles_errors
def runs_list(limit: int = typer.Option(20, "--limit", min=1, help="the newest N runs")) -> None:
    """The most recent runs."""
    with current().existing_store() as store:
        console.print(runs_table(store, limit))


@runs_app.command("show")
@handles_errors
def runs_show(run: str = typer.Argument(..., help="run id (a unique prefix is enough)")) -> None:
    """One run: config, code version, status, timings and what it produced."""
    with current().existing_store() as store:
        show_run(console, store, run)
