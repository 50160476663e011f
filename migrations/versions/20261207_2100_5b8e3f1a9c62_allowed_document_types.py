"""per-team allowed document types (files added to an item on the item page, the form and the API)

Revision ID: 5b8e3f1a9c62
Revises: 6e1d4a8c2f37
Create Date: 2026-12-07 21:00:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b8e3f1a9c62'
down_revision = '6e1d4a8c2f37'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('team_check_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allowed_document_types', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('team_check_settings', schema=None) as batch_op:
        batch_op.drop_column('allowed_document_types')
