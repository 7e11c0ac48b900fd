"""Rubric drafts in the terminal: show a draft, ask for a decision, open an editor for edits.

Used in two places: ``carealign rubrics review`` pages through drafts waiting in the store (the loop
is ``carealign.review_terminal.review_queue``), and ``carealign rubrics draft --review inline``
answers the draft graph's interrupts as drafts come. Both record decisions through
``graphs.rubric_drafts.review.apply_decision``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from agents.rubric import Rubric
from carealign.review_terminal import Prompter, QuitReview
from graphs.rubric_drafts.review import ReviewDecision

if TYPE_CHECKING:
    from store.models import RubricRecord

CHOICES = {"a": "approve", "e": "edit", "r": "reject", "s": "skip", "q": "quit"}
PROMPT = "[a]pprove, [e]dit, [r]eject, [s]kip, [q]uit"


def rubric_table(record: RubricRecord) -> Table:
    t = Table(title=f"rubric {record.id} ({record.origin}, {record.status})", show_lines=False)
    for col, kw in (("id", {}), ("kind", {}), ("dimension", {}), ("weight", {"justify": "right"}),
                    ("criterion", {"overflow": "fold"})):
        t.add_column(col, **kw)
    for c in record.rubric["criteria"]:
        weight = f"{c['weight']:.2f}" if c.get("weight") is not None else ""
        t.add_row(escape(c["id"]), c["kind"], escape(c.get("dimension") or ""), weight, escape(c["text"]))
    return t


def show(console: Console, record: RubricRecord) -> None:
    convo = "\n".join(f"[bold]{m['role']}:[/] {escape(m['content'])}" for m in record.instruction)
    console.print(Panel(convo, title="instruction", expand=False))
    if record.reference:
        console.print(Panel(escape(record.reference), title="reference answer", expand=False))
    console.print(rubric_table(record))


def default_editor() -> list[str]:
    return shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")


def edit_rubric(console: Console, rubric: dict, editor: list[str], prompter: Prompter) -> dict | None:
    """Open the rubric as JSON in the editor until it is a valid rubric (or the reviewer gives up:
    ``None``). Each problem is shown with its criterion and field."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rubric.json"
        path.write_text(json.dumps(rubric, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        while True:
            subprocess.run([*editor, str(path)], check=False)
            try:
                return Rubric.model_validate(json.loads(path.read_text(encoding="utf-8"))).model_dump(mode="json")
            except json.JSONDecodeError as exc:
                problem = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                problem = f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}"
            console.print(f"[red]the edited rubric is not valid:[/] {escape(problem)}")
            if prompter.ask("edit again? [y/n]").strip().lower() not in ("y", "yes"):
                return None


@dataclass
class RubricReviewer:
    """Asks one decision at a time through ``prompter`` (the terminal, or scripted answers)."""

    prompter: Prompter
    reviewer: str
    editor: list[str] = field(default_factory=default_editor)

    def decide(self, record: RubricRecord) -> ReviewDecision | None:
        """A decision for the shown rubric, ``None`` to skip it; raises ``QuitReview``."""
        console = self.prompter.console
        show(console, record)
        while True:
            action = self.prompter.choose(PROMPT, CHOICES)
            if action == "quit":
                raise QuitReview
            if action == "skip":
                return None
            edited = None
            if action == "edit":
                edited = edit_rubric(console, record.rubric, self.editor, self.prompter)
                if edited is None:
                    continue
                if edited == record.rubric:
                    console.print("the edit changes nothing: approve it instead, or edit again")
                    continue
            reason = self.prompter.ask("reason" + (" (optional)" if action == "approve" else "")).strip()
            if action != "approve" and not reason:
                console.print(f"a reason is required to {action} a rubric")
                continue
            return ReviewDecision(decision=action, reason=reason or None, reviewer=self.reviewer, rubric=edited)
