"""training pairs per run, and the indexes `carealign trace` looks up by

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00

A training run keeps the full list of pair ids it used (and their split), so a model traces to its
data from the store alone. Two indexes make the lineage lookups indexed on large stores: an item by
its external id, a run's pairs. Existing training runs have no rows here: their pair ids are in
their model folders' manifests (``carealign trace FOLDER`` reads them from there).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('training_pairs',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('pair_id', BIG_ID, autoincrement=False, nullable=False),
    sa.Column('split', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['pair_id'], ['preference_pairs.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('run_id', 'pair_id')
    )
    with op.batch_alter_table('training_pairs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_pairs_pair_id'), ['pair_id'], unique=False)
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_items_external_id'), ['external_id'], unique=False)
    with op.batch_alter_table('preference_pairs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_preference_pairs_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('preference_pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_preference_pairs_run_id'))
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_items_external_id'))
    with op.batch_alter_table('training_pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_pairs_pair_id'))
    op.drop_table('training_pairs')
