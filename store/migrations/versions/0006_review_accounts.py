"""review web app: accounts, review slots (N reviewers per item), pair flags

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:30:00

``carealign review serve`` keeps its accounts (argon2 hashes only), the slots that hand each item
to N independent reviewers, and reviewers' flags on wrong preference pairs. An index on
``judgments.criterion_kind`` keeps the fact-check variant queue (panel decisions) an indexed lookup.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('review_users',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('review_slots',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('queue', sa.String(length=16), nullable=False),
    sa.Column('item_id', sa.BigInteger(), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('user_id', BIG_ID, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('labels', JSON_TYPE, nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['review_users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('queue', 'item_id', 'slot', name='uq_review_slots_slot'),
    sa.UniqueConstraint('queue', 'item_id', 'user_id', name='uq_review_slots_user')
    )
    with op.batch_alter_table('review_slots', schema=None) as batch_op:
        batch_op.create_index('ix_review_slots_user', ['user_id', 'queue', 'status'], unique=False)
    op.create_table('pair_flags',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('pair_id', BIG_ID, nullable=False),
    sa.Column('user_id', BIG_ID, nullable=False),
    sa.Column('reviewer', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pair_id'], ['preference_pairs.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['review_users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pair_id', 'user_id', name='uq_pair_flags_user')
    )
    with op.batch_alter_table('pair_flags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pair_flags_pair_id'), ['pair_id'], unique=False)
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.create_index('ix_judgments_criterion_kind', ['criterion_kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.drop_index('ix_judgments_criterion_kind')
    with op.batch_alter_table('pair_flags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pair_flags_pair_id'))
    op.drop_table('pair_flags')
    with op.batch_alter_table('review_slots', schema=None) as batch_op:
        batch_op.drop_index('ix_review_slots_user')
    op.drop_table('review_slots')
    op.drop_table('review_users')
