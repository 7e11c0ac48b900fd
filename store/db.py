"""Opening a store: URL checks, engine set-up (SQLite WAL, PostgreSQL via psycopg 3), migrations.

A store is one SQLAlchemy engine plus a session factory. SQLite is the default (one file, WAL mode
so readers never block the writer); PostgreSQL is for many workers. The schema is owned by Alembic:
an empty database is initialised on open, a database at an older revision is refused until
``carealign db upgrade`` is run, so a command never silently migrates a shared database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


def normalise_url(url: str) -> str:
    """Validate a database URL and pin the driver: ``postgresql://`` means psycopg 3.

    A bare file path is taken as a SQLite file, the common case on a laptop.
    """
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {redact_url(url)!r}: {exc}") from None
    if parsed.drivername not in SUPPORTED_SCHEMES:
        raise StoreError(
            f"unsupported database URL scheme {parsed.drivername!r} in {redact_url(url)!r}; "
            "use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages, logs and manifests."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _json_dumps(obj: Any) -> str:
    # readable (and smaller) for Chinese and other non-ASCII text
    return json.dumps(obj, ensure_ascii=False)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            parent = Path(db).expanduser().resolve().parent
            if not parent.exists():
                raise StoreError(f"cannot create SQLite store {db!r}: folder {str(parent)!r} does not exist")
        engine = create_engine(url, connect_args={"timeout": 30}, json_serializer=_json_dumps)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_serializer=_json_dumps)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


class Store:
    """A handle on one database: sessions, transactions and schema state."""

    def __init__(self, url: str, must_exist: bool = False):
        self.url = normalise_url(url)
        db = make_url(self.url).database
        if must_exist and make_url(self.url).get_backend_name() == "sqlite" and db and db != ":memory:" \
                and not Path(db).expanduser().exists():
            raise StoreError(f"no store at {db!r}: run `carealign db init` (or check --db)")
        self.engine = make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    # -- schema ---------------------------------------------------------------------------------
    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            raise StoreError(f"cannot connect to database {self.safe_url}: {exc.orig}") from None

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(self.engine)).get_current_head()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (creates every table on an empty database)."""
        if self.current_revision() is None:
            self._refuse_foreign_tables()
        try:
            command.upgrade(alembic_config(self.engine), "head")
        except OperationalError as exc:
            raise StoreError(f"cannot migrate database {self.safe_url}: {exc.orig}") from None

    def _refuse_foreign_tables(self) -> None:
        tables = set(inspect(self.engine).get_table_names())
        if tables - {"alembic_version"}:
            raise StoreError(
                f"database {self.safe_url} has tables but no carealign schema version; "
                "point --db at an empty database or a carealign store"
            )

    def has_table(self, name: str) -> bool:
        """Whether the table exists, without creating anything (not even an SQLite file)."""
        db = make_url(self.url).database
        if self.dialect == "sqlite" and db and db != ":memory:" and not Path(db).expanduser().exists():
            return False
        try:
            return inspect(self.engine).has_table(name)
        except OperationalError as exc:
            raise StoreError(f"cannot connect to database {self.safe_url}: {exc.orig}") from None

    def ensure_schema(self) -> None:
        """Initialise an empty database; refuse one at an older revision (needs ``db upgrade``)."""
        current = self.current_revision()
        if current == self.head_revision():
            return
        if current is None:
            self.upgrade()
            return
        raise StoreError(
            f"database {self.safe_url} is at schema revision {current}, this carealign needs "
            f"{self.head_revision()}: run `carealign db upgrade`"
        )

    # -- sessions -------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work commits as one transaction, or rolls back entirely on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection in one transaction: for hot paths that need no ORM (cache, call log)."""
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def dialect_insert(session: Session, model: Any):
    """INSERT for the session's dialect, with ON CONFLICT support (SQLite and PostgreSQL)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(model)
    return insert(model)


def insert_ignore(session: Session, model: Any, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert rows, skipping any whose unique key already exists: the idempotent write."""
    if not rows:
        return
    stmt = dialect_insert(session, model).on_conflict_do_nothing(index_elements=list(keys))
    session.execute(stmt, list(rows))


CHUNK = 500  # ids per IN (...) query: far below SQLite's and PostgreSQL's bound-parameter limits


def chunked(ids: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """Sorted ids in lists of ``size``, for ``IN (...)`` queries over id lists of any length."""
    got = sorted(ids)
    for start in range(0, len(got), size):
        yield got[start:start + size]
