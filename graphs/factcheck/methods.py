"""Fact-checking methods as data: ``zero-shot``, ``cot``, ``sc@5``, ``debate@3x2``, ``roles@3+triage``,
``budget@800`` ... parsed into a ``MethodSpec`` that the one checking graph runs.

Every method is agents x rounds plus an aggregation, which is what makes them comparable at equal
compute: ``calls`` is the nominal number of LLM calls per text, and methods with equal ``calls``
(debate 3x2 and self-consistency with 6 samples) are reported side by side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AGGREGATIONS = ("single", "vote", "judge", "moderator")


@dataclass(frozen=True)
class MethodSpec:
    name: str  # the spec as written (normalised), also the method's name in the store and reports
    family: str  # zero-shot | cot | sc | debate | roles | budget
    agents: int = 1
    rounds: int = 1
    reasoned: bool = True
    aggregate: str = "single"
    triage: bool = False
    min_reasoning_chars: int = 0
    sampled: bool = False  # agents sample at the method temperature (else greedy)

    @property
    def calls(self) -> int:
        """Nominal LLM calls per text (a triaged easy text costs fewer; repairs cost more)."""
        return self.agents * self.rounds + (self.aggregate in ("judge", "moderator")) + self.triage

    @property
    def interactive(self) -> bool:
        return self.rounds > 1 or self.aggregate in ("judge", "moderator")


_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^zero-shot$"), "zero-shot"),
    (re.compile(r"^cot$"), "cot"),
    (re.compile(r"^sc@(\d+)$"), "sc"),
    (re.compile(r"^debate@(\d+)x(\d+)(\+judge)?$"), "debate"),
    (re.compile(r"^roles@(\d+)(\+triage)?$"), "roles"),
    (re.compile(r"^budget@(\d+)$"), "budget"),
]
HELP = "zero-shot, cot, sc@K, debate@NxR[+judge], roles@N[+triage], budget@CHARS"


def parse_method(spec: str, max_roles: int = 5) -> MethodSpec:
    name = spec.strip().lower()
    for pattern, family in _PATTERNS:
        m = pattern.match(name)
        if m:
            return _build(name, family, m, max_roles)
    raise ValueError(f"unknown fact-checking method {spec!r}; methods: {HELP}")


def _build(name: str, family: str, m: re.Match[str], max_roles: int) -> MethodSpec:
    if family == "zero-shot":
        return MethodSpec(name, family, reasoned=False)
    if family == "cot":
        return MethodSpec(name, family)
    if family == "sc":
        k = _at_least(int(m.group(1)), 2, name, "samples")
        return MethodSpec(name, family, agents=k, aggregate="vote", sampled=True)
    if family == "debate":
        n, r = _at_least(int(m.group(1)), 2, name, "agents"), _at_least(int(m.group(2)), 1, name, "rounds")
        return MethodSpec(name, family, agents=n, rounds=r, aggregate="judge" if m.group(3) else "vote",
                          sampled=True)
    if family == "roles":
        n = _at_least(int(m.group(1)), 2, name, "specialists")
        if n > max_roles:
            raise ValueError(f"method {name!r}: only {max_roles} specialist roles are defined")
        return MethodSpec(name, family, agents=n, aggregate="moderator", triage=bool(m.group(2)))
    chars = _at_least(int(m.group(1)), 1, name, "reasoning characters")
    return MethodSpec(name, family, min_reasoning_chars=chars)


def _at_least(value: int, least: int, name: str, what: str) -> int:
    if value < least:
        raise ValueError(f"method {name!r}: needs at least {least} {what}")
    return value


def parse_methods(specs: str, max_roles: int = 5) -> list[MethodSpec]:
    methods = [parse_method(s, max_roles) for s in specs.split(",") if s.strip()]
    if not methods:
        raise ValueError(f"no method given; methods: {HELP}")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"a method is listed twice: {names}")
    return methods


def compute_matched(methods: list[MethodSpec]) -> list[tuple[MethodSpec, MethodSpec]]:
    """(interactive method, independent-sampling method) pairs with the same nominal calls."""
    return [(a, b) for a in methods for b in methods
            if a.interactive and not b.interactive and b.agents > 1 and a.calls == b.calls]
