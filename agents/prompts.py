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

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from agents.language import LANGUAGES, choose_lang

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


def localized(name: str, lang: str) -> str:
    """The name of prompt ``name`` in language ``lang`` (``en``: the name itself; ``zh``: ``name.zh``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"no prompts in language {lang!r}; there are: {', '.join(LANGUAGES)}")
    return name if lang == "en" else f"{name}.{lang}"


def language_of(prompt_name: str | None) -> str:
    """The language a recorded prompt name was sent in (``judge.zh`` -> ``zh``; ``judge`` -> ``en``)."""
    suffix = (prompt_name or "").rpartition(".")[2]
    return suffix if "." in (prompt_name or "") and suffix in LANGUAGES else "en"


def prompt_for(name: str, setting: str = "auto", declared: Any = None, *texts: Any) -> str:
    """The localized name of prompt ``name`` for one item: the language of ``setting`` when it names
    one, else the item's ``declared`` language, else the one detected from ``texts``."""
    return localized(name, choose_lang(setting, declared, *texts))


def prompt_hashes(name: str, folder: Path = PROMPTS_DIR) -> list[str]:
    """The hashes of prompt ``name`` in every language, for job keys: a change to any language's
    template is a different job."""
    return [prompt_hash(localized(name, lang), folder) for lang in LANGUAGES]


@cache
def _templates(name: str, folder: Path) -> tuple[tuple[str, Template], ...]:
    """Prompt ``name``'s compiled templates by role, looked up once per process: templates do not
    change while a process runs (as ``prompt_hash``, which is cached too, assumes), and finding the
    files and asking Jinja whether they changed on every render was a large part of a call's CPU."""
    env = _env(str(folder))
    return tuple((role, env.get_template(path.name)) for role, path in _files(name, folder))


def render(name: str, folder: Path = PROMPTS_DIR, **variables: Any) -> list[dict[str, str]]:
    """Render a prompt into chat messages (system first, if the template has one)."""
    return [{"role": role, "content": template.render(**variables).strip()}
            for role, template in _templates(name, Path(folder))]
