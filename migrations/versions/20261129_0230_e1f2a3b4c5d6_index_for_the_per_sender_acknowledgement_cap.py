"""index for the per-sender acknowledgement cap

Revision ID: e1f2a3b4c5d6
Revises: d7e8f9a0b1c2
Create Date: 2026-11-29 02:30:00.000000+00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e1f2a3b4c5d6'
down_revision = 'd7e8f9a0b1c2'
branch_labels = None
depends_on = None


def upgrade():
    # Counting the acknowledgements sent to one sender in the last hour reads one range of
    # (is_automatic, to_addresses, created_at) instead of every acknowledgement of the hour.
    op.create_index('ix_messages_automatic_to_created', 'messages', ['is_automatic', 'to_addresses', 'created_at'],
                    unique=False)


def downgrade():
    op.drop_index('ix_messages_automatic_to_created', table_name='messages')
