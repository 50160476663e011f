"""item tags: free tags on work items, indexed by (tag, work_item_id) for the tag filters

Revision ID: a7b2c3d4e5f6
Revises: c9d0e1f2a3b4
Create Date: 2026-12-08 00:01:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7b2c3d4e5f6'
down_revision = 'c9d0e1f2a3b4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'item_tags',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('work_item_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_item_tags_created_by_id_users')),
        sa.ForeignKeyConstraint(['work_item_id'], ['work_items.id'],
                                name=op.f('fk_item_tags_work_item_id_work_items'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_item_tags')),
        sa.UniqueConstraint('work_item_id', 'tag', name=op.f('uq_item_tags_work_item_id')),
    )
    with op.batch_alter_table('item_tags', schema=None) as batch_op:
        batch_op.create_index('ix_item_tags_tag', ['tag', 'work_item_id'], unique=False)


def downgrade():
    with op.batch_alter_table('item_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_item_tags_tag')
    op.drop_table('item_tags')
