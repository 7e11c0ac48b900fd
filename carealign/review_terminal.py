"""The one terminal review loop: page through a queue, ask a decision per entry, record it.

Used by ``rubrics review`` / ``rubrics draft --review inline`` (rubric drafts) and by
``factbench review`` (the filter panel's verdicts). What differs between them is only how an entry
is shown and decided (``decide``) and how a decision is recorded (``record``); the paging, skipping,
quitting (``q`` or Ctrl-D), counting and the handling of a decision another reviewer made first
are here. Prompts are printed literally: ``[a]pprove`` is text, never rich markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.prompt import Prompt

from store import StoreError

Entry = TypeVar("Entry")
Decision = TypeVar("Decision")


class QuitReview(Exception):
    """The reviewer asked to stop (``q`` or end of input); decisions made so far are kept."""


@dataclass
class Prompter:
    """Reads the reviewer's answers; ``ask_line`` replaces the terminal (tests, other front ends)."""

    console: Console
    ask_line: Callable[[str], str] | None = None

    def ask(self, prompt: str) -> str:
        try:
            if self.ask_line is not None:
                return self.ask_line(prompt)
            return Prompt.ask(escape(prompt), console=self.console, default="")
        except EOFError:  # Ctrl-D: stop as with 'q'
            raise QuitReview from None

    def choose(self, prompt: str, choices: dict[str, str]) -> str:
        """One of ``choices`` ({key: action}), asked until the answer's first letter is a key.
        ``prompt`` names them, e.g. 'variant 3 / detectable: [a]gree, [d]isagree'."""
        while True:
            action = choices.get(self.ask(prompt).strip().lower()[:1])
            if action is not None:
                return action
            self.console.print("answer " + ", ".join(choices), markup=False)

    def note(self, prompt: str, required: str | None = None) -> str:
        """A free-text note; with ``required`` (the reason it is needed) it is asked again until given."""
        text = self.ask(prompt + ("" if required else " (optional)")).strip()
        while required and not text:
            text = self.ask(required).strip()
        return text


@dataclass
class ReviewTally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def line(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.counts.items())


def review_queue(console: Console, queue: Sequence[Entry], decide: Callable[[Entry], Decision | None],
                 record: Callable[[Entry, Decision], list[str]], tally: ReviewTally,
                 skip_key: str = "skip") -> ReviewTally:
    """Ask ``decide`` for each entry (``None`` skips it; ``QuitReview`` stops), and ``record`` each
    decision, which returns the tally keys it counts for. A decision the store refuses (another
    reviewer decided first) is reported and not counted."""
    for n, entry in enumerate(queue, start=1):
        console.rule(f"{n} of {len(queue)}")
        try:
            decision = decide(entry)
        except QuitReview:
            break
        if decision is None:
            tally.add(skip_key)
            continue
        try:
            keys = record(entry, decision)
        except StoreError as exc:
            console.print(f"[yellow]{escape(str(exc))}[/]")
            continue
        for key in keys:
            tally.add(key)
    return tally
