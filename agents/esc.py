"""Emotional-support agents for the strategy search (CSO, PROTOCOLS.md section 3).

Four roles, each owning its prompt (``agents/templates/esc_*``) and reply model:

- ``Strategist`` rates every strategy of the set 0-10 in ONE structured call; the search's prior is
  ``softmax(rating / 5)`` (``priors_from_ratings``);
- ``Supporter`` answers with a given strategy (name and definition); ``respond_many`` writes the
  responses for several strategies in one structured call, so one request expands several siblings;
- ``Seeker`` plays the help seeker from the seed's situation, emotion and problem, and ends the
  conversation with an explicit ``end_conversation`` field (no marker string to parse);
- ``Judge`` scores supporter turns on Empathy, Information, Humanoid and Strategy, each an integer
  0-4 checked by pydantic (a "7.5" or a 5 is a validation error, repaired once, then a recorded
  failure), several turns per call when asked.

Strategy sets are data (``agents/data/strategies_*.json``); names met in datasets are normalised
through the set's aliases and case, never dropped (an unknown name is an error).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from agents.engine import CallContext, ChatResult, LLMEngine
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render

DATA_DIR = Path(__file__).parent / "data"
STRATEGY_SETS = ("extes", "esconv")
JUDGE_ASPECTS = ("empathy", "information", "humanoid", "strategy")


# -- strategy sets ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strategy:
    name: str
    definition: str


@dataclass(frozen=True)
class StrategySet:
    name: str
    strategies: tuple[Strategy, ...]
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.strategies]

    def get(self, name: str) -> Strategy:
        for s in self.strategies:
            if s.name == name:
                return s
        raise KeyError(f"strategy {name!r} is not in the {self.name} set")

    def normalise(self, raw: str) -> str:
        """The set's spelling of ``raw`` (brackets, case, spacing and aliases forgiven); ValueError
        naming the known strategies when there is none."""
        key = _key(raw.strip().strip("[]"))
        for s in self.strategies:
            if _key(s.name) == key:
                return s.name
        for alias, target in self.aliases:
            if _key(alias) == key:
                return target
        raise ValueError(f"unknown strategy {raw!r} (the {self.name} set has: {', '.join(self.names)})")

    def digest(self) -> list[Any]:
        return [self.name, [[s.name, s.definition] for s in self.strategies], list(self.aliases)]


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


@cache
def load_strategy_set(name_or_path: str = "extes") -> StrategySet:
    """A shipped set by name (``extes``, ``esconv``) or a JSON file of the same shape."""
    path = Path(name_or_path)
    if name_or_path in STRATEGY_SETS:
        path = DATA_DIR / f"strategies_{name_or_path}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"strategy set {name_or_path!r}: no such set ({', '.join(STRATEGY_SETS)}) "
                         "or file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid UTF-8 JSON: {exc}") from None
    items = data.get("strategies") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) < 2:
        raise ValueError(f"{path}: field 'strategies' must list at least two strategies")
    strategies = []
    for i, s in enumerate(items):
        if not isinstance(s, dict) or not str(s.get("name", "")).strip() or not str(s.get("definition", "")).strip():
            raise ValueError(f"{path}: strategies[{i}]: fields 'name' and 'definition' must be non-empty")
        strategies.append(Strategy(str(s["name"]).strip(), str(s["definition"]).strip()))
    if len({_key(s.name) for s in strategies}) != len(strategies):
        raise ValueError(f"{path}: field 'strategies' has duplicate names")
    aliases = tuple(sorted((str(k), str(v)) for k, v in (data.get("aliases") or {}).items()))
    out = StrategySet(str(data.get("name") or path.stem), tuple(strategies), aliases)
    for alias, target in aliases:
        if target not in out.names:
            raise ValueError(f"{path}: aliases.{alias}: {target!r} is not a strategy of the set")
    return out


def priors_from_ratings(ratings: dict[str, int], temperature: float = 5.0) -> dict[str, float]:
    """CSO's prior: ``softmax(rating / temperature)`` over the set (temperature 5 in the paper)."""
    top = max(ratings.values())
    exp = {k: math.exp((v - top) / temperature) for k, v in ratings.items()}
    total = sum(exp.values())
    return {k: v / total for k, v in exp.items()}


# -- reply models -------------------------------------------------------------------------------
Rating4 = Literal[0, 1, 2, 3, 4]
Rating10 = Literal[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]

class _Keyed(BaseModel):
    # A reply is validated from the model's JSON (aliases) and again from the request cache, where
    # rows stored before replies were recorded by alias hold the field names: accept both.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    def by_key(self) -> dict[str, Any]:
        """The values by their keys (the aliases), in order."""
        return {f.alias: getattr(self, name) for name, f in type(self).model_fields.items()}


def _keyed(name: str, keys: tuple[str, ...], annotation: Any, **constraints: Any) -> type[_Keyed]:
    """One required property per key, named by the key itself (strategy names have spaces, so the
    fields are aliased): a constrained decoder must emit every key, and pydantic checks each value."""
    fields: dict[str, Any] = {f"k{i}": (annotation, Field(alias=key, **constraints)) for i, key in enumerate(keys)}
    return create_model(name, __base__=_Keyed, **fields)


@cache
def ratings_model(names: tuple[str, ...]) -> type[BaseModel]:
    """``{strategy name: rating 0-10}`` for every strategy of the set."""
    return _keyed("StrategyRatings", names, Rating10)


class SupporterReply(BaseModel):
    response: str = Field(min_length=1, max_length=2000)


@cache
def supporter_batch_model(names: tuple[str, ...]) -> type[BaseModel]:
    """``{strategy name: response}``, one response per requested strategy."""
    return _keyed("SupporterResponses", names, str, min_length=1, max_length=2000)


class SeekerReply(BaseModel):
    reply: str = Field(min_length=1, max_length=2000)
    end_conversation: bool


class TurnScores(BaseModel):
    """0-4 integers: pydantic rejects "7.5", 7.5 and 5 (no regex reading of scores). An enum, not
    ``minimum``/``maximum``: llama.cpp's grammar enforces enums but ignores integer bounds."""

    empathy: Rating4
    information: Rating4
    humanoid: Rating4
    strategy: Rating4


@cache
def judge_model(turn_numbers: tuple[int, ...]) -> type[BaseModel]:
    """``{"turn N": {empathy, information, humanoid, strategy}}`` for each judged turn N."""
    return _keyed("JudgedTurns", tuple(f"turn {n}" for n in turn_numbers), TurnScores)


@dataclass(frozen=True)
class JudgeWeights:
    """CSO's turn score ``0.1E + 0.1I + 0.1H + 0.7S`` (0-4) and the reward bias (-3: reward -3..1)."""

    empathy: float = 0.1
    information: float = 0.1
    humanoid: float = 0.1
    strategy: float = 0.7
    bias: float = -3.0

    def turn_score(self, scores: dict[str, int]) -> float:
        return sum(getattr(self, a) * scores[a] for a in JUDGE_ASPECTS)

    def reward(self, turn_scores: list[float]) -> float:
        """Mean turn score over the evaluated turns plus the bias."""
        if not turn_scores:
            raise ValueError("a reward needs at least one evaluated turn")
        return sum(turn_scores) / len(turn_scores) + self.bias


# -- roles --------------------------------------------------------------------------------------
def dialogue_lines(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Turns (``speaker`` seeker|supporter, ``text``) as the prompts show them."""
    return [{"who": "Seeker" if t["speaker"] == "seeker" else "Supporter", "text": t["text"]} for t in turns]


@dataclass
class Reply:
    """A role's validated answer and the call that produced it (``cached``: no request was sent)."""

    value: Any
    call_id: int | None
    cached: bool


class _Role:
    """``language``: the prompt language setting; ``auto`` asks in the conversation's language (the
    ``lang`` a caller passes, else detected from the persona and the turns)."""

    role = ""
    prompt = ""

    def __init__(self, engine: LLMEngine, strategies: StrategySet, language: PromptLanguage = "auto"):
        self.engine, self.strategies, self.language = engine, strategies, language

    def _name(self, prompt: str, turns: list[dict[str, Any]], lang: str | None,
              persona: dict[str, str] | None = None) -> str:
        return prompt_for(prompt, self.language, lang, persona or {}, [t["text"] for t in turns])

    def _ctx(self, ctx: CallContext, name: str) -> CallContext:
        return replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name))

    @staticmethod
    def _reply(res: ChatResult, value: Any) -> Reply:
        return Reply(value, res.call_id, res.cached)


class Strategist(_Role):
    role, prompt = "esc_strategist", "esc_strategist"

    async def rate(self, persona: dict[str, str], turns: list[dict[str, Any]], ctx: CallContext,
                   seed: int, lang: str | None = None) -> Reply:
        """``Reply.value`` = {strategy: rating 0-10} for every strategy of the set."""
        schema = ratings_model(tuple(self.strategies.names))
        name = self._name(self.prompt, turns, lang, persona)
        messages = render(name, persona=persona, dialogue=dialogue_lines(turns),
                          strategies=self.strategies.strategies)
        res = await self.engine.chat(messages, schema=schema, ctx=self._ctx(ctx, name), temperature=0.0, seed=seed)
        return self._reply(res, res.value.by_key())


class Supporter(_Role):
    role, prompt, batch_prompt = "esc_supporter", "esc_supporter", "esc_supporter_multi"

    async def respond(self, turns: list[dict[str, Any]], strategy: str, ctx: CallContext, seed: int,
                      lang: str | None = None) -> Reply:
        """``Reply.value`` = the response text written with ``strategy``."""
        name = self._name(self.prompt, turns, lang)
        messages = render(name, dialogue=dialogue_lines(turns), strategy=self.strategies.get(strategy))
        res = await self.engine.chat(messages, schema=SupporterReply, ctx=self._ctx(ctx, name), seed=seed)
        return self._reply(res, res.value.response.strip())

    async def respond_many(self, turns: list[dict[str, Any]], strategies: list[str], ctx: CallContext,
                           seed: int, lang: str | None = None) -> Reply:
        """One request, one response per strategy: ``Reply.value`` = [text, ...] in the given order."""
        schema = supporter_batch_model(tuple(strategies))
        name = self._name(self.batch_prompt, turns, lang)
        messages = render(name, dialogue=dialogue_lines(turns),
                          strategies=[self.strategies.get(s) for s in strategies])
        res = await self.engine.chat(messages, schema=schema, ctx=self._ctx(ctx, name), seed=seed)
        return self._reply(res, [text.strip() for text in res.value.by_key().values()])


class Seeker(_Role):
    role, prompt = "esc_seeker", "esc_seeker"

    async def reply(self, persona: dict[str, str], turns: list[dict[str, Any]], ctx: CallContext,
                    seed: int, lang: str | None = None) -> Reply:
        """``Reply.value`` = (reply text, ended)."""
        name = self._name(self.prompt, turns, lang, persona)
        messages = render(name, persona=persona, dialogue=dialogue_lines(turns))
        res = await self.engine.chat(messages, schema=SeekerReply, ctx=self._ctx(ctx, name), seed=seed)
        return self._reply(res, (res.value.reply.strip(), bool(res.value.end_conversation)))


class Judge(_Role):
    role, prompt = "esc_judge", "esc_judge"

    async def score(self, turns: list[dict[str, Any]], judged: list[int], ctx: CallContext, seed: int,
                    lang: str | None = None) -> Reply:
        """Scores of the supporter turns at positions ``judged`` of ``turns`` (numbered from 1 in the
        prompt): ``Reply.value`` = [{aspect: 0-4}, ...] in the order of ``judged``."""
        numbers = tuple(i + 1 for i in judged)
        if any(turns[i]["speaker"] != "supporter" for i in judged):
            raise ValueError("only supporter turns are judged")
        lines = [{**line, "n": i + 1} for i, line in enumerate(dialogue_lines(turns))]
        name = self._name(self.prompt, turns, lang)
        messages = render(name, dialogue=lines, judged=list(numbers))
        res = await self.engine.chat(messages, schema=judge_model(numbers), ctx=self._ctx(ctx, name),
                                     temperature=0.0, seed=seed)
        return self._reply(res, [{a: getattr(s, a) for a in JUDGE_ASPECTS} for s in res.value.by_key().values()])
