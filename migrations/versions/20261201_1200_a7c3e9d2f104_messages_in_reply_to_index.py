"""messages in_reply_to index

Revision ID: a7c3e9d2f104
Revises: 5490492d9c0e
Create Date: 2026-12-01 12:00:00.000000+00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a7c3e9d2f104'
down_revision = '5490492d9c0e'
branch_labels = None
depends_on = None


def upgrade():
    # Filing a parent that arrived after its reply looks for the reply by the parent's Message-ID.
    op.create_index('ix_messages_in_reply_to', 'messages', ['in_reply_to'], unique=False)


def downgrade():
    op.drop_index('ix_messages_in_reply_to', table_name='messages')
