"""The ESC domain of the strategy search: the settings, the dependencies (engines, strategy set,
judge weights) and ``EscDomain``, which plugs the strategist, supporter, seeker and judge into the
generic ``mcts.MCTS`` (priors, expansion, simulation, terminal test). ``graphs.esc_search``
assembles the per-seed workflow around it; the call-saving measures are described there."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.esc import (
    Judge,
    JudgeWeights,
    Reply,
    Seeker,
    Strategist,
    StrategySet,
    Supporter,
    load_strategy_set,
    priors_from_ratings,
)
from agents.prompts import prompt_hash
from mcts import CallCounter, ChildSpec, Node
from store import Store
from store.records import sha256_of

PROMPTS = ("esc_strategist", "esc_supporter", "esc_supporter_multi", "esc_seeker", "esc_judge")
BUDGET_FIELDS = ("iterations", "early_stop_patience", "max_llm_calls")


@dataclass
class EscSettings:
    strategy_set: str = "extes"
    iterations: int = 100
    c_puct: float = 1.0
    rollout_depth: int = 4
    max_new_turns: int = 8  # supporter turns the search may add after the gold prefix
    gold_turns: int = 2
    q_min: float = 0.5
    n_min: int = 2
    margin: float = 0.25
    weights: JudgeWeights = field(default_factory=JudgeWeights)
    prior_temperature: float = 5.0
    expand_k: int = 3
    early_stop_patience: int | None = 30
    max_llm_calls: int | None = None
    unvisited_q: float = 0.0
    seed: int = 0
    batch_expand: bool = True
    lazy_seeker: bool = True
    reuse_rollouts: bool = True
    cache_ratings: bool = True
    batch_judge: bool = True
    cache_scores: bool = True

    def shaping(self) -> dict[str, Any]:
        """Everything that shapes a tree; budgets only decide where it stops (same tree id)."""
        return {k: v for k, v in asdict(self).items() if k not in BUDGET_FIELDS}


def same_model(a: LLMEngine, b: LLMEngine) -> bool:
    return a.model == b.model and getattr(a.backend, "base_url", None) == getattr(b.backend, "base_url", None)


@dataclass
class EscDeps:
    store: Store
    supporter: LLMEngine  # the generator: strategist, supporter and seeker
    judge: LLMEngine
    settings: EscSettings
    dataset: str = ""

    def __post_init__(self) -> None:
        self.strategies: StrategySet = load_strategy_set(self.settings.strategy_set)
        if same_model(self.supporter, self.judge):
            warnings.warn(f"esc-search: the judge and the supporter are the same model ({self.judge.model}): it "
                          "scores its own turns; set --judge-model / --judge-base-url for an independent judge",
                          stacklevel=2)

    @property
    def tree_key(self) -> str:
        return sha256_of({
            "kind": "esc-search", "dataset": self.dataset, "supporter": [self.supporter.model,
                                                                         self.supporter.request_params()],
            "judge": [self.judge.model, self.judge.request_params()], "settings": self.settings.shaping(),
            "strategies": self.strategies.digest(), "prompts": [prompt_hash(p) for p in PROMPTS],
        })[:32]

    @property
    def job_key(self) -> str:
        """The tree key plus the budgets: a larger budget is a new job that continues the same trees."""
        s = self.settings
        return sha256_of([self.tree_key, s.iterations, s.early_stop_patience, s.max_llm_calls])[:32]

    def tree_id(self, item_id: int) -> str:
        return f"esc-{sha256_of([self.tree_key, item_id])[:40]}"


# -- dialogue views of a node -------------------------------------------------------------------
def tagged(node: Node) -> str:
    return node.state.get("tagged") or f"[{node.state['strategy']}] {node.state['supporter']}"


def turns_of(node: Node) -> list[dict[str, Any]]:
    """The dialogue after ``node``'s turn (and its seeker reply, when there is one yet)."""
    lineage = node.lineage()
    out = [{"speaker": "seeker", "text": lineage[0].state["opening"]}] if lineage[0].state.get("opening") else []
    for n in lineage[1:]:
        out.append({"speaker": "supporter", "text": n.state["supporter"], "strategy": n.state["strategy"]})
        if n.state.get("seeker"):
            out.append({"speaker": "seeker", "text": n.state["seeker"]})
    return out


def chat_prompt(node: Node) -> list[dict[str, str]]:
    """The history up to (after) ``node`` as chat messages: seeker = user, supporter = assistant with its
    strategy tag (as the chosen/rejected turns are written)."""
    lineage = node.lineage()
    msgs = [{"role": "user", "content": lineage[0].state["opening"]}] if lineage[0].state.get("opening") else []
    for n in lineage[1:]:
        msgs.append({"role": "assistant", "content": tagged(n)})
        if n.state.get("seeker"):
            msgs.append({"role": "user", "content": n.state["seeker"]})
    return msgs


class EscDomain:
    """The ESC problem for ``mcts.MCTS``: actions are strategies, rewards come from the judge."""

    def __init__(self, supporter: LLMEngine, judge: LLMEngine, strategies: StrategySet, settings: EscSettings,
                 counter: CallCounter, ctx: CallContext, max_depth: int):
        self.s, self.strategies, self.counter, self.ctx, self.max_depth = settings, strategies, counter, ctx, max_depth
        self.strategist, self.supporter = Strategist(supporter, strategies), Supporter(supporter, strategies)
        self.seeker, self.judge = Seeker(supporter, strategies), Judge(judge, strategies)

    def _seed(self, *parts: Any) -> int:
        return int(sha256_of([self.s.seed, *parts])[:8], 16)

    async def _call(self, coro: Any, ids: list[Any]) -> Reply:
        reply = await coro
        if not reply.cached:
            self.counter.add()
        ids.append(reply.call_id)
        return reply

    def _persona(self, node: Node) -> dict[str, str]:
        return node.lineage()[0].state.get("persona") or {}

    async def _rate(self, node: Node, turns: list[dict[str, Any]], key: str, ids: list[Any]) -> dict[str, int]:
        reply = await self._call(self.strategist.rate(self._persona(node), turns, self.ctx, self._seed("rate", key)),
                                 ids)
        return reply.value

    # -- Domain protocol --------------------------------------------------------------------------
    async def priors(self, node: Node) -> dict[str, float]:
        ratings = node.state.get("ratings") if self.s.cache_ratings else None
        if ratings is None:
            ratings = await self._rate(node, turns_of(node), node.path, node.llm_call_ids)
            node.state["ratings"] = ratings
        return priors_from_ratings(ratings, self.s.prior_temperature)

    async def is_terminal(self, node: Node) -> bool:
        return node.ended

    async def expand(self, node: Node, actions: list[str]) -> list[ChildSpec]:
        turns, specs = turns_of(node), {}
        rollout = node.state.get("rollout") if self.s.reuse_rollouts else None
        if rollout and rollout[0]["strategy"] in actions:
            step = rollout[0]
            state = {"strategy": step["strategy"], "supporter": step["supporter"], "seeker": step["seeker"],
                     "ended": step["ended"], "score": step["score"], "reused_from": node.path}
            if step.get("end_reason"):
                state["end_reason"] = step["end_reason"]
            if step.get("ratings") is not None:
                state["ratings"] = step["ratings"]
            if len(rollout) > 1:
                state["rollout"] = rollout[1:]
            specs[step["strategy"]] = ChildSpec(state, list(step["call_ids"]), step["ended"])
        todo = [a for a in actions if a not in specs]
        if self.s.batch_expand and len(todo) > 1:
            ids: list[Any] = []
            reply = await self._call(self.supporter.respond_many(turns, todo, self.ctx,
                                                                 self._seed("expand", node.path, todo)), ids)
            made = [(a, text, list(ids)) for a, text in zip(todo, reply.value, strict=True)]
        else:
            made = []
            for a in todo:
                ids = []
                seed = self._seed("support", node.path, a)
                reply = await self._call(self.supporter.respond(turns, a, self.ctx, seed), ids)
                made.append((a, reply.value, ids))
        for a, text, ids in made:
            state = {"strategy": a, "supporter": text, "seeker": None, "ended": False, "score": None}
            if not self.s.lazy_seeker:
                await self._seek(node.path + "/" + a, turns + [{"speaker": "supporter", "text": text}], state, ids,
                                 node)
            specs[a] = ChildSpec(state, ids, state["ended"])
        return [specs[a] for a in actions]

    async def _seek(self, key: str, turns: list[dict[str, Any]], state: dict[str, Any], ids: list[Any],
                    anchor: Node) -> None:
        reply = await self._call(self.seeker.reply(self._persona(anchor), turns, self.ctx, self._seed("seek", key)),
                                 ids)
        state["seeker"], state["ended"] = reply.value
        if state["ended"]:
            state["end_reason"] = "seeker"

    async def simulate(self, node: Node) -> float:
        ids: list[Any] = []
        st, own = node.state, not (node.is_root or node.fixed)
        if own and st.get("seeker") is None:
            await self._seek(node.path, turns_of(node), st, ids, node)
        if own and not st.get("ended") and node.depth >= self.max_depth:
            st["ended"], st["end_reason"] = True, "turn_limit"
        node.ended = bool(st.get("ended")) if own else node.ended
        steps: list[dict[str, Any]] = []
        if not node.ended:
            cached = st.get("rollout") if self.s.reuse_rollouts else None
            steps = cached if cached else await self._rollout(node, ids)
            st["rollout"] = steps
        await self._judge(node, own, steps, ids)
        node.llm_call_ids.extend(ids)
        scores = ([st["score"]["turn_score"]] if own else []) + [s["score"]["turn_score"] for s in steps]
        return self.s.weights.reward(scores)

    async def _rollout(self, node: Node, ids: list[Any]) -> list[dict[str, Any]]:
        """Greedy: the strategist's top strategy each turn, at most ``rollout_depth`` turns, until the
        seeker ends the conversation or the turn limit is reached."""
        turns, steps = turns_of(node), []
        ratings = node.state.get("ratings") if self.s.cache_ratings else None
        if ratings is None:
            ratings = await self._rate(node, turns, node.path, ids)
            if self.s.cache_ratings:
                node.state["ratings"] = ratings
        for i in range(self.s.rollout_depth):
            depth = node.depth + i + 1
            if depth > self.max_depth:
                break
            strategy = max(self.strategies.names, key=lambda n: ratings[n])  # ties: the set's order
            key = f"{node.path}~{i}"
            step: dict[str, Any] = {"strategy": strategy, "score": None, "ratings": None, "call_ids": []}
            sup = await self._call(self.supporter.respond(turns, strategy, self.ctx, self._seed("roll", key, strategy)),
                                   step["call_ids"])
            step["supporter"] = sup.value
            turns = turns + [{"speaker": "supporter", "text": sup.value}]
            await self._seek(key, turns, step, step["call_ids"], node)
            turns = turns + [{"speaker": "seeker", "text": step["seeker"]}]
            if not step["ended"] and depth >= self.max_depth:
                step["ended"], step["end_reason"] = True, "turn_limit"
            steps.append(step)
            if step["ended"] or i + 1 >= self.s.rollout_depth or depth + 1 > self.max_depth:
                break
            ratings = await self._rate(node, turns, key, step["call_ids"])
            step["ratings"] = ratings
        for step in steps:
            ids.extend(step["call_ids"])
        return steps

    async def _judge(self, node: Node, own: bool, steps: list[dict[str, Any]], ids: list[Any]) -> None:
        """Score the turns that have no score yet (all of them when ``cache_scores`` is off)."""
        turns = turns_of(node)
        targets: list[tuple[int, dict[str, Any]]] = []
        if own:
            at = len(turns_of(node.parent)) if node.parent else 0
            targets.append((at, node.state))
        for step in steps:
            targets.append((len(turns), step))
            turns = turns + [{"speaker": "supporter", "text": step["supporter"]},
                             {"speaker": "seeker", "text": step["seeker"]}]
        if self.s.cache_scores:
            targets = [(i, t) for i, t in targets if t.get("score") is None]
        if not targets:
            return
        groups = [targets] if self.s.batch_judge else [[t] for t in targets]
        for group in groups:
            idx = [i for i, _ in group]
            reply = await self._call(self.judge.score(turns, idx, self.ctx, self._seed("judge", node.path, idx)), ids)
            for (_, target), scores in zip(group, reply.value, strict=True):
                target["score"] = {**scores, "turn_score": self.s.weights.turn_score(scores)}
                if target is not node.state:
                    target["call_ids"].append(reply.call_id)


# -- the per-item workflow ------------------------------------------------------------------------
