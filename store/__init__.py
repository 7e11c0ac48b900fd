"""The SQL store: every run, input, LLM call, candidate, judgment, pair and tree node.

SQLite by default, PostgreSQL for many workers; the schema is managed by Alembic migrations.
"""

from store.db import Store, insert_ignore, normalise_url, redact_url
from store.errors import StoreError

__all__ = ["Store", "StoreError", "insert_ignore", "normalise_url", "redact_url"]
