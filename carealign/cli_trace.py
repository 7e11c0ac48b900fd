"""``carealign trace TARGET``: where a model, run, pair or input item came from, as a tree or JSON.

The lineage is read by ``store.lineage`` (indexed lookups only); this module turns a model folder
into its training run (through ``training_manifest.json``) and draws the tree. Texts written by
models and read from inputs are shown as plain text, never interpreted as markup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.text import Text
from rich.tree import Tree

from carealign.command import console, current, handles_errors
from store import StoreError
from store.lineage import trace as trace_target
from store.lineage import trace_run
from training.manifest import MANIFEST, read_manifest

trace_app = typer.Typer()


@trace_app.command("trace")
@handles_errors
def trace(
    target: str = typer.Argument(..., help="a pair id, a model folder (from `carealign train`), a run id or prefix, "
                                 "or an input item's external id; pair:ID, run:ID or item:ID when it is ambiguous"),
    as_json: bool = typer.Option(False, "--json", help="print the whole trace as JSON (for tools)"),
    pairs: int = typer.Option(3, "--pairs", min=0, help="pairs traced in full when a model, run or item has many "
                              "(the others are listed by id)"),
    text_width: int = typer.Option(100, "--text-width", min=20, help="characters of each text shown in the tree"),
) -> None:
    """Follow a model, run, pair or input back to the calls, prompts, judgments, inputs and runs behind it."""
    with current().existing_store() as store:
        folder = Path(target)
        if folder.is_dir() and ((folder / MANIFEST).is_file() or os.sep in target):
            manifest = read_manifest(folder)
            data = trace_run(store, manifest["run_id"], pairs, manifest=manifest, manifest_path=str(folder / MANIFEST))
            if "model" not in data:
                raise StoreError(f"{folder / MANIFEST}: its run {manifest['run_id']} is not a training run")
            data["model"]["manifest"] = str(folder / MANIFEST)
        else:
            data = trace_target(store, target, pairs)
    if "model" in data and data["model"].get("path"):
        data["model"]["folder_present"] = Path(data["model"]["path"]).is_dir()
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    console.print(render(data, text_width), soft_wrap=False)


# -- the tree -----------------------------------------------------------------------------------
def _t(*parts: str | tuple[str, str]) -> Text:
    """A label from plain strings and (string, style) parts: nothing in it is parsed as markup."""
    return Text.assemble(*(p if isinstance(p, tuple) else (str(p), "") for p in parts))


def _short(text: Any, width: int) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= width else one[:width - 1] + "…"


def _run_ref(run_id: str | None, runs: dict[str, Any]) -> str:
    if not run_id:
        return "no run"
    kind = runs.get(run_id, {}).get("kind", "?")
    return f"run {run_id[:12]} ({kind})"


def _call(label: str, c: dict[str, Any] | None, runs: dict[str, Any]) -> Text:
    if c is None:
        return _t((label, "bold"), ": call not recorded")
    p = c.get("params") or {}
    sampling = ", ".join(f"{k} {p[k]}" for k in ("temperature", "top_p", "max_tokens", "n", "seed") if k in p)
    status = [] if c.get("ok") else [("  FAILED: " + _short(c.get("error"), 80), "red")]
    return _t((label, "bold"), f": call #{c['id']} ", (str(c.get("model")), "cyan"),
              f", {c.get('role') or 'no role'}, prompt {c.get('prompt_name')}@{c.get('prompt_hash')}, {sampling}, ",
              _run_ref(c.get("run_id"), runs), *status)


def render(data: dict[str, Any], width: int = 100) -> Tree:
    runs = data.get("runs", {})
    kind = data["target"]["kind"]
    if kind == "training_run":
        root = _training(data, runs, width)
    elif kind == "run":
        root = _pipeline_run(data, runs, width)
    elif kind == "pair":
        root = Tree(_t(("trace", "bold"), f" of pair {data['pair']['id']} in {data['store']}"))
        _pair(root, data["pair"], runs, width)
    else:
        root = Tree(_t(("trace", "bold"), f" of input {data['target']['value']!r} in {data['store']}"))
        for entry in data["items"]:
            _item_entry(root, entry, runs, width)
    _runs(root, runs)
    return root


def _training(data: dict[str, Any], runs: dict[str, Any], width: int) -> Tree:
    m, r, p = data["model"], data["training_run"], data["pairs"]
    where = "folder present" if m.get("folder_present") else "folder gone: traced through the store"
    root = Tree(_t(("trained model ", "bold"), (str(m.get("path")), "cyan"),
                   f" ({m.get('method')} from {m.get('base_model')}; {where})"))
    run = root.add(_t(("training run ", "bold"), r["id"], f" {r['status']}, code {r['code_version']}, "
                      f"started {r['started_at']}"))
    cfg = r.get("config") or {}
    run.add(_t("data filters: ", json.dumps(cfg.get("data", {}), default=str)))
    run.add(_t("config: ", ", ".join(f"{k}={v}" for k, v in (cfg.get("config") or {}).items())))
    stats = r.get("stats") or {}
    if stats.get("final_loss") is not None:
        run.add(_t(f"final loss {stats['final_loss']}, steps {stats.get('steps')}"))
    check = {True: ("matches the run's record", "green"), False: ("DIFFERS from the run's record", "red"),
             None: ("no record to compare", "")}[p["sha256_matches"]]
    used = run.add(_t(("pairs used: ", "bold"), f"{len(p['train'])} for training, {len(p['eval'])} held out "
                      f"(from the {p['source']}); sha256 {p['sha256'][:16]}… ", check))
    if p.get("manifest_matches") is False:
        used.add(_t(("the model folder's manifest lists other pairs than the store", "red")))
    s = p["summary"]
    used.add(_t("kinds: ", _counts(s["kinds"]), "; languages: ", _counts(s["languages"]), "; from ",
                ", ".join(f"{_run_ref(k, runs)} {v}" for k, v in s["runs"].items())))
    used.add(_t("training pair ids: ", _ids(p["train"]), "; held out: ", _ids(p["eval"])))
    for pair in p["traced"]:
        _pair(used, pair, runs, width)
    _more(used, len(p["train"]), len(p["traced"]))
    return root


def _pipeline_run(data: dict[str, Any], runs: dict[str, Any], width: int) -> Tree:
    r = data["run"]
    root = Tree(_t(("run ", "bold"), r["id"], f" {r['kind']} {r['status']}, code {r['code_version']}, config sha256 "
                   f"{r['config_hash'][:16]}…, started {r['started_at']}"))
    if r.get("models"):
        root.add(_t("models: ", ", ".join(f"{k} {v}" for k, v in r["models"].items())))
    root.add(_t("produced: ", ", ".join(f"{k} {v}" for k, v in r["counts"].items())))
    for t in data["trained_by"]:
        root.add(_t(("trained on by ", "bold"), _run_ref(t["run_id"], runs), f": {t['pairs']} pairs ({t['split']})"))
    if data["check_answers"]:
        answers = root.add(_t(("fact-checking answers", "bold")))
        for a in data["check_answers"]:
            answers.add(_t(f"{a['method']} {a['role']}: {a['verdict']} x{a['answers']}"))
    pairs = root.add(_t(("pairs: ", "bold"), str(data["pairs"]["total"])))
    for pair in data["pairs"]["traced"]:
        _pair(pairs, pair, runs, width)
    _more(pairs, data["pairs"]["total"], len(data["pairs"]["traced"]))
    return root


def _item_entry(root: Tree, entry: dict[str, Any], runs: dict[str, Any], width: int) -> None:
    node = _item(root, entry["item"], width)
    node.add(_t(f"{entry['candidates']} candidate answers, {len(entry['pairs']['ids'])} pairs"))
    for pair in entry["pairs"]["traced"]:
        _pair(node, pair, runs, width)
    _more(node, len(entry["pairs"]["ids"]), len(entry["pairs"]["traced"]))
    if entry["check_answers"]:
        checks = node.add(_t(("fact-checking answers", "bold")))
        for a in entry["check_answers"]:
            where = f", sentence {a['sentence_id']}" if a.get("sentence_id") is not None else ""
            ans = checks.add(_t(f"{a['method']} {a['role']} round {a['round']} agent {a['agent']}: ",
                                (a["verdict"], "bold"), where))
            if a.get("call") or a["role"] != "final":
                ans.add(_call("by", a.get("call"), runs))


def _pair(parent: Tree, p: dict[str, Any], runs: dict[str, Any], width: int) -> None:
    node = parent.add(_t(("pair ", "bold"), str(p["id"]), f"  {p['kind']}, margin {p['margin']:.3g}, "
                         f"language {p.get('language') or '?'}, stored by ", _run_ref(p["run_id"], runs)))
    for t in p["trained_by"]:
        node.add(_t("trained on by ", _run_ref(t["run_id"], runs), f" ({t['split']} split)"))
    for f in p.get("flags", []):  # review app: a reviewer found the pair wrong (exports leave it out)
        node.add(_t(("flagged wrong", "bold red"), f" by {f['reviewer']}: {f['reason']}"))
    if p.get("search"):
        s = p["search"]
        node.add(_t(("search tree ", "bold"), s["tree_id"], f", parent turn {s['parent_path']}, strategy set "
                    f"{s.get('strategy_set')}, thresholds {json.dumps(s.get('thresholds'))}"))
    for side in ("chosen", "rejected"):
        _side(node, side, p[side], runs, width)
    if p.get("rubric"):
        _rubric(node, p["rubric"], runs, width)
    if p.get("item"):
        _item(node, p["item"], width)


def _side(parent: Tree, name: str, s: dict[str, Any], runs: dict[str, Any], width: int) -> None:
    node = parent.add(_t((f"{name}: ", "bold"), _short(s["text"], width)))
    c = s.get("candidate")
    if c:
        node.add(_t(f"candidate {c['id']} by ", (c["model"], "cyan"), f", sample {c['sample_index']}, ",
                    _run_ref(c["run_id"], runs)))
        node.add(_call("generated by", s.get("call"), runs))
    if s.get("node"):
        n = s["node"]
        node.add(_t(f"tree node {n['path']}: strategy {n['strategy']}, Q {n['q']:.3g}, N {n['n']}, "
                    f"ended {n['ended']}"))
    for call in s.get("calls", []):
        node.add(_call("made or judged by", call, runs))
    if s["judgments"]:
        judged = node.add(_t(("judgments", "bold"), f" ({len(s['judgments'])}, * decided this pair)"))
        for j in s["judgments"]:
            mark = f"score {j['score']}" if j["met"] is None else ("met" if j["met"] else "not met")
            line = judged.add(_t("* " if j["decided_pair"] else "  ", (mark, "bold"), ": ",
                                 _short(j["criterion"], width), f" ({j['criterion_kind']})"))
            line.add(_call(f"graded by {j['judge_model']}", j.get("call"), runs))
    for sc in s["scores"]:
        node.add(_t(f"scores S1 {sc['s1']:.3g}, S2 {sc['s2']}, S3 {sc['s3']} (job {sc['job_key'][:12]}, "
                    f"grader {sc['grader_model']})"))


def _rubric(parent: Tree, r: dict[str, Any], runs: dict[str, Any], width: int) -> None:
    if r["source"] == "file":
        parent.add(_t(("rubric ", "bold"), f"{r['name']} (a rubric file; its criteria are the judgments')"))
        return
    where = f"rubric {r['rubric_id']} from the store" if r["source"] == "store" else "from the input line"
    node = parent.add(_t(("rubric ", "bold"), f"{where}, {len(r['criteria'])} criteria, "
                         f"{r['human_edited_criteria']} edited by a reviewer, sha256 {r['rubric_hash'][:16]}…"))
    for c in r["criteria"]:
        node.add(_t(f"{c['id']} ({c['kind']}{', weight ' + str(c['weight']) if c.get('weight') else ''}"
                    f"{', ' + c['origin'] if c.get('origin') else ''}): ", _short(c["text"], width)))
    for rec in r["history"]:
        made = [f"written by {rec['writer_model']}"] if rec.get("writer_model") else []
        made += [f"call #{rec['llm_call_id']}"] if rec.get("llm_call_id") else []
        made += [f"edited from rubric {rec['parent_id']}"] if rec.get("parent_id") else []
        h = node.add(_t(f"stored rubric {rec['id']}: {rec['origin']}, {rec['status']}",
                        "".join(f", {m}" for m in made)))
        for rv in rec["reviews"]:
            h.add(_t(("review: ", "bold"), f"{rv['decision']} by {rv['reviewer']}",
                     f": {_short(rv['reason'], width)}" if rv.get("reason") else ""))


def _item(parent: Tree, item: dict[str, Any], width: int) -> Tree:
    where = f"{item['file']} line {item['line']}" if item.get("line") else (item.get("source") or "no source")
    return parent.add(_t(("input item ", "bold"), str(item["id"]), f": dataset {item['dataset']}, external id "
                         f"{item['external_id']!r}, from ", (where, "cyan"), f", content sha256 "
                         f"{item['content_hash'][:16]}…"))


def _runs(root: Tree, runs: dict[str, Any]) -> None:
    if not runs:
        return
    node = root.add(_t(("runs", "bold")))
    for r in runs.values():
        models = ", ".join(f"{k} {v}" for k, v in (r.get("models") or {}).items())
        node.add(_t(r["id"], f" {r['kind']} {r['status']}, code {r['code_version']}, config sha256 "
                    f"{r['config_hash'][:16]}…, started {r['started_at']}", f"; {models}" if models else ""))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def _ids(ids: list[int], shown: int = 20) -> str:
    head = ", ".join(map(str, ids[:shown]))
    return head + (f", … ({len(ids)} in all)" if len(ids) > shown else "") if ids else "none"


def _more(node: Tree, total: int, traced: int) -> None:
    if total > traced:
        node.add(_t(f"… {total - traced} more pairs: `carealign trace pair:ID` (or --pairs N, --json)"))
