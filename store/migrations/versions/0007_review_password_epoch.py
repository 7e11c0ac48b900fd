"""review accounts: a password epoch that sessions are bound to

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 18:50:00

A review session records the epoch of the password it was opened with. ``review user reset`` and
a reviewer's own password change move the epoch on, so every other open session of the account
ends; a rehash of the same password (new argon2 parameters) does not, so nobody is logged out by
an upgrade of the hashing library.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('review_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_epoch', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('review_users', schema=None) as batch_op:
        batch_op.drop_column('password_epoch')
