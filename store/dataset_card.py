"""Dataset cards: every ``carealign db export`` says what it holds and where it came from.

The card is a Hugging Face dataset card (``README.md`` with YAML metadata between ``---`` lines):
the standard fields (license, languages, size category, the data file as the ``train`` split) and a
``carealign`` block with the provenance, read from the store for exactly the exported selection:
pair kinds, languages and margins, the runs and their code versions, the generating and judging
models with their prompt templates (name and content hash) and temperatures, the calls behind ESC
search pairs, the filters, and how much reviewers were involved (rubric reviews, human-edited
criteria). Reviewer names are not written: a card may be published.

Where it goes: ``README.md`` inside an ``hf`` folder; ``<name>.README.md`` beside a JSONL or Parquet
file (``pairs.jsonl`` -> ``pairs.README.md``), so two exports in one folder keep their own cards.
``push_export`` uploads an export and its card to the Hugging Face Hub (needs network and a token).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from store.db import Store, chunked
from store.errors import StoreError
from store.export import PairFilter, filter_clauses
from store.models import Candidate, Item, Judgment, LLMCall, PreferencePair, RubricRecord, RubricReview, Run
from store.records import code_version

ESC_GENERATION_ROLES = ("esc_supporter",)
ESC_JUDGING_ROLES = ("esc_judge",)
LICENSE_NOTE = ("No license was set for this export (setting `export_license`, now `other`): the licenses of "
                "the input datasets and the terms of the model providers apply. Set `export_license` (e.g. "
                "`cc-by-4.0`) before publishing.")


@dataclass(frozen=True)
class CardOptions:
    """What the store cannot know: the license (setting ``export_license``)."""

    license: str = "other"


def card_path(out: Path, fmt: str) -> Path:
    """Where an export's card goes (see the module docstring)."""
    if fmt == "hf":
        return out / "README.md"
    path = out.with_name(f"{out.stem}.README.md")
    return path if path != out else out.with_name(f"{out.name}.README.md")


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` bucket of ``n`` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                        (1_000_000_000, "100M<n<1B")):
        if n < limit:
            return name
    return "1B<n<10B"


# -- facts from the store -----------------------------------------------------------------------
def card_facts(store: Store, flt: PairFilter) -> dict[str, Any]:
    """Provenance of the selected pairs (the same WHERE clauses as the export's rows)."""
    where = filter_clauses(flt)
    with store.session() as s:
        kinds: dict[str, int] = {}
        languages: dict[str, int] = {}
        by_run: dict[str, int] = {}
        total, lo, hi, margin_sum = 0, None, None, 0.0
        q = select(PreferencePair.kind, PreferencePair.language, PreferencePair.run_id, func.count(),
                   func.min(PreferencePair.margin), func.max(PreferencePair.margin), func.sum(PreferencePair.margin)) \
            .where(*where).group_by(PreferencePair.kind, PreferencePair.language, PreferencePair.run_id)
        for kind, lang, run_id, n, mn, mx, sm in s.execute(q):
            n = int(n)
            total += n
            kinds[kind] = kinds.get(kind, 0) + n
            languages[lang or "unknown"] = languages.get(lang or "unknown", 0) + n
            by_run[run_id] = by_run.get(run_id, 0) + n
            lo = mn if lo is None else min(lo, mn)
            hi = mx if hi is None else max(hi, mx)
            margin_sum += float(sm or 0.0)
        runs = [{"id": r.id, "kind": r.kind, "status": r.status, "code_version": r.code_version,
                 "config_hash": r.config_hash, "started_at": r.started_at.isoformat() if r.started_at else None,
                 "pairs": by_run[r.id]}
                for r in s.scalars(select(Run).where(Run.id.in_(list(by_run))).order_by(Run.started_at))]
        generation, judging, esc = _candidate_calls(s, where), _judgments(s, where), _esc_calls(s, where)
        generation += [c for c in esc if c["role"] in ESC_GENERATION_ROLES]
        judging += [c for c in esc if c["role"] in ESC_JUDGING_ROLES]
        search = [c for c in esc if c["role"] not in ESC_GENERATION_ROLES + ESC_JUDGING_ROLES]
        reviewers = _reviewer_involvement(s, where)
    return {"pairs": total, "pair_kinds": kinds, "languages": languages,
            "margin": {"min": lo, "mean": round(margin_sum / total, 6) if total else None, "max": hi},
            "runs": runs, "generation": generation, "judging": judging, "search_calls": search,
            "reviewers": reviewers}


def _selected_candidates(where: list[Any]):
    chosen = select(PreferencePair.chosen_candidate_id.label("cid")).where(
        *where, PreferencePair.chosen_candidate_id.is_not(None))
    rejected = select(PreferencePair.rejected_candidate_id.label("cid")).where(
        *where, PreferencePair.rejected_candidate_id.is_not(None))
    return select(union(chosen, rejected).subquery().c.cid)


def _candidate_calls(s: Session, where: list[Any]) -> list[dict[str, Any]]:
    """The calls that wrote the exported answers, by model, prompt template and temperature."""
    temperature = LLMCall.params["temperature"].as_float()
    q = select(LLMCall.role, LLMCall.model, LLMCall.prompt_name, LLMCall.prompt_hash, temperature,
               func.count(Candidate.id)) \
        .select_from(Candidate).join(LLMCall, LLMCall.id == Candidate.llm_call_id) \
        .where(Candidate.id.in_(_selected_candidates(where))) \
        .group_by(LLMCall.role, LLMCall.model, LLMCall.prompt_name, LLMCall.prompt_hash, temperature)
    return sorted(({"role": role, "model": model, "prompt_name": name, "prompt_hash": h, "temperature": t,
                    "answers": int(n)} for role, model, name, h, t, n in s.execute(q)),
                  key=lambda c: (-c["answers"], c["model"]))


def _judgments(s: Session, where: list[Any]) -> list[dict[str, Any]]:
    """Every judgment of the exported answers, by judge model, prompt template and criterion kind."""
    q = select(Judgment.judge_model, LLMCall.prompt_name, LLMCall.prompt_hash, Judgment.criterion_kind,
               func.count(Judgment.id)) \
        .select_from(Judgment).join(LLMCall, LLMCall.id == Judgment.llm_call_id) \
        .where(Judgment.candidate_id.in_(_selected_candidates(where))) \
        .group_by(Judgment.judge_model, LLMCall.prompt_name, LLMCall.prompt_hash, Judgment.criterion_kind)
    return sorted(({"model": model, "prompt_name": name, "prompt_hash": h, "criterion_kind": kind,
                    "judgments": int(n)} for model, name, h, kind, n in s.execute(q)),
                  key=lambda c: (-c["judgments"], c["model"]))


def _esc_calls(s: Session, where: list[Any]) -> list[dict[str, Any]]:
    """The calls named in ESC pairs' provenance (supporter, seeker, judge, strategist), by role."""
    ids: set[int] = set()
    for prov in s.scalars(select(PreferencePair.provenance).where(*where, PreferencePair.kind == "esc")):
        per_side = (prov or {}).get("llm_call_ids")
        if isinstance(per_side, dict):  # {"chosen": [...], "rejected": [...]}
            ids.update(i for side in per_side.values() for i in side if isinstance(i, int))
    temperature = LLMCall.params["temperature"].as_float()
    counts: dict[tuple[Any, ...], int] = {}
    for chunk in chunked(ids):
        q = select(LLMCall.role, LLMCall.model, LLMCall.prompt_name, LLMCall.prompt_hash, temperature, func.count()) \
            .where(LLMCall.id.in_(chunk)) \
            .group_by(LLMCall.role, LLMCall.model, LLMCall.prompt_name, LLMCall.prompt_hash, temperature)
        for *key, n in s.execute(q):
            counts[tuple(key)] = counts.get(tuple(key), 0) + int(n)
    return [{"role": r, "model": m, "prompt_name": p, "prompt_hash": h, "temperature": t, "calls": n}
            for (r, m, p, h, t), n in sorted(counts.items(), key=lambda kv: (str(kv[0][0]), -kv[1]))]


def _reviewer_involvement(s: Session, where: list[Any]) -> dict[str, Any]:
    """How many exported pairs rest on a rubric from the store, and what reviewers did to those
    rubrics (decisions by kind, reviewers counted, criteria a reviewer edited)."""
    per_item = select(PreferencePair.item_id, func.count().label("n")) \
        .where(*where, PreferencePair.item_id.is_not(None)).group_by(PreferencePair.item_id).subquery()
    rubric_id = Item.payload["rubric_id"].as_integer()
    pairs_by_rubric: dict[int, int] = {}
    q = select(rubric_id, per_item.c.n).select_from(Item).join(per_item, per_item.c.item_id == Item.id) \
        .where(rubric_id.is_not(None))
    for rid, n in s.execute(q):
        pairs_by_rubric[int(rid)] = pairs_by_rubric.get(int(rid), 0) + int(n)
    records: dict[int, RubricRecord] = {}
    wanted = set(pairs_by_rubric)
    while wanted:  # the rubrics used, then the drafts they were edited from
        ordered, wanted = sorted(wanted), set()
        for chunk in chunked(ordered):
            for rec in s.scalars(select(RubricRecord).where(RubricRecord.id.in_(chunk))):
                records[rec.id] = rec
                if rec.parent_id is not None and rec.parent_id not in records:
                    wanted.add(rec.parent_id)
    decisions: dict[str, int] = {}
    reviewers: set[str] = set()
    reviewed: set[int] = set()
    for chunk in chunked(records):
        for rid, decision, reviewer in s.execute(select(RubricReview.rubric_id, RubricReview.decision,
                                                        RubricReview.reviewer)
                                                 .where(RubricReview.rubric_id.in_(chunk))):
            decisions[decision] = decisions.get(decision, 0) + 1
            reviewers.add(reviewer)
            reviewed.add(rid)
    used = [records[r] for r in pairs_by_rubric if r in records]
    human_edited = sum(c.get("origin") == "human_edited"
                       for rec in used for c in (rec.rubric or {}).get("criteria", []))
    return {
        "pairs_with_store_rubric": sum(pairs_by_rubric.values()),
        "pairs_with_reviewed_rubric": sum(n for r, n in pairs_by_rubric.items()
                                          if r in reviewed or (r in records and records[r].parent_id in reviewed)),
        "rubrics": len(used), "human_edited_rubrics": sum(rec.origin == "human_edited" for rec in used),
        "human_edited_criteria": human_edited, "rubric_reviews": decisions, "reviewers": len(reviewers),
    }


# -- the card -----------------------------------------------------------------------------------
def dataset_card(store: Store, out: Path, fmt: str, shape: str, flt: PairFilter, with_metadata: bool, rows: int,
                 options: CardOptions) -> str:
    """The card's text for an export of ``rows`` rows at ``out``."""
    facts = card_facts(store, flt)
    data_path = "data-*.arrow" if fmt == "hf" else out.name
    meta: dict[str, Any] = {"license": options.license}
    if options.license == "other":
        meta["license_name"] = "not-set"
    langs = sorted(k for k in facts["languages"] if k != "unknown")
    if langs:
        meta["language"] = langs
    meta.update({
        "pretty_name": f"carealign {'/'.join(sorted(facts['pair_kinds']))} {shape} data",
        "size_categories": [size_category(rows)],
        "task_categories": ["text-generation"],
        "tags": ["carealign", "synthetic", "preference" if shape == "preference" else "prompts",
                 *sorted(facts["pair_kinds"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_path}]}],
        "dataset_info": {"splits": [{"name": "train", "num_examples": rows}]},
        "carealign": {
            "rows": rows, "shape": shape, "format": fmt, "with_metadata": with_metadata,
            # flagged pairs are left out by default (review app); the card names the filter only when they are in
            "filters": {k: v for k, v in asdict(flt).items() if v is not None and (k, v) != ("include_flagged", False)},
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"), "exported_by_code": code_version(),
            **facts,
        },
    })
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{_body(meta, facts, rows, shape, fmt, data_path, options)}"


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "(none)\n"
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _body(meta: dict[str, Any], facts: dict[str, Any], rows: int, shape: str, fmt: str, data_path: str,
          options: CardOptions) -> str:
    c = meta["carealign"]
    what = "conversational `prompt` / `chosen` / `rejected` (trl DPOTrainer, RewardTrainer)" \
        if shape == "preference" else "one `prompt` per distinct prompt (trl GRPOTrainer)"
    rv = facts["reviewers"]
    filters = ", ".join(f"{k}={v}" for k, v in c["filters"].items()) or "none (every stored pair)"
    parts = [
        f"# {meta['pretty_name']}\n",
        f"{rows:,} rows ({what}) from {facts['pairs']:,} preference pairs, exported by carealign "
        f"({c['exported_by_code']}) on {c['exported_at']} as {fmt} (`{data_path}`, split `train`). "
        f"Filters: {filters}.\n",
        "## Contents\n",
        _table(["pair kind", "pairs"], sorted(facts["pair_kinds"].items())),
        _table(["language", "pairs"], sorted(facts["languages"].items())),
        f"Margins: min {facts['margin']['min']}, mean {facts['margin']['mean']}, max {facts['margin']['max']}.\n",
        "## How it was made\n",
        "Answers were written by (one row per model, prompt template and temperature):\n",
        _table(["model", "role", "prompt template", "template sha256[:16]", "temperature", "answers / calls"],
               [[g["model"], g["role"], g["prompt_name"], g["prompt_hash"], g["temperature"],
                 g.get("answers", g.get("calls"))] for g in facts["generation"]]),
        "and judged by:\n",
        _table(["model", "prompt template", "template sha256[:16]", "criterion kind", "judgments / calls"],
               [[j["model"], j["prompt_name"], j["prompt_hash"], j.get("criterion_kind"),
                 j.get("judgments", j.get("calls"))] for j in facts["judging"]]),
    ]
    if facts["search_calls"]:
        parts += ["ESC search calls behind the pairs (strategist, simulated seeker):\n",
                  _table(["model", "role", "prompt template", "template sha256[:16]", "calls"],
                         [[x["model"], x["role"], x["prompt_name"], x["prompt_hash"], x["calls"]]
                          for x in facts["search_calls"]])]
    parts += [
        "Runs (each keeps its full configuration in the carealign store):\n",
        _table(["run", "kind", "status", "code", "pairs"],
               [[r["id"], r["kind"], r["status"], r["code_version"], r["pairs"]] for r in facts["runs"]]),
        "## Reviewers\n",
        f"{rv['pairs_with_store_rubric']:,} pairs were graded against a rubric from the store, "
        f"{rv['pairs_with_reviewed_rubric']:,} of them against one a reviewer decided; "
        f"{rv['rubrics']} rubrics ({rv['human_edited_rubrics']} edited by a reviewer, "
        f"{rv['human_edited_criteria']} criteria written or changed by a reviewer); reviews: "
        + (", ".join(f"{k} {v}" for k, v in sorted(rv["rubric_reviews"].items())) or "none")
        + f" by {rv['reviewers']} reviewer(s). Other pairs' rubrics came with the input data or a rubric file.\n",
        "## Tracing a row\n",
        "Every pair traces back to its answers, judgments, prompts, input line and run: "
        "`carealign --db STORE trace pair:PAIR_ID` (export with `--with-metadata` for the `pair_id` column).\n",
        "## License\n",
        (LICENSE_NOTE if options.license == "other" else f"License: `{options.license}`.") + "\n",
    ]
    return "\n".join(parts)


# -- the Hugging Face Hub -----------------------------------------------------------------------
def push_export(out: Path, fmt: str, repo: str) -> str:
    """Upload an export and its card to the Hugging Face Hub dataset ``repo``; returns its URL.
    Needs network access and a token (``hf auth login`` or ``HF_TOKEN``)."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import OfflineModeIsEnabled

    card = card_path(out, fmt)
    if not card.is_file():
        raise StoreError(f"{card} is missing: export again before pushing")
    token = get_token()
    if not token:
        raise StoreError(f"cannot push to the Hugging Face Hub: no token (run `hf auth login` or set HF_TOKEN); "
                         f"the export is complete at {out}")
    api = HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        if fmt == "hf":
            api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=str(out),
                              commit_message="carealign db export")
        else:
            api.upload_file(path_or_fileobj=str(out), path_in_repo=out.name, repo_id=repo, repo_type="dataset",
                            commit_message="carealign db export")
            api.upload_file(path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo, repo_type="dataset",
                            commit_message="carealign dataset card")
    except OfflineModeIsEnabled:
        raise StoreError(f"cannot push to the Hugging Face Hub dataset {repo!r}: offline mode is on (HF_HUB_OFFLINE); "
                         f"the export is complete at {out}") from None
    except Exception as exc:  # network, authentication, HTTP: whatever failed, say so with the repo
        raise StoreError(f"cannot push to the Hugging Face Hub dataset {repo!r} (it needs network access to "
                         f"huggingface.co and a token with write access): {type(exc).__name__}: {exc}; "
                         f"the export is complete at {out}") from None
    return f"https://huggingface.co/datasets/{repo}"
