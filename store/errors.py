"""Errors a user can act on; the CLI prints them as one line and exits non-zero."""


class StoreError(Exception):
    """The database cannot be opened, migrated or written as asked."""
