"""teams: close resolved items after a number of days

Revision ID: b8c9d0e1f2a3
Revises: e5f9a2b3c4d6
Create Date: 2026-12-08 00:10:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b8c9d0e1f2a3'
down_revision = 'e5f9a2b3c4d6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_close_days', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('auto_close_days')
