"""Prompt templates: Jinja2 files in ``agents/templates/``, one per message role.

A prompt named ``judge`` is ``judge.system.j2`` (optional) plus ``judge.user.j2``. Its hash (of the
template sources) is stored with every call made from it, so a changed prompt is visible in the
store and never mixed up with results of the old one in the request cache.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

PROMPTS_DIR = Path(__file__).parent / "templates"
ROLES = ("system", "user")


@cache
def _env(folder: str) -> Environment:
    return Environment(
        loader=FileSystemLoader(folder), undefined=StrictUndefined, keep_trailing_newline=False,
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )


def _files(name: str, folder: Path) -> list[tuple[str, Path]]:
    found = [(role, folder / f"{name}.{role}.j2") for role in ROLES]
    found = [(role, path) for role, path in found if path.exists()]
    if not found:
        raise FileNotFoundError(f"no prompt template named {name!r} in {folder}")
    return found


@cache
def prompt_hash(name: str, folder: Path = PROMPTS_DIR) -> str:
    h = hashlib.sha256()
    for role, path in _files(name, folder):
        h.update(role.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def render(name: str, folder: Path = PROMPTS_DIR, **variables: Any) -> list[dict[str, str]]:
    """Render a prompt into chat messages (system first, if the template has one)."""
    env = _env(str(folder))
    return [
        {"role": role, "content": env.get_template(path.name).render(**variables).strip()}
        for role, path in _files(name, folder)
    ]
