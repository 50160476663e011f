"""item drafts: what a person typed in an item's reply or note box and has not sent

Revision ID: 8b2f4c6d1e90
Revises: 5b8e3f1a9c62
Create Date: 2026-12-07 21:10:00.000000+00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8b2f4c6d1e90'
down_revision = '5b8e3f1a9c62'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'item_drafts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('work_item_id', sa.Integer(), nullable=False),
        sa.Column('box', sa.String(length=16), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("box IN ('reply', 'note')", name=op.f('ck_item_drafts_box')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_item_drafts_user_id_users'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['work_item_id'], ['work_items.id'],
                                name=op.f('fk_item_drafts_work_item_id_work_items'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_item_drafts')),
        sa.UniqueConstraint('user_id', 'work_item_id', 'box', name=op.f('uq_item_drafts_user_id')),
    )
    with op.batch_alter_table('item_drafts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_item_drafts_work_item_id'), ['work_item_id'], unique=False)


def downgrade():
    with op.batch_alter_table('item_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_item_drafts_work_item_id'))
    op.drop_table('item_drafts')
