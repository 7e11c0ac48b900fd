"""The terminal side of rubric review: show a draft, ask for a decision, open an editor for edits.

Used in two places: ``carealign rubrics review`` pages through drafts waiting in the store, and
``carealign rubrics draft --review inline`` answers the draft graph's interrupts as drafts come.
Both record decisions through ``graphs.rubric_drafts.apply_decision``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.prompt import Prompt
from rich.table import Table

from agents.rubric import Rubric
from graphs.rubric_drafts import ReviewDecision
from store.models import RubricRecord

CHOICES = {"a": "approve", "e": "edit", "r": "reject", "s": "skip", "q": "quit"}


class QuitReview(Exception):
    """The reviewer asked to stop; decisions made so far are kept."""


def rubric_table(record: RubricRecord) -> Table:
    t = Table(title=f"rubric {record.id} ({record.origin}, {record.status})", show_lines=False)
    for col, kw in (("id", {}), ("kind", {}), ("dimension", {}), ("weight", {"justify": "right"}),
                    ("criterion", {"overflow": "fold"})):
        t.add_column(col, **kw)
    for c in record.rubric["criteria"]:
        weight = f"{c['weight']:.2f}" if c.get("weight") is not None else ""
        t.add_row(c["id"], c["kind"], c.get("dimension") or "", weight, c["text"])
    return t


def show(console: Console, record: RubricRecord) -> None:
    convo = "\n".join(f"[bold]{m['role']}:[/] {m['content']}" for m in record.instruction)
    console.print(Panel(convo, title="instruction", expand=False))
    if record.reference:
        console.print(Panel(record.reference, title="reference answer", expand=False))
    console.print(rubric_table(record))


def default_editor() -> list[str]:
    return shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")


def edit_rubric(console: Console, rubric: dict, editor: list[str], ask: Callable[[str], str]) -> dict | None:
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
            console.print(f"[red]the edited rubric is not valid:[/] {problem}")
            if ask("edit again? [y/n]").strip().lower() not in ("y", "yes"):
                return None


@dataclass
class TerminalReviewer:
    """Asks one decision at a time; ``ask`` reads a line (rich's prompt by default, replaceable)."""

    console: Console
    reviewer: str
    editor: list[str] = field(default_factory=default_editor)
    ask: Callable[[str], str] | None = None

    def _ask(self, prompt: str) -> str:
        return self.ask(prompt) if self.ask else Prompt.ask(prompt, console=self.console, default="")

    def decide(self, record: RubricRecord) -> ReviewDecision | None:
        """A decision for the shown rubric, ``None`` to skip it; raises ``QuitReview``."""
        show(self.console, record)
        while True:
            choice = self._ask("[a]pprove, [e]dit, [r]eject, [s]kip, [q]uit").strip().lower()[:1]
            action = CHOICES.get(choice)
            if action == "quit":
                raise QuitReview
            if action == "skip":
                return None
            if action is None:
                self.console.print("answer a, e, r, s or q")
                continue
            edited = None
            if action == "edit":
                edited = edit_rubric(self.console, record.rubric, self.editor, self._ask)
                if edited is None:
                    continue
                if edited == record.rubric:
                    self.console.print("the edit changes nothing: approve it instead, or edit again")
                    continue
            reason = self._ask("reason" + (" (optional)" if action == "approve" else "")).strip()
            if action != "approve" and not reason:
                self.console.print(f"a reason is required to {action} a rubric")
                continue
            return ReviewDecision(decision=action, reason=reason or None, reviewer=self.reviewer, rubric=edited)
