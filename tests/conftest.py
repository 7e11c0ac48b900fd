"""Shared fixtures: a real fake-OpenAI server, SQLite and PostgreSQL stores.

PostgreSQL tests use a throw-away database created on the server named by CAREALIGN_TEST_PG_URL
(default: the local server's ``postgres`` user at 127.0.0.1:5432, database ``test``). When no server
answers they are skipped with that reason; CI sets CAREALIGN_REQUIRE_PG=1 so that a missing
server fails the run instead of silently skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
