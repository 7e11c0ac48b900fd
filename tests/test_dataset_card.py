"""Dataset cards of `carealign db export`: the YAML front matter parses (pyyaml and huggingface_hub),
its counts match the exported rows and the store, it sits where the README says, the license comes
from the setting, and a push without network is a clear error that keeps the export."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from agents.prompts import prompt_hash
from carealign.cli import app
from store import Store
from store.models import Judgment, LLMCall, PreferencePair
from store.records import code_version
from tests.lineage_stores import build_esc, build_generate, build_rubric_prefs


def export(store: Store, out: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = CliRunner(env={"COLUMNS": "250", **(env or {})}).invoke(
        app, ["--db", store.url, "db", "export", "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    return res.output


def read_card(path: Path) -> tuple[dict[str, Any], str]:
    """(YAML metadata, markdown body) of a card; the Hugging Face loader must read the same metadata."""
    from huggingface_hub import DatasetCard

    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert DatasetCard.load(path).data.to_dict() == meta
    return meta, body


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


async def test_a_jsonl_card_parses_and_its_counts_match_the_rows_and_the_store(store, fake_server, make_engine,
                                                                               tmp_path):
    await build_generate(store, fake_server, make_engine, tmp_path)
    await build_rubric_prefs(store, fake_server, make_engine, tmp_path)
    await build_esc(store, fake_server, make_engine, tmp_path)
    out = tmp_path / "pairs.jsonl"
    printed = export(store, out, "--with-metadata")
    assert f"dataset card: {tmp_path / 'pairs.README.md'}" in printed
    rows = jsonl(out)
    meta, body = read_card(tmp_path / "pairs.README.md")
    c = meta["carealign"]
    assert c["rows"] == c["pairs"] == meta["dataset_info"]["splits"][0]["num_examples"] == len(rows) == 4
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "pairs.jsonl"}]}]
    assert (meta["license"], meta["license_name"], meta["language"], meta["size_categories"]) == (
        "other", "not-set", ["en"], ["n<1K"])
    assert c["pair_kinds"] == dict(Counter(r["kind"] for r in rows)) == {"generic": 2, "rubric": 1, "esc": 1}
    assert c["languages"] == dict(Counter(r["language"] for r in rows))
    assert {r["id"]: r["pairs"] for r in c["runs"]} == dict(Counter(r["run_id"] for r in rows))
    assert (c["filters"], c["shape"], c["format"], c["with_metadata"]) == ({}, "preference", "jsonl", True)
    assert c["exported_by_code"] == code_version()
    assert c["margin"]["min"] == min(r["margin"] for r in rows) and c["margin"]["max"] == max(r["margin"] for r in rows)

    with store.session() as s:
        pairs = [s.get(PreferencePair, r["pair_id"]) for r in rows]
        answers = {i for p in pairs for i in (p.chosen_candidate_id, p.rejected_candidate_id) if i is not None}
        n_judgments = s.scalar(select(func.count()).select_from(Judgment).where(Judgment.candidate_id.in_(answers)))
        esc_calls = {i for p in pairs if p.kind == "esc" for ids in p.provenance["llm_call_ids"].values() for i in ids}
        esc_roles = Counter(s.scalar(select(LLMCall.role).where(LLMCall.id == i)) for i in esc_calls)
    written = [g for g in c["generation"] if "answers" in g]
    assert sum(g["answers"] for g in written) == len(answers) == 6
    assert {(g["model"], g["prompt_name"], g["temperature"]) for g in written} == {
        ("gen-model", "answer", 0.7), ("policy-model", "answer", 0.8)}
    assert sum(j["judgments"] for j in c["judging"] if "judgments" in j) == n_judgments
    assert {(j["model"], j["prompt_name"]) for j in c["judging"] if "judgments" in j} == {
        ("judge-model", "judge"), ("grader-model", "grade_criterion")}
    by_role = Counter()
    for x in c["generation"] + c["judging"] + c["search_calls"]:
        if "calls" in x:
            by_role[x["role"]] += x["calls"]
    assert by_role == esc_roles
    for x in c["generation"] + c["judging"] + c["search_calls"]:
        assert x["prompt_hash"] == prompt_hash(x["prompt_name"])
    assert c["reviewers"] == {"pairs_with_store_rubric": 1, "pairs_with_reviewed_rubric": 1, "rubrics": 1,
                              "human_edited_rubrics": 1, "human_edited_criteria": 1, "rubric_reviews": {"edit": 1},
                              "reviewers": 1}
    assert "dr-lee" not in body and "dr-lee" not in json.dumps(meta)  # reviewers are counted, never named
    for text in ("| generic | 2 |", "gen-model", prompt_hash("answer"), "edit 1 by 1 reviewer(s)",
                 "carealign --db STORE trace pair:PAIR_ID", "`export_license`"):
        assert text in body, text


async def test_filtered_parquet_and_prompt_shape_cards_describe_their_own_selection(sqlite_store, fake_server,
                                                                                    make_engine, tmp_path):
    import pyarrow.parquet as pq

    store = sqlite_store
    await build_generate(store, fake_server, make_engine, tmp_path)
    await build_rubric_prefs(store, fake_server, make_engine, tmp_path)
    out = tmp_path / "generic.parquet"
    export(store, out, "--format", "parquet", "--kind", "generic")
    meta, _ = read_card(tmp_path / "generic.README.md")
    c = meta["carealign"]
    assert c["rows"] == pq.read_table(out).num_rows == 2 and c["pair_kinds"] == {"generic": 2}
    assert c["filters"] == {"kind": "generic"} and meta["configs"][0]["data_files"][0]["path"] == "generic.parquet"
    assert {j["model"] for j in c["judging"]} == {"judge-model"} and c["reviewers"]["pairs_with_store_rubric"] == 0

    prompts = tmp_path / "prompts.jsonl"
    export(store, prompts, "--shape", "prompt")
    meta, body = read_card(tmp_path / "prompts.README.md")
    assert meta["carealign"]["rows"] == len(jsonl(prompts)) == 3 and meta["carealign"]["pairs"] == 3
    assert meta["carealign"]["shape"] == "prompt" and "prompts" in meta["tags"]
    assert sorted(p.name for p in tmp_path.iterdir() if "README" in p.name) == [
        "generic.README.md", "prompts.README.md"]  # each export keeps its own card


async def test_an_hf_folder_holds_its_card_and_still_loads(sqlite_store, fake_server, make_engine, tmp_path):
    from datasets import load_from_disk

    store = sqlite_store
    await build_generate(store, fake_server, make_engine, tmp_path)
    await build_esc(store, fake_server, make_engine, tmp_path)
    folder = tmp_path / "hf"
    export(store, folder, "--format", "hf")
    meta, _ = read_card(folder / "README.md")
    assert meta["carealign"]["rows"] == load_from_disk(str(folder)).num_rows == 3
    assert meta["configs"][0]["data_files"][0]["path"] == "data-*.arrow"
    assert list(folder.glob("data-*.arrow"))
    export(store, folder, "--format", "hf", "--kind", "esc")  # a new export replaces the folder and its card
    meta, _ = read_card(folder / "README.md")
    assert meta["carealign"]["pair_kinds"] == {"esc": 1} and load_from_disk(str(folder)).num_rows == 1
    assert [g["role"] for g in meta["carealign"]["generation"]] == ["esc_supporter"]
    assert {x["role"] for x in meta["carealign"]["search_calls"]} == {"esc_seeker"}


async def test_the_license_comes_from_the_export_license_setting(sqlite_store, fake_server, make_engine, tmp_path):
    await build_generate(sqlite_store, fake_server, make_engine, tmp_path)
    out = tmp_path / "pairs.jsonl"
    export(sqlite_store, out, env={"CAREALIGN_EXPORT_LICENSE": "cc-by-4.0"})
    meta, body = read_card(tmp_path / "pairs.README.md")
    assert meta["license"] == "cc-by-4.0" and "license_name" not in meta
    assert "License: `cc-by-4.0`." in body and "No license was set" not in body


async def test_push_to_hub_without_network_or_token_is_a_clear_error_and_keeps_the_export(
        sqlite_store, fake_server, make_engine, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    await build_generate(sqlite_store, fake_server, make_engine, tmp_path)
    out = tmp_path / "pairs.jsonl"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(hub, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    res = CliRunner().invoke(app, ["--db", sqlite_store.url, "db", "export", "--out", str(out),
                                   "--push-to-hub", "someone/pairs"])
    assert res.exit_code == 2 and "no token" in res.output and "hf auth login" in res.output
    assert out.exists() and (tmp_path / "pairs.README.md").exists()

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    res = CliRunner().invoke(app, ["--db", sqlite_store.url, "db", "export", "--out", str(out),
                                   "--push-to-hub", "someone/pairs"])
    message = " ".join(res.output.split())
    assert res.exit_code == 2 and "cannot push to the Hugging Face Hub dataset 'someone/pairs'" in message
    assert "offline" in message and f"the export is complete at {out}" in message
    assert len(jsonl(out)) == 2
