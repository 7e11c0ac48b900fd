"""The generic MCTS: finds a known optimum, is deterministic, honours budgets, persists and resumes."""

from __future__ import annotations

import ast
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import networkx as nx
import pytest
from sqlalchemy import func, select

from mcts import (
    GOLD_N,
    GOLD_Q,
    MCTS,
    CallCounter,
    ChildSpec,
    Domain,
    MemoryNodeStore,
    Node,
    SearchAborted,
    SearchConfig,
    SearchReport,
    SQLNodeStore,
    Tree,
    extract_pairs,
    load_tree,
)
from mcts.export import layered_layout, render_png, to_networkx, write_graphml
from store import Store, tree_nodes
from store.models import TreeNode

ACTIONS = ("a", "b", "c")
BEST = ("c", "a", "b")
MISLEADING = {"a": 0.6, "b": 0.3, "c": 0.1}  # the best first move has the lowest prior
UNIFORM = {a: 1 / 3 for a in ACTIONS}


def actions_of(node: Node) -> tuple[str, ...]:
    return tuple(n.action for n in node.lineage()[1:])


def leaf_reward(actions: tuple[str, ...]) -> float:
    """1 at the best leaf; elsewhere at most 0.5, and the 'a' subtree looks better on average."""
    if actions == BEST:
        return 1.0
    matches = sum(x == y for x, y in zip(actions, BEST, strict=True))
    return 0.2 * matches + (0.1 if actions[0] == "a" else 0.0)


class ToyDomain:
    """Depth-3 tree, 3 actions per level. A rollout completes the path greedily with 'a'."""

    def __init__(self, counter: CallCounter, priors: Mapping[str, float] = MISLEADING, depth: int = 3,
                 crash_at_simulate: int | None = None):
        self.counter = counter
        self.prior_table = dict(priors)
        self.depth = depth
        self.crash_at_simulate = crash_at_simulate
        self.prior_calls: Counter[str] = Counter()
        self.simulations = 0

    async def priors(self, node: Node) -> Mapping[str, float]:
        self.counter.add()
        self.prior_calls[node.path] += 1
        return self.prior_table

    async def expand(self, node: Node, actions: Sequence[str]) -> list[ChildSpec]:
        self.counter.add()
        return [ChildSpec(state={"text": f"{node.path}->{a}"}, llm_call_ids=[f"x{node.depth}{a}"]) for a in actions]

    async def simulate(self, node: Node) -> float:
        self.simulations += 1
        if self.crash_at_simulate is not None and self.simulations == self.crash_at_simulate:
            raise RuntimeError("simulated crash")
        self.counter.add()
        path = actions_of(node)
        if len(path) >= self.depth:
            node.ended = True
        return leaf_reward(path + ("a",) * (self.depth - len(path)))

    async def is_terminal(self, node: Node) -> bool:
        return node.depth >= self.depth


def make_search(tree_id: str = "t", seed: int = 0, priors: Mapping[str, float] = MISLEADING,
                node_store=None, tree: Tree | None = None, crash_at_simulate: int | None = None,
                **cfg) -> tuple[MCTS, ToyDomain]:
    counter = CallCounter()
    domain = ToyDomain(counter, priors, crash_at_simulate=crash_at_simulate)
    config = SearchConfig(seed=seed, **cfg)
    return MCTS(domain, tree or Tree(tree_id), config, node_store=node_store, counter=counter), domain


def most_visited_chain(tree: Tree) -> tuple[str, ...]:
    node, chain = tree.root, []
    while node.children:
        node = max(node.children, key=lambda c: (c.visits, c.value))
        chain.append(node.action)
    return tuple(chain)


# -- search -----------------------------------------------------------------------------------
async def test_finds_known_optimum_despite_misleading_priors():
    early, _ = make_search(iterations=60)
    await early.run()
    assert most_visited_chain(early.tree)[0] == "a"  # the priors do mislead at first
    search, domain = make_search(iterations=200)
    assert isinstance(domain, Domain)
    report = await search.run()
    assert most_visited_chain(search.tree) == BEST
    assert report.stop_reason == "iterations" and report.iterations == 200
    best_leaf = search.tree.get("root/c/a/b")
    assert best_leaf.ended and best_leaf.evaluated and best_leaf.value == 1.0


async def test_priors_asked_once_per_node():
    search, domain = make_search(iterations=120, priors=UNIFORM)
    await search.run()
    assert domain.prior_calls and set(domain.prior_calls.values()) == {1}
    assert set(domain.prior_calls) == {n.path for n in search.tree if n.priors is not None}


async def test_deterministic_under_seed():
    first, _ = make_search(seed=7, iterations=40, priors=UNIFORM)
    second, _ = make_search(seed=7, iterations=40, priors=UNIFORM)
    await first.run()
    await second.run()
    assert first.tree.snapshot() == second.tree.snapshot()
    others = []
    for seed in range(1, 6):
        other, _ = make_search(seed=seed, iterations=40, priors=UNIFORM)
        await other.run()
        others.append(other.tree.snapshot())
    assert any(s != first.tree.snapshot() for s in others)


async def test_budget_iterations():
    search, _ = make_search(iterations=7)
    report = await search.run()
    assert (report.stop_reason, report.iterations, report.iterations_this_run) == ("iterations", 7, 7)
    assert search.tree.root.visits == 7


async def test_budget_terminal_nodes():
    search, _ = make_search(iterations=1000, max_terminal_nodes=3)
    report = await search.run()
    assert report.stop_reason == "terminal_nodes"
    assert report.terminal_nodes == search.tree.count_ended() == 3
    assert report.iterations < 1000


async def test_budget_llm_calls():
    search, _ = make_search(iterations=1000, max_llm_calls=10)
    report = await search.run()
    assert report.stop_reason == "llm_calls"
    # checked between iterations: one iteration makes at most 3 priors + 1 expand + 1 simulate calls
    assert 10 <= report.llm_calls < 15
    assert report.llm_calls == search.counter.count


async def test_early_stop_default_and_callback():
    search, _ = make_search(iterations=1000, early_stop_patience=5)
    report = await search.run()
    assert report.stop_reason == "early_stop"
    assert report.iterations - report.last_new_iteration == 5 and report.iterations < 1000

    seen: list[str] = []

    def found_best(node: Node) -> bool:
        seen.append(node.path)
        return node.ended and node.value >= 0.99

    search, _ = make_search(iterations=1000, early_stop_patience=200)
    search.qualifies = found_best
    report = await search.run()
    assert report.stop_reason == "early_stop" and seen
    assert report.iterations == report.last_new_iteration + 200
    assert search.tree.get("root/c/a/b").qualified
    assert [n.path for n in search.tree if n.qualified] == ["root/c/a/b"]


async def test_max_depth_limits_the_tree():
    search, _ = make_search(iterations=60, max_depth=2)
    await search.run()
    assert max(n.depth for n in search.tree) == 2
    assert all(n.priors is None for n in search.tree if n.depth == 2)


async def test_expand_k_materialises_several_children_per_call():
    search, _ = make_search(iterations=1, expand_k=3)
    await search.run()
    kids = search.tree.root.children
    assert [c.action for c in kids] == ["a", "b", "c"]  # highest prior first
    assert [c.evaluated for c in kids] == [True, False, False]
    assert search.tree.meta.llm_calls == 3  # priors + one expand call + simulate
    await MCTS(search.domain, search.tree, SearchConfig(iterations=30, expand_k=3), counter=search.counter).run()
    assert all(c.evaluated for c in kids)  # never-simulated children are simulated when selected
    assert [c.action for c in search.tree.root.children] == ["a", "b", "c"]
    assert set(search.domain.prior_calls.values()) == {1}


class TwoArms:
    """Root with actions x (P 0.3, reward 0.6) and y (P 0.7, reward -1); both end the episode."""

    def __init__(self):
        self.simulated: list[str] = []

    async def priors(self, node):
        return {"x": 0.3, "y": 0.7} if node.is_root else {}

    async def expand(self, node, actions):
        return [{} for _ in actions]

    async def simulate(self, node):
        self.simulated.append(node.action)
        node.ended = True
        return {"x": 0.6, "y": -1.0}[node.action]

    async def is_terminal(self, node):
        return node.ended


async def test_backprop_arithmetic_by_hand():
    domain = TwoArms()
    tree = Tree("hand")
    search = MCTS(domain, tree, SearchConfig(iterations=1))
    await search.run()
    # iteration 1: root N=0, every PUCB is 0, the tie goes to the higher prior (y); r = -1
    y = tree.get("root/y")
    assert (y.visits, y.value, tree.root.visits, tree.root.value) == (1, -1.0, 1, -1.0)
    # iteration 2: PUCB(y) = -1 + 0.7*sqrt(1)/2 = -0.65 < PUCB(x, virtual) = 0 + 0.3*sqrt(1)/1 = 0.3
    search.config = SearchConfig(iterations=2)
    await search.run()
    x = tree.get("root/x")
    assert (x.visits, x.value) == (1, 0.6)
    assert tree.root.visits == 2 and tree.root.value == pytest.approx((-1.0 * 1 + 0.6) / 2)
    assert (y.visits, y.value) == (1, -1.0)
    # iteration 3: x (0.6 + 0.3*sqrt(2)/2) beats y; x is ended, so its reward is reused, not re-simulated
    assert search.pucb(x.value, x.prior, x.visits, 2) == pytest.approx(0.6 + 0.3 * math.sqrt(2) / 2)
    search.config = SearchConfig(iterations=3)
    await search.run()
    assert domain.simulated == ["y", "x"]
    assert (x.visits, x.value) == (2, pytest.approx(0.6))
    assert tree.root.value == pytest.approx((-0.2 * 2 + 0.6) / 3) and tree.root.visits == 3


async def test_fixed_gold_nodes_start_with_q1_n100():
    tree = Tree("gold")
    gold = tree.add_fixed(tree.root, "a", state={"text": "gold turn"})
    assert (gold.value, gold.visits, gold.fixed) == (GOLD_Q, GOLD_N, True) == (1.0, 100, True)
    search, domain = make_search(tree=tree, iterations=1, priors=UNIFORM)
    await search.run()
    assert gold.prior == pytest.approx(1 / 3)  # filled in once the root's priors were asked
    # iteration 1: PUCB(gold) = 1 beats the virtual siblings (0), so the search descends through it
    (child,) = gold.children
    r = leaf_reward(("a", child.action, "a"))
    assert child.visits == 1 and child.value == pytest.approx(r)
    assert gold.visits == 101 and gold.value == pytest.approx((1.0 * 100 + r) / 101)
    assert tree.root.visits == 1 and tree.root.value == pytest.approx(r)
    assert not gold.evaluated and domain.simulations == 1


async def test_domain_errors_are_reported():
    class Bad(TwoArms):
        async def simulate(self, node):
            return float("nan")

    with pytest.raises(ValueError, match="non-finite"):
        await MCTS(Bad(), Tree("bad"), SearchConfig(iterations=1)).run()
    with pytest.raises(ValueError):
        SearchConfig(expand_k=0)


# -- stepping (a driver that is not run(), such as a graph) -------------------------------------
async def stepped(search: MCTS) -> SearchReport:
    """Drive a search the way a graph does: begin, step while no budget is spent, report."""
    search.begin()
    steps = 0
    while (reason := search.stop_reason()) is None:
        leaf = await search.step()
        assert search.tree.get(leaf.path) is leaf and leaf.evaluated  # the node this iteration simulated
        steps += 1
    report = search.report(reason)
    assert steps == report.iterations_this_run
    return report


@pytest.mark.parametrize("cfg", [
    {"iterations": 40},
    {"iterations": 1000, "max_terminal_nodes": 4},
    {"iterations": 1000, "max_llm_calls": 25, "expand_k": 2},
    {"iterations": 1000, "early_stop_patience": 6},
])
async def test_stepping_matches_run(cfg: dict):
    by_run, by_step = MemoryNodeStore(), MemoryNodeStore()
    ran, _ = make_search("s", seed=5, priors=UNIFORM, node_store=by_run, tree=seeded_tree("s", True), **cfg)
    stepper, _ = make_search("s", seed=5, priors=UNIFORM, node_store=by_step, tree=seeded_tree("s", True), **cfg)
    expected = await ran.run()
    got = await stepped(stepper)
    assert got == expected and got.iterations_this_run == got.iterations > 0
    assert_same_tree(stepper.tree, ran.tree)
    assert [(n.path, n.value, n.visits) for n in stepper.tree] == [(n.path, n.value, n.visits) for n in ran.tree]
    assert by_step.writes == by_run.writes  # the same saves, not only the same end state
    assert_same_tree(by_step.load_tree("s"), by_run.load_tree("s"))


async def test_stepping_resumes_like_run(sqlite_url: str):
    store = Store(sqlite_url)
    store.ensure_schema()
    reference = await uninterrupted(30, 2)
    search, _ = make_search("r", seed=2, iterations=12, priors=UNIFORM, node_store=SQLNodeStore(store),
                            tree=seeded_tree("r", True))
    assert (await stepped(search)).resumed_from == 0
    nodes = SQLNodeStore(store)
    search, _ = make_search("r", seed=2, iterations=30, priors=UNIFORM, node_store=nodes, tree=nodes.load_tree("r"))
    report = await stepped(search)
    assert (report.resumed_from, report.iterations_this_run, report.stop_reason) == (12, 18, "iterations")
    assert_same_tree(search.tree, reference.tree)
    assert_same_tree(SQLNodeStore(store).load_tree("r"), reference.tree)
    store.dispose()


async def test_step_after_a_failed_step_is_refused():
    search, domain = make_search(iterations=50, crash_at_simulate=4)
    with pytest.raises(RuntimeError, match="begin"):
        await search.step()
    search.begin()
    with pytest.raises(RuntimeError, match="simulated crash"):
        while search.stop_reason() is None:
            await search.step()
    assert 3 <= search.tree.meta.iterations < 50 and domain.simulations == 4  # the failed one never completed
    with pytest.raises(SearchAborted):
        await search.step()
    with pytest.raises(SearchAborted):
        search.begin()
    with pytest.raises(SearchAborted):
        await search.run()
    assert domain.simulations == 4  # nothing ran on the half-changed tree


# -- pairs ------------------------------------------------------------------------------------
def set_stats(node: Node, value: float, visits: int, evaluated: bool = True, ended: bool = False) -> Node:
    node.value, node.visits, node.evaluated, node.ended = value, visits, evaluated, ended
    return node


def pair_tree() -> Tree:
    tree = Tree("pairs")
    r = tree.root
    a = set_stats(tree.add_child(r, "A"), 0.8, 5)
    set_stats(tree.add_child(a, "A1"), 0.9, 3, ended=True)
    set_stats(tree.add_child(a, "A2"), 0.5, 1)
    set_stats(tree.add_child(r, "B"), 0.2, 2)
    set_stats(tree.add_child(r, "C"), -3.0, 0, evaluated=False)  # never evaluated: never rejected
    set_stats(tree.add_child(r, "D"), 0.7, 2)  # within the margin of A
    set_stats(tree.add_child(r, "E"), -1.0, 1, evaluated=False)  # visited but never evaluated itself
    return tree


def as_tuples(pairs) -> list[tuple[str, str, str, float]]:
    return [(p.parent_path, p.preferred.path, p.rejected.path, round(p.margin, 9)) for p in pairs]


def test_pairs_preferred_vs_rejected_with_margin():
    pairs = extract_pairs(pair_tree(), q_min=0.5, n_min=2, margin=0.25)
    assert as_tuples(pairs) == [("root", "root/A", "root/B", 0.6), ("root/A", "root/A/A1", "root/A/A2", 0.4)]
    for p in pairs:
        assert p.rejected.evaluated and p.rejected.visits >= 1
        assert p.rejected.value <= p.preferred.value - 0.25
    # a larger margin drops the closer pair
    assert as_tuples(extract_pairs(pair_tree(), q_min=0.5, n_min=2, margin=0.5)) == [("root", "root/A", "root/B", 0.6)]


def test_pairs_touching_thresholds_give_no_pair_with_margin():
    tree = Tree("touch")
    p = set_stats(tree.add_child(tree.root, "P"), 0.5, 2)
    set_stats(tree.add_child(p, "end"), 0.5, 2, ended=True)
    set_stats(tree.add_child(tree.root, "R"), 0.5, 3)
    assert extract_pairs(tree, q_min=0.5, n_min=2, margin=0.1) == []
    # the reference's rule (no margin) would pair two equally scored turns
    assert as_tuples(extract_pairs(tree, q_min=0.5, n_min=2, margin=0.0)) == [("root", "root/P", "root/R", 0.0)]
    with pytest.raises(ValueError):
        extract_pairs(tree, margin=-0.1)


def test_pairs_need_a_fully_qualifying_path_and_exempt_gold():
    tree = Tree("paths")
    weak = set_stats(tree.add_child(tree.root, "weak"), 0.4, 5)  # Q below q_min: its ended path fails
    set_stats(tree.add_child(weak, "end"), 0.9, 3, ended=True)
    set_stats(tree.add_child(tree.root, "low"), -2.0, 2)
    assert extract_pairs(tree, q_min=0.5, n_min=2, margin=0.25) == []
    gold = tree.add_fixed(tree.root, "gold")
    set_stats(tree.add_child(gold, "g_end"), 0.6, 2, ended=True)
    gold2 = tree.add_fixed(tree.root, "gold2", value=-3.0, visits=1)  # fixed: never rejected
    assert gold2.fixed
    assert as_tuples(extract_pairs(tree, q_min=0.5, n_min=2, margin=0.25)) == [
        ("root", "root/gold", "root/weak", 0.6), ("root", "root/gold", "root/low", 3.0),
    ]


async def test_pairs_from_a_search():
    search, _ = make_search(iterations=200)
    await search.run()
    pairs = extract_pairs(search.tree, q_min=0.5, n_min=2, margin=0.2)
    assert pairs
    assert ("root/c/a", "root/c/a/b") in {(p.parent_path, p.preferred.path) for p in pairs}
    for p in pairs:
        assert p.rejected.evaluated and p.margin >= 0.2 and p.rejected.parent is p.preferred.parent


# -- persistence ------------------------------------------------------------------------------
class CountingSQLNodeStore(SQLNodeStore):
    def __init__(self, store: Store):
        super().__init__(store)
        self.saves: list[tuple[int, int]] = []

    def save(self, tree: Tree) -> None:
        new, changed = tree.dirty()
        self.saves.append((len(new), len(changed)))
        super().save(tree)


async def uninterrupted(iterations: int, seed: int, with_gold: bool = True) -> MCTS:
    search, _ = make_search("ref", seed=seed, iterations=iterations, priors=UNIFORM,
                            node_store=MemoryNodeStore(), tree=seeded_tree("ref", with_gold))
    await search.run()
    return search


def seeded_tree(tree_id: str, with_gold: bool) -> Tree:
    tree = Tree(tree_id, root_state={"dialogue": "seed"})
    if with_gold:
        tree.add_fixed(tree.add_fixed(tree.root, "b"), "a/x%")  # '/' and '%' in an action survive paths
    return tree


def assert_same_tree(a: Tree, b: Tree) -> None:
    assert a.snapshot() == b.snapshot()
    assert (a.meta.iterations, a.meta.llm_calls, a.meta.seed, a.meta.last_new_iteration) == \
        (b.meta.iterations, b.meta.llm_calls, b.meta.seed, b.meta.last_new_iteration)


async def check_resume(url: str, crash: str) -> None:
    total, k, seed = 60, 23, 3  # k: iterations done before the crash
    reference = await uninterrupted(total, seed)

    store = Store(url)
    store.ensure_schema()
    node_store = CountingSQLNodeStore(store)
    if crash == "budget":
        search, _ = make_search("t1", seed=seed, iterations=k, priors=UNIFORM, node_store=node_store,
                                tree=seeded_tree("t1", True))
        await search.run()
    else:  # the domain raises in the middle of an iteration
        search, domain = make_search("t1", seed=seed, iterations=total, priors=UNIFORM, node_store=node_store,
                                     tree=seeded_tree("t1", True), crash_at_simulate=k)
        with pytest.raises(RuntimeError, match="simulated crash"):
            await search.run()
        k = search.tree.meta.iterations  # the crashed iteration never completed
        assert 0 < k < total and search.tree.has_unsaved  # its half-done changes are in memory only
        with pytest.raises(SearchAborted):
            await search.run()
    # writes are incremental: per iteration only the selected path, the new child and siblings whose prior
    # was filled in; never the whole tree
    assert all(new + changed <= 8 for new, changed in node_store.saves[1:])
    store.dispose()
    del search, node_store, store

    store = Store(url)
    node_store = SQLNodeStore(store)
    assert node_store.exists("t1") and not node_store.exists("nope")
    tree = load_tree(node_store, "t1")
    assert tree.meta.iterations == k and tree.root.visits == k  # the stored tree is a whole iteration
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(TreeNode).where(TreeNode.tree_id == "t1")).scalar() \
            == len(tree)
    search, _ = make_search("t1", seed=seed, iterations=total, priors=UNIFORM, node_store=node_store, tree=tree)
    report = await search.run()
    assert report.resumed_from == k and report.iterations_this_run == total - k
    assert_same_tree(search.tree, reference.tree)
    assert_same_tree(load_tree(SQLNodeStore(store), "t1"), reference.tree)
    with pytest.raises(KeyError):
        node_store.load_tree("nope")
    with pytest.raises(ValueError, match="seed"):
        make_search("t1", seed=seed + 1, node_store=node_store, tree=load_tree(node_store, "t1"))
    store.dispose()


@pytest.mark.parametrize("crash", ["budget", "exception"])
async def test_resume_after_crash_sqlite(sqlite_url: str, crash: str):
    await check_resume(sqlite_url, crash)


async def test_resume_after_crash_sqlite_and_postgresql(db_url: str):
    await check_resume(db_url, "exception")


async def test_memory_store_resume_matches():
    reference = await uninterrupted(40, 11, with_gold=False)
    mem = MemoryNodeStore()
    search, _ = make_search("m", seed=11, iterations=17, priors=UNIFORM, node_store=mem, tree=seeded_tree("m", False))
    await search.run()
    writes_after_17 = mem.writes
    search, _ = make_search("m", seed=11, iterations=40, priors=UNIFORM, node_store=mem, tree=mem.load_tree("m"))
    await search.run()
    assert_same_tree(search.tree, reference.tree)
    assert mem.writes - writes_after_17 < 23 * 6 < 23 * len(search.tree)


def test_tree_node_rows_in_the_store(db_url: str):
    """store.tree_nodes on its own: plain rows in, plain rows out; parents resolved; one transaction."""
    store = Store(db_url)
    store.ensure_schema()

    def row(path: str, parent: str | None, depth: int, visits: int = 0) -> dict:
        return {"tree_id": "x", "run_id": None, "item_id": None, "path": path, "depth": depth,
                "action": None if parent is None else path.rsplit("/", 1)[1], "prior": 0.5, "visits": visits,
                "value": 0.25, "ended": False, "evaluated": True, "state": {"k": [1, "é"]}, "llm_call_ids": [7],
                tree_nodes.PARENT_PATH: parent}

    assert not tree_nodes.tree_exists(store, "x") and tree_nodes.load_node_rows(store, "x") == []
    first = tree_nodes.save_node_rows(store, [row("root/a", "root", 1), row("root", None, 0)], [])
    assert set(first) == {("x", "root"), ("x", "root/a")}
    # the parent is stored already and unknown to the caller: looked up, and its id returned
    second = tree_nodes.save_node_rows(store, [row("root/a/b", "root/a", 2)], [row("root", None, 0, visits=3)])
    assert second[("x", "root/a")] == first[("x", "root/a")] and second[("x", "root")] == first[("x", "root")]
    # a changed row never stored: nothing of that save is written
    with pytest.raises(ValueError, match="never stored"):
        tree_nodes.save_node_rows(store, [row("root/c", "root", 1)], [row("root/zz", "root", 1)], first)
    assert tree_nodes.save_node_rows(store, [], []) == {}
    rows = {r["path"]: r for r in tree_nodes.load_node_rows(store, "x")}
    assert set(rows) == {"root", "root/a", "root/a/b"} and tree_nodes.count_nodes(store, "x") == 3
    assert rows["root"]["visits"] == 3 and rows["root/a/b"]["state"] == {"k": [1, "é"]}
    assert rows["root/a"]["id"] == first[("x", "root/a")] and rows["root/a/b"]["id"] == second[("x", "root/a/b")]
    with store.session() as s:
        parents = dict(s.execute(select(TreeNode.path, TreeNode.parent_id).where(TreeNode.tree_id == "x")).all())
    assert parents == {"root": None, "root/a": rows["root"]["id"], "root/a/b": rows["root/a"]["id"]}
    tree_nodes.save_node_rows(store, [{**row("root", None, 0), "tree_id": "w"}], [])
    assert tree_nodes.tree_exists(store, "x") and tree_nodes.tree_ids(store) == ["w", "x"]
    store.dispose()


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_sql_lives_in_the_store_layer():
    root = Path(__file__).resolve().parent.parent
    for module in (root / "mcts").glob("*.py"):
        assert not {m for m in imported_modules(module) if m.startswith(("sqlalchemy", "store.models"))}, module
    assert not {m for m in imported_modules(root / "store" / "tree_nodes.py") if m.startswith("mcts")}


# -- export -----------------------------------------------------------------------------------
async def test_graphml_round_trip(tmp_path: Path):
    search = await uninterrupted(30, 1)
    tree = search.tree
    path = write_graphml(tree, tmp_path / "tree.graphml")
    graph = nx.read_graphml(path)
    original = to_networkx(tree)
    assert set(graph.nodes) == set(original.nodes) == {n.path for n in tree}
    assert set(graph.edges) == set(original.edges)
    assert len(graph.edges) == len(tree) - 1
    for node in tree:
        attrs = graph.nodes[node.path]
        assert attrs["path"] == node.path and attrs["action"] == (node.action or "")
        assert attrs["visits"] == node.visits and attrs["depth"] == node.depth
        assert attrs["value"] == pytest.approx(node.value) and attrs["prior"] == pytest.approx(node.prior)
        assert attrs["ended"] is node.ended


async def test_png_renders(tmp_path: Path):
    search = await uninterrupted(30, 1)
    pos = layered_layout(search.tree)
    assert all(y == -search.tree.get(p).depth for p, (_, y) in pos.items())
    out = render_png(search.tree, tmp_path / "tree.png")
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
