"""Shared fixtures: a real fake-OpenAI server, engines on it, SQLite and PostgreSQL stores.

PostgreSQL tests use a throw-away database created on the server named by CAREALIGN_TEST_PG_URL
(default: the local server's ``postgres`` user at 127.0.0.1:5432, database ``test``). When no server
answers they are skipped with that reason; CI sets CAREALIGN_REQUIRE_PG=1 so that a missing
server fails the run instead of silently skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from agents.backends import OpenAICompatBackend
from agents.engine import EngineConfig, LLMEngine
from agents.limits import Limiter
from store import Store
from tests.fake_server import FakeOpenAIServer

PG_URL = os.environ.get("CAREALIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def _pg_admin_engine():
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def _pg_available() -> str | None:
    try:
        with _pg_admin_engine().connect() as conn:
            conn.execute(text("select 1"))
        return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL not reachable at {make_url(PG_URL).render_as_string(hide_password=True)}: {exc}"


_PG_PROBLEM = _pg_available()


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    if _PG_PROBLEM:
        if os.environ.get("CAREALIGN_REQUIRE_PG") == "1":
            pytest.fail(_PG_PROBLEM)
        pytest.skip(_PG_PROBLEM)
    return PG_URL


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"carealign_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_base_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
            ), {"d": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.ensure_schema()
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    s.ensure_schema()
    yield s
    s.dispose()


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


EngineFactory = Callable[..., LLMEngine]


@pytest.fixture
async def make_engine() -> AsyncIterator[EngineFactory]:
    """``make_engine(server, store, model=..., **EngineConfig fields)``: an LLMEngine on a fake server
    (tiny backoffs, 3 retries unless given), recording to ``store``; every engine made is closed after
    the test. The one way tests build engines."""
    made: list[LLMEngine] = []

    def factory(server: FakeOpenAIServer, store: Store | None, *, model: str = "fake-model",
                limiter: Limiter | None = None, style: str = "json_schema", timeout: float = 2.0,
                api_key_env: str | None = None, base_url: str | None = None, **config: Any) -> LLMEngine:
        backend = OpenAICompatBackend(base_url or server.base_url, api_key_env=api_key_env, timeout=timeout,
                                      response_format_style=style)
        cfg = {"max_retries": 3, "backoff_base": 0.01, "backoff_max": 0.05, **config}
        engine = LLMEngine(backend, EngineConfig(model=model, **cfg), limiter or Limiter(8), store)
        made.append(engine)
        return engine

    yield factory
    for engine in made:
        await engine.aclose()


def needs_shared(path: str) -> Path:
    p = SHARED / path
    if not p.exists():
        pytest.skip(f"../shared/{path} is not present beside the checkout")
    return p


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use a PostgreSQL fixture carry the ``postgres`` marker (``-m 'not postgres'``)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "pg_url" in item.fixturenames or "pg_base_url" in item.fixturenames or \
                params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)


def pytest_configure(config: pytest.Config) -> None:
    """The ``ray`` marker: tests that start a local Ray instance (``tests/test_ray_executor.py``)."""
    config.addinivalue_line("markers", "ray: needs Ray (the 'ray' extra); CAREALIGN_REQUIRE_RAY=1 makes a missing "
                                       "Ray a failure instead of a skip")
