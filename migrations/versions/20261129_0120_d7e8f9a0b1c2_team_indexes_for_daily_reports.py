"""team indexes for the created / resolved per day report

Revision ID: d7e8f9a0b1c2
Revises: c5d6e7f8a9b0
Create Date: 2026-11-29 01:20:00.000000+00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd7e8f9a0b1c2'
down_revision = 'c5d6e7f8a9b0'
branch_labels = None
depends_on = None


def upgrade():
    # A team's items created (resolved) on a day are one range of (team_id, created_at)
    # ((team_id, resolved_at)): the daily report counts them without reading the table.
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.create_index('ix_work_items_team_created', ['team_id', 'created_at'], unique=False)
        batch_op.create_index('ix_work_items_team_resolved', ['team_id', 'resolved_at'], unique=False)


def downgrade():
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.drop_index('ix_work_items_team_resolved')
        batch_op.drop_index('ix_work_items_team_created')
