"""The ESC domain of the strategy search: ``EscDomain`` plugs the strategist, supporter, seeker and
judge into the generic ``mcts.MCTS`` (priors, expansion, simulation, terminal test), and the search's
settings, depth limit and early-stop test are derived from ``EscSearchConfig`` here.

A node is one supporter turn: its strategy (the action), the supporter text, the simulated seeker
reply and an ``ended`` flag; every LLM call that made or evaluated it is on its ``llm_call_ids``.

Fewer calls than the reference (measured in tests/perf/bench_esc.py), each a setting:
- priors: one strategist call per node, cached in the node (the MCTS asks once; the first rollout
  step from a node reuses it too);
- ``batch_expand``: the ``expand_k`` siblings the search materialises at once are written by ONE
  structured supporter call (one response per strategy), not ``n`` > 1 samples of one prompt;
- ``lazy_seeker``: a sibling's seeker reply is simulated only when the sibling is first evaluated;
- ``reuse_rollouts``: a rollout's turns are kept in the node; the child that the rollout's greedy
  first step took becomes a node with that turn, its score and the rest of the rollout, for free;
- ``batch_judge`` / ``cache_scores``: every supporter turn is judged once, all new turns of a
  simulation in one call, and the score is kept with the turn;
- early stop: a tree stops when no turn joined a preference pair for ``early_stop_patience``
  iterations (a pair formed by two turns both already in other pairs, neither on the iteration's
  path, does not count).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.esc import Judge, Reply, Seeker, Strategist, StrategySet, Supporter, priors_from_ratings
from graphs.esc_search.configuration import EscSearchConfig
from mcts import CallCounter, ChildSpec, Node, PreferencePair, SearchConfig, Tree, extract_pairs
from store.records import sha256_of


def max_depth(config: EscSearchConfig, tree: Tree) -> int:
    return int(tree.root.state.get("gold_turns", 0)) + config.max_new_turns


def search_config(config: EscSearchConfig, seed: int, tree: Tree) -> SearchConfig:
    return SearchConfig(c_puct=config.c_puct, iterations=config.iterations, max_llm_calls=config.max_llm_calls,
                        max_depth=max_depth(config, tree), seed=seed, expand_k=config.expand_k,
                        early_stop_patience=config.early_stop_patience, unvisited_q=config.unvisited_q)


def tree_pairs(tree: Tree, config: EscSearchConfig) -> list[PreferencePair]:
    """The tree's preference pairs under the configured thresholds."""
    return extract_pairs(tree, q_min=config.q_min, n_min=config.n_min, margin=config.margin,
                         rule=config.rejected_rule, q_max=config.rejected_q_max)


def pair_members(tree: Tree, config: EscSearchConfig) -> Callable[[Node], bool]:
    """The early-stop test: a node qualifies when it is one side of a current pair."""
    memo: dict[int, set[str]] = {}

    def qualifies(node: Node) -> bool:
        it = tree.meta.iterations
        if it not in memo:
            memo.clear()
            memo[it] = {p for pair in tree_pairs(tree, config) for p in (pair.preferred.path, pair.rejected.path)}
        return node.path in memo[it]

    return qualifies


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

    def __init__(self, supporter: LLMEngine, judge: LLMEngine, strategies: StrategySet, config: EscSearchConfig,
                 seed: int, counter: CallCounter, ctx: CallContext, max_depth: int):
        self.config, self.seed, self.weights = config, seed, config.weights()
        self.strategies, self.counter, self.ctx, self.max_depth = strategies, counter, ctx, max_depth
        lang = config.prompt_language  # auto: each conversation's own (persona and turns)
        self.strategist = Strategist(supporter, strategies, lang)
        self.supporter = Supporter(supporter, strategies, lang)
        self.seeker, self.judge = Seeker(supporter, strategies, lang), Judge(judge, strategies, lang)

    def _seed(self, *parts: Any) -> int:
        return int(sha256_of([self.seed, *parts])[:8], 16)

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
        ratings = node.state.get("ratings") if self.config.cache_ratings else None
        if ratings is None:
            ratings = await self._rate(node, turns_of(node), node.path, node.llm_call_ids)
            node.state["ratings"] = ratings
        return priors_from_ratings(ratings, self.config.prior_temperature)

    async def is_terminal(self, node: Node) -> bool:
        return node.ended

    async def expand(self, node: Node, actions: list[str]) -> list[ChildSpec]:
        turns, specs = turns_of(node), {}
        rollout = node.state.get("rollout") if self.config.reuse_rollouts else None
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
        if self.config.batch_expand and len(todo) > 1:
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
            if not self.config.lazy_seeker:
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
            cached = st.get("rollout") if self.config.reuse_rollouts else None
            steps = cached if cached else await self._rollout(node, ids)
            st["rollout"] = steps
        await self._judge(node, own, steps, ids)
        node.llm_call_ids.extend(ids)
        scores = ([st["score"]["turn_score"]] if own else []) + [s["score"]["turn_score"] for s in steps]
        return self.weights.reward(scores)

    async def _rollout(self, node: Node, ids: list[Any]) -> list[dict[str, Any]]:
        """Greedy: the strategist's top strategy each turn, at most ``rollout_depth`` turns, until the
        seeker ends the conversation or the turn limit is reached."""
        turns, steps = turns_of(node), []
        ratings = node.state.get("ratings") if self.config.cache_ratings else None
        if ratings is None:
            ratings = await self._rate(node, turns, node.path, ids)
            if self.config.cache_ratings:
                node.state["ratings"] = ratings
        for i in range(self.config.rollout_depth):
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
            if step["ended"] or i + 1 >= self.config.rollout_depth or depth + 1 > self.max_depth:
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
        if self.config.cache_scores:
            targets = [(i, t) for i, t in targets if t.get("score") is None]
        if not targets:
            return
        groups = [targets] if self.config.batch_judge else [[t] for t in targets]
        for group in groups:
            idx = [i for i, _ in group]
            reply = await self._call(self.judge.score(turns, idx, self.ctx, self._seed("judge", node.path, idx)), ids)
            for (_, target), scores in zip(group, reply.value, strict=True):
                target["score"] = {**scores, "turn_score": self.weights.turn_score(scores)}
                if target is not node.state:
                    target["call_ids"].append(reply.call_id)
