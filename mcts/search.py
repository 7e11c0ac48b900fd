"""Monte Carlo tree search with PUCB selection (CSO, PROTOCOLS section 3), generic over a domain.

One iteration:

1. **Select** from the root: at each node ask the domain's priors once (cached on the node), then
   score every child by ``PUCB = Q + c * P * sqrt(N_parent) / (N + 1)``. Actions the domain offers
   but that have no node yet compete as *virtual* children with Q = ``unvisited_q``, N = 0, which is
   how CSO's reference code treats the children it created but never generated.
2. **Expand** when a virtual child wins: the domain materialises it (and, with ``expand_k > 1``, the
   next highest-prior virtual siblings in the same call, so one LLM request can serve several).
3. **Simulate** from the new node (or from a never-simulated node reached by selection, or a
   terminal one): the domain's rollout + evaluation returns a reward. A terminal node already
   evaluated reuses its reward instead of paying for a second evaluation.
4. **Backpropagate** ``Q <- (Q*N + r)/(N + 1); N <- N + 1`` on that node and every ancestor.

Determinism: children are scored in creation order, exact ties go to the higher prior, and
remaining ties are drawn from an RNG seeded by ``(seed, iteration)`` alone. Because that RNG needs
no carried state, a search resumed from the store after a crash draws exactly what the uninterrupted
search would have drawn; only the iteration count has to be persisted (it lives in the root's state).

Budgets (iterations, ended nodes, LLM calls, early stop) are checked between iterations: an
iteration in progress always completes, so the tree in the store always matches a whole iteration.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mcts.tree import Node, Tree


@dataclass
class ChildSpec:
    """What a domain's ``expand`` returns per action: the child's small state and how it was made."""

    state: dict[str, Any] = field(default_factory=dict)
    llm_call_ids: list[Any] = field(default_factory=list)
    ended: bool = False


@runtime_checkable
class Domain(Protocol):
    """The problem being searched. Methods are async because real domains call LLMs.

    A domain may change the node it is handed (state, ended, llm_call_ids) and nothing else. It
    reports every LLM call it makes through the ``CallCounter`` it was given, so the call budget holds.
    """

    async def priors(self, node: Node) -> Mapping[str, float]:
        """The actions available at ``node`` and their priors P (asked once per node)."""
        ...

    async def expand(self, node: Node, actions: Sequence[str]) -> Sequence[ChildSpec | dict[str, Any]]:
        """One child per action, in the same order (a ChildSpec or just the child's state dict)."""
        ...

    async def simulate(self, node: Node) -> float:
        """Roll out from ``node`` and evaluate: the reward to backpropagate. May set ``node.ended``."""
        ...

    async def is_terminal(self, node: Node) -> bool:
        """True when ``node`` must not be expanded (the conversation is over)."""
        ...


class CallCounter:
    """Counts LLM calls; the domain adds to it, the search charges the difference to its tree.

    Share one counter between searches only when they run one after the other.
    """

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int = 1) -> None:
        if n < 0:
            raise ValueError("call count increments must be >= 0")
        self.count += n


@dataclass
class SearchConfig:
    """Search settings. Budgets are totals for the tree, counting iterations done before a resume.

    ``seed`` is recorded in a new tree; resuming a stored tree needs the same seed.
    ``unvisited_q`` is the Q a never-visited child scores with (0 in the reference code; not
    published as a setting). ``early_stop_patience`` = K stops the search when no new qualifying node
    appeared in the last K iterations (qualifying: ended and evaluated, unless a callback says otherwise).
    """

    c_puct: float = 1.0
    iterations: int = 100
    max_terminal_nodes: int | None = None
    max_llm_calls: int | None = None
    max_depth: int | None = None
    seed: int = 0
    expand_k: int = 1
    early_stop_patience: int | None = None
    unvisited_q: float = 0.0

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")
        if self.expand_k < 1:
            raise ValueError("expand_k must be >= 1")
        if self.c_puct < 0:
            raise ValueError("c_puct must be >= 0")
        for name in ("max_terminal_nodes", "max_llm_calls", "max_depth", "early_stop_patience"):
            v = getattr(self, name)
            if v is not None and v < (1 if name == "early_stop_patience" else 0):
                raise ValueError(f"{name} must be a non-negative integer (patience: >= 1) or None")


STOP_ITERATIONS = "iterations"
STOP_TERMINAL_NODES = "terminal_nodes"
STOP_LLM_CALLS = "llm_calls"
STOP_EARLY = "early_stop"


@dataclass
class SearchReport:
    """How a search went: totals for the tree, what this run added, and why it stopped."""

    iterations: int
    iterations_this_run: int
    terminal_nodes: int
    llm_calls: int
    nodes: int
    stop_reason: str
    last_new_iteration: int
    resumed_from: int


def default_qualifies(node: Node) -> bool:
    return node.ended and node.evaluated


class SearchAborted(RuntimeError):
    """The search cannot go on in memory: reload the tree from its store to resume."""


class MCTS:
    """Runs iterations on a tree until a budget is spent, saving each completed iteration."""

    def __init__(self, domain: Domain, tree: Tree, config: SearchConfig | None = None, *,
                 node_store: Any | None = None, counter: CallCounter | None = None,
                 qualifies: Callable[[Node], bool] | None = None):
        self.domain = domain
        self.tree = tree
        self.config = config or SearchConfig()
        self.node_store = node_store
        self.counter = counter or CallCounter()
        self.qualifies = qualifies or default_qualifies
        self._broken = False
        self._start: int | None = None  # the iteration the current run began at (set by begin())
        if tree.meta.seed is None:
            tree.meta.seed = self.config.seed
            tree.mark_changed(tree.root)
        elif tree.meta.seed != self.config.seed:
            raise ValueError(f"tree {tree.tree_id!r} was searched with seed {tree.meta.seed}, not "
                             f"{self.config.seed}: resume it with the same seed (or start a new tree)")

    # -- driver ---------------------------------------------------------------------------------
    # run() is the whole loop. A driver that is not run() (a LangGraph graph showing select, expand,
    # simulate, backpropagate as one step that loops while no budget is spent) calls the same pieces:
    # begin(), then step() while stop_reason() is None, then report(reason). Both give the same tree,
    # the same saves and the same report.
    async def run(self) -> SearchReport:
        """Iterate until a budget stops the search; returns the report (the tree is in ``self.tree``)."""
        self.begin()
        while (reason := self.stop_reason()) is None:
            await self.step()
        return self.report(reason)

    def begin(self) -> None:
        """Start (or resume) a run: refuse a search broken by a failed iteration, remember where this
        run starts (the report's ``resumed_from``) and save what is not saved yet (a new tree, its seed).

        Call it once before the first ``step()``; calling it again starts a new run on the same tree.
        """
        if self._broken:
            raise SearchAborted("a previous iteration failed mid-way; reload the tree with load_tree()")
        self._start = self.tree.meta.iterations
        self._save()

    async def step(self) -> Node:
        """One whole iteration, then save it; returns the node that was simulated.

        Budgets are not checked here: the driver checks ``stop_reason()`` between steps, as ``run()``
        does, so an iteration in progress always completes. If the iteration fails, the tree in
        memory is half-changed and unsaved, so the search is marked broken and every later
        ``step()``/``begin()``/``run()`` raises ``SearchAborted``: reload the tree from its store.
        """
        if self._broken:
            raise SearchAborted("a previous iteration failed mid-way; reload the tree with load_tree()")
        if self._start is None:
            raise RuntimeError("call begin() before step()")
        try:
            leaf = await self.iterate()
        except BaseException:
            self._broken = True
            raise
        self._save()
        return leaf

    def report(self, reason: str) -> SearchReport:
        """The report of the run started by ``begin()``, stopped for ``reason`` (a ``stop_reason()``)."""
        if self._start is None:
            raise RuntimeError("call begin() before report()")
        meta = self.tree.meta
        return SearchReport(iterations=meta.iterations, iterations_this_run=meta.iterations - self._start,
                            terminal_nodes=self.tree.count_ended(), llm_calls=meta.llm_calls,
                            nodes=len(self.tree), stop_reason=reason, last_new_iteration=meta.last_new_iteration,
                            resumed_from=self._start)

    def stop_reason(self) -> str | None:
        """Which budget is spent, checked in a fixed order, or None to go on."""
        cfg, meta = self.config, self.tree.meta
        if meta.iterations >= cfg.iterations:
            return STOP_ITERATIONS
        if cfg.max_llm_calls is not None and meta.llm_calls >= cfg.max_llm_calls:
            return STOP_LLM_CALLS
        if cfg.max_terminal_nodes is not None and self.tree.count_ended() >= cfg.max_terminal_nodes:
            return STOP_TERMINAL_NODES
        if cfg.early_stop_patience is not None and \
                meta.iterations - meta.last_new_iteration >= cfg.early_stop_patience:
            return STOP_EARLY
        return None

    def _save(self) -> None:
        if self.node_store is None:
            self.tree.take_dirty()
            return
        if self.tree.has_unsaved:
            self.node_store.save(self.tree)

    # -- one iteration --------------------------------------------------------------------------
    async def iterate(self) -> Node:
        """One select-expand-simulate-backpropagate pass; returns the node that was simulated."""
        tree, meta = self.tree, self.tree.meta
        iteration = meta.iterations + 1
        calls_before = self.counter.count
        rng = random.Random(f"mcts:{meta.seed}:{iteration}")
        created: list[Node] = []
        leaf, terminal = await self._select_and_expand(rng, created)
        if terminal and leaf.evaluated and leaf.reward is not None:
            reward = leaf.reward
        else:
            raw = await self.domain.simulate(leaf)
            try:
                reward = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"simulate() must return a number, got {raw!r}") from None
            if not math.isfinite(reward):
                raise ValueError(f"simulate() returned a non-finite reward {raw!r}")
            leaf.reward = reward
            leaf.evaluated = True
        for node in leaf.lineage():
            node.backup(reward)
            tree.mark_changed(node)
        meta.iterations = iteration
        meta.llm_calls += self.counter.count - calls_before
        for node in [*leaf.lineage(), *created]:
            if not node.qualified and self.qualifies(node):
                node.qualified = True
                meta.last_new_iteration = iteration
                tree.mark_changed(node)
        return leaf

    async def _is_terminal(self, node: Node) -> bool:
        max_depth = self.config.max_depth
        if node.ended or (max_depth is not None and node.depth >= max_depth):
            return True
        return bool(await self.domain.is_terminal(node))

    async def _select_and_expand(self, rng: random.Random, created: list[Node]) -> tuple[Node, bool]:
        """The node to simulate, and whether it is terminal (a dead end with no actions counts as one)."""
        node = self.tree.root
        while True:
            if await self._is_terminal(node):
                return node, True
            if not node.is_root and not node.evaluated and not node.fixed:
                return node, False  # materialised earlier (expand_k > 1) but never simulated
            priors = await self._priors(node)
            choice = self._choose(node, priors, rng)
            if choice is None:
                return node, True  # no action available: a dead end, evaluated where it stands
            if isinstance(choice, Node):
                node = choice
                continue
            child = await self._expand(node, choice, priors, created)
            return child, await self._is_terminal(child)

    async def _priors(self, node: Node) -> list[tuple[str, float]]:
        """The node's priors, asked of the domain the first time only, highest first (stable)."""
        if node.priors is None:
            raw = await self.domain.priors(node)
            items: list[tuple[str, float]] = []
            for action, p in dict(raw).items():
                p = float(p)
                if not isinstance(action, str) or not action:
                    raise ValueError(f"priors() returned an invalid action {action!r}")
                if not math.isfinite(p) or p < 0:
                    raise ValueError(f"priors() returned an invalid prior {p!r} for {action!r}")
                items.append((action, p))
            node.priors = sorted(items, key=lambda ap: -ap[1])
            known = dict(node.priors)
            for child in node.children:  # children given before the priors were known (gold turns)
                if child.action in known and child.prior != known[child.action]:
                    child.prior = known[child.action]
                    self.tree.mark_changed(child)
            self.tree.mark_changed(node)
        return node.priors

    def pucb(self, q: float, prior: float, visits: int, parent_visits: int) -> float:
        return q + self.config.c_puct * prior * math.sqrt(parent_visits) / (visits + 1)

    def _choose(self, node: Node, priors: list[tuple[str, float]], rng: random.Random) -> Node | str | None:
        """The child (a Node) or virtual action (a str) with the highest PUCB; None when there is none."""
        candidates: list[tuple[float, float, Node | str]] = [
            (self.pucb(c.value, c.prior, c.visits, node.visits), c.prior, c) for c in node.children
        ]
        materialised = {c.action for c in node.children}
        q0 = self.config.unvisited_q
        candidates += [(self.pucb(q0, p, 0, node.visits), p, a) for a, p in priors if a not in materialised]
        if not candidates:
            return None
        best = max((score, prior) for score, prior, _ in candidates)
        tied = [c for score, prior, c in candidates if (score, prior) == best]
        return tied[0] if len(tied) == 1 else rng.choice(tied)

    async def _expand(self, node: Node, action: str, priors: list[tuple[str, float]],
                      created: list[Node]) -> Node:
        materialised = {c.action for c in node.children}
        extra = [a for a, _ in priors if a != action and a not in materialised][: self.config.expand_k - 1]
        actions = [action, *extra]
        specs = list(await self.domain.expand(node, actions))
        if len(specs) != len(actions):
            raise ValueError(f"expand() returned {len(specs)} children for {len(actions)} actions")
        known = dict(priors)
        for a, spec in zip(actions, specs, strict=True):
            if isinstance(spec, dict):
                spec = ChildSpec(state=spec)
            created.append(self.tree.add_child(node, a, state=spec.state, prior=known[a], ended=spec.ended,
                                               llm_call_ids=spec.llm_call_ids))
        self.tree.mark_changed(node)
        return created[0]
