"""Strategy bench inputs and summary (Kang et al. 2024 metrics, PROTOCOLS.md section 3); the LLM
work is in ``graphs.bench.strategy_nodes``, the metrics in ``benchmarks.strategy_metrics``.

Inputs, both ESConv formats (``../shared/data/esconv``):
- **tsv** (``devWithStrategy_short.tsv``): one line per supporter turn, turns separated by ``" EOS "``,
  each turn ``<score> <speaker 0=seeker|1=supporter> <index> <text>``, supporter turns prefixed by
  their gold strategy in brackets; the last turn of a line is the turn to predict.
- **json** (ESConv.json / FailedESConv.json): a list of dialogues with ``situation`` and ``dialog``
  turns ``{"speaker", "content", "annotation": {"strategy"?}}``; every supporter turn with a strategy
  becomes one item with the dialogue before it as history.

Strategy sets are data: ``{"name", "definition"}`` lists (``agents/data/strategies_<set>.json``), or
ESConv's ``strategy.json`` (bracketed names). Names are matched with ``normalise_strategy``; a
mapping file (``{"name in the data or the model's set": "name in the scored set"}``) adds aliases,
which is also how a model prompted with one set (ExTES) is scored against another (ESConv).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agents.esc import DATA_DIR
from benchmarks.datasets.esconv import detect_format
from benchmarks.datasets.instructions import InputError
from benchmarks.datasets.rows import decode_utf8
from benchmarks.strategy_metrics import DEFAULT_ALIASES, normalise_strategy, strategy_report

STRATEGY_SETS_DIR = DATA_DIR  # the shipped sets live with the agents that use them
SUPPORTER_NAMES = {"supporter", "listener", "sys", "system", "1"}
SEEKER_NAMES = {"seeker", "speaker", "usr", "user", "0"}
_TURN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+([01])\s+(\d+)\s?(.*)$", re.DOTALL)
_TAG = re.compile(r"^\s*\[([^\]]+)\]\s*(.*)$", re.DOTALL)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} {str(path)!r} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid UTF-8 JSON: {exc}") from None


def _set_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    return STRATEGY_SETS_DIR / f"strategies_{name_or_path}.json" if not path.suffix else path


def load_strategy_set(name_or_path: str | Path) -> list[dict[str, str]]:
    """A strategy set by name (``esconv``, ``extes``: ``agents/data/strategies_<name>.json``) or path.
    Accepts ``{"strategies": [{"name", "definition"?}], "aliases"?}``, a bare list of such entries,
    or a list of names (brackets stripped, as in ESConv's strategy.json)."""
    path = _set_path(name_or_path)
    data = _read_json(path, "strategy set")
    if isinstance(data, dict):
        data = data.get("strategies")
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty list of strategies")
    out = []
    for n, entry in enumerate(data):
        if isinstance(entry, str):
            entry = {"name": entry.strip().strip("[]").strip()}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise InputError(f"{path}: entry {n}: field 'name' must be a non-empty string")
        out.append({"name": entry["name"].strip(), "definition": str(entry.get("definition") or "")})
    if len({s["name"].casefold() for s in out}) != len(out):
        raise InputError(f"{path}: strategy names must be distinct")
    return out


def load_mapping(path: str | Path | None, strategy_set: str | Path | None = None) -> dict[str, str]:
    """Aliases for scoring: DEFAULT_ALIASES, then the strategy set file's own ``aliases`` (if it has
    any), then the mapping file's ``{from: to}``; later ones win."""
    aliases = dict(DEFAULT_ALIASES)
    if strategy_set is not None:
        data = _read_json(_set_path(strategy_set), "strategy set")
        extra = data.get("aliases") if isinstance(data, dict) else None
        if extra is not None and not isinstance(extra, dict):
            raise InputError(f"{_set_path(strategy_set)}: field 'aliases' must be an object of name -> name")
        aliases.update(extra or {})
    if path is None:
        return aliases
    data = _read_json(Path(path), "mapping file")
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError(f"{path}: expected a JSON object of strategy name -> strategy name")
    return {**aliases, **data}


def _split_tag(text: str) -> tuple[str | None, str]:
    m = _TAG.match(text)
    return (m.group(1).strip(), m.group(2).strip()) if m else (None, text.strip())


def _tsv_items(path: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        turns = []
        for k, segment in enumerate(line.split(" EOS ")):
            m = _TURN.match(segment)
            if not m:
                raise InputError(f"{path}:{lineno}: turn {k}: expected '<score> <speaker 0|1> <index> <text>'")
            speaker = "supporter" if m.group(2) == "1" else "seeker"
            tag, text = _split_tag(m.group(4)) if speaker == "supporter" else (None, m.group(4).strip())
            turns.append((speaker, tag, text))
        speaker, tag, text = turns[-1]
        if speaker != "supporter" or tag is None:
            raise InputError(f"{path}:{lineno}: the last turn must be a supporter turn tagged '[Strategy]'")
        history = [{"speaker": s, "text": t} for s, _, t in turns[:-1]]
        out.append((f"{path.name}:{lineno}", {"history": history, "situation": None, "gold": tag,
                                               "gold_response": text}))
    return out


def _json_items(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        dialogues = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(dialogues, list):
        raise InputError(f"{path}: expected a JSON list of dialogues")
    out = []
    for d, dialogue in enumerate(dialogues):
        turns = dialogue.get("dialog") if isinstance(dialogue, dict) else None
        if not isinstance(turns, list):
            raise InputError(f"{path}: dialogue {d}: field 'dialog' must be a list of turns")
        history: list[dict[str, str]] = []
        for t, turn in enumerate(turns):
            speaker = str(turn.get("speaker", "")).strip().casefold() if isinstance(turn, dict) else ""
            if speaker not in SUPPORTER_NAMES | SEEKER_NAMES or not isinstance(turn.get("content"), str):
                raise InputError(f"{path}: dialogue {d}, turn {t}: needs 'speaker' (seeker/supporter) and 'content'")
            role = "supporter" if speaker in SUPPORTER_NAMES else "seeker"
            text = turn["content"].strip()
            strategy = (turn.get("annotation") or {}).get("strategy")
            if role == "supporter" and isinstance(strategy, str) and strategy.strip():
                out.append((f"{path.name}: dialogue {d}, turn {t}",
                            {"history": list(history), "situation": dialogue.get("situation"),
                             "gold": strategy.strip(), "gold_response": text}))
            history.append({"speaker": role, "text": text})
    return out


def read_strategy_dialogues(path: str | Path, strategies: list[dict[str, str]], aliases: dict[str, str],
                            max_history_turns: int | None = None, unknown_gold: str = "error",
                            limit: int | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Items (records for ``upsert_items``) and the gold names that were skipped (``unknown_gold =
    "skip"``) with their counts. The gold name is normalised into the set here, so a tag outside
    it (and not mapped) is an error naming where it is, unless skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    if unknown_gold not in ("error", "skip"):
        raise ValueError(f"unknown_gold must be 'error' or 'skip' (got {unknown_gold!r})")
    decode_utf8(path, path.read_bytes())  # a byte that is not UTF-8 is named by its line
    try:  # by content, whatever the file's name; a file that is neither is read (and refused) as tsv
        is_json = detect_format(path) == "esconv-json"
    except InputError:
        is_json = path.suffix.lower() == ".json"
    found = _json_items(path) if is_json else _tsv_items(path)
    names = [s["name"] for s in strategies]
    records, skipped = [], {}
    for where, payload in found:
        gold = normalise_strategy(payload["gold"], names, aliases)
        if gold is None:
            if unknown_gold == "error":
                raise InputError(f"{where}: gold strategy {payload['gold']!r} is not in the strategy set "
                                 f"{names}; map it with a mapping file or skip such turns")
            skipped[payload["gold"]] = skipped.get(payload["gold"], 0) + 1
            continue
        if max_history_turns is not None:
            payload["history"] = payload["history"][-max_history_turns:] if max_history_turns else []
        records.append({"payload": {**payload, "gold": gold, "gold_raw": payload["gold"]}, "external_id": None,
                        "source": where})
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise InputError(f"{path}: no supporter turn with a usable strategy")
    return records, skipped


def summarise_strategies(results: list[dict[str, Any]], strategies: list[str], aliases: dict[str, str]
                         ) -> dict[str, Any]:
    """Q, weighted F1, B, per-strategy F1 and preferences, the confusion matrix (gold x predicted)
    and both distributions, from per-item ``gold`` and ``predicted`` names."""
    rep = strategy_report([r["gold"] for r in results], [r["predicted"] for r in results], strategies, aliases)
    return {"n": rep.n, "q": rep.q, "weighted_f1": rep.weighted_f1, "bias": rep.bias,
            "strategies": list(rep.strategies), "p": rep.p, "f1": rep.f1, "confusion": rep.confusion.tolist(),
            "pred_distribution": rep.pred_distribution, "gold_distribution": rep.gold_distribution,
            "n_mapped_to_others": rep.n_mapped_to_others, "degenerate": rep.preference.degenerate,
            "notes": rep.notes}
