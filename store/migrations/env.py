"""Alembic environment: migrations run on the engine the Store hands over (no alembic.ini URL)."""

from alembic import context
from sqlalchemy import text

from store.models import Base

config = context.config
target_metadata = Base.metadata


# Several workers may start on an empty PostgreSQL database at once: migrations run one at a time
# under this advisory lock, and a worker that waited finds the schema at head and does nothing.
MIGRATION_LOCK_ID = 0x63617265  # "care"


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
